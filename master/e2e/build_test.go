package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const oneWorker = `
worker("w1", password="pw1")
`

// TestBuildEndToEnd forces a build of several steps with the CLI and
// checks what a user sees: the CLI's step list and exit code, step results,
// and the logs through the REST API.
func TestBuildEndToEnd(t *testing.T) {
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), oneWorker+`
builder("proj", workers=["w1"], steps=[
    shell("echo hello-$GREETING; echo oops >&2", name="greet", env={"GREETING": "world"}),
    shell(["sh", "-c", "printf 'a\\nb\\nc\\n'; exit 0"], name="lines"),
    mkdir("build/out", name="mkdir"),
    shell("test -d out && echo made > out/f.txt", name="use-dir"),
])
builder("failing", workers=["w1"], steps=[
    shell("exit 3", name="bad", halt_on_failure=True),
    shell("echo should-not-run", name="skipped"),
    shell("echo cleanup", name="cleanup", always_run=True),
])
force_scheduler("force", builders=["proj", "failing"])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))

	out, code := m.force(t, "proj", "--prop", "color=blue")
	if code != 0 {
		t.Fatalf("force proj: exit %d, want 0; output:\n%s", code, out)
	}
	for _, want := range []string{"greet", "lines", "use-dir", "build proj #1: success"} {
		if !strings.Contains(out, want) {
			t.Errorf("force output lacks %q:\n%s", want, out)
		}
	}
	bs := m.builds(t, "proj")
	if len(bs) != 1 || resultOf(bs[0].Results) != 0 || bs[0].WorkerName != "w1" {
		t.Fatalf("builds = %+v, want one successful build on w1", bs)
	}
	steps := m.steps(t, bs[0].ID)
	if len(steps) != 4 {
		t.Fatalf("got %d steps, want 4", len(steps))
	}
	greet := m.stepLog(t, steps[0].ID)
	if !strings.Contains(greet, "hello-world\n") || !strings.Contains(greet, "oops\n") {
		t.Errorf("greet log lacks stdout or stderr:\n%s", greet)
	}
	if got := m.stepLog(t, steps[1].ID); !strings.Contains(got, "a\nb\nc\n") {
		t.Errorf("lines log = %q", got)
	}
	var props struct {
		Properties []map[string][]any `json:"properties"`
	}
	m.getJSON(t, fmt.Sprintf("api/v2/builds/%d/properties", bs[0].ID), &props)
	found := map[string]any{}
	for _, p := range props.Properties {
		for k, v := range p {
			found[k] = v[0]
		}
	}
	if found["color"] != "blue" || found["buildername"] != "proj" || found["workername"] != "w1" {
		t.Errorf("properties = %v; want color=blue, buildername=proj, workername=w1", found)
	}

	out, code = m.force(t, "failing")
	if code != 1 {
		t.Fatalf("force failing: exit %d, want 1; output:\n%s", code, out)
	}
	fb := m.builds(t, "failing")
	fsteps := m.steps(t, fb[0].ID)
	wantResults := []int{2, 3, 0} // failure, skipped, success
	for i, s := range fsteps {
		if resultOf(s.Results) != wantResults[i] {
			t.Errorf("step %s result %d, want %d (%s)", s.Name, resultOf(s.Results), wantResults[i], s.StateString)
		}
	}
	if resultOf(fb[0].Results) != 2 {
		t.Errorf("failing build result %d, want 2 (failure)", resultOf(fb[0].Results))
	}
	if !strings.Contains(fsteps[0].StateString, "exit 3") {
		t.Errorf("bad step state %q, want it to mention exit 3", fsteps[0].StateString)
	}
}

// TestWrongPasswordRefused: a worker with a wrong password never attaches
// and the master says why.
func TestWrongPasswordRefused(t *testing.T) {
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), oneWorker)
	w := start(t, bin.worker, nil, "--master", m.workers, "--name", "w1", "--password", "wrong", "--basedir", filepath.Join(dir, "worker"))
	m.out.wait(t, `refused worker connection: wrong name or password.*worker=w1`, 30*time.Second)
	w.out.wait(t, `401`, 30*time.Second)
	var r struct {
		Workers []struct {
			Name      string `json:"name"`
			Connected bool   `json:"connected"`
		} `json:"workers"`
	}
	m.getJSON(t, "api/v2/workers", &r)
	for _, wk := range r.Workers {
		if wk.Name == "w1" && wk.Connected {
			t.Fatal("worker w1 shows connected with a wrong password")
		}
	}
	if n := m.out.count(`worker attached`); n != 0 {
		t.Fatalf("master attached a worker with a wrong password")
	}
}

// TestQueueSurvivesRestart: a build forced while no worker is connected,
// and then the master restarted, runs once a worker connects.
func TestQueueSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := oneWorker + `
builder("proj", workers=["w1"], steps=[shell("echo ran")])
force_scheduler("force", builders=["proj"])
`
	m := startMaster(t, filepath.Join(dir, "master"), cfg)
	out, code := cli(t, "force", "--master", m.url, "proj")
	if code != 0 {
		t.Fatalf("force: exit %d: %s", code, out)
	}
	var q struct {
		Requests []struct {
			ID            int64  `json:"buildrequestid"`
			WaitingReason string `json:"waiting_reason"`
		} `json:"buildrequests"`
	}
	m.getJSON(t, "api/v2/buildrequests?pending=1", &q)
	if len(q.Requests) != 1 || !strings.Contains(q.Requests[0].WaitingReason, "no worker connected") {
		t.Fatalf("pending requests = %+v, want one waiting for a worker", q.Requests)
	}
	m.stop(t)

	m2 := startMaster(t, filepath.Join(dir, "master"), cfg)
	m2.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
	m2.out.wait(t, `build finished.*builder=proj.*result=success`, 60*time.Second)
	bs := m2.builds(t, "proj")
	if len(bs) != 1 || resultOf(bs[0].Results) != 0 {
		t.Fatalf("builds after restart = %+v, want one success", bs)
	}
}

// TestWorkerLostMidBuild: a worker killed mid-step (SIGKILL: no goodbye)
// or stopped (SIGTERM) leaves its build RETRY; the request goes back to the
// queue and completes on the next worker.
func TestWorkerLostMidBuild(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) { testWorkerLost(t, sig) })
	}
}

func testWorkerLost(t *testing.T, sig syscall.Signal) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "started")
	pidfile := filepath.Join(dir, "step.pid")
	m := startMaster(t, filepath.Join(dir, "master"), `
