package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Donated desktops end to end: the real master, a real starforge-worker
// --donate whose owner is a file (STARFORGE_DONATE_IDLE_FILE: touching it
// is keyboard input, a missing or old file is an owner away), and real
// builds.

// donorFlags keep the shared test machine's own load, disk and power out
// of the policy: only the owner decides.
var donorFlags = []string{"--donate", "--max-foreign-load", "0", "--disk-floor", "0", "--resume-delay", "0",
	"--nice", "0", "--ionice", "none"}

// startDonor starts a donating worker whose owner is the file idle.
func (m *master) startDonor(t *testing.T, name, basedir, idle string, extra ...string) *proc {
	t.Helper()
	before := m.out.count(`worker attached.*worker=` + regexp.QuoteMeta(name) + `\b`)
	args := append([]string{"--master", m.workers, "--name", name, "--password", "pw", "--basedir", basedir}, donorFlags...)
	w := start(t, bin.worker, []string{"STARFORGE_DONATE_IDLE_FILE=" + idle}, append(args, extra...)...)
	m.waitAttached(t, name, before+1)
	return w
}

// ownerBack touches the idle file: the owner just typed.
func ownerBack(t *testing.T, idle string) {
	t.Helper()
	if err := os.WriteFile(idle, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := os.Chtimes(idle, now, now); err != nil {
		t.Fatal(err)
	}
}

// ownerAway dates the idle file an hour back.
func ownerAway(t *testing.T, idle string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(idle, old, old); err != nil {
		t.Fatal(err)
	}
}

// commandGroups waits until the worker's ledger of running process
// groups (written right after a command's process started) lists one,
// and returns them.
func commandGroups(t *testing.T, basedir string) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(basedir, ".starforge-processes"))
		var out []int
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				n, _ := strconv.Atoi(f[0])
				out = append(out, n)
			}
		}
		if len(out) > 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stopped reports whether process pid is stopped (state T).
func stopped(t *testing.T, pid int) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))[0] == "T"
}

// waitStopped waits for a signal's effect, which nothing announces.
func waitStopped(t *testing.T, pid int, want bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for stopped(t, pid) != want {
		if time.Now().After(deadline) {
			t.Fatalf("process %d: stopped=%v, want %v", pid, !want, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitingStep is a step that runs until the file go exists.
func waitingStep(dir string) string {
	return fmt.Sprintf(`shell("echo started; while [ ! -e %s ]; do sleep 0.05; done; echo finished", name="work")`,
		filepath.Join(dir, "go"))
}

// TestDonatedOwnerComesBackFreezesThenResumes: owner active mid-build →
// the build's processes are stopped and the master hears "owner active" →
// owner away again → they continue and the build succeeds. It needs
// nothing of the dispatcher: the build was already running.
func TestDonatedOwnerComesBackFreezesThenResumes(t *testing.T) {
	testenvLinux(t)
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), `
worker("desk", "pw", donated=True)
builder("proj", workers=["desk"], allow_donated=True, steps=[`+waitingStep(dir)+`])
force_scheduler("force", builders=["proj"])
`)
	idle := filepath.Join(dir, "owner")
	wdir := filepath.Join(dir, "desk")
	w := m.startDonor(t, "desk", wdir, idle)

	forced := make(chan string, 1)
	go func() {
		out, code := cliNoFatal("force", "--master", m.url, "--wait", "proj")
		forced <- fmt.Sprintf("exit %d\n%s", code, out)
	}()
	w.out.wait(t, `msg="command started".*command=shell`, 60*time.Second)
	pgids := commandGroups(t, wdir)
	if len(pgids) != 1 {
		t.Fatalf("process groups %v", pgids)
	}

	ownerBack(t, idle)
	w.out.wait(t, `donate: build frozen`, 30*time.Second)
	m.out.wait(t, `worker paused.*worker=desk.*reason="owner active"`, 30*time.Second)
	waitStopped(t, pgids[0], true)
	// What the step waits for is there, but a frozen build cannot see it.
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !stopped(t, pgids[0]) {
		t.Fatal("the build runs while the owner is active")
	}
	out, code := runStatus(t, wdir)
	if code != 0 || !strings.Contains(out, "paused") || !strings.Contains(out, "owner active") || !strings.Contains(out, "proj build") || !strings.Contains(out, "frozen") {
		t.Fatalf("starforge-worker status (exit %d):\n%s", code, out)
	}

	ownerAway(t, idle)
	m.out.wait(t, `worker takes builds again.*worker=desk`, 30*time.Second)
	var res string
	select {
	case res = <-forced:
	case <-time.After(120 * time.Second):
		t.Fatal("the build did not finish after the owner left")
	}
	if !strings.HasPrefix(res, "exit 0") || !strings.Contains(res, "success") {
		t.Fatalf("force: %s", res)
	}
	bs := m.builds(t, "proj")
	if len(bs) != 1 || resultOf(bs[0].Results) != 0 {
		t.Fatalf("builds %+v, want one success", bs)
	}
	log := m.stepLog(t, m.steps(t, bs[0].ID)[0].ID)
	if !strings.Contains(log, "started\n") || !strings.Contains(log, "finished\n") {
		t.Errorf("step log %q", log)
	}
}

// TestDonatedAbandonRetriesElsewhere: the owner comes back with
// --on-owner abandon → the worker kills the build and hands it back →
// the master ends it RETRY and requeues it → it completes on another
// worker, while the donor stays connected. The plain worker comes first
// in the builder's list, so the dispatcher prefers it for the retry even
// without knowing the donor paused.
func TestDonatedAbandonRetriesElsewhere(t *testing.T) {
	testenvLinux(t)
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), `
worker("ci", "pw")
worker("desk", "pw", donated=True)
builder("proj", workers=["ci", "desk"], allow_donated=True, steps=[`+waitingStep(dir)+`])
force_scheduler("force", builders=["proj"])
`)
	idle := filepath.Join(dir, "owner")
	ddir := filepath.Join(dir, "desk")
	w := m.startDonor(t, "desk", ddir, idle, "--on-owner", "abandon")

	forced := make(chan string, 1)
	go func() {
		out, code := cliNoFatal("force", "--master", m.url, "--wait", "proj")
		forced <- fmt.Sprintf("exit %d\n%s", code, out)
	}()
	w.out.wait(t, `msg="command started".*command=shell`, 60*time.Second)
	pgids := commandGroups(t, ddir)
	if len(pgids) != 1 {
		t.Fatalf("process groups %v", pgids)
	}
	m.startWorker(t, "ci", "pw", filepath.Join(dir, "ci"))

	ownerBack(t, idle)
	w.out.wait(t, `build handed back to the master.*reason="owner active"`, 30*time.Second)
	m.out.wait(t, `worker handed a build back.*worker=desk`, 30*time.Second)
	// Now the retry on ci may finish.
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var res string
	select {
	case res = <-forced:
	case <-time.After(120 * time.Second):
		t.Fatal("the build did not complete elsewhere")
	}
	if !strings.HasPrefix(res, "exit 0") {
		t.Fatalf("force: %s", res)
	}
	bs := m.builds(t, "proj") // newest first
	if len(bs) != 2 {
		t.Fatalf("builds %+v, want the handed-back one and its retry", bs)
	}
	if resultOf(bs[1].Results) != 5 || bs[1].WorkerName != "desk" {
		t.Errorf("first build %+v, want RETRY on desk", bs[1])
	}
	if resultOf(bs[0].Results) != 0 || bs[0].WorkerName != "ci" {
		t.Errorf("second build %+v, want SUCCESS on ci", bs[0])
	}
	steps := m.steps(t, bs[1].ID)
	if len(steps) == 0 || steps[0].StateString != "handed back by a donated worker" {
		t.Errorf("the handed-back step: %+v", steps)
	}
	// The donor's processes are gone and it is still attached.
	waitGone(t, pgids[0])
	if m.out.count(`worker detached.*worker=desk`) != 0 {
		t.Errorf("the donor was detached to hand the build back:\n%s", m.out)
	}
}

