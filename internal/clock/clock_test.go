package clock

import (
	"testing"
	"time"
)

func TestFakeRunsDueTimersInOrder(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewFake(start)
	ran := make(chan string, 3)
	c.AfterFunc(2*time.Second, func() { ran <- "two" })
	c.AfterFunc(time.Second, func() { ran <- "one" })
	stopped := c.AfterFunc(time.Second, func() { ran <- "stopped" })
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	c.Advance(time.Second)
	if got := <-ran; got != "one" {
		t.Fatalf("first timer = %q, want one", got)
	}
	if c.Pending() != 1 {
		t.Fatalf("Pending = %d, want 1", c.Pending())
	}
	c.Advance(time.Second)
	if got := <-ran; got != "two" {
		t.Fatalf("second timer = %q, want two", got)
	}
	if got := c.Now(); !got.Equal(start.Add(2 * time.Second)) {
		t.Fatalf("Now = %v", got)
	}
	select {
	case s := <-ran:
		t.Fatalf("stopped timer ran: %q", s)
	default:
	}
}

func TestFakeAddedSignals(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	added := c.Added()
	go c.AfterFunc(time.Minute, func() {})
	<-added
	if c.Pending() != 1 {
		t.Fatalf("Pending = %d, want 1", c.Pending())
	}
}
