//go:build unix

package command

import (
	"io/fs"
	"os"
	"syscall"
	"time"
)

// statValues returns Python's tuple(os.stat(path)) (symlinks followed):
// mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime, the times in
// whole seconds. The mode is the raw st_mode, so its type bits are the
// S_IF* values a Buildbot master tests with stat.S_ISDIR and friends.
func statValues(path string) ([]any, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return portableStat(fi), nil
	}
	atime, ctime := statTimes(st)
	return []any{
		int64(st.Mode), int64(st.Ino), int64(st.Dev), int64(st.Nlink),
		int64(st.Uid), int64(st.Gid), st.Size,
		atime.Unix(), fi.ModTime().Unix(), ctime.Unix(),
	}, nil
}

// accessTime returns fi's last access time, or its modification time when
// the platform does not say.
func accessTime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		atime, _ := statTimes(st)
		return atime
	}
	return fi.ModTime()
}

// errnoNumber is the errno Python reports for en: on Unix, en itself.
func errnoNumber(en syscall.Errno) int { return int(en) }
