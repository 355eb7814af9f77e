package worker

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/worker/donate"
	"github.com/starforge/starforge/worker/proto"
)

// owner is an idle source the test moves: away or at the keyboard.
type owner struct {
	mu   sync.Mutex
	idle time.Duration
}

func (o *owner) Name() string { return "test owner" }
func (o *owner) Idle(time.Time) (time.Duration, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.idle, nil
}
func (o *owner) away() { o.mu.Lock(); o.idle = time.Hour; o.mu.Unlock() }
func (o *owner) back() { o.mu.Lock(); o.idle = 0; o.mu.Unlock() }

// quietSystem is a machine with nothing else going on.
type quietSystem struct{}

func (quietSystem) Processes([]int, []string) (donate.ProcStats, error) {
	return donate.ProcStats{LoadKnown: true}, nil
}
func (quietSystem) Power() (donate.Power, error)   { return donate.Power{Charge: -1}, nil }
func (quietSystem) FreeDisk(string) (int64, error) { return 1 << 40, nil }

// startDonor runs a donating agent for m with the owner away.
func startDonor(t *testing.T, m *testMaster, mod func(*donate.Settings)) (*testAgent, *owner) {
	t.Helper()
	o := &owner{idle: time.Hour}
	s := donate.DefaultSettings()
	s.ResumeDelay = 0
	if mod != nil {
		mod(&s)
	}
	ta := startAgent(t, m, func(a *Agent) {
		a.Donation = &Donation{
			Policy: s, Limits: donate.Limits{ThrottleCores: 1},
			Idle: o, System: quietSystem{},
			Fast: 10 * time.Millisecond, Slow: 20 * time.Millisecond,
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker logs:\n%s", ta.logs)
		}
	})
	return ta, o
}

// handshake answers the worker as a Starforge master does, agreeing to
// the pause extension when pause is set.
func handshake(t *testing.T, mc *masterConn, pause bool) {
	t.Helper()
	res, err := mc.call(t, proto.OpGetWorkerInfo, nil)
	if err != nil {
		t.Fatal(err)
	}
	info := res.(map[string]any)
	if got := proto.Extensions(info[proto.KeyExtensions]); !slices.Equal(got, []string{proto.ExtPause, proto.ExtResume}) {
		t.Fatalf("a donating worker announces %v, want [pause resume]", got)
	}
	settings := map[string]any{"newline_re": proto.DefaultNewlineRE, "max_line_length": 4096, "buffer_timeout": 0.05, "buffer_size": 65536}
	if pause {
		settings[proto.KeyExtensions] = []any{proto.ExtPause}
	}
	if _, err := mc.call(t, proto.OpSetWorkerSettings, map[string]any{"args": settings}); err != nil {
		t.Fatal(err)
	}
}

// await returns the worker's next request with op, collecting the
// requests before it.
func (mc *masterConn) await(t *testing.T, op string, match func(proto.Message) bool) (proto.Message, []proto.Message) {
	t.Helper()
	var before []proto.Message
	for {
		msg := mc.next(t)
		if msg.Op() == op && (match == nil || match(msg)) {
			return msg, before
		}
		before = append(before, msg)
	}
}

// awaitAll consumes the worker's requests until each of want (op and
// matcher) has been seen, in any order, and returns the matches in want's
// order.
func (mc *masterConn) awaitAll(t *testing.T, want ...expect) []proto.Message {
	t.Helper()
	got := make([]proto.Message, len(want))
	left := len(want)
	for left > 0 {
		msg := mc.next(t)
		for i, w := range want {
			if got[i] == nil && msg.Op() == w.op && (w.match == nil || w.match(msg)) {
				got[i] = msg
				left--
				break
			}
		}
	}
	return got
}

type expect struct {
	op    string
	match func(proto.Message) bool
}

func pauseIs(paused bool, reason string) func(proto.Message) bool {
	return func(m proto.Message) bool {
		p, err := proto.DecodePause(m)
		return err == nil && p.Paused == paused && p.Reason == reason
	}
}

func forCommand(id string) func(proto.Message) bool {
	return func(m proto.Message) bool { return m["command_id"] == id }
}

// stdoutHas matches an update of command id whose stdout contains s.
func stdoutHas(id, s string) func(proto.Message) bool {
	return func(m proto.Message) bool {
		if m["command_id"] != id {
			return false
		}
		us, _ := proto.DecodeUpdates(m["args"])
		for _, u := range us {
			if c, ok := u.Value.(proto.LogChunk); ok && u.Key == proto.UpdStdout && strings.Contains(c.Text, s) {
				return true
			}
		}
		return false
	}
}

// groups returns the process groups in the worker's ledger.
func groups(t *testing.T, basedir string) []int {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(basedir, ledgerFile))
	var out []int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			n, _ := strconv.Atoi(f[0])
			out = append(out, n)
		}
	}
	return out
}

// statField returns field n (1-based, as in proc(5)) of /proc/pid/stat.
func statField(t *testing.T, pid, n int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))[n-3]
}

