package sshd

import (
	"sync"
	"time"

	"github.com/starforge/starforge/internal/clock"
)

// limiter rate-limits failed logins per remote IP with a token bucket: an
// IP starts with burst tokens, each failed login takes one, and one comes
// back every every. An IP without a token is refused before it may try
// again. Safe for concurrent use.
type limiter struct {
	clk   clock.Clock
	burst float64
	every time.Duration

	mu  sync.Mutex
	ips map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was computed
	warned bool      // a refusal was logged since the bucket ran dry
}

// maxBuckets bounds the memory an attack from many addresses can take:
// past it, buckets that have refilled are dropped.
const maxBuckets = 4096

func newLimiter(clk clock.Clock, burst int, every time.Duration) *limiter {
	return &limiter{clk: clk, burst: float64(burst), every: every, ips: map[string]*bucket{}}
}

// refill brings b up to now.
func (l *limiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 && l.every > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.every))
	}
	b.at = now
	if b.tokens >= 1 {
		b.warned = false
	}
}

// allow reports whether ip may try to log in now. firstRefusal is true
// for the first refusal since the IP ran out of tokens, so that an
// attack is logged once rather than at every connection.
func (l *limiter) allow(ip string) (ok, firstRefusal bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.ips[ip]
	if b == nil {
		return true, false
	}
	l.refill(b, l.clk.Now())
	if b.tokens >= 1 {
		return true, false
	}
	first := !b.warned
	b.warned = true
	return false, first
}

// fail records a failed login from ip and returns how many more it may
// have at once.
func (l *limiter) fail(ip string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clk.Now()
	b := l.ips[ip]
	if b == nil {
		if len(l.ips) >= maxBuckets {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.ips[ip] = b
	}
	l.refill(b, now)
	b.tokens = max(0, b.tokens-1)
	return int(b.tokens)
}

// prune drops the buckets that are full again: they hold nothing a new
// bucket would not.
func (l *limiter) prune(now time.Time) {
	for ip, b := range l.ips {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.ips, ip)
		}
	}
}
