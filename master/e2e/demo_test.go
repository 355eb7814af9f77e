package e2e

import (
	"context"
	"net"
	"net/http"
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

// TestDemo runs scripts/demo.sh, the script behind `make demo`, as a user
// does: it waits for "Starforge is running.", follows the forced build of
// the quickstart builder to success through the REST API, checks its log
// and its published artifact, then presses Ctrl-C (SIGINT to the script's
// process group) and expects everything to stop.
//
// The script runs unchanged, from a copy of the repository's layout made of
// symbolic links (scripts/ and examples/ are the repository's), whose bin/
// holds the binaries TestMain just built: a plain `go test` never runs a
// stale bin/ left by an earlier `make build`, and the repository's bin/ and
// .demo/ are not touched.
func TestDemo(t *testing.T) {
	bash := testenv.LookPath(t, "bash", "bash")
	testenv.LookPath(t, "git", "git")
	for _, addr := range []string{"127.0.0.1:8010", "127.0.0.1:9989"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("the quickstart's fixed port %s is busy (%v); stop what uses it to run this test", addr, err)
		}
		l.Close()
	}

	root := demoRoot(t)
	demo := filepath.Join(t.TempDir(), "demo")
	p := start(t, bash, []string{"STARFORGE_DEMO_DIR=" + demo}, filepath.Join(root, "scripts", "demo.sh"))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			// Whatever the script started is in its process group.
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
		if t.Failed() {
			for _, f := range []string{"master.log", "worker.log"} {
				b, _ := os.ReadFile(filepath.Join(demo, f))
				t.Logf("%s:\n%s", f, b)
			}
		}
	})

	p.out.wait(t, `^\s*Starforge is running\.$`, 60*time.Second)
	line := p.out.wait(t, `^\s*Web UI:\s+http://`, time.Second)
	m := regexp.MustCompile(`Web UI:\s+(http://\S+/)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("cannot parse the web UI's URL from %q", line)
	}
	web := m[1]
	dm := &master{url: web} // the harness's API helpers
	if web != "http://127.0.0.1:8010/" {
		t.Errorf("web UI at %s, want the quickstart's http://127.0.0.1:8010/", web)
	}
	if !strings.Contains(p.out.String(), "queued buildset") {
		t.Errorf("the script's output does not show the forced build being queued:\n%s", p.out)
	}

	// Follow the forced build through the REST API until it completes.
	// Polling an HTTP API for a state change is what a user's script does.
	var b build
	deadline := time.Now().Add(120 * time.Second)
	for {
		var r struct {
			Builds []build `json:"builds"`
		}
		dm.getJSON(t, "api/v2/builders/hello/builds", &r)
		if len(r.Builds) > 1 {
			t.Fatalf("the demo ran %d builds, want 1: %+v", len(r.Builds), r.Builds)
		}
		if len(r.Builds) == 1 && r.Builds[0].Complete {
			b = r.Builds[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo's build did not complete within 120s: %+v\nscript output:\n%s", r.Builds, p.out)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if resultOf(b.Results) != 0 || b.WorkerName != "local-1" {
		t.Errorf("the demo's build: result %d (%s) on worker %q; want success on local-1", resultOf(b.Results), b.StateString, b.WorkerName)
	}

	var names []string
	byName := map[string]step{}
	for _, s := range dm.steps(t, b.ID) {
		names = append(names, s.Name)
		byName[s.Name] = s
		if resultOf(s.Results) != 0 {
			t.Errorf("step %s: result %d (%s), want success", s.Name, resultOf(s.Results), s.StateString)
		}
	}
	if got, want := strings.Join(names, " "), "checkout describe build test publish"; got != want {
		t.Fatalf("steps %q, want %q", got, want)
	}
	if log := dm.stepLog(t, byName["build"].ID); !strings.Contains(log, "compiling unit 10 of 10\n") {
		t.Errorf("the build step's log lacks %q:\n%s", "compiling unit 10 of 10", log)
	}
	if log := dm.stepLog(t, byName["test"].ID); !strings.Contains(log, "1 passed, 0 failed") {
		t.Errorf("the test step's log lacks its summary:\n%s", log)
	}
	art := filepath.Join(demo, "master", "artifacts", "hello.txt")
	got, err := os.ReadFile(art)
	if err != nil {
		t.Errorf("the publish step did not upload dist/hello.txt: %v", err)
	} else if !strings.HasPrefix(string(got), "hello from Starforge, built at ") {
		t.Errorf("%s = %q, want the file build.sh wrote", art, got)
	}

	// The command the script suggests for another build works from any
	// directory (it names the binary by its absolute path).
	line = p.out.wait(t, `^\s*Force another build:`, time.Second)
	args := strings.Fields(strings.TrimSpace(strings.SplitN(line, ":", 2)[1]))
	if len(args) < 2 || args[0] != filepath.Join(root, "bin/starforge") {
		t.Fatalf("cannot parse the suggested command in %q", line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	again := exec.CommandContext(ctx, args[0], args[1:]...)
	again.Dir = t.TempDir()
	out, err := again.CombinedOutput()
	if err != nil || !regexp.MustCompile(`(?m)^build hello #2: success`).Match(out) {
		t.Errorf("the suggested %q: %v, want build hello #2 to succeed:\n%s", strings.Join(args, " "), err, out)
	}

	// A commit is built, at exactly its revision, once the poller sees it;
	// the script tells how to poll at once.
	line = p.out.wait(t, `^\s*Poll at once instead of waiting:`, time.Second)
	pollURL := regexp.MustCompile(`"(http://\S+)"`).FindStringSubmatch(line)
	if pollURL == nil {
		t.Fatalf("cannot parse the poll URL in %q", line)
	}
	repo := newGitRepoAt(t, filepath.Join(demo, "repo"))
	rev := repo.commit("Try me", map[string]string{"NOTES": "a commit from the demo test\n"})
	resp, err := http.Post(pollURL[1], "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s", pollURL[1], resp.Status)
	}
	deadline = time.Now().Add(120 * time.Second)
	for {
		var r struct {
			Builds []build `json:"builds"`
		}
		dm.getJSON(t, "api/v2/builders/hello/builds", &r)
		if len(r.Builds) >= 3 && r.Builds[0].Complete {
			b := r.Builds[0]
			if resultOf(b.Results) != 0 || dm.buildProperty(t, b.ID, "got_revision") != rev {
				t.Errorf("the commit's build: result %d (%s), got_revision %v; want success at %s",
					resultOf(b.Results), b.StateString, dm.buildProperty(t, b.ID, "got_revision"), rev)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the commit was not built within 120s: %+v", r.Builds)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Ctrl-C: the terminal sends SIGINT to the whole foreground group.
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the demo did not stop within 30s after SIGINT; output:\n%s", p.out)
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, 0); err == nil {
		t.Error("processes the demo started still run after it stopped")
	} else {
		stopped = true
	}
	p.out.wait(t, `^stopped; the demo's files are in `+regexp.QuoteMeta(demo)+`$`, 5*time.Second)
	if _, err := net.DialTimeout("tcp", "127.0.0.1:8010", time.Second); err == nil {
		t.Error("something still listens on 127.0.0.1:8010 after the demo stopped")
	}
	mlog, err := os.ReadFile(filepath.Join(demo, "master.log"))
	if err != nil {
		t.Fatal(err)
	}
	// The master of this test is built with -race.
	for _, bad := range []string{"DATA RACE", "panic:", "level=ERROR"} {
		if strings.Contains(string(mlog), bad) {
			t.Errorf("the demo master's log shows %q:\n%s", bad, mlog)
		}
	}
	if !strings.Contains(string(mlog), "master stopping") {
		t.Errorf("the demo master's log does not show a clean stop:\n%s", mlog)
	}
}

// demoRoot returns a directory laid out like the repository for
// scripts/demo.sh: scripts/ and examples/ link to the repository's, bin/
// holds links to the binaries TestMain built.
func demoRoot(t *testing.T) string {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	links := map[string]string{
		"scripts":              filepath.Join(repo, "scripts"),
		"examples":             filepath.Join(repo, "examples"),
		"bin/starforge":        bin.master,
		"bin/starforge-worker": bin.worker,
	}
	for name, target := range links {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
	}
	return root
}