// cpusAllowed returns a process's Cpus_allowed_list.
func cpusAllowed(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Cpus_allowed_list for %d", pid)
	return ""
}

// waitStopped waits until pid is stopped (or running again); signals
// arrive asynchronously and the kernel announces neither.
func waitStopped(t *testing.T, pid int, stopped bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for (statField(t, pid, 3) == "T") != stopped {
		if time.Now().After(deadline) {
			t.Fatalf("process %d: state %s, want stopped=%v", pid, statField(t, pid, 3), stopped)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitScript runs until the file go appears in its directory.
const waitScript = "echo started; while [ ! -e go ]; do sleep 0.02; done; echo finished"

func TestDonorFreezesAndResumes(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta, o := startDonor(t, m, nil)
	mc := m.accept(t)
	handshake(t, mc, true)
	mc.await(t, proto.OpPause, pauseIs(false, ""))
	base, _ := filepath.Abs(ta.Basedir)

	mc.call(t, proto.OpStartCommand, map[string]any{"command_id": "c1", "command_name": "shell", "builder_name": "proj",
		proto.KeyBuild: 7, "args": map[string]any{"workdir": base, "command": waitScript, "logEnviron": false}})
	mc.await(t, proto.OpUpdate, stdoutHas("c1", "started"))
	gs := groups(t, base)
	if len(gs) != 1 {
		t.Fatalf("process groups %v", gs)
	}

	o.back()
	mc.await(t, proto.OpPause, pauseIs(true, "owner active"))
	waitStopped(t, gs[0], true)
	// Its next step may not start either; nor may a new build.
	if err := os.WriteFile(filepath.Join(base, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st := statField(t, gs[0], 3); st != "T" {
		t.Fatalf("state %s while the owner is active", st)
	}
	report, err := donate.ReadStatus(filepath.Join(base, StatusFileName))
	if err != nil || report.Accepting || len(report.Builds) != 1 || report.Builds[0].Mode != "frozen" || report.Builds[0].Build != "7" {
		t.Fatalf("status file: %+v %v", report, err)
	}

	o.away()
	got := mc.awaitAll(t, expect{proto.OpPause, pauseIs(false, "")}, expect{proto.OpComplete, forCommand("c1")})
	if done := got[1]; done["args"] != nil {
		t.Fatalf("complete %v", done["args"])
	}
}

func TestDonorAbandonsOneBuildAndKeepsTheOther(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta, o := startDonor(t, m, func(s *donate.Settings) {
		s.OnOwner = donate.Abandon
		s.BuilderActions = map[string]donate.Action{"trusted": donate.Freeze}
	})
	mc := m.accept(t)
	handshake(t, mc, true)
	mc.await(t, proto.OpPause, pauseIs(false, ""))
	base, _ := filepath.Abs(ta.Basedir)
	for _, dir := range []string{"a", "b"} {
		os.MkdirAll(filepath.Join(base, dir), 0o755)
	}
	mc.call(t, proto.OpStartCommand, map[string]any{"command_id": "c1", "command_name": "shell", "builder_name": "proj",
		proto.KeyBuild: 1, "args": map[string]any{"workdir": filepath.Join(base, "a"), "command": waitScript, "logEnviron": false}})
	mc.call(t, proto.OpStartCommand, map[string]any{"command_id": "c2", "command_name": "shell", "builder_name": "trusted",
		proto.KeyBuild: 2, "args": map[string]any{"workdir": filepath.Join(base, "b"), "command": waitScript, "logEnviron": false}})
	// Both have started, in either order.
	seen := map[string]bool{}
	for !seen["c1"] || !seen["c2"] {
		mc.await(t, proto.OpUpdate, func(m proto.Message) bool {
			for _, id := range []string{"c1", "c2"} {
				if stdoutHas(id, "started")(m) {
					seen[id] = true
					return true
				}
			}
			return false
		})
	}

	o.back()
	abandon, before := mc.await(t, proto.OpAbandon, forCommand("c1"))
	if id, reason, err := proto.DecodeAbandon(abandon); err != nil || id != "c1" || reason != "owner active" {
		t.Fatalf("abandon %v: %q %q %v", abandon, id, reason, err)
	}
	for _, msg := range before {
		if msg.Op() == proto.OpComplete {
			t.Fatalf("an abandoned build must not complete: %v", msg)
		}
	}
	// A new build while paused goes back at once, without running.
	mc.call(t, proto.OpStartCommand, map[string]any{"command_id": "c3", "command_name": "shell", "builder_name": "proj",
		proto.KeyBuild: 3, "args": map[string]any{"workdir": base, "command": "touch ran", "logEnviron": false}})
	mc.await(t, proto.OpAbandon, forCommand("c3"))
	if _, err := os.Stat(filepath.Join(base, "ran")); err == nil {
		t.Fatal("a build that arrived while paused ran")
	}

	// The trusted build was frozen, not dropped: it finishes later.
	os.WriteFile(filepath.Join(base, "b", "go"), nil, 0o644)
	o.away()
	done, _ := mc.await(t, proto.OpComplete, forCommand("c2"))
	if done["args"] != nil {
		t.Fatalf("c2 complete %v", done["args"])
	}
	select {
	case <-mc.conn.Done():
		t.Fatal("abandoning a build dropped the connection")
	default:
	}
}

func TestDonorThrottles(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta, o := startDonor(t, m, func(s *donate.Settings) { s.OnOwner = donate.Throttle })
	mc := m.accept(t)
	handshake(t, mc, true)
	mc.await(t, proto.OpPause, pauseIs(false, ""))
	base, _ := filepath.Abs(ta.Basedir)
	mc.call(t, proto.OpStartCommand, map[string]any{"command_id": "c1", "command_name": "shell", "builder_name": "proj",
		"args": map[string]any{"workdir": base, "command": waitScript, "logEnviron": false}})
	mc.await(t, proto.OpUpdate, stdoutHas("c1", "started"))
	pgid := groups(t, base)[0]
	o.back()
	mc.await(t, proto.OpPause, pauseIs(true, "owner active"))
	// Throttling is done when the status file says so.
	deadline := time.Now().Add(waitTimeout)
	for {
		r, _ := donate.ReadStatus(filepath.Join(base, StatusFileName))
		if r != nil && len(r.Builds) == 1 && r.Builds[0].Mode == "throttled" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not throttled: %+v", r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if nice := statField(t, pgid, 19); nice != "19" {
		t.Errorf("a throttled build's nice is %s, want 19", nice)
	}
	if st := statField(t, pgid, 3); st == "T" {
		t.Error("a throttled build was stopped")
	}
	all := cpusAllowed(t, os.Getpid())
	if runtime.NumCPU() > 1 {
		if got := cpusAllowed(t, pgid); got == all || strings.ContainsAny(got, ",-") {
			t.Errorf("a throttled build may use CPUs %s (the worker: %s), want one", got, all)
		}
	}
	// The owner leaves: the build gets its CPUs back.
	o.away()
	mc.await(t, proto.OpPause, pauseIs(false, ""))
	deadline = time.Now().Add(waitTimeout)
	for cpusAllowed(t, pgid) != all {
		if time.Now().After(deadline) {
			t.Fatalf("CPUs %s after the owner left, want %s", cpusAllowed(t, pgid), all)
		}
		time.Sleep(5 * time.Millisecond)
	}
	os.WriteFile(filepath.Join(base, "go"), nil, 0o644)
	if done, _ := mc.await(t, proto.OpComplete, forCommand("c1")); done["args"] != nil {
		t.Fatalf("complete %v", done["args"])
	}
}

func TestDonorWithAPlainMasterDisconnectsWhilePaused(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	_, o := startDonor(t, m, nil)
	o.back()
	mc := m.accept(t)
	handshake(t, mc, false)
	// No pause op for a master that did not agree to it: the worker
	// leaves instead, and comes back when the owner has gone.
	mc.waitClosed(t)
	select {
	case msg := <-mc.reqs:
		t.Fatalf("a plain master got %v", msg)
	default:
	}
	o.away()
	mc2 := m.accept(t)
	handshake(t, mc2, false)
	if _, err := mc2.call(t, proto.OpPrint, map[string]any{"message": "ping"}); err != nil {
		t.Fatal(err)
	}
}

func TestDonorFrozenBuildCanBeStopped(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta, o := startDonor(t, m, nil)
	mc := m.accept(t)
	handshake(t, mc, true)
	mc.await(t, proto.OpPause, pauseIs(false, ""))
	base, _ := filepath.Abs(ta.Basedir)
	start := func(id string) {
		mc.call(t, proto.OpStartCommand, map[string]any{"command_id": id, "command_name": "shell", "builder_name": "proj",
			proto.KeyBuild: 9, "args": map[string]any{"workdir": base, "command": waitScript, "logEnviron": false}})
	}
	start("c1")
	mc.await(t, proto.OpUpdate, stdoutHas("c1", "started"))
	o.back()
	mc.await(t, proto.OpPause, pauseIs(true, "owner active"))
	// The build's next step waits for the thaw; a user stops the build.
	start("c2")
	for _, id := range []string{"c1", "c2"} {
		if _, err := mc.call(t, proto.OpInterruptCommand, map[string]any{"command_id": id, "why": "stopped by a user"}); err != nil {
			t.Fatal(err)
		}
	}
	got := mc.awaitAll(t, expect{proto.OpComplete, forCommand("c1")}, expect{proto.OpComplete, forCommand("c2")})
	for _, msg := range got {
		if msg["args"] != nil {
			t.Errorf("%v: complete %v", msg["command_id"], msg["args"])
		}
	}
	if _, err := os.Stat(filepath.Join(base, "go")); err == nil {
		t.Fatal("test setup: go exists")
	}
}
