//go:build darwin || freebsd || netbsd

package command

import (
	"syscall"
	"time"
)

// statTimes returns st's access and status-change times; these systems
// name the fields Atimespec and Ctimespec.
func statTimes(st *syscall.Stat_t) (atime, ctime time.Time) {
	return time.Unix(int64(st.Atimespec.Sec), int64(st.Atimespec.Nsec)),
		time.Unix(int64(st.Ctimespec.Sec), int64(st.Ctimespec.Nsec))
}
