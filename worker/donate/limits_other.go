//go:build !unix && !windows

package donate

import "syscall"

// Limiter does nothing on this platform.
type Limiter struct{}

// NewLimiter returns a Limiter that applies nothing, and says so.
func NewLimiter(l Limits) (*Limiter, []string) {
	return &Limiter{}, []string{"limits are not supported on this platform"}
}

func (*Limiter) Summary() string                      { return "no limits" }
func (*Limiter) ProcAttr() func(*syscall.SysProcAttr) { return nil }
func (*Limiter) Throttle(int) error                   { return ErrUnsupported }
func (*Limiter) Unthrottle(int) error                 { return ErrUnsupported }
func (*Limiter) CanThrottle() bool                    { return false }
func (*Limiter) Close()                               {}
