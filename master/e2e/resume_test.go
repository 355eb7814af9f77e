package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/testenv"
)

// The resume extension end to end: a worker's connection is cut mid-step by
// a TCP proxy between the worker and the master, while the step prints.

// chattyBuilder is a builder whose step prints 80 numbered lines over a few
// seconds. When the file ARMED exists (the test creates it for the first
// build only), the step removes it, says it started (STARTED) and waits
// on the named pipes GATE1, then GATE2, so the test can cut the
// connection at a known point and let the step print while it is cut; it
// ends by creating FINISHED.
func chattyBuilder(dir, worker string) string {
	script := fmt.Sprintf(`armed=no; if [ -e %[1]s/ARMED ]; then rm %[1]s/ARMED; armed=yes; fi
i=1; while [ $i -le 20 ]; do echo line-$i; i=$((i+1)); sleep 0.05; done
if [ $armed = yes ]; then touch %[1]s/STARTED; read x < %[1]s/GATE1; fi
while [ $i -le 60 ]; do echo line-$i; i=$((i+1)); sleep 0.05; done
if [ $armed = yes ]; then read x < %[1]s/GATE2; fi
while [ $i -le 80 ]; do echo line-$i; i=$((i+1)); sleep 0.05; done
if [ $armed = yes ]; then touch %[1]s/FINISHED; fi`, dir)
	return fmt.Sprintf(`
builder("chatty", workers=[%q], steps=[shell(%q, name="chatty")])
force_scheduler("force", builders=["chatty"])
`, worker, script)
}

// armChatty prepares the first build's gates.
func armChatty(t *testing.T, dir string) {
	t.Helper()
	for _, g := range []string{"GATE1", "GATE2"} {
		if err := syscall.Mkfifo(filepath.Join(dir, g), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ARMED"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// openGate lets the armed step past its wait n (1 or 2); it blocks until
// the step reads the pipe.
func openGate(t *testing.T, dir string, n int) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- os.WriteFile(filepath.Join(dir, fmt.Sprintf("GATE%d", n)), []byte("go\n"), 0o600) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the step did not reach its gate")
	}
}

// chattyLines returns the step's numbered lines in a log, in order.
func chattyLines(log string) []string {
	return regexp.MustCompile(`(?m)^line-\d+$`).FindAllString(log, -1)
}

func wantAllLines(t *testing.T, log string) {
	t.Helper()
	got := chattyLines(log)
	want := make([]string, 80)
	for i := range want {
		want[i] = fmt.Sprintf("line-%d", i+1)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("the log's lines are not line-1..line-80, each once, in order:\n%s", strings.Join(got, " "))
	}
}

// startWorkerVia starts a starforge-worker that reaches the master through
// addr, and waits until the master attached it.
func (m *master) startWorkerVia(t *testing.T, addr, name, password, basedir string, args ...string) *proc {
	t.Helper()
	before := m.out.count(`worker attached.*worker=` + regexp.QuoteMeta(name) + `\b`)
	w := start(t, bin.worker, nil, append([]string{"--master", addr, "--name", name, "--password", password, "--basedir", basedir}, args...)...)
	m.waitAttached(t, name, before+1)
	return w
}

// TestShortDisconnectResumesTheBuild: the connection is cut for a few
// seconds while the step prints; the step keeps running, and after the
// reconnect the same build succeeds with every line once, in order.
func TestShortDisconnectResumesTheBuild(t *testing.T) {
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), `worker("w1", password="pw1")`+chattyBuilder(dir, "w1"))
	p := testenv.NewProxy(t, m.workers)
	w := m.startWorkerVia(t, p.Addr(), "w1", "pw1", filepath.Join(dir, "w1"))
	armChatty(t, dir)
	if out, code := cli(t, "force", "--master", m.url, "chatty"); code != 0 {
		t.Fatalf("force: %s", out)
	}
	waitFile(t, filepath.Join(dir, "STARTED"), m)

	p.Cut()
	m.out.wait(t, `holding its commands for a reconnect.*worker=w1`, 30*time.Second)
	w.out.wait(t, `keeping the running commands for a reconnect`, 30*time.Second)
	openGate(t, dir, 1) // lines 21..60 are printed while the worker is away
	openGate(t, dir, 2)
	p.Restore()

	m.out.wait(t, `worker reconnected: its commands go on.*resumed=1`, 30*time.Second)
	m.out.wait(t, `build finished.*builder=chatty.*result=success`, 60*time.Second)
	bs := m.builds(t, "chatty")
	if len(bs) != 1 || resultOf(bs[0].Results) != 0 {
		t.Fatalf("builds = %+v; want one build, SUCCESS", bs)
	}
	wantAllLines(t, m.stepLog(t, m.steps(t, bs[0].ID)[0].ID))
	if n := m.out.count(`result=retry`); n != 0 {
		t.Errorf("%d retries", n)
	}
}

