package latent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/store"
)

// fakeDriver starts nothing; it records what it is asked.
type fakeDriver struct {
	mu       sync.Mutex
	started  map[string]Instance
	stopped  []string
	startErr error
	exited   map[string]chan struct{}
	listed   []string
	starts   chan Instance
}

func newFakeDriver() *fakeDriver {
	return &fakeDriver{started: map[string]Instance{}, exited: map[string]chan struct{}{}, starts: make(chan Instance, 100)}
}

func (d *fakeDriver) Start(ctx context.Context, inst Instance) error {
	d.mu.Lock()
	err := d.startErr
	if err == nil {
		d.started[inst.Name] = inst
		d.exited[inst.Name] = make(chan struct{})
	}
	d.mu.Unlock()
	d.starts <- inst
	return err
}

func (d *fakeDriver) Stop(ctx context.Context, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = append(d.stopped, name)
	delete(d.started, name)
	return nil
}

func (d *fakeDriver) Exited(name string) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.exited[name]
}

func (d *fakeDriver) List(ctx context.Context, prefix string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, n := range d.listed {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out, nil
}

func (d *fakeDriver) wasStopped(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.stopped, name)
}

// fakeDispatcher records what the Manager tells the dispatcher.
type fakeDispatcher struct {
	events chan string
}

func (f *fakeDispatcher) LatentStopping(slot string) { f.events <- "stopping " + slot }
func (f *fakeDispatcher) LatentStopped(slot string, err error) {
	f.events <- fmt.Sprintf("stopped %s %v", slot, err)
}
func (f *fakeDispatcher) Kick() { f.events <- "kick" }