worker("w1", password="pw1")
worker("w2", password="pw2")
builder("slow", workers=["w1", "w2"], steps=[
    shell('if [ "$WORKER" = w1 ]; then echo $$ > `+pidfile+`; touch `+marker+`; exec sleep 600; fi; echo done-on-$WORKER'),
])
force_scheduler("force", builders=["slow"])
`)
	w1 := m.startWorker(t, "w1", "pw1", filepath.Join(dir, "w1"), "WORKER=w1")
	t.Cleanup(func() { killPidfile(pidfile) })
	out, code := cli(t, "force", "--master", m.url, "slow")
	if code != 0 {
		t.Fatalf("force: %s", out)
	}
	m.out.wait(t, `build started.*builder=slow`, 30*time.Second)
	waitFile(t, marker, m)
	_ = w1.cmd.Process.Signal(sig)
	<-w1.done
	// SIGTERM closes the connection first: RETRY at once. A SIGKILLed
	// worker cannot say it is gone, and looks like a network failure: the
	// master holds its build for the worker's resume grace (40 s) plus 5 s
	// in case it comes back.
	m.out.wait(t, `build finished.*builder=slow.*result=retry`, 120*time.Second)
	if sig == syscall.SIGTERM && alive(t, pidfile) {
		t.Error("a worker stopped with SIGTERM left its step's process running")
	}

	m.startWorker(t, "w2", "pw2", filepath.Join(dir, "w2"), "WORKER=w2")
	m.out.wait(t, `build finished.*builder=slow.*result=success`, 60*time.Second)
	bs := m.builds(t, "slow")
	if len(bs) != 2 {
		t.Fatalf("got %d builds, want 2 (retry, then success)", len(bs))
	}
	if resultOf(bs[1].Results) != 5 || resultOf(bs[0].Results) != 0 || bs[0].WorkerName != "w2" {
		t.Fatalf("builds = %+v; want the first RETRY and the second SUCCESS on w2", bs)
	}
	if log := m.stepLog(t, m.steps(t, bs[0].ID)[0].ID); !strings.Contains(log, "done-on-w2") {
		t.Errorf("second build's log = %q", log)
	}
}

// waitFile waits for path to exist; the step creates it when it starts.
// The master's log changes as the step runs, which is the event awaited.
func waitFile(t *testing.T, path string, m *master) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not created within 30s", path)
		}
		m.out.mu.Lock()
		ch := m.out.changed
		m.out.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
			// The step writes the file without the master logging; check again.
		}
	}
}

func killPidfile(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// alive reports whether the process in pidfile still runs.
func alive(t *testing.T, pidfile string) bool {
	t.Helper()
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatalf("read %s: %v", pidfile, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %v", pidfile, err)
	}
	return alivePID(pid)
}

// alivePID reports whether process pid runs (a zombie does not count).
func alivePID(pid int) bool {
	// A killed process whose parent died is reparented and may stay a
	// zombie until reaped; only a running process counts as alive.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return syscall.Kill(pid, 0) == nil
}

// TestTimeoutAndStopKillProcessTree: a step that times out, and a build a
// user stops, both kill the step's whole process tree, grandchildren too.
func TestTimeoutAndStopKillProcessTree(t *testing.T) {
	dir := t.TempDir()
	gc1 := filepath.Join(dir, "gc1.pid")
	gc2 := filepath.Join(dir, "gc2.pid")
	m := startMaster(t, filepath.Join(dir, "master"), oneWorker+`
