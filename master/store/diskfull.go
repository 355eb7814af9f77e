package store

import (
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// A full disk must not leave builds "running" forever: once the disk is
// full, no write at all would succeed, not even the one that records a
// step's end. So the store keeps a reserve: a file of ballast beside the
// database, made at Open. The first write that fails because the disk is
// full releases the reserve and is tried again, and from then on the store
// is in disk-full mode: bulk writes (log lines) are refused at once with
// ErrDiskFull, so that the small writes that end steps, builds and
// requests have the reserve to themselves. The mode ends, and the reserve
// is made again, once the file system has room for twice the reserve.

// ErrDiskFull is returned (wrapped) by bulk writes while the disk holding
// the database is full.
var ErrDiskFull = errors.New("the disk holding the database is full")

const (
	minReserve = 256 << 10
	maxReserve = 16 << 20
	// fullRecheck is how often, in disk-full mode, the free space is
	// looked at again.
	fullRecheck = 2 * time.Second
)

// reserve is the ballast file and the disk-full mode.
type reserve struct {
	path string
	size int64

	mu        sync.Mutex
	full      bool      // in disk-full mode
	checkedAt time.Time // when the free space was last looked at, in disk-full mode
}

// newReserve sizes the ballast to a tenth of the free space, within
// [minReserve, maxReserve], and makes it.
func newReserve(dbPath string) *reserve {
	r := &reserve{path: dbPath + ".reserve", size: minReserve}
	if free, err := freeBytes(dbPath); err == nil {
		r.size = min(max(free/10, minReserve), maxReserve)
	}
	r.fill() // a disk already too full to hold it is noticed at the first failed write
	return r
}

// fill makes the ballast: blocks really allocated (not a sparse file),
// which is the point.
func (r *reserve) fill() error {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := allocate(f, r.size); err != nil {
		f.Close()
		os.Remove(r.path)
		return err
	}
	return f.Close()
}

// writeZeros allocates size bytes of f by writing them.
func writeZeros(f *os.File, size int64) error {
	buf := make([]byte, 64<<10)
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// release removes the ballast and enters disk-full mode; it reports
// whether there was ballast to free (so that a retry may succeed).
func (r *reserve) release() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.full, r.checkedAt = true, time.Now()
	return os.Remove(r.path) == nil
}

// isFull reports whether the store is in disk-full mode, leaving it when
// the file system has room again.
func (r *reserve) isFull() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full || time.Since(r.checkedAt) < fullRecheck {
		return r.full
	}
	r.checkedAt = time.Now()
	if free, err := freeBytes(r.path); err == nil && free > 2*r.size && r.fill() == nil {
		r.full = false
	}
	return r.full
}

// isDiskFull reports whether err is SQLite's or the file system's "full".
func isDiskFull(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) && se.Code == sqlite3.ErrFull {
		return true
	}
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "database or disk is full")
}