// await returns the next event, which must start with prefix.
func (f *fakeDispatcher) await(t *testing.T, prefix string) string {
	t.Helper()
	for {
		select {
		case ev := <-f.events:
			if strings.HasPrefix(ev, prefix) {
				return ev
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no dispatcher event %q", prefix)
		}
	}
}

// fakeSession detaches itself the way the registry does when the
// Manager disconnects it.
type fakeSession struct {
	m    *Manager
	slot string
	mu   sync.Mutex
	why  error
}

func (s *fakeSession) Disconnect(reason error) {
	s.mu.Lock()
	s.why = reason
	s.mu.Unlock()
	go s.m.Detached(s.slot, s)
}

type rig struct {
	m      *Manager
	d      *fakeDriver
	disp   *fakeDispatcher
	clk    *clock.Fake
	st     *store.Store
	gaveUp chan string
}

func newRig(t *testing.T, st *store.Store, ws ...*config.LatentWorker) *rig {
	t.Helper()
	r := &rig{d: newFakeDriver(), disp: &fakeDispatcher{events: make(chan string, 100)}, clk: clock.NewFake(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)), st: st, gaveUp: make(chan string, 10)}
	opts := Options{
		Dispatcher: r.disp,
		NewDriver:  func(*config.LatentWorker) (Driver, error) { return r.d, nil },
		MasterAddr: func() string { return "127.0.0.1:9989" },
		GiveUp:     func(slot string, _ error) { r.gaveUp <- slot },
		Clock:      r.clk,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if st != nil {
		opts.Store = st
	}
	r.m = New(opts)
	r.m.SetConfig(ws)
	t.Cleanup(func() { r.m.Close(context.Background()) })
	return r
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func lw(name string, maxInst int, wait, missing time.Duration) *config.LatentWorker {
	return &config.LatentWorker{Name: name, Driver: &config.LatentDriver{Kind: "fake"}, MaxInstances: maxInst, BuildWaitTimeout: wait, MissingTimeout: missing}
}

// waitFor waits until cond holds for the slot states.
func (r *rig) waitFor(t *testing.T, what string, cond func(map[string]SlotState) bool) map[string]SlotState {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ch := r.m.Changes()
		st := r.m.States()
		if cond(st) {
			return st
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; states: %+v", what, st)
		}
	}
}

func (r *rig) waitState(t *testing.T, slot string, s State) {
	t.Helper()
	r.waitFor(t, fmt.Sprintf("%s %s", slot, s), func(m map[string]SlotState) bool { return m[slot].State == s })
}

// start starts an instance in slot and returns it as its driver saw it.
func (r *rig) start(t *testing.T, slot string, req int64) Instance {
	t.Helper()
	if ok, why := r.m.Startable(slot); !ok {
		t.Fatalf("Startable(%s) = false, %q", slot, why)
	}
	r.m.Start(slot, store.BuildRequest{ID: req, BuilderName: "b"})
	select {
	case inst := <-r.d.starts:
		return inst
	case <-time.After(10 * time.Second):
		t.Fatal("the driver was not asked to start an instance")
	}
	return Instance{}
}

func TestLifecycleIdleStop(t *testing.T) {
	r := newRig(t, openStore(t), lw("vm", 2, 10*time.Minute, 5*time.Minute))
	inst := r.start(t, "vm/2", 7)
	if !isInstanceName("vm", inst.Name) || inst.WorkerName != "vm" || inst.MasterAddr != "127.0.0.1:9989" || len(inst.Password) < 32 {
		t.Fatalf("instance = %+v", inst)
	}
	if ok, why := r.m.Startable("vm/2"); ok || !strings.Contains(why, "starting") {
		t.Errorf("Startable of a starting slot = %v, %q", ok, why)
	}
	// Only its own password, for its own latent worker, logs in.
	if slot, ok := r.m.Login("vm", inst.Password); !ok || slot != "vm/2" {
		t.Fatalf("Login = %q, %v", slot, ok)
	}
	for _, bad := range [][2]string{{"vm", "nope"}, {"other", inst.Password}, {"vm", ""}} {
		if _, ok := r.m.Login(bad[0], bad[1]); ok {
			t.Errorf("Login(%q, %q) accepted", bad[0], bad[1])
		}
	}
	sess := &fakeSession{m: r.m, slot: "vm/2"}
	if !r.m.Attached("vm/2", sess) {
		t.Fatal("Attached refused the instance")
	}
	st := r.m.States()["vm/2"]
	if st.State != Running || st.Instance != inst.Name || st.Worker != "vm" {
		t.Fatalf("state = %+v", st)
	}
	release, ok := r.m.Acquire("vm/2")
	if !ok {
		t.Fatal("Acquire refused a running instance")
	}
	if _, ok := r.m.Acquire("vm"); ok {
		t.Error("Acquire of a stopped slot succeeded")
	}
	r.clk.Advance(time.Hour) // busy: no idle stop
	release(true)
	r.waitFor(t, "idle timer", func(map[string]SlotState) bool { return r.clk.Pending() > 0 })
	r.clk.Advance(10*time.Minute - time.Second)
	if s := r.m.States()["vm/2"].State; s != Running {
		t.Fatalf("state before build_wait_timeout = %s", s)
	}
	r.clk.Advance(time.Second)
	r.disp.await(t, "stopping vm/2")
	if ev := r.disp.await(t, "stopped vm/2"); ev != "stopped vm/2 <nil>" {
		t.Errorf("event = %q", ev)
	}
	r.waitState(t, "vm/2", Stopped)
	if !r.d.wasStopped(inst.Name) {
		t.Error("the driver did not stop the instance")
	}
	sess.mu.Lock()
	if sess.why == nil || !strings.Contains(sess.why.Error(), "idle for 10m0s") {
		t.Errorf("disconnected for %v", sess.why)
	}
	sess.mu.Unlock()
	// A stale instance cannot log in again.
	if _, ok := r.m.Login("vm", inst.Password); ok {
		t.Error("the stopped instance's password still logs in")
	}
	// Its record is gone: a restart finds nothing to stop.
	recs, err := r.st.ObjectState(context.Background(), instancesObject)
	if err != nil || len(recs) != 0 {
		t.Errorf("instance records after stop = %v, %v", recs, err)
	}
}

func TestBuildWaitZeroStopsAfterTheBuild(t *testing.T) {
	r := newRig(t, nil, lw("vm", 1, 0, 0))
	inst := r.start(t, "vm", 1)
	r.m.Attached("vm", &fakeSession{m: r.m, slot: "vm"})
	release, _ := r.m.Acquire("vm")
	release(true)
	r.disp.await(t, "stopped vm")
	if !r.d.wasStopped(inst.Name) {
		t.Error("not stopped after its build")
	}
}

func TestMissingTimeoutQuarantineDisableEnable(t *testing.T) {
	st := openStore(t)
	r := newRig(t, st, lw("vm", 1, time.Minute, 5*time.Minute))
	backoff := MinQuarantine
	for i := 1; i <= MaxFailures; i++ {
		inst := r.start(t, "vm", 1)
		r.clk.Advance(5 * time.Minute)
		ev := r.disp.await(t, "stopped vm")
		if !strings.Contains(ev, "did not connect within 5m0s") {
			t.Fatalf("failure %d: %q", i, ev)
		}
		if !r.d.wasStopped(inst.Name) {
			t.Fatalf("failure %d: the instance was not cleaned up", i)
		}
		s := r.m.States()["vm"]
		if s.Failures != i {
			t.Fatalf("failures = %d, want %d", s.Failures, i)
		}
		if i == MaxFailures {
			break
		}
		ok, why := r.m.Startable("vm")
		if ok || !strings.Contains(why, "quarantined") || !strings.Contains(why, fmt.Sprintf("after %d failure", i)) {
			t.Fatalf("failure %d: Startable = %v, %q", i, ok, why)
		}
		r.clk.Advance(backoff - time.Second)
		if ok, _ := r.m.Startable("vm"); ok {
			t.Fatalf("failure %d: startable before %s of quarantine", i, backoff)
		}
		r.clk.Advance(time.Second)
		r.disp.await(t, "kick")
		backoff *= 2
	}
	ok, why := r.m.Startable("vm")
	if ok || !strings.Contains(why, "disabled: 5 failures in a row, the last: instance vm-") {
		t.Fatalf("after %d failures: Startable = %v, %q", MaxFailures, ok, why)
	}
	r.clk.Advance(MaxQuarantine) // quarantine ends; disabled stays
	if ok, _ := r.m.Startable("vm"); ok {
		t.Fatal("a disabled worker became startable when its quarantine ended")
	}

	// A restarted master remembers.
	r2 := newRig(t, st, lw("vm", 1, time.Minute, 5*time.Minute))
	if _, err := r2.m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := r2.m.States()["vm"].Disabled; !strings.Contains(d, "5 failures in a row") {
		t.Fatalf("disabled after restart = %q", d)
	}
	if err := r2.m.Enable(context.Background(), "vm"); err != nil {
		t.Fatal(err)
	}
	if ok, why := r2.m.Startable("vm"); !ok {
		t.Fatalf("Startable after Enable = %q", why)
	}
	r2.disp.await(t, "kick")
	if err := r2.m.Enable(context.Background(), "nope"); !errors.Is(err, ErrNoWorker) {
		t.Errorf("Enable(nope) = %v", err)
	}
	r3 := newRig(t, st, lw("vm", 1, time.Minute, 5*time.Minute))
	if _, err := r3.m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := r3.m.States()["vm"].Disabled; d != "" {
		t.Errorf("still disabled after Enable and a restart: %q", d)
	}
}

func TestStartErrorCounts(t *testing.T) {
	r := newRig(t, nil, lw("vm", 1, time.Minute, 0))
	r.d.startErr = errors.New("no capacity")
	r.m.Start("vm", store.BuildRequest{ID: 3})
	<-r.d.starts
	ev := r.disp.await(t, "stopped vm")
	if !strings.Contains(ev, "no capacity") {
		t.Errorf("event = %q", ev)
	}
	if s := r.m.States()["vm"]; s.Failures != 1 || !strings.Contains(s.LastError, "no capacity") || s.Quarantined.IsZero() {
		t.Errorf("state = %+v", s)
	}
}

func TestGoneMidBuild(t *testing.T) {
	r := newRig(t, nil, lw("vm", 1, time.Minute, 0))
	inst := r.start(t, "vm", 1)
	sess := &fakeSession{m: r.m, slot: "vm"}
	r.m.Attached("vm", sess)
	release, _ := r.m.Acquire("vm")
	// The registry holds the lost connection for a reconnect...
	r.m.Detached("vm", sess)
	if s := r.m.States()["vm"].State; s != Running {
		t.Fatalf("state after losing the connection mid-build = %s", s)
	}
	// ...until the driver says the instance is gone.
	r.d.mu.Lock()
	close(r.d.exited[inst.Name])
	r.d.mu.Unlock()
	r.disp.await(t, "stopping vm")
	select {
	case slot := <-r.gaveUp:
		if slot != "vm" {
			t.Errorf("gave up %q", slot)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held session was not given up")
	}
	r.disp.await(t, "stopped vm <nil>")
	if s := r.m.States()["vm"]; s.Failures != 1 || !strings.Contains(s.LastError, "exited") {
		t.Errorf("state = %+v", s)
	}
	release(false) // the build ends RETRY meanwhile: nothing more happens
	if n := len(r.d.stopped); n != 1 {
		t.Errorf("stopped %d times", n)
	}
}

func TestLostIdleAndReconnect(t *testing.T) {
	r := newRig(t, nil, lw("vm", 1, time.Minute, 0))
	r.start(t, "vm", 1)
	s1 := &fakeSession{m: r.m, slot: "vm"}
	r.m.Attached("vm", s1)
	release, _ := r.m.Acquire("vm")
	r.m.Detached("vm", s1)
	// It comes back with its password (the resume extension).
	s2 := &fakeSession{m: r.m, slot: "vm"}
	if !r.m.Attached("vm", s2) {
		t.Fatal("the reconnect was refused")
	}
	r.m.Detached("vm", s1) // a late word about the old connection changes nothing
	release(true)
	if s := r.m.States()["vm"]; s.State != Running || s.Failures != 0 {
		t.Fatalf("state after a resumed build = %+v", s)
	}
	// Lost while idle: stopped, and counted.
	r.m.Detached("vm", s2)
	r.disp.await(t, "stopped vm")
	if s := r.m.States()["vm"]; s.Failures != 1 {
		t.Errorf("failures = %d", s.Failures)
	}
}

func TestRecoverStopsLeftovers(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	if err := st.SetState(ctx,
		store.StateValue{Object: instancesObject, Name: "vm-0123456789", Value: instanceRecord{Worker: "vm", Slot: "vm"}},
		store.StateValue{Object: instancesObject, Name: "gone-0123456789", Value: instanceRecord{Worker: "gone", Slot: "gone"}},
	); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, st, lw("vm", 1, time.Minute, 0), lw("vm-2", 1, time.Minute, 0))
	r.d.listed = []string{"vm-abcdefabcd", "vm-2-aaaaaaaaaa", "vm-short", "vmx-0123456789"}
	n, err := r.m.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("found %d leftovers, want 3 (two of vm, one of vm-2)", n)
	}
	deadline := time.After(10 * time.Second)
	for _, name := range []string{"vm-0123456789", "vm-abcdefabcd", "vm-2-aaaaaaaaaa"} {
		for !r.d.wasStopped(name) {
			select {
			case <-deadline:
				t.Fatalf("%s not stopped; stopped: %v", name, r.d.stopped)
			case <-time.After(time.Millisecond):
			}
		}
	}
	r.m.Close(ctx)
	if r.d.wasStopped("vm-short") || r.d.wasStopped("vmx-0123456789") {
		t.Errorf("stopped names that are not vm's instances: %v", r.d.stopped)
	}
	recs, _ := st.ObjectState(ctx, instancesObject)
	if _, ok := recs["vm-0123456789"]; ok || len(recs) != 1 {
		t.Errorf("records left: %v (want only the one of the unconfigured worker)", recs)
	}
}

