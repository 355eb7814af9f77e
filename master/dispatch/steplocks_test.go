package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"
)

type acquired struct {
	release func()
	err     error
}

// acquireAsync asks for step locks on a goroutine; the result arrives on
// the returned channel, the lock it waits for (if any) on waits.
func acquireAsync(ctx context.Context, d *Dispatcher, req int64, worker string, locks []LockAccess) (<-chan acquired, <-chan string) {
	out := make(chan acquired, 1)
	waits := make(chan string, 1)
	go func() {
		rel, err := d.AcquireStepLocks(ctx, req, worker, locks, func(l string) { waits <- l })
		out <- acquired{rel, err}
	}()
	return out, waits
}

func got(t *testing.T, ch <-chan acquired) acquired {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("step locks not granted")
	}
	return acquired{}
}

// waitsFor waits until a step is told it waits for lock: its wait is then
// registered.
func waitsFor(t *testing.T, waits <-chan string, lock string) {
	t.Helper()
	select {
	case l := <-waits:
		if l != lock {
			t.Fatalf("waits for %q, want %q", l, lock)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the step was not told it waits")
	}
}

func notYet(t *testing.T, d *Dispatcher, ch <-chan acquired) {
	t.Helper()
	settle(t, d)
	select {
	case a := <-ch:
		t.Fatalf("step locks granted (err %v) while held elsewhere", a.err)
	default:
	}
}

var lockCfg = Config{
	Builders: []Builder{{Name: "a", Workers: []string{"w1"}}, {Name: "b", Workers: []string{"w2"}}},
	Locks:    []Lock{{Name: "db", MaxCount: 1}, {Name: "cpu", PerWorker: true, MaxCount: 1}},
}

// TestStepLockExclusiveWaits: two builds' steps share an exclusive master
// lock; the second waits, says for what, and gets it once the first
// releases it.
func TestStepLockExclusiveWaits(t *testing.T) {
	d, _ := setup(t, lockCfg)
	ctx := context.Background()
	ex := []LockAccess{{Lock: "db", Exclusive: true}}
	first, _ := acquireAsync(ctx, d, 1, "w1", ex)
	a1 := got(t, first)
	if a1.err != nil {
		t.Fatal(a1.err)
	}
	second, waits := acquireAsync(ctx, d, 2, "w2", ex)
	waitsFor(t, waits, "db")
	notYet(t, d, second)
	a1.release()
	a1.release() // a second call does nothing
	a2 := got(t, second)
	if a2.err != nil {
		t.Fatal(a2.err)
	}
	a2.release()
}

// TestStepLockWithdrawnOnStop: a step stopped while it waits gives up its
// place; the next waiter gets the lock when it is free.
func TestStepLockWithdrawnOnStop(t *testing.T) {
	d, _ := setup(t, lockCfg)
	ex := []LockAccess{{Lock: "db", Exclusive: true}}
	a1 := got(t, first(t, d, ex))
	sctx, stop := context.WithCancel(context.Background())
	stopped, w2 := acquireAsync(sctx, d, 2, "w2", ex)
	waitsFor(t, w2, "db")
	third, w3 := acquireAsync(context.Background(), d, 3, "w2", ex)
	waitsFor(t, w3, "db")
	notYet(t, d, stopped)
	stop()
	if a := got(t, stopped); !errors.Is(a.err, context.Canceled) {
		t.Fatalf("stopped wait: err = %v, want context.Canceled", a.err)
	}
	notYet(t, d, third)
	a1.release()
	a3 := got(t, third)
	if a3.err != nil {
		t.Fatal(a3.err)
	}
	a3.release()
	// Nothing is held any more.
	a4 := got(t, first(t, d, ex))
	a4.release()
}

func first(t *testing.T, d *Dispatcher, locks []LockAccess) <-chan acquired {
	ch, _ := acquireAsync(context.Background(), d, 1, "w1", locks)
	return ch
}

// TestStepLockCountingAndPerWorker: counting holders share up to
// max_count; a worker lock on another worker is another lock.
func TestStepLockCountingAndPerWorker(t *testing.T) {
	cfg := lockCfg
	cfg.Locks = []Lock{{Name: "db", MaxCount: 2}, {Name: "cpu", PerWorker: true, MaxCount: 1}}
	d, _ := setup(t, cfg)
	ctx := context.Background()
	cnt := []LockAccess{{Lock: "db"}}
	a := got(t, first(t, d, cnt))
	b, _ := acquireAsync(ctx, d, 2, "w2", cnt)
	ab := got(t, b)
	c, wc := acquireAsync(ctx, d, 3, "w2", cnt)
	waitsFor(t, wc, "db")
	notYet(t, d, c)
	a.release()
	got(t, c).release()
	ab.release()

	cpu := []LockAccess{{Lock: "cpu", Exclusive: true}}
	x := got(t, first(t, d, cpu))
	y, _ := acquireAsync(ctx, d, 2, "w2", cpu)
	got(t, y).release() // another worker's instance
	z, wz := acquireAsync(ctx, d, 3, "w1", cpu)
	waitsFor(t, wz, "cpu")
	notYet(t, d, z)
	x.release()
	got(t, z).release()
}

// TestStepLockBlocksNewBuilds: a step waiting for a lock is served before a
// new build that wants the same lock.
func TestStepLockBlocksNewBuilds(t *testing.T) {
	cfg := Config{
		Builders: []Builder{{Name: "a", Workers: []string{"w1"}}, {Name: "b", Workers: []string{"w2"}, Locks: []LockAccess{{Lock: "db", Exclusive: true}}}},
		Locks:    []Lock{{Name: "db", MaxCount: 1}},
	}
	d, f := setup(t, cfg)
	d.Attached("w1")
	d.Attached("w2")
	ctx := context.Background()
	ex := []LockAccess{{Lock: "db", Exclusive: true}}
	a1 := got(t, first(t, d, ex))
	waiter, ww := acquireAsync(ctx, d, 7, "w1", ex)
	waitsFor(t, ww, "db")
	notYet(t, d, waiter)
	d.Add(req(2, "b", 0, 0))
	noStart(t, d, f)
	a1.release()
	a2 := got(t, waiter)
	noStart(t, d, f) // the step got it first
	a2.release()
	if s := next(t, f); s.req.ID != 2 {
		t.Fatalf("started %d, want 2", s.req.ID)
	}
}

// TestStepLockOwnBuildLock: a step may use a lock its own build holds.
func TestStepLockOwnBuildLock(t *testing.T) {
	cfg := Config{
		Builders: []Builder{{Name: "b", Workers: []string{"w1"}, Locks: []LockAccess{{Lock: "db", Exclusive: true}}}},
		Locks:    []Lock{{Name: "db", MaxCount: 1}},
	}
	d, f := setup(t, cfg)
	d.Attached("w1")
	d.Add(req(5, "b", 0, 0))
	s := next(t, f)
	ch, _ := acquireAsync(context.Background(), d, 5, "w1", []LockAccess{{Lock: "db", Exclusive: true}})
	got(t, ch).release()
	s.finish <- false
}
