//go:build unix

package sshd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/master"
	"github.com/starforge/starforge/master/sshd"
	"github.com/starforge/starforge/worker"
)

// farm is a master with the SSH interface and one worker, in-process.
type farm struct {
	m       *master.Master
	basedir string
	logs    *sshd.LogBuf
	stop    func() error // stops the master; safe to call twice
}

// startMaster runs a master on basedir (master.star already there).
func startMaster(t *testing.T, basedir string) *farm {
	t.Helper()
	logs := sshd.NewLogBuf()
	m, err := master.New(master.Options{Basedir: basedir, Logger: slog.New(slog.NewTextHandler(logs, nil)), ShutdownTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	var runErr error
	f := &farm{m: m, basedir: basedir, logs: logs}
	f.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(60 * time.Second):
				runErr = fmt.Errorf("the master did not stop within 60s")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := f.stop(); err != nil {
			t.Errorf("master.Run: %v", err)
		}
		if t.Failed() {
			t.Logf("master log:\n%s", logs)
		}
	})
	select {
	case <-m.Ready():
	case err := <-done:
		t.Fatalf("master.Run returned before listening: %v\n%s", err, logs)
	}
	if m.SSHAddr() == "" {
		t.Fatal("no SSH address")
	}
	return f
}

func startWorker(t *testing.T, f *farm, name, password string) {
	t.Helper()
	a := &worker.Agent{Master: f.m.WorkerAddr(), Name: name, Password: password, Basedir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	f.logs.Wait(t, "worker attached", "worker="+name)
}

// git runs git in dir.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.LookPath(t, "git", "git"), append([]string{"-c", "user.name=T", "-c", "user.email=t@example.org"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// bg is an ssh command running in the background, its output awaited
// line by line.
type bg struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	out     []string
	changed chan struct{}
	errOut  strings.Builder
	done    chan struct{}
	code    int
}

func startBG(t *testing.T, cmd *exec.Cmd) *bg {
	t.Helper()
	b := &bg{cmd: cmd, changed: make(chan struct{}), done: make(chan struct{})}
	pr, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &syncWriter{b: b}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			b.mu.Lock()
			b.out = append(b.out, sc.Text())
			close(b.changed)
			b.changed = make(chan struct{})
			b.mu.Unlock()
		}
		err := cmd.Wait()
		b.code = cmd.ProcessState.ExitCode()
		_ = err
		close(b.done)
	}()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

type syncWriter struct{ b *bg }

func (w *syncWriter) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	return w.b.errOut.Write(p)
}

// waitLine returns the first output line matching re.
func (b *bg) waitLine(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		for _, l := range b.out {
			if rx.MatchString(l) {
				b.mu.Unlock()
				return l
			}
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-b.done:
			b.mu.Lock()
			out := strings.Join(b.out, "\n")
			b.mu.Unlock()
			for _, l := range strings.Split(out, "\n") {
				if rx.MatchString(l) {
					return l
				}
			}
			t.Fatalf("the command ended (exit %d) without a line matching %q:\n%s\nstderr: %s", b.code, re, out, b.stderr())
		case <-deadline.C:
			t.Fatalf("no line matching %q within 60s", re)
		}
	}
}

func (b *bg) stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.errOut.String()
}

// wait waits for the command to end on its own and returns its exit code
// and output.
func (b *bg) wait(t *testing.T) (int, string) {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(120 * time.Second):
		t.Fatal("the command did not end within 120s")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.code, strings.Join(b.out, "\n")
}

// openGate lets one build of the gate builder through.
func openGate(t *testing.T, fifo string) {
	t.Helper()
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0) // blocks until the step reads
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
}

var queuedRE = regexp.MustCompile(`^queued buildset (\d+): build request (\d+) for (\S+)`)

func requestID(t *testing.T, line string) string {
	t.Helper()
	m := queuedRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("not a queued line: %q", line)
	}
	return m[2]
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}

