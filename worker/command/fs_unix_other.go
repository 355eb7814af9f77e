//go:build unix && !darwin && !freebsd && !netbsd

package command

import (
	"syscall"
	"time"
)

// statTimes returns st's access and status-change times; Linux and the
// other Unixes name the fields Atim and Ctim.
func statTimes(st *syscall.Stat_t) (atime, ctime time.Time) {
	return time.Unix(int64(st.Atim.Sec), int64(st.Atim.Nsec)),
		time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec))
}