builder("hang", workers=["w1"], steps=[
    shell("sleep 600 & echo $! > `+gc1+`; echo started; wait", name="hang", timeout=2),
])
builder("stopme", workers=["w1"], steps=[
    shell("sleep 600 & echo $! > `+gc2+`; echo started; wait", name="long"),
    shell("echo cleanup-ran", name="cleanup", always_run=True),
])
force_scheduler("force", builders=["hang", "stopme"])
`)
	t.Cleanup(func() { killPidfile(gc1); killPidfile(gc2) })
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))

	out, code := m.force(t, "hang")
	if code != 1 {
		t.Fatalf("timed-out build: exit %d, want 1:\n%s", code, out)
	}
	st := m.steps(t, m.builds(t, "hang")[0].ID)[0]
	if resultOf(st.Results) != 2 || !strings.Contains(st.StateString, "timed out") {
		t.Errorf("timed-out step: result %d state %q; want failure, timed out", resultOf(st.Results), st.StateString)
	}
	if log := m.stepLog(t, st.ID); !strings.Contains(log, "command timed out: 2 seconds without output") {
		t.Errorf("timed-out step log lacks the timeout message:\n%s", log)
	}
	if alive(t, gc1) {
		t.Error("the timed-out step's grandchild still runs")
	}

	if out, code := cli(t, "force", "--master", m.url, "stopme"); code != 0 {
		t.Fatalf("force stopme: %s", out)
	}
	m.out.wait(t, `build started.*builder=stopme`, 30*time.Second)
	waitFile(t, gc2, m)
	bs := m.builds(t, "stopme")
	resp := m.post(t, fmt.Sprintf("api/v2/builds/%d", bs[0].ID), `{"jsonrpc":"2.0","method":"stop","id":1,"params":{"reason":"test stop"}}`)
	if resp != 200 {
		t.Fatalf("stop build: HTTP %d", resp)
	}
	m.out.wait(t, `build finished.*builder=stopme.*result=cancelled`, 60*time.Second)
	if alive(t, gc2) {
		t.Error("the stopped step's grandchild still runs")
	}
	steps := m.steps(t, bs[0].ID)
	if resultOf(steps[0].Results) != 6 || resultOf(steps[1].Results) != 0 {
		t.Errorf("steps after stop: %+v; want cancelled, then the always_run step successful", steps)
	}
}

// TestTransferRoundTrip100MB uploads a 100 MB file to the master and
// downloads it back, comparing checksums on both sides.
func TestTransferRoundTrip100MB(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB transfer in -short mode")
	}
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), oneWorker+`
builder("xfer", workers=["w1"], steps=[
    shell("head -c 104857600 /dev/urandom > big.bin && sha256sum big.bin", name="make"),
    upload("big.bin", "uploads/big.bin", name="up"),
    download("uploads/big.bin", "back.bin", name="down"),
    shell("sha256sum big.bin back.bin && cmp big.bin back.bin", name="compare"),
])
force_scheduler("force", builders=["xfer"])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
	out, code := m.force(t, "xfer")
	if code != 0 {
		t.Fatalf("transfer build: exit %d:\n%s", code, out)
	}
	b := m.builds(t, "xfer")[0]
	steps := m.steps(t, b.ID)
	made := m.stepLog(t, steps[0].ID)
	sum := regexp.MustCompile(`([0-9a-f]{64})  big.bin`).FindStringSubmatch(made)
	if sum == nil {
		t.Fatalf("no checksum in %q", made)
	}
	f, err := os.ReadFile(filepath.Join(dir, "master", "uploads", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(f)
	if got := hex.EncodeToString(h[:]); got != sum[1] || len(f) != 100<<20 {
		t.Fatalf("master copy: %d bytes sha256 %s; worker had sha256 %s", len(f), got, sum[1])
	}
	if !strings.Contains(steps[1].StateString, sum[1]) {
		t.Errorf("upload step state %q does not show the checksum", steps[1].StateString)
	}
	if cmp := m.stepLog(t, steps[3].ID); strings.Count(cmp, sum[1]) != 2 {
		t.Errorf("worker-side checksums differ:\n%s", cmp)
	}
}

// TestMasterStopRequeuesRunningBuild: a master stopped with SIGTERM while a
// build runs interrupts it (its process dies), records RETRY, and runs the
// request again once restarted and the worker is back.
func TestMasterStopRequeuesRunningBuild(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "first")
	pidfile := filepath.Join(dir, "step.pid")
	// The worker must find the restarted master where it left it.
	cfg := fmt.Sprintf(`master(http_addr="127.0.0.1:0", worker_addr="127.0.0.1:%d")`, freePort(t)) + oneWorker + `
builder("proj", workers=["w1"], steps=[
    shell('if [ ! -e ` + first + ` ]; then touch ` + first + `; echo $$ > ` + pidfile + `; exec sleep 600; fi; echo second-run'),
])
force_scheduler("force", builders=["proj"])
`
	if err := os.MkdirAll(filepath.Join(dir, "master"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "master", "master.star"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMaster(t, filepath.Join(dir, "master"), "")
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
	t.Cleanup(func() { killPidfile(pidfile) })
	if out, code := cli(t, "force", "--master", m.url, "proj"); code != 0 {
		t.Fatalf("force: %s", out)
	}
	waitFile(t, pidfile, m)
	m.stop(t)
	m.out.wait(t, `build finished.*builder=proj.*result=retry`, 5*time.Second)
	if alive(t, pidfile) {
		t.Error("the interrupted step's process still runs after the master stopped")
	}

	m2 := startMaster(t, filepath.Join(dir, "master"), "")
	m2.waitAttached(t, "w1", 1) // the worker reconnects by itself
	m2.out.wait(t, `build finished.*builder=proj.*result=success`, 60*time.Second)
	bs := m2.builds(t, "proj")
	if len(bs) != 2 || resultOf(bs[1].Results) != 5 || resultOf(bs[0].Results) != 0 {
		t.Fatalf("builds = %+v, want RETRY then SUCCESS", bs)
	}
}

// TestSecondMasterOnSameBasedirRefused: a second master pointed at a live
// master's basedir stops with a reason before touching the database, and
// the first master's running build is unharmed.
func TestSecondMasterOnSameBasedirRefused(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	m := startMaster(t, filepath.Join(dir, "master"), oneWorker+`
builder("proj", workers=["w1"], steps=[shell("while [ ! -e `+release+` ]; do sleep 0.05; done; echo released")])
force_scheduler("force", builders=["proj"])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
	if out, code := cli(t, "force", "--master", m.url, "proj"); code != 0 {
		t.Fatalf("force: %s", out)
	}
	m.out.wait(t, `build started.*builder=proj`, 30*time.Second)

	out, code := cli(t, "master", "--basedir", filepath.Join(dir, "master"))
	if code == 0 || !strings.Contains(out, "is in use by another master (pid ") {
		t.Fatalf("second master: exit %d, output:\n%s", code, out)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m.out.wait(t, `build finished.*builder=proj.*result=success`, 30*time.Second)
}

// TestRestartedWorkerKillsOrphans: a worker killed with SIGKILL mid-step
// leaves its step's process running; when that worker starts again it
// kills it.
func TestRestartedWorkerKillsOrphans(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "step.pid")
	m := startMaster(t, filepath.Join(dir, "master"), oneWorker+`
builder("slow", workers=["w1"], steps=[shell("echo $$ > `+pidfile+`; exec sleep 600")])
force_scheduler("force", builders=["slow"])
`)
	wdir := filepath.Join(dir, "worker")
	w := m.startWorker(t, "w1", "pw1", wdir)
	t.Cleanup(func() { killPidfile(pidfile) })
	if out, code := cli(t, "force", "--master", m.url, "slow"); code != 0 {
		t.Fatalf("force: %s", out)
	}
	waitFile(t, pidfile, m)
	w.kill()
	// The requeued build runs again on the restarted worker and rewrites
	// the pid file; the orphan is the pid read now.
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !alivePID(orphan) {
		t.Fatal("test premise: the step's process should outlive a SIGKILLed worker")
	}
	t.Cleanup(func() { syscall.Kill(orphan, syscall.SIGKILL) })
	w2 := m.startWorker(t, "w1", "pw1", wdir)
	w2.out.wait(t, `killed an orphaned process group.*pgid=`+strconv.Itoa(orphan), 10*time.Second)
	if alivePID(orphan) {
		t.Fatal("the restarted worker did not kill the orphaned step process")
	}
}
