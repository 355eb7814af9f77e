// Package e2e tests Starforge end to end: the real starforge and
// starforge-worker binaries, real SQLite files, real websockets on
// 127.0.0.1, and (where installed) Debian's buildbot-worker.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
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
)

// binaries built once for the whole package by TestMain.
var bin struct {
	master, worker string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "starforge-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.master = filepath.Join(dir, "starforge")
	bin.worker = filepath.Join(dir, "starforge-worker")
	err = buildBinary(bin.master, "../cmd/starforge", nil)
	if err == nil {
		err = buildBinary(bin.worker, "../../worker/cmd/starforge-worker", []string{"CGO_ENABLED=0"})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildBinary(out, pkg string, env []string) error {
	cmd := exec.Command("go", "build", "-race", "-o", out, pkg)
	if strings.Contains(strings.Join(env, " "), "CGO_ENABLED=0") {
		cmd = exec.Command("go", "build", "-o", out, pkg)
	}
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// lines collects a process's output and lets tests await a line.
type lines struct {
	mu      sync.Mutex
	all     []string
	changed chan struct{}
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) feed(r io.Reader, tee io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if tee != nil {
			fmt.Fprintln(tee, line)
		}
		l.mu.Lock()
		l.all = append(l.all, line)
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	}
}

// wait returns the first line matching re, waiting up to timeout for it.
func (l *lines) wait(t testing.TB, re string, timeout time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for _, s := range l.all {
			if rx.MatchString(s) {
				l.mu.Unlock()
				return s
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("no line matching %q within %s; output so far:\n%s", re, timeout, l.String())
		}
	}
}

// count returns how many lines match re.
func (l *lines) count(re string) int {
	rx := regexp.MustCompile(re)
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.all {
		if rx.MatchString(s) {
			n++
		}
	}
	return n
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

// proc is a running child process with its output captured.
type proc struct {
	cmd  *exec.Cmd
	out  *lines
	done chan struct{}
	err  error
}

func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &proc{cmd: cmd, out: newLines(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var tee io.Writer
	if testing.Verbose() {
		tee = prefixWriter{filepath.Base(name)}
	}
	go p.out.feed(pr, tee)
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

type prefixWriter struct{ prefix string }

func (w prefixWriter) Write(b []byte) (int, error) {
	fmt.Fprintf(os.Stderr, "[%s] %s", w.prefix, b)
	return len(b), nil
}

// stop sends SIGTERM and waits for the process to exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.kill()
		t.Fatalf("%s did not stop within 60s after SIGTERM; output:\n%s", p.cmd.Path, p.out)
	}
}

// kill sends SIGKILL to the process (not its group) and waits.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// master is a running starforge master.
type master struct {
	*proc
	basedir string
	url     string // http://127.0.0.1:PORT/
	workers string // 127.0.0.1:PORT
}

// startMaster writes cfg (a master.star body without a master() call) and
// starts a master on free ports in basedir.
func startMaster(t *testing.T, basedir, cfg string) *master {
	t.Helper()
	if err := os.MkdirAll(basedir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(basedir, "master.star")
	if _, err := os.Stat(path); os.IsNotExist(err) {
		body := `master(title="e2e", http_addr="127.0.0.1:0", worker_addr="127.0.0.1:0")` + "\n" + cfg
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := start(t, bin.master, nil, "master", "--basedir", basedir)
	line := p.out.wait(t, `Starforge master running: web UI at`, 30*time.Second)
	m := regexp.MustCompile(`web UI at (http://\S+/) , workers connect to (\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("cannot parse %q", line)
	}
	return &master{proc: p, basedir: basedir, url: m[1], workers: m[2]}
}

// startWorker starts a starforge-worker and waits until the master
// attached it.
func (m *master) startWorker(t *testing.T, name, password, basedir string, env ...string) *proc {
	t.Helper()
	before := m.out.count(`worker attached.*worker=` + regexp.QuoteMeta(name) + `\b`)
	w := start(t, bin.worker, env, "--master", m.workers, "--name", name, "--password", password, "--basedir", basedir)
	m.waitAttached(t, name, before+1)
	return w
}

// waitAttached waits until the master logged n attachments of name.
func (m *master) waitAttached(t *testing.T, name string, n int) {
	t.Helper()
	re := `worker attached.*worker=` + regexp.QuoteMeta(name) + `\b`
	deadline := time.Now().Add(30 * time.Second)
	for m.out.count(re) < n {
		if time.Now().After(deadline) {
			t.Fatalf("worker %s not attached %d times within 30s; master output:\n%s", name, n, m.out)
		}
		m.out.wait(t, re, time.Until(deadline))
		if m.out.count(re) < n {
			// Wait for the next line of any kind before counting again.
			m.out.mu.Lock()
			ch := m.out.changed
			m.out.mu.Unlock()
			select {
			case <-ch:
			case <-time.After(time.Until(deadline)):
			}
		}
	}
}

// cli runs the starforge binary with args and returns its output and exit code.
func cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, code := cliNoFatal(args...)
	if code < 0 {
		t.Fatalf("run starforge %v: %s", args, out)
	}
	return out, code
}

// cliNoFatal is cli for goroutines other than the test's: a failure to
// run the binary at all is reported as code -1 with the error as output.
func cliNoFatal(args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.master, args...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		return err.Error(), -1
	}
	return string(out), 0
}

// force runs `starforge force --wait` and returns its output and exit code.
func (m *master) force(t *testing.T, builder string, args ...string) (string, int) {
	t.Helper()
	return cli(t, append([]string{"force", "--master", m.url, "--wait", builder}, args...)...)
}

// getJSON fetches an API path into v.
func (m *master) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	b := m.getText(t, path)
	if err := json.Unmarshal([]byte(b), v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

// getText fetches a path as text; anything but 200 fails the test.
func (m *master) getText(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(m.url + strings.TrimPrefix(path, "/"))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b)
}

type build struct {
	ID          int64  `json:"buildid"`
	Number      int    `json:"number"`
	Complete    bool   `json:"complete"`
	Results     *int   `json:"results"`
	StateString string `json:"state_string"`
	WorkerName  string `json:"worker_name"`
}

type step struct {
	ID          int64  `json:"stepid"`
	Name        string `json:"name"`
	Results     *int   `json:"results"`
	StateString string `json:"state_string"`
}

type logInfo struct {
	ID       int64  `json:"logid"`
	Name     string `json:"name"`
	NumLines int    `json:"num_lines"`
}

// builds returns a builder's builds, newest first.
func (m *master) builds(t *testing.T, builder string) []build {
	var r struct {
		Builds []build `json:"builds"`
	}
	m.getJSON(t, "api/v2/builders/"+builder+"/builds", &r)
	return r.Builds
}

func (m *master) steps(t *testing.T, buildID int64) []step {
	var r struct {
		Steps []step `json:"steps"`
	}
	m.getJSON(t, fmt.Sprintf("api/v2/builds/%d/steps", buildID), &r)
	return r.Steps
}

// stepLog returns a step's stdio log as raw text (stream prefixes removed).
func (m *master) stepLog(t *testing.T, stepID int64) string {
	var r struct {
		Logs []logInfo `json:"logs"`
	}
	m.getJSON(t, fmt.Sprintf("api/v2/steps/%d/logs", stepID), &r)
	for _, l := range r.Logs {
		if l.Name == "stdio" {
			return m.getText(t, fmt.Sprintf("api/v2/logs/%d/raw", l.ID))
		}
	}
	t.Fatalf("step %d has no stdio log", stepID)
	return ""
}

func resultOf(r *int) int {
	if r == nil {
		return -1
	}
	return *r
}

// post sends a JSON body and returns the HTTP status.
func (m *master) post(t *testing.T, path, body string) int {
	t.Helper()
	resp, err := http.Post(m.url+strings.TrimPrefix(path, "/"), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
