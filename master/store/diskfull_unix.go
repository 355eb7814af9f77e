//go:build unix

package store

import (
	"fmt"
	"path/filepath"
	"syscall"
)

// freeBytes is the room left for an unprivileged user on the file system
// holding path.
func freeBytes(path string) (int64, error) {
	dir := filepath.Dir(path)
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