func TestReconfigRetiresSlots(t *testing.T) {
	r := newRig(t, nil, lw("vm", 2, time.Minute, 0))
	i1 := r.start(t, "vm/2", 1)
	r.m.Attached("vm/2", &fakeSession{m: r.m, slot: "vm/2"})
	release, _ := r.m.Acquire("vm/2")
	r.m.SetConfig([]*config.LatentWorker{lw("vm", 1, time.Minute, 0)})
	if ok, _ := r.m.Startable("vm/2"); ok {
		t.Error("a removed slot is startable")
	}
	if s := r.m.States()["vm/2"].State; s != Running {
		t.Fatalf("a busy retired slot's instance: %s", s)
	}
	release(true)
	r.disp.await(t, "stopped vm/2")
	if !r.d.wasStopped(i1.Name) {
		t.Error("the retired slot's instance was not stopped after its build")
	}
	r.waitFor(t, "vm/2 forgotten", func(m map[string]SlotState) bool { _, ok := m["vm/2"]; return !ok })
}

func TestSlots(t *testing.T) {
	w := &config.LatentWorker{Name: "vm", MaxInstances: 3}
	if got := Slots(w); !slices.Equal(got, []string{"vm", "vm/2", "vm/3"}) {
		t.Errorf("Slots = %v", got)
	}
	for slot, want := range map[string]string{"vm": "vm", "vm/3": "vm", "w1": "w1"} {
		if got := WorkerOf(slot); got != want {
			t.Errorf("WorkerOf(%q) = %q", slot, got)
		}
	}
}

// Lost during a build and not back when the build ends (the registry gave
// up its hold): the instance is gone.
func TestLostMidBuildNotBack(t *testing.T) {
	r := newRig(t, nil, lw("vm", 1, time.Minute, 0))
	inst := r.start(t, "vm", 1)
	s := &fakeSession{m: r.m, slot: "vm"}
	r.m.Attached("vm", s)
	release, _ := r.m.Acquire("vm")
	r.m.Detached("vm", s)
	if _, ok := r.m.Acquire("vm"); ok {
		t.Error("a build may start on an instance that lost its connection")
	}
	release(false)
	r.disp.await(t, "stopped vm <nil>")
	if !r.d.wasStopped(inst.Name) {
		t.Error("not cleaned up")
	}
	if st := r.m.States()["vm"]; st.Failures != 1 || !strings.Contains(st.LastError, "did not come back") {
		t.Errorf("state = %+v", st)
	}
}
