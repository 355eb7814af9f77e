//go:build unix

package master

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockBasedir takes an exclusive lock on dir/run/master.lock for the life
// of the process (or until release), so a second master pointed at the
// same basedir stops before it touches the database: its crash recovery
// would otherwise mark the first master's running builds RETRY.
func lockBasedir(dir string) (release func(), err error) {
	path := filepath.Join(dir, "run", "master.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("master: lock basedir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(holder))
			if pid == "" {
				pid = "unknown"
			}
			return nil, fmt.Errorf("master: basedir %s is in use by another master (pid %s)", dir, pid)
		}
		return nil, fmt.Errorf("master: lock basedir: %w", err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Truncate(0); f.Close() }, nil
}