// TestDonatedPausedWorkerGetsNoBuilds needs the lead's wiring of
// registry.Hooks.Paused to the dispatcher (Master.PauseWorker): the donor
// comes first in the builder's list, so only a dispatcher that skips
// paused workers sends the build to ci.
func TestDonatedPausedWorkerGetsNoBuilds(t *testing.T) {
	testenvLinux(t)
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), `
worker("desk", "pw", donated=True)
worker("ci", "pw")
builder("proj", workers=["desk", "ci"], allow_donated=True, steps=[shell("echo hi")])
builder("untrusted", workers=["desk", "ci"], steps=[shell("echo hi")])
force_scheduler("force", builders=["proj", "untrusted"])
`)
	idle := filepath.Join(dir, "owner")
	ownerBack(t, idle)
	m.startDonor(t, "desk", filepath.Join(dir, "desk"), idle)
	m.out.wait(t, `worker paused.*worker=desk`, 30*time.Second)
	m.startWorker(t, "ci", "pw", filepath.Join(dir, "ci"))
	if out, code := m.force(t, "proj"); code != 0 {
		t.Fatalf("force: %s", out)
	}
	if bs := m.builds(t, "proj"); len(bs) != 1 || bs[0].WorkerName != "ci" {
		t.Fatalf("builds %+v, want one on ci (desk is paused)", bs)
	}
	var ws struct {
		Workers []struct {
			Name        string  `json:"name"`
			Paused      bool    `json:"paused"`
			PauseReason *string `json:"pause_reason"`
			Donated     bool    `json:"donated"`
		} `json:"workers"`
	}
	m.getJSON(t, "api/v2/workers", &ws)
	for _, w := range ws.Workers {
		if w.Name == "desk" && (!w.Paused || !w.Donated || w.PauseReason == nil || !strings.Contains(*w.PauseReason, "owner active")) {
			t.Errorf("the API shows desk as %+v; want donated, paused, owner active", w)
		}
	}
	if page := m.getText(t, "workers"); !strings.Contains(page, "owner active") || !strings.Contains(page, "donated") {
		t.Error("the workers page does not show why the donated desktop is paused")
	}
	// Untrusted builds never land on the donated desktop, paused or not.
	ownerAway(t, idle)
	m.out.wait(t, `worker takes builds again.*worker=desk`, 30*time.Second)
	if out, code := m.force(t, "untrusted"); code != 0 {
		t.Fatalf("force: %s", out)
	}
	if bs := m.builds(t, "untrusted"); len(bs) != 1 || bs[0].WorkerName != "ci" {
		t.Fatalf("builds %+v, want one on ci (untrusted builds avoid donated workers)", bs)
	}
}

// runStatus runs starforge-worker status for a worker's basedir.
func runStatus(t *testing.T, basedir string) (string, int) {
	t.Helper()
	out, err := exec.Command(bin.worker, "status", "--basedir", basedir).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("starforge-worker status: %v", err)
	}
	return string(out), 0
}

// waitGone waits until pid has exited (or is a zombie).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if st := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))[0]; st == "Z" || st == "X" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d of the abandoned build still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testenvLinux(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs Linux /proc to see stopped processes")
	}
}