// TestCommands runs every command with the OpenSSH client against a real
// master and worker: a try whose patch fixes a failing build, follows
// that end with their builds, refusals by role.
func TestCommands(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "-c", "init.defaultBranch=main", "init", "-q")
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(repo, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("answer.txt", "41\n")
	write("test.sh", `a=$(cat answer.txt); if [ "$a" = 42 ]; then echo "PASS: the answer is 42"; else echo "FAIL: the answer is $a"; exit 1; fi`+"\n")
	git(t, repo, "add", "-A")
	git(t, repo, "commit", "-q", "-m", "the answer")
	base := git(t, repo, "rev-parse", "HEAD")
	write("answer.txt", "42\n")
	patch := git(t, repo, "diff") + "\n"
	git(t, repo, "checkout", "-q", ".")

	fifo := filepath.Join(dir, "gate")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	os.MkdirAll(keys, 0o700)
	alice, dev, vic, newbie := sshd.NewTestKey(t, keys, "alice"), sshd.NewTestKey(t, keys, "dev"), sshd.NewTestKey(t, keys, "vic"), sshd.NewTestKey(t, keys, "newbie")

	basedir := filepath.Join(dir, "master")
	os.MkdirAll(basedir, 0o755)
	cfg := fmt.Sprintf(`master(title = "ssh test", http_addr = "127.0.0.1:0", worker_addr = "127.0.0.1:0", ssh_addr = "127.0.0.1:0")
worker("w1", "pw", max_builds = 4)
builder("proj", workers = ["w1"], steps = [git(%q, mode = "full", method = "clobber"), shell("sh test.sh", name = "test")])
builder("gate", workers = ["w1"], steps = [shell("echo waiting for the gate; read x < %s; echo got $x", name = "wait")])
builder("other", workers = ["w1"], steps = [shell("echo other", name = "echo")])
force_scheduler("force", builders = ["proj", "gate", "other"])
try_scheduler("try", builders = ["proj"])
user("alice", keys = [%q], roles = ["admin"])
user("dev", keys = [%q], roles = ["developer"])
user("vic", keys = [%q], roles = ["viewer"])
`, repo, fifo, alice.Pub, dev.Pub, vic.Pub)
	if err := os.WriteFile(filepath.Join(basedir, "master.star"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startMaster(t, basedir)
	startWorker(t, f, "w1", "pw")
	c := sshd.NewTestClient(t, f.m.SSHAddr())
	web := "http://" + f.m.HTTPAddr() + "/"

	type run struct {
		user string
		args []string
		code int
		out  []string // substrings of stdout
		err  []string // substrings of stderr
	}
	key := map[string]sshd.TestKey{"alice": alice, "dev": dev, "vic": vic, "newbie": newbie}
	check := func(t *testing.T, r run, stdin string) string {
		t.Helper()
		out, errOut, code := c.Run(r.user, key[r.user], stdin, r.args...)
		if code != r.code {
			t.Errorf("%s %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.user, r.args, code, r.code, out, errOut)
		}
		for _, s := range r.out {
			if !strings.Contains(out, s) {
				t.Errorf("%s %v: stdout lacks %q:\n%s", r.user, r.args, s, out)
			}
		}
		for _, s := range r.err {
			if !strings.Contains(errOut, s) {
				t.Errorf("%s %v: stderr lacks %q:\n%s", r.user, r.args, s, errOut)
			}
		}
		return out
	}

	t.Run("help", func(t *testing.T) {
		check(t, run{user: "vic", args: nil, out: []string{"Starforge SSH interface (ssh test)", "  try       build a base revision", `(needs "force": not for you)`}}, "")
		check(t, run{user: "vic", args: []string{"help", "logs"}, out: []string{"usage: logs BUILD [STEP] [--follow]"}}, "")
		check(t, run{user: "vic", args: []string{"force", "--help"}, out: []string{"usage: force BUILDER", "--wait", `Needs the "force" permission`}}, "")
		check(t, run{user: "vic", args: []string{"frobnicate"}, code: sshd.ExitUsage, err: []string{`unknown command "frobnicate"`}}, "")
		check(t, run{user: "vic", args: []string{"whoami"}, out: []string{"user: vic", "permissions: view"}}, "")
	})

	t.Run("builders", func(t *testing.T) {
		out := check(t, run{user: "vic", args: []string{"builders", "--json"}}, "")
		var bs []struct {
			Name           string `json:"name"`
			ForceScheduler string `json:"force_scheduler"`
			TryScheduler   string `json:"try_scheduler"`
		}
		if err := json.Unmarshal([]byte(out), &bs); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if len(bs) != 3 || bs[0].Name != "proj" || bs[0].ForceScheduler != "force" || bs[0].TryScheduler != "try" || bs[1].TryScheduler != "" {
			t.Errorf("builders --json: %+v", bs)
		}
		check(t, run{user: "vic", args: []string{"builders"}, out: []string{"BUILDER", "proj", "force,try", "gate"}}, "")
	})

	t.Run("force fails at base", func(t *testing.T) {
		check(t, run{user: "vic", args: []string{"force", "proj"}, code: sshd.ExitRefused, err: []string{`not allowed: force needs the "force" permission`, "(viewer)"}}, "")
		check(t, run{user: "dev", args: []string{"force", "proj", "--wait", "--reason", "see it fail"}, code: sshd.ExitFailed,
			out: []string{"queued buildset", "=== proj/1 (build", "--- step 1 test", "FAIL: the answer is 41", "=== proj/1: failure"}}, "")
	})

	t.Run("try fixes it", func(t *testing.T) {
		check(t, run{user: "vic", args: []string{"try", "proj"}, code: sshd.ExitRefused, err: []string{"not allowed"}}, patch)
		check(t, run{user: "dev", args: []string{"try", "other"}, code: sshd.ExitRefused, err: []string{`builder "other" does not accept try jobs`}}, patch)
		check(t, run{user: "dev", args: []string{"try", "proj"}, code: sshd.ExitUsage, err: []string{"not a unified diff"}}, "hello\n")
		check(t, run{user: "dev", args: []string{"try", "proj", "--baserev", base, "--comment", "make it 42", "--wait"}, code: sshd.ExitOK,
			out: []string{"=== proj/2 (build", "+ patch", "PASS: the answer is 42", "=== proj/2: success"}}, patch)
		page := httpGet(t, web+"builders/proj/builds/2")
		for _, want := range []string{"<h2>Patch</h2>", "<dd>dev</dd>", "<dd>make it 42</dd>", "answer.txt"} {
			if !strings.Contains(page, want) {
				t.Errorf("the build page lacks %q", want)
			}
		}
		if !strings.Contains(html.UnescapeString(page), "-41\n+42\n") {
			t.Errorf("the build page lacks the diff:\n%s", page)
		}
	})

	t.Run("status and logs", func(t *testing.T) {
		out := check(t, run{user: "vic", args: []string{"status", "proj", "--json"}}, "")
		var st struct {
			Builds []struct {
				Number int
				Result string
			}
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Builds) != 2 || st.Builds[0].Result != "success" || st.Builds[1].Result != "failure" {
			t.Errorf("status proj: %v %s", err, out)
		}
		check(t, run{user: "vic", args: []string{"status", "proj"}, out: []string{"#2", "success", "#1", "failure"}}, "")
		check(t, run{user: "vic", args: []string{"status"}, out: []string{"ssh test: 1 worker, 3 builders, 2 schedulers; 1 of 1 workers connected", "0 running, 0 queued"}}, "")
		// One step, bare: exactly its output.
		out = check(t, run{user: "vic", args: []string{"logs", "proj/2", "test"}}, "")
		if !strings.HasPrefix(out, "sh test.sh\n") || !strings.Contains(out, "\nPASS: the answer is 42\n") || strings.Contains(out, "--- step") {
			t.Errorf("logs proj/2 test:\n%q", out)
		}
		check(t, run{user: "vic", args: []string{"logs", "proj/2", "tset"}, code: sshd.ExitUsage, err: []string{`no step "tset" (did you mean "test"?)`}}, "")
		check(t, run{user: "vic", args: []string{"logs", "proj/9"}, code: sshd.ExitUsage, err: []string{"build proj/9 not found"}}, "")
	})

	t.Run("rebuild keeps the patch", func(t *testing.T) {
		check(t, run{user: "vic", args: []string{"rebuild", "proj/2"}, code: sshd.ExitRefused}, "")
		check(t, run{user: "dev", args: []string{"rebuild", "proj/2", "--wait"}, out: []string{"=== proj/3 (build", "PASS", "=== proj/3: success"}}, "")
		page := httpGet(t, web+"builders/proj/builds/3")
		if !strings.Contains(page, "rebuild of proj #2") || !strings.Contains(page, "<h2>Patch</h2>") {
			t.Errorf("the rebuild's page lacks its reason or patch")
		}
	})

	t.Run("follow ends with the build", func(t *testing.T) {
		forced := startBG(t, c.Command("dev", dev, "force", "gate", "--wait"))
		forced.waitLine(t, "^waiting for the gate$")
		// A second follower, of the build by its number, joins while it runs.
		follow := startBG(t, c.Command("vic", vic, "logs", "gate/1", "--follow"))
		follow.waitLine(t, "^waiting for the gate$")
		openGate(t, fifo)
		code, out := follow.wait(t)
		if code != 0 || !strings.Contains(out, "got go") || !strings.Contains(out, "=== gate/1: success") {
			t.Errorf("logs --follow: exit %d:\n%s\n%s", code, out, follow.stderr())
		}
		if code, out := forced.wait(t); code != 0 || !strings.Contains(out, "got go") {
			t.Errorf("force --wait: exit %d:\n%s", code, out)
		}
	})

	t.Run("stop a running build", func(t *testing.T) {
		forced := startBG(t, c.Command("dev", dev, "force", "gate", "--wait"))
		req := requestID(t, forced.waitLine(t, "^queued buildset"))
		forced.waitLine(t, "^waiting for the gate$")
		check(t, run{user: "dev", args: []string{"cancel", req}, code: sshd.ExitRefused, err: []string{"has started: build", "(gate #2) runs it; stop the build instead"}}, "")
		check(t, run{user: "vic", args: []string{"stop", "gate/2"}, code: sshd.ExitRefused}, "")
		check(t, run{user: "dev", args: []string{"stop", "gate/2", "--reason", "enough"}, out: []string{"stopping gate/2"}}, "")
		if code, out := forced.wait(t); code != sshd.ExitFailed || !strings.Contains(out, "=== gate/2: cancelled") {
			t.Errorf("force --wait of a stopped build: exit %d:\n%s", code, out)
		}
		check(t, run{user: "dev", args: []string{"stop", "gate/2"}, code: sshd.ExitRefused, err: []string{"is not running"}}, "")
	})

	t.Run("pause, queue, cancel", func(t *testing.T) {
		check(t, run{user: "dev", args: []string{"pause", "w1"}, code: sshd.ExitRefused}, "")
		check(t, run{user: "alice", args: []string{"pause", "w1", "--reason", "disk full"}, out: []string{"paused worker w1"}}, "")
		out := check(t, run{user: "vic", args: []string{"workers", "--json"}}, "")
		var ws []struct {
			Name        string
			Connected   bool
			Paused      bool
			PauseReason string `json:"pause_reason"`
		}
		if err := json.Unmarshal([]byte(out), &ws); err != nil || len(ws) != 1 || !ws[0].Connected || !ws[0].Paused || ws[0].PauseReason != "disk full" {
			t.Errorf("workers: %v %s", err, out)
		}
		check(t, run{user: "vic", args: []string{"workers"}, out: []string{"w1", "connected", "paused: disk full"}}, "")
		out = check(t, run{user: "dev", args: []string{"force", "other"}, out: []string{"queued buildset"}}, "")
		req := requestID(t, strings.TrimSpace(out))
		check(t, run{user: "vic", args: []string{"queue"}, out: []string{req, "other", "worker w1 paused: disk full"}}, "")
		out = check(t, run{user: "vic", args: []string{"queue", "--json"}}, "")
		if !strings.Contains(out, `"waiting_reason": "worker w1 paused: disk full"`) {
			t.Errorf("queue --json: %s", out)
		}
		check(t, run{user: "vic", args: []string{"cancel", req}, code: sshd.ExitRefused}, "")
		check(t, run{user: "dev", args: []string{"cancel", req, "--reason", "not today"}, out: []string{"cancelled build request " + req}}, "")
		check(t, run{user: "dev", args: []string{"cancel", req}, code: sshd.ExitRefused, err: []string{"already complete (cancelled)"}}, "")
		check(t, run{user: "dev", args: []string{"cancel", "9999"}, code: sshd.ExitUsage, err: []string{"not found"}}, "")
		out = check(t, run{user: "dev", args: []string{"force", "other", "--json"}}, "")
		var q struct {
			Buildset int64
			Requests []struct {
				ID      int64
				Builder string
			}
		}
		if err := json.Unmarshal([]byte(out), &q); err != nil || q.Buildset == 0 || len(q.Requests) != 1 || q.Requests[0].Builder != "other" {
			t.Fatalf("force --json: %v %s", err, out)
		}
		check(t, run{user: "dev", args: []string{"cancel", fmt.Sprint(q.Requests[0].ID)}}, "")
		check(t, run{user: "vic", args: []string{"queue"}, out: []string{"the queue is empty"}}, "")
		check(t, run{user: "alice", args: []string{"unpause", "w1"}, out: []string{"unpaused worker w1"}}, "")
		check(t, run{user: "dev", args: []string{"force", "other", "--wait"}, out: []string{"=== other/1: success"}}, "")
	})

	t.Run("reconfig", func(t *testing.T) {
		check(t, run{user: "dev", args: []string{"reconfig"}, code: sshd.ExitRefused, err: []string{`needs the "reconfig" permission`}}, "")
		if _, _, code := c.Run("newbie", newbie, "", "whoami"); code != 255 {
			t.Fatalf("newbie logged in before being declared: exit %d", code)
		}
		star := filepath.Join(basedir, "master.star")
		if err := os.WriteFile(star, []byte(cfg+"oops("), 0o644); err != nil {
			t.Fatal(err)
		}
		check(t, run{user: "alice", args: []string{"reconfig"}, code: sshd.ExitError, err: []string{"the configuration was not changed", "master.star:"}}, "")
		if err := os.WriteFile(star, []byte(cfg+fmt.Sprintf("user(\"newbie\", keys = [%q], roles = [\"viewer\"])\n", newbie.Pub)), 0o644); err != nil {
			t.Fatal(err)
		}
		check(t, run{user: "alice", args: []string{"reconfig"}, out: []string{"reconfigured: 1 worker, 3 builders, 2 schedulers"}}, "")
		check(t, run{user: "newbie", args: []string{"whoami"}, out: []string{"user: newbie"}}, "")
	})
}

// TestRestart: the host key is made once and kept, so clients that
// checked it once still trust the master after a restart; a session
// waiting for a build is ended cleanly when the master stops.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	alice := sshd.NewTestKey(t, dir, "alice")
	cfg := fmt.Sprintf(`master(http_addr = "127.0.0.1:0", worker_addr = "127.0.0.1:0", ssh_addr = "127.0.0.1:0")
worker("w1", "pw")
builder("proj", workers = ["w1"], steps = [shell("true")])
force_scheduler("force", builders = ["proj"])
user("alice", keys = [%q], roles = ["admin"])
`, alice.Pub)
	basedir := filepath.Join(dir, "master")
	os.MkdirAll(basedir, 0o755)
	if err := os.WriteFile(filepath.Join(basedir, "master.star"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startMaster(t, basedir)
	c := sshd.NewTestClient(t, f.m.SSHAddr())
	c.Strict = "accept-new"
	if out, errOut, code := c.Run("alice", alice, "", "whoami"); code != 0 || !strings.Contains(out, "user: alice") {
		t.Fatalf("first login: %d %q %q", code, out, errOut)
	}
	if fi, err := os.Stat(filepath.Join(basedir, sshd.HostKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key file: %v %v", fi, err)
	}

	// No worker: the build waits in the queue, and so does the session.
	waiting := startBG(t, c.Command("alice", alice, "force", "proj", "--wait"))
	waiting.waitLine(t, "is queued: no worker connected for builder proj")
	if err := f.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	code, _ := waiting.wait(t)
	if code != sshd.ExitError || !strings.Contains(waiting.stderr(), "the master is stopping") {
		t.Errorf("the waiting session: exit %d, stderr %q", code, waiting.stderr())
	}

	f = startMaster(t, basedir)
	c2 := sshd.NewTestClient(t, f.m.SSHAddr())
	c2.KnownHosts, c2.Strict = c.KnownHosts, "yes"
	if out, errOut, code := c2.Run("alice", alice, "", "whoami"); code != 0 || !strings.Contains(out, "user: alice") {
		t.Fatalf("after the restart, with StrictHostKeyChecking=yes: %d %q %q", code, out, errOut)
	}

	// The check can fail: another master's key is refused.
	other := filepath.Join(dir, "other")
	os.MkdirAll(other, 0o755)
	os.WriteFile(filepath.Join(other, "master.star"), []byte(cfg), 0o644)
	g := startMaster(t, other)
	c3 := sshd.NewTestClient(t, g.m.SSHAddr())
	c3.KnownHosts, c3.Strict = c.KnownHosts, "yes"
	if _, errOut, code := c3.Run("alice", alice, "", "whoami"); code != 255 || !strings.Contains(errOut, "HOST IDENTIFICATION HAS CHANGED") {
		t.Errorf("another master's key: exit %d, stderr %q", code, errOut)
	}
}