// TestLongDisconnectRetries: a cut longer than the worker's grace ends the
// step's process and the build RETRY; the request runs again once the
// worker is back.
func TestLongDisconnectRetries(t *testing.T) {
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), `worker("w1", password="pw1")`+chattyBuilder(dir, "w1"))
	p := testenv.NewProxy(t, m.workers)
	w := m.startWorkerVia(t, p.Addr(), "w1", "pw1", filepath.Join(dir, "w1"), "--resume-grace", "2s")
	armChatty(t, dir)
	if out, code := cli(t, "force", "--master", m.url, "chatty"); code != 0 {
		t.Fatalf("force: %s", out)
	}
	waitFile(t, filepath.Join(dir, "STARTED"), m)

	p.Cut()
	// The worker gives up after its 2 s, the master 5 s later.
	w.out.wait(t, `the master did not come back in time: cancelling the kept commands`, 30*time.Second)
	m.out.wait(t, `build finished.*builder=chatty.*result=retry`, 30*time.Second)
	p.Restore()
	m.out.wait(t, `build finished.*builder=chatty.*result=success`, 60*time.Second)
	bs := m.builds(t, "chatty")
	if len(bs) != 2 || resultOf(bs[1].Results) != 5 || resultOf(bs[0].Results) != 0 {
		t.Fatalf("builds = %+v; want RETRY, then SUCCESS", bs)
	}
	wantAllLines(t, m.stepLog(t, m.steps(t, bs[0].ID)[0].ID))
}

// TestShortDisconnectBuildbotWorkerRetries: Debian's buildbot-worker does
// not know the extension, so the same cut gives RETRY at once and a second
// build, as with Buildbot.
func TestShortDisconnectBuildbotWorkerRetries(t *testing.T) {
	bbw := testenv.LookPath(t, "buildbot-worker", "buildbot-worker")
	dir := t.TempDir()
	m := startMaster(t, filepath.Join(dir, "master"), `worker("bb", password="bbpass")`+chattyBuilder(dir, "bb"))
	p := testenv.NewProxy(t, m.workers)
	basedir := filepath.Join(dir, "bbworker")
	create := exec.Command(bbw, "create-worker", "--protocol=msgpack_experimental_v7", basedir, p.Addr(), "bb", "bbpass")
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("buildbot-worker create-worker: %v\n%s", err, out)
	}
	w := start(t, bbw, nil, "start", "--nodaemon", basedir)
	defer w.stop(t)
	m.waitAttached(t, "bb", 1)
	armChatty(t, dir)
	if out, code := cli(t, "force", "--master", m.url, "chatty"); code != 0 {
		t.Fatalf("force: %s", out)
	}
	waitFile(t, filepath.Join(dir, "STARTED"), m)

	p.Cut()
	m.out.wait(t, `build finished.*builder=chatty.*result=retry`, 30*time.Second)
	// Buildbot's worker lets the step run on without a master; let it end
	// before the worker comes back, so its command id is free again.
	openGate(t, dir, 1)
	openGate(t, dir, 2)
	waitFile(t, filepath.Join(dir, "FINISHED"), m)
	p.Restore()
	m.out.wait(t, `build finished.*builder=chatty.*result=success`, 90*time.Second)
	bs := m.builds(t, "chatty")
	if len(bs) != 2 || resultOf(bs[1].Results) != 5 || resultOf(bs[0].Results) != 0 {
		t.Fatalf("builds = %+v; want RETRY, then SUCCESS", bs)
	}
	wantAllLines(t, m.stepLog(t, m.steps(t, bs[0].ID)[0].ID))
}
