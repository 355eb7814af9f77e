//go:build linux

package worker

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/testenv"
)

// group starts `sleep 600` in a process group of its own, the way the
// shell command starts commands, and returns it with a channel closed when
// it exits.
func group(t *testing.T) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-done })
	return cmd, done
}

func TestLedgerKillsOrphansOfAKilledRun(t *testing.T) {
	dir := t.TempDir()
	var logs testenv.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	orphan, orphanDone := group(t)
	stranger, strangerDone := group(t)

	// A run records both groups and dies without cleaning up; the
	// stranger's entry carries a start time that is not its own, as if
	// its number had been reused by an unrelated process.
	first := newLedger(dir, log)
	first.Started(orphan.Process.Pid)
	first.Started(stranger.Process.Pid)
	first.mu.Lock()
	first.entries[stranger.Process.Pid]++
	first.save()
	first.mu.Unlock()

	newLedger(dir, log).cleanup()
	select {
	case <-orphanDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the orphaned group was not killed")
	}
	select {
	case <-strangerDone:
		t.Fatal("a process whose number merely matched was killed")
	default:
	}
	if !strings.Contains(logs.String(), "killed an orphaned process group") ||
		!strings.Contains(logs.String(), "its number now belongs to another process") {
		t.Fatalf("log:\n%s", logs.String())
	}
	b, err := os.ReadFile(dir + "/" + ledgerFile)
	if err != nil || len(b) != 0 {
		t.Fatalf("ledger after cleanup = %q, %v; want empty", b, err)
	}
}

func TestLedgerForgetsEndedGroups(t *testing.T) {
	dir := t.TempDir()
	l := newLedger(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	l.Started(12345)
	l.Ended(12345)
	b, err := os.ReadFile(dir + "/" + ledgerFile)
	if err != nil || len(b) != 0 {
		t.Fatalf("ledger = %q, %v; want empty", b, err)
	}
}
