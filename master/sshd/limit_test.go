package sshd

import (
	"fmt"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/clock"
)

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type step struct {
		at    time.Duration // since t0
		ip    string
		fail  bool // record a failure (else ask allow)
		ok    bool // allow's answer
		first bool // allow's firstRefusal
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a fresh IP is allowed", []step{{ip: "a", ok: true}}},
		{"burst of 3, then refused, logged once", []step{
			{ip: "a", fail: true}, {ip: "a", fail: true}, {ip: "a", ok: true},
			{ip: "a", fail: true},
			{ip: "a", ok: false, first: true},
			{ip: "a", ok: false, first: false},
			{ip: "b", ok: true}, // other IPs are not affected
		}},
		{"one token back per interval", []step{
			{ip: "a", fail: true}, {ip: "a", fail: true}, {ip: "a", fail: true},
			{at: 59 * time.Second, ip: "a", ok: false, first: true},
			{at: time.Minute, ip: "a", ok: true},
			{at: time.Minute, ip: "a", fail: true},
			{at: time.Minute, ip: "a", ok: false, first: true}, // dry again: logged again
		}},
		{"refill is capped at the burst", []step{
			{ip: "a", fail: true},
			{at: time.Hour, ip: "a", fail: true}, {at: time.Hour, ip: "a", fail: true}, {at: time.Hour, ip: "a", fail: true},
			{at: time.Hour, ip: "a", ok: false, first: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			l := newLimiter(clk, 3, time.Minute)
			for i, s := range tt.steps {
				clk.Set(t0.Add(s.at))
				if s.fail {
					l.fail(s.ip)
					continue
				}
				ok, first := l.allow(s.ip)
				if ok != s.ok || first != s.first {
					t.Fatalf("step %d: allow(%s) at +%s = %v, %v; want %v, %v", i, s.ip, s.at, ok, first, s.ok, s.first)
				}
			}
		})
	}
}

// TestLimiterPrunes: many addresses cannot grow the table without bound.
func TestLimiterPrunes(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	l := newLimiter(clk, 2, time.Second)
	for i := range maxBuckets {
		l.fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	clk.Set(clk.Now().Add(time.Hour))
	l.fail("192.0.2.1")
	if n := len(l.ips); n != 1 {
		t.Fatalf("%d buckets after pruning, want 1", n)
	}
}
