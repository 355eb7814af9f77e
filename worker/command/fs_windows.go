//go:build windows

package command

import (
	"io/fs"
	"os"
	"syscall"
	"time"
)

// statValues returns Python's tuple(os.stat(path)) as CPython computes it
// on Windows: st_mode from the file attributes (which Go's FileMode
// mirrors), ino/dev/nlink from the file's handle information, uid and gid
// 0, and st_ctime the creation time.
func statValues(path string) ([]any, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	d, ok := fi.Sys().(*syscall.Win32FileAttributeData)
	if !ok {
		return portableStat(fi), nil
	}
	ino, dev, nlink := fileIdentity(path)
	return []any{
		pyMode(fi.Mode()), ino, dev, nlink, int64(0), int64(0), fi.Size(),
		time.Unix(0, d.LastAccessTime.Nanoseconds()).Unix(),
		fi.ModTime().Unix(),
		time.Unix(0, d.CreationTime.Nanoseconds()).Unix(),
	}, nil
}

// fileIdentity returns the file index, volume serial number and link count
// of path, or zeros when the file cannot be opened for its attributes.
func fileIdentity(path string) (ino, dev, nlink int64) {
	p, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return 0, 0, 0
	}
	// Access 0 with backup semantics opens directories too, without
	// needing read permission or disturbing other openers.
	h, err := syscall.CreateFile(p, 0,
		syscall.FILE_SHARE_READ|syscall.FILE_SHARE_WRITE|syscall.FILE_SHARE_DELETE,
		nil, syscall.OPEN_EXISTING, syscall.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return 0, 0, 0
	}
	defer syscall.CloseHandle(h)
	var d syscall.ByHandleFileInformation
	if err := syscall.GetFileInformationByHandle(h, &d); err != nil {
		return 0, 0, 0
	}
	return int64(d.FileIndexHigh)<<32 | int64(d.FileIndexLow), int64(d.VolumeSerialNumber), int64(d.NumberOfLinks)
}

// accessTime returns fi's last access time.
func accessTime(fi fs.FileInfo) time.Time {
	if d, ok := fi.Sys().(*syscall.Win32FileAttributeData); ok {
		return time.Unix(0, d.LastAccessTime.Nanoseconds())
	}
	return fi.ModTime()
}

// winErrno maps Windows error codes, and the POSIX-style errnos Go invents
// on Windows, to the C runtime's errno values, which is what CPython puts
// in OSError.errno there (PC/errmap.h).
var winErrno = map[syscall.Errno]int{
	syscall.ERROR_FILE_NOT_FOUND: 2,  // ENOENT (also Go's syscall.ENOENT)
	syscall.ERROR_PATH_NOT_FOUND: 2,  // ENOENT (also Go's syscall.ENOTDIR)
	syscall.ERROR_ACCESS_DENIED:  13, // EACCES
	32:                           13, // ERROR_SHARING_VIOLATION → EACCES
	syscall.ERROR_FILE_EXISTS:    17, // EEXIST
	syscall.ERROR_ALREADY_EXISTS: 17, // EEXIST
	syscall.ERROR_DIR_NOT_EMPTY:  41, // ENOTEMPTY
	267:                          20, // ERROR_DIRECTORY → ENOTDIR
	syscall.EACCES:               13,
	syscall.EPERM:                1,
	syscall.EEXIST:               17,
	syscall.EISDIR:               21,
	syscall.EINVAL:               22,
	syscall.ENOTEMPTY:            41,
}

// errnoNumber is the errno Python reports for en on Windows; unmapped
// Windows codes pass through (they are at least non-zero).
func errnoNumber(en syscall.Errno) int {
	if n, ok := winErrno[en]; ok {
		return n
	}
	return int(en)
}
