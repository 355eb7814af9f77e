package store

import (
	"os"
	"syscall"
)

// allocate gives f size bytes of real blocks: fallocate where the file
// system has it, else zeros written.
func allocate(f *os.File, size int64) error {
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err == nil {
		return nil
	}
	return writeZeros(f, size)
}
