package poller

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/store"
)

// startManager runs m until the test ends.
func startManager(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// onDemand returns a declaration that polls only when asked.
func onDemand(name, repo string) *config.GitPoller {
	c := pollerCfg(name, repo)
	c.Interval, c.PollAtLaunch = 0, false
	return c
}

func statusOf(m *Manager, name string) Status {
	for _, s := range m.Status() {
		if s.Name == name {
			return s
		}
	}
	return Status{}
}

// TestManagerPollNow checks PollNow and Status, with one repository that
// cannot be reached among good ones.
func TestManagerPollNow(t *testing.T) {
	r := newRepo(t)
	head := r.fileCommit("base")
	e := newEnv(t)
	m := NewManager(e.options())
	missing := t.TempDir() + "/missing"
	m.SetConfig([]*config.GitPoller{onDemand("good", r.dir), onDemand("bad", missing), onDemand("good2", "file://"+r.dir)})
	startManager(t, m)
	ctx := context.Background()

	if err := m.PollNow(ctx, "bad"); err == nil || !strings.Contains(err.Error(), "list refs of "+missing) {
		t.Errorf("PollNow(bad) = %v, want an error about listing %s", err, missing)
	}
	for _, name := range []string{"good", "good2"} {
		if err := m.PollNow(ctx, name); err != nil {
			t.Errorf("PollNow(%s): %v", name, err)
		}
	}
	err := m.PollNow(ctx, "nope")
	if !errors.Is(err, ErrUnknownPoller) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("PollNow(nope) = %v, want ErrUnknownPoller naming it", err)
	}

	st := m.Status()
	if got := []string{st[0].Name, st[1].Name, st[2].Name}; !slices.Equal(got, []string{"good", "bad", "good2"}) {
		t.Errorf("status order %v", got)
	}
	if s := st[1]; !strings.Contains(s.LastError, "list refs of "+missing) || s.Refs != nil || s.LastPoll.IsZero() {
		t.Errorf("bad: %+v", s)
	}
	if s := st[0]; s.LastError != "" || s.Refs["refs/heads/main"] != head || s.LastPoll.IsZero() || !s.NextPoll.IsZero() || s.Polling {
		t.Errorf("good: %+v", s)
	}

	// A commit, and the webhook's PollNow sees it once.
	c := r.fileCommit("c")
	if err := m.PollNow(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	if err := m.PollNow(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	all, err := e.st.ChangesAfter(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := revisions(all); !slices.Equal(got, []string{"main:" + c}) {
		t.Errorf("stored %v, want c once", got)
	}
}

// TestManagerInterval checks poll_at_launch and the interval timer, on a
// fake clock.
func TestManagerInterval(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	e := newEnv(t)
	fc := clock.NewFake(epoch)
	sink := &signalSink{st: e.st, calls: make(chan []store.Change, 10)}
	o := e.options()
	o.Sink, o.Clock = sink, fc
	m := NewManager(o)
	atLaunch := pollerCfg("launch", r.dir)
	atLaunch.Interval = time.Minute
	later := pollerCfg("later", r.dir)
	later.Interval, later.PollAtLaunch = time.Hour, false
	m.SetConfig([]*config.GitPoller{atLaunch, later})
	startManager(t, m)

	// "launch" polls at once (recording its heads) and then arms its
	// timer; "later" only arms its timer.
	if got := <-sink.calls; len(got) != 0 {
		t.Fatalf("first poll made changes %v", revisions(got))
	}
	waitTimers(t, fc, 2)
	if s := statusOf(m, "launch"); !s.NextPoll.Equal(epoch.Add(time.Minute)) || s.LastPoll.IsZero() {
		t.Errorf("launch: next %v last %v, want next a minute on", s.NextPoll, s.LastPoll)
	}
	if s := statusOf(m, "later"); !s.NextPoll.Equal(epoch.Add(time.Hour)) || !s.LastPoll.IsZero() {
		t.Errorf("later: next %v last %v, want next an hour on and no poll yet", s.NextPoll, s.LastPoll)
	}
	select {
	case got := <-sink.calls:
		t.Fatalf("a poll before its time: %v", got)
	default:
	}

	c := r.fileCommit("c")
	fc.Advance(time.Minute)
	if got := revisions(<-sink.calls); !slices.Equal(got, []string{"main:" + c}) {
		t.Errorf("after a minute: %v, want c", got)
	}
	waitTimers(t, fc, 2)
	fc.Advance(time.Hour)
	// Both are due: "launch" finds nothing new; "later" polls for the first time and records.
	if got := <-sink.calls; len(got) != 0 {
		t.Errorf("later's first poll made changes %v", revisions(got))
	}
	if got := e.state("later")["refs/heads/main"]; got != c {
		t.Errorf("later recorded %q, want %s", got, c)
	}
}

// waitTimers waits until n timers are armed on fc.
func waitTimers(t *testing.T, fc *clock.Fake, n int) {
	t.Helper()
	for {
		added := fc.Added()
		if fc.Pending() >= n {
			return
		}
		select {
		case <-added:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d timers armed, want %d", fc.Pending(), n)
		}
	}
}

// TestManagerReconfig checks that SetConfig starts, restarts and stops
// pollers, and that a restarted one carries on from its stored state.
func TestManagerReconfig(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	e := newEnv(t)
	m := NewManager(e.options())
	a := onDemand("a", r.dir)
	m.SetConfig([]*config.GitPoller{a})
	startManager(t, m)
	ctx := context.Background()
	if err := m.PollNow(ctx, "a"); err != nil {
		t.Fatal(err)
	}

	c := r.fileCommit("c")
	a2 := onDemand("a", r.dir)
	a2.AllBranches = true
	m.SetConfig([]*config.GitPoller{onDemand("b", r.dir), a2})
	if st := m.Status(); len(st) != 2 || st[0].Name != "b" || st[1].Name != "a" || !st[1].LastPoll.IsZero() {
		t.Errorf("status after reconfig: %+v (want b, then a restarted with no poll yet)", st)
	}
	if err := m.PollNow(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	all, err := e.st.ChangesAfter(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := revisions(all); !slices.Equal(got, []string{"main:" + c}) {
		t.Errorf("restarted poller stored %v, want c", got)
	}

	// Unchanged: not restarted (its status survives).
	m.SetConfig([]*config.GitPoller{onDemand("b", r.dir), a2})
	if s := statusOf(m, "a"); s.LastPoll.IsZero() {
		t.Errorf("unchanged poller was restarted: %+v", s)
	}
	m.SetConfig([]*config.GitPoller{onDemand("b", r.dir)})
	if err := m.PollNow(ctx, "a"); !errors.Is(err, ErrUnknownPoller) {
		t.Errorf("removed poller: PollNow = %v", err)
	}
	if err := m.PollNow(ctx, "b"); err != nil {
		t.Errorf("PollNow(b): %v", err)
	}
}

// TestManagerHangingRemote checks that a remote that never answers holds
// only its own poll: others go on, and it gives up after ListTimeout.
func TestManagerHangingRemote(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // read nothing, answer nothing
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})

	e := newEnv(t)
	o := e.options()
	o.Concurrency = 2
	o.ListTimeout = time.Hour // the test ends it by stopping the manager
	m := NewManager(o)
	hang := onDemand("hang", "http://"+ln.Addr().String()+"/x.git")
	m.SetConfig([]*config.GitPoller{hang, onDemand("good", r.dir), onDemand("good2", r.dir)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()

	hung := make(chan error, 1)
	go func() { hung <- m.PollNow(context.Background(), "hang") }()
	select {
	case c := <-accepted:
		accepted <- c
	case <-time.After(10 * time.Second):
		t.Fatal("the poller never connected")
	}
	for _, name := range []string{"good", "good2", "good"} {
		if err := m.PollNow(context.Background(), name); err != nil {
			t.Errorf("PollNow(%s) while another hangs: %v", name, err)
		}
	}
	if s := statusOf(m, "hang"); !s.Polling {
		t.Errorf("hang: not polling: %+v", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-hung; !errors.Is(err, errStopped) {
		t.Errorf("hanging poll at shutdown: %v, want errStopped", err)
	}
}

// TestListTimeout checks that a poll of a remote that never answers fails
// with a clear error once ListTimeout has passed.
func TestListTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c) // answer nothing
		}
	}()
	e := newEnv(t)
	o := e.options()
	o.ListTimeout = 100 * time.Millisecond
	p := NewPoller(onDemand("hang", "http://"+ln.Addr().String()+"/x.git"), o)
	_, err = p.Poll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no answer within 100ms") {
		t.Errorf("err = %v, want no answer within 100ms", err)
	}
}
