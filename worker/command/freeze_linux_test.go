package command

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/starforge/starforge/worker/proto"
)

// groupLedger records the process groups a command starts.
type groupLedger struct {
	mu     sync.Mutex
	groups []int
}

func (l *groupLedger) Started(pgid int) {
	l.mu.Lock()
	l.groups = append(l.groups, pgid)
	l.mu.Unlock()
}
func (l *groupLedger) Ended(int) {}

// procState returns the state letter of pid from /proc ("T" is stopped).
func procState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))[0]
}

// waitState waits until every pid is stopped (stopped true) or not.
// Signals are delivered asynchronously; the kernel offers no event.
func waitState(t *testing.T, stopped bool, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok := true
		for _, p := range pids {
			if (procState(t, p) == "T") != stopped {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range pids {
				t.Errorf("process %d state %s, want stopped=%v", p, procState(t, p), stopped)
			}
			t.FailNow()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFreezeStopsTheWholeGroupAndPausesTimeouts(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	ledger := &groupLedger{}
	env.Ledger = ledger
	script := "sleep 1000 & echo $! > gc.pid; echo started; sleep 1000"
	r := startCommand(t, context.Background(), "shell", env, shellArgs(env.Basedir, script, "timeout", 0.4, "logEnviron", false))
	r.s.waitFor(t, "started", func(us []proto.Update) bool { return textOf(us, "stdout") == "started\n" })
	gc := readPid(t, filepath.Join(env.Basedir, "gc.pid"))
	ledger.mu.Lock()
	leader := ledger.groups[0]
	ledger.mu.Unlock()

	f, ok := r.cmd.(Freezer)
	if !ok {
		t.Fatal("the shell command is not a Freezer")
	}
	if err := f.Freeze(); err != nil {
		t.Fatal(err)
	}
	waitState(t, true, leader, gc)
	// Frozen for more than twice its timeout without output, the command
	// must not be killed: frozen time does not count.
	time.Sleep(time.Second)
	select {
	case err := <-r.done:
		t.Fatalf("a frozen command ended (%v):%s", err, dumpUpdates(r.s.updates()))
	default:
	}
	waitState(t, true, leader, gc)

	if err := f.Thaw(); err != nil {
		t.Fatal(err)
	}
	waitState(t, false, leader, gc)
	// Thawed, it is silent again, so its timeout ends it, as usual.
	us, err := r.wait(t)
	if err != nil {
		t.Fatal(err)
	}
	checkEnding(t, us, -1)
	if v, _ := valueOf(us, proto.UpdFailureReason); v != "timeout_without_output" {
		t.Errorf("failure_reason %v", v)
	}
	if !processGone(t, gc) {
		syscall.Kill(gc, syscall.SIGKILL)
		t.Errorf("grandchild %d survived", gc)
	}
}

func TestFrozenCommandCanBeInterrupted(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	// TERM reaches a stopped process only once it continues: the kill
	// must thaw it first, or the command would hang for killEscalation.
	r := startCommand(t, context.Background(), "shell", env, shellArgs(env.Basedir, "echo started; exec sleep 1000",
		"sigtermTime", 100, "interruptSignal", "TERM", "logEnviron", false))
	r.s.waitFor(t, "started", func(us []proto.Update) bool { return textOf(us, "stdout") == "started\n" })
	f := r.cmd.(Freezer)
	if err := f.Freeze(); err != nil {
		t.Fatal(err)
	}
	r.cmd.Interrupt("owner came back")
	us, err := r.wait(t)
	if err != nil {
		t.Fatal(err)
	}
	if h := textOf(us, "header"); !strings.Contains(h, "process killed by signal 15") {
		t.Errorf("header %q", h)
	}
	// Freezing a command that ended does nothing.
	if err := f.Freeze(); err != nil {
		t.Errorf("Freeze after the end: %v", err)
	}
}

func TestFrozenBeforeStartWaits(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	ledger := &groupLedger{}
	env.Ledger = ledger
	cmd, err := New("shell", proto.Args(shellArgs(env.Basedir, "echo ran > out.txt", "logEnviron", false)), env)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.(Freezer).Freeze(); err != nil {
		t.Fatal(err)
	}
	s := newTestSender(t)
	done := make(chan error, 1)
	go func() { done <- cmd.Run(context.Background(), s) }()
	// Nothing can show a process that does not exist, so give it time to
	// wrongly appear.
	time.Sleep(200 * time.Millisecond)
	ledger.mu.Lock()
	started := len(ledger.groups)
	ledger.mu.Unlock()
	if _, err := os.Stat(filepath.Join(env.Basedir, "out.txt")); err == nil || started > 0 {
		t.Fatal("a command frozen before its start ran")
	}
	if err := cmd.(Freezer).Thaw(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(env.Basedir, "out.txt")); string(b) != "ran\n" {
		t.Fatalf("out.txt = %q", b)
	}
}
