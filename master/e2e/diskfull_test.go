package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDiskFull fills the disk under a master while a step writes its log:
// the base directory is a 6 MiB tmpfs mounted in a user and mount
// namespace of the master's own (a real ENOSPC, no root needed). The step
// ends EXCEPTION saying the disk is full, the build ends, and the master
// keeps serving its pages and API.
func TestDiskFull(t *testing.T) {
	unshare := lookPathOrSkip(t, "unshare")
	if out, err := exec.Command(unshare, "-Urm", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a user and mount namespace here (%v: %s); this test needs one to mount a small tmpfs", err, out)
	}
	dir := t.TempDir()
	basedir := filepath.Join(dir, "master")
	if err := os.MkdirAll(basedir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "master.star")
	cfg := `master(title="e2e", http_addr="127.0.0.1:0", worker_addr="127.0.0.1:0")
worker("w1", password="pw")
# About 40 MB of log: far more than the disk holds.
builder("flood", workers=["w1"], steps=[
    shell("yes 'a line of log output that goes on and on to fill the disk quickly' | head -n 600000", name="flood"),
])
builder("small", workers=["w1"], steps=[shell("echo hello", name="hello")])
force_scheduler("force", builders=["flood", "small"])
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `mount -t tmpfs -o size=6m tmpfs "$1" && exec "$2" master --basedir "$1" --config "$3"`
	p := start(t, unshare, nil, "-Urm", "sh", "-c", script, "sh", basedir, bin.master, cfgPath)
	line := p.out.wait(t, `Starforge master running: web UI at`, 30*time.Second)
	mm := regexp.MustCompile(`web UI at (http://\S+/) , workers connect to (\S+)`).FindStringSubmatch(line)
	if mm == nil {
		t.Fatalf("cannot parse %q", line)
	}
	m := &master{proc: p, basedir: basedir, url: mm[1], workers: mm[2]}
	m.startWorker(t, "w1", "pw", filepath.Join(dir, "worker"))

	out, code := m.force(t, "flood")
	if code == 0 {
		t.Fatalf("the flood build succeeded on a full disk:\n%s", out)
	}
	b := m.builds(t, "flood")[0]
	if resultOf(b.Results) != resException {
		t.Errorf("build result %d (%s), want EXCEPTION", resultOf(b.Results), b.StateString)
	}
	steps := m.steps(t, b.ID)
	if len(steps) != 1 || resultOf(steps[0].Results) != resException || !strings.Contains(steps[0].StateString, "full") {
		t.Errorf("steps = %+v; want the flood step EXCEPTION saying the disk is full", steps)
	}
	p.out.wait(t, `step output lost: the disk is full`, 10*time.Second)
	// While the disk stays full, the next build ends at once the same way
	// rather than hang.
	if _, code := m.force(t, "small"); code == 0 {
		t.Error("a build succeeded although its log could not be stored")
	}
	if s := m.builds(t, "small")[0]; resultOf(s.Results) != resException {
		t.Errorf("small: result %d (%s), want EXCEPTION", resultOf(s.Results), s.StateString)
	}
	// The master keeps serving: pages, the API, the queue.
	for _, path := range []string{"", "builders/flood", fmt.Sprintf("builders/flood/builds/%d", b.Number), "api/v2/workers"} {
		m.getText(t, path)
	}
	select {
	case <-p.done:
		t.Fatalf("the master exited:\n%s", p.out)
	default:
	}
}

// lookPathOrSkip finds a program that every Debian system has (util-linux
// and the like).
func lookPathOrSkip(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found", name)
	}
	return p
}
