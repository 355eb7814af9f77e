//go:build !linux && !darwin && !freebsd && !windows

package donate

func statfsFree(string) (int64, error) { return 0, ErrUnsupported }
