package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/testenv"
)

// TestBuildbotWorkerCompat runs a build on Debian's unmodified
// buildbot-worker 3.7 over msgpack_experimental_v7: a shell step with
// output and an exit code, and a file upload.
func TestBuildbotWorkerCompat(t *testing.T) {
	bbw := testenv.LookPath(t, "buildbot-worker", "buildbot-worker")
	dir := t.TempDir()
	uploaded := filepath.Join(dir, "master", "from-buildbot.txt")
	m := startMaster(t, filepath.Join(dir, "master"), `
worker("bb", password="bbpass")
builder("compat", workers=["bb"], steps=[
    shell("echo out-line; echo err-line >&2; printf 'no newline'", name="shell"),
    shell(["sh", "-c", "echo artifact-content > art.txt"], name="make-file"),
    upload("art.txt", "`+uploaded+`", name="upload"),
    shell("exit 4", name="fails", flunk_on_failure=False, warn_on_failure=True),
])
force_scheduler("force", builders=["compat"])
`)
	basedir := filepath.Join(dir, "bbworker")
	create := exec.Command(bbw, "create-worker", "--protocol=msgpack_experimental_v7", basedir, m.workers, "bb", "bbpass")
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("buildbot-worker create-worker: %v\n%s", err, out)
	}
	w := start(t, bbw, nil, "start", "--nodaemon", basedir)
	m.waitAttached(t, "bb", 1)

	out, code := m.force(t, "compat")
	if code != 0 {
		t.Fatalf("build on buildbot-worker: exit %d:\n%s\nworker output:\n%s", code, out, w.out)
	}
	b := m.builds(t, "compat")[0]
	if resultOf(b.Results) != 1 {
		t.Errorf("build result %d, want 1 (warnings from the warn_on_failure step)", resultOf(b.Results))
	}
	steps := m.steps(t, b.ID)
	log := m.stepLog(t, steps[0].ID)
	for _, want := range []string{"out-line\n", "err-line\n", "no newline\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("shell log lacks %q:\n%s", want, log)
		}
	}
	got, err := os.ReadFile(uploaded)
	if err != nil || string(got) != "artifact-content\n" {
		t.Errorf("uploaded file = %q, %v", got, err)
	}
	if !strings.Contains(steps[3].StateString, "exit 4") {
		t.Errorf("failing step state %q", steps[3].StateString)
	}
	w.stop(t)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Fatal("buildbot-worker did not stop")
	}
}
