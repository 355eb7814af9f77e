package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/worker/proto"
)

const waitTimeout = 30 * time.Second

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// workerBinary builds starforge-worker once, as the release does: with
// CGO_ENABLED=0.
func workerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "starforge-worker-test-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "starforge-worker")
		if runtime.GOOS == "windows" {
			binPath += ".exe"
		}
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// cleanEnv is an environment without STARFORGE_ settings, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STARFORGE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func TestBinaryMissingFlagIsAUsageError(t *testing.T) {
	bin := workerBinary(t)
	cmd := exec.Command(bin, "--master", "127.0.0.1:1", "--password", "pw", "--basedir", t.TempDir())
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "missing --name (or STARFORGE_WORKER_NAME)") {
		t.Fatalf("stderr does not name the flag:\n%s", stderr.String())
	}
}

func TestUsage(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("secret\n"), 0o600)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"nothing", nil, nil, 2, "missing --master (or STARFORGE_MASTER)"},
		{"no name", []string{"--master", "h:1"}, nil, 2, "missing --name (or STARFORGE_WORKER_NAME)"},
		{"no password", []string{"--master", "h:1", "--name", "w"}, nil, 2, "missing --password (or --password-file, or STARFORGE_WORKER_PASSWORD)"},
		{"no basedir", []string{"--master", "h:1", "--name", "w", "--password-file", pwFile}, nil, 2, "missing --basedir (or STARFORGE_WORKER_BASEDIR)"},
		{"env but no basedir", nil, map[string]string{"STARFORGE_MASTER": "h:1", "STARFORGE_WORKER_NAME": "w", "STARFORGE_WORKER_PASSWORD": "p"}, 2, "missing --basedir"},
		{"both passwords", []string{"--password", "p", "--password-file", pwFile}, nil, 2, "mutually exclusive"},
		{"unreadable password file", []string{"--password-file", filepath.Join(t.TempDir(), "none")}, nil, 2, "--password-file"},
		{"bad log level", []string{"--master", "h:1", "--name", "w", "--password", "p", "--basedir", t.TempDir(), "--log-level", "loud"}, nil, 2, "--log-level"},
		{"unknown flag", []string{"--bogus"}, nil, 2, "flag provided but not defined: -bogus"},
		{"argument", []string{"extra"}, nil, 2, `unexpected argument "extra"`},
		{"version", []string{"--version"}, nil, 0, "starforge-worker dev"},
		{"help", []string{"--help"}, nil, 0, "Usage: starforge-worker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(tt.args, &out, &out, func(k string) string { return tt.env[k] })
			if code != tt.code || !strings.Contains(out.String(), tt.want) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out.String(), tt.code, tt.want)
			}
		})
	}
}

func TestReadPasswordFile(t *testing.T) {
	for content, want := range map[string]string{"secret\n": "secret", "secret\r\nmore\n": "secret", "secret": "secret", "": ""} {
		p := filepath.Join(t.TempDir(), "pw")
		os.WriteFile(p, []byte(content), 0o600)
		if got, err := readPasswordFile(p); err != nil || got != want {
			t.Errorf("readPasswordFile(%q) = %q, %v; want %q", content, got, err, want)
		}
	}
}

func TestPrepareBasedir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "worker")
	got, err := prepareBasedir(dir)
	if err != nil || got != dir {
		t.Fatalf("prepareBasedir = %q, %v", got, err)
	}
	for name, content := range defaultInfo {
		if b, err := os.ReadFile(filepath.Join(dir, "info", name)); err != nil || string(b) != content {
			t.Errorf("info/%s = %q, %v", name, b, err)
		}
	}
	// An existing info directory is the admin's: left as it is.
	os.Remove(filepath.Join(dir, "info", "host"))
	if _, err := prepareBasedir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "info", "host")); err == nil {
		t.Error("info/host recreated in an existing info directory")
	}
}

// miniMaster accepts workers named w1 with password pw1.
type miniMaster struct {
	srv   *httptest.Server
	conns chan *proto.Conn
}

func newMiniMaster(t *testing.T) *miniMaster {
	m := &miniMaster{conns: make(chan *proto.Conn, 4)}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "w1" || p != "pw1" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := proto.NewConn(ws, proto.HandlerFunc(func(string, proto.Message) (any, error) { return nil, nil }),
			proto.Options{Logger: slog.New(slog.DiscardHandler)})
		m.conns <- c
		c.Serve()
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *miniMaster) accept(t *testing.T) *proto.Conn {
	t.Helper()
	select {
	case c := <-m.conns:
		t.Cleanup(func() { c.Close(nil) })
		return c
	case <-time.After(waitTimeout):
		t.Fatal("the worker did not connect")
		return nil
	}
}

// startBinary starts the worker binary against m; the password comes from
// the environment, and a wrong name in the environment is overridden by
// the --name flag.
func startBinary(t *testing.T, m *miniMaster, basedir string) (*exec.Cmd, *testenv.Buffer) {
	cmd := exec.Command(workerBinary(t), "--master", strings.TrimPrefix(m.srv.URL, "http://"), "--name", "w1", "--basedir", basedir, "--log-level", "debug")
	cmd.Env = cleanEnv("STARFORGE_WORKER_PASSWORD=pw1", "STARFORGE_WORKER_NAME=wrong")
	logs := &testenv.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, logs
}

// waitExit waits for the worker process and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, logs *testenv.Buffer) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(waitTimeout):
		t.Fatalf("the worker did not exit; logs:\n%s", logs)
		return -1
	}
}

func TestBinaryServesAndStops(t *testing.T) {
	m := newMiniMaster(t)
	basedir := filepath.Join(t.TempDir(), "worker")
	cmd, logs := startBinary(t, m, basedir)
	c := m.accept(t)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	res, err := c.Call(ctx, proto.OpGetWorkerInfo, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := res.(map[string]any)
	if info["basedir"] != basedir || info["admin"] != defaultInfo["admin"] || info["version"] != "starforge-worker dev" {
		t.Errorf("info: basedir %v admin %v version %v", info["basedir"], info["admin"], info["version"])
	}
	if _, err := c.Call(ctx, proto.OpShutdown, nil); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if code := waitExit(t, cmd, logs); code != 0 {
		t.Fatalf("exit %d after shutdown; logs:\n%s", code, logs)
	}

	if runtime.GOOS == "windows" {
		return // no SIGTERM to send
	}
	cmd, logs = startBinary(t, m, basedir)
	m.accept(t)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, logs); code != 0 {
		t.Fatalf("exit %d after SIGTERM; logs:\n%s", code, logs)
	}
	if !strings.Contains(logs.String(), "starforge-worker stopped") {
		t.Errorf("logs:\n%s", logs)
	}
}
