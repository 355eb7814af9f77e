package latent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/latent"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeWorker writes a script that stands in for starforge-worker: it
// records its arguments and runs until killed.
func fakeWorker(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake-worker")
	script := "#!/bin/sh\necho \"$@\" > args\necho \"$STARFORGE_INSTANCE\" > instance\nsleep 300 & wait\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func inst(name string) latent.Instance {
	return latent.Instance{Name: name, WorkerName: "vm", Password: "s3cret", MasterAddr: "127.0.0.1:1"}
}

// waitFile waits for a file the child writes.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written", path)
		}
		time.Sleep(5 * time.Millisecond) // a file written by another process: nothing to await
	}
}

func pidOf(t *testing.T, dir string) int {
	t.Helper()
	pid, err := strconv.Atoi(waitFile(t, filepath.Join(dir, "pid")))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestProcessStartStop(t *testing.T) {
	root := t.TempDir()
	p := NewProcess(fakeWorker(t), root, quiet)
	ctx := context.Background()
	if err := p.Start(ctx, inst("vm-0000000001")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "vm-0000000001")
	args := waitFile(t, filepath.Join(dir, "args"))
	want := "--master 127.0.0.1:1 --name vm --password-file " + filepath.Join(dir, "password") + " --basedir " + filepath.Join(dir, "basedir")
	if args != want {
		t.Errorf("worker args = %q, want %q", args, want)
	}
	if got := waitFile(t, filepath.Join(dir, "instance")); got != "vm-0000000001" {
		t.Errorf("STARFORGE_INSTANCE = %q", got)
	}
	if pw, _ := os.ReadFile(filepath.Join(dir, "password")); string(pw) != "s3cret\n" {
		t.Errorf("password file = %q", pw)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("instance dir: %v, %v", fi, err)
	}
	pid := pidOf(t, dir)
	if err := p.Check(ctx, "vm-0000000001"); err != nil {
		t.Errorf("Check of a running instance: %v", err)
	}
	if names, _ := p.List(ctx, "vm-"); !slices.Equal(names, []string{"vm-0000000001"}) {
		t.Errorf("List = %v", names)
	}
	if err := p.Stop(ctx, "vm-0000000001"); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Error("the worker process still runs after Stop")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the instance's directory is still there: %v", err)
	}
	if err := p.Check(ctx, "vm-0000000001"); !errors.Is(err, latent.ErrGone) {
		t.Errorf("Check after Stop = %v", err)
	}
	if err := p.Stop(ctx, "vm-0000000001"); err != nil {
		t.Errorf("Stop of a stopped instance: %v", err)
	}
	if err := p.Start(ctx, inst("../escape")); err == nil {
		t.Error("Start accepted a name with a path in it")
	}
}

func TestProcessExitIsWatched(t *testing.T) {
	root := t.TempDir()
	p := NewProcess(fakeWorker(t), root, quiet)
	ctx := context.Background()
	if err := p.Start(ctx, inst("vm-0000000002")); err != nil {
		t.Fatal(err)
	}
	pid := pidOf(t, filepath.Join(root, "vm-0000000002"))
	ch := p.Exited("vm-0000000002")
	if ch == nil {
		t.Fatal("no exit channel")
	}
	syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the exit was not noticed")
	}
	if err := p.Check(ctx, "vm-0000000002"); !errors.Is(err, latent.ErrGone) {
		t.Errorf("Check after the process died = %v", err)
	}
	if err := p.Stop(ctx, "vm-0000000002"); err != nil {
		t.Fatal(err)
	}
}

// A master that crashed left a worker running: the next one's driver
// finds it by its directory and stops it through its pid file.
func TestProcessLeftover(t *testing.T) {
	root := t.TempDir()
	worker := fakeWorker(t)
	ctx := context.Background()
	if err := NewProcess(worker, root, quiet).Start(ctx, inst("vm-0000000003")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "vm-0000000003")
	pid := pidOf(t, dir)
	waitFile(t, filepath.Join(dir, "args")) // it runs the worker, not the shell that starts it

	next := NewProcess(worker, root, quiet)
	names, err := next.List(ctx, "vm-")
	if err != nil || !slices.Equal(names, []string{"vm-0000000003"}) {
		t.Fatalf("List = %v, %v", names, err)
	}
	if err := next.Check(ctx, "vm-0000000003"); err != nil {
		t.Errorf("Check of the leftover = %v", err)
	}
	if err := next.Stop(ctx, "vm-0000000003"); err != nil {
		t.Fatal(err)
	}
	for i := 0; alive(pid) && i < 500; i++ {
		time.Sleep(10 * time.Millisecond) // not our child: reaped by the test's process, polled
	}
	if cl, _ := cmdline(pid); strings.Contains(cl, dir) {
		t.Errorf("the leftover worker still runs: %s", cl)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the leftover's directory is still there")
	}
}

// A pid file whose process id now belongs to another program is not
// acted on.
func TestProcessLeftoverPidReused(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "vm-0000000004")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := NewProcess("/nonexistent", root, quiet)
	if err := p.Check(context.Background(), "vm-0000000004"); !errors.Is(err, latent.ErrGone) {
		t.Errorf("Check = %v", err)
	}
	if err := p.Stop(context.Background(), "vm-0000000004"); err != nil { // must not kill the test
		t.Fatal(err)
	}
}

func TestCommandDriver(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	c := NewCommand(
		&config.ShellAction{Script: `echo "start $STARFORGE_INSTANCE $STARFORGE_WORKER_NAME $STARFORGE_MASTER $STARFORGE_PASSWORD $STARFORGE_WORKER_PASSWORD $(pwd)" >> log; sleep 300 &`},
		&config.ShellAction{Argv: []string{"sh", "-c", `echo "stop $STARFORGE_INSTANCE $STARFORGE_PASSWORD" >> log`}},
		&config.ShellAction{Script: `test -f "$STARFORGE_INSTANCE.up"`},
		dir, "vm", quiet)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx, inst("vm-0000000005")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start waited for the worker it started in the background")
	}
	if err := c.Check(ctx, "vm-0000000005"); !errors.Is(err, latent.ErrGone) {
		t.Errorf("Check with a failing check command = %v", err)
	}
	os.WriteFile(filepath.Join(dir, "vm-0000000005.up"), nil, 0o644)
	if err := c.Check(ctx, "vm-0000000005"); err != nil {
		t.Errorf("Check = %v", err)
	}
	if err := c.Stop(ctx, "vm-0000000005"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(log)
	want := "start vm-0000000005 vm 127.0.0.1:1 s3cret s3cret " + dir + "\nstop vm-0000000005 \n"
	if string(b) != want {
		t.Errorf("log = %q, want %q", b, want)
	}

	bad := NewCommand(&config.ShellAction{Script: "echo cannot reach the cloud >&2; exit 3"}, &config.ShellAction{Script: "true"}, nil, dir, "vm", quiet)
	err := bad.Start(ctx, inst("vm-0000000006"))
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "cannot reach the cloud") {
		t.Errorf("failed start: %v", err)
	}
	if err := bad.Check(ctx, "x"); err != nil {
		t.Errorf("Check without a check command = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	slow := NewCommand(&config.ShellAction{Script: "sleep 300"}, &config.ShellAction{Script: "true"}, nil, dir, "vm", quiet)
	go cancel()
	if err := slow.Start(cctx, inst("vm-0000000007")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled start = %v", err)
	}
}

func TestNewByKind(t *testing.T) {
	w := &config.LatentWorker{Name: "vm", Driver: &config.LatentDriver{Kind: "process", WorkerPath: "/nonexistent/starforge-worker"}}
	if _, err := New(Env{Worker: w, Basedir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "process driver: worker_path") {
		t.Errorf("missing worker binary: %v", err)
	}
	w.Driver = &config.LatentDriver{Kind: "warp"}
	if _, err := New(Env{Worker: w}); err == nil || !strings.Contains(err.Error(), `no latent driver of kind "warp"`) || !strings.Contains(err.Error(), "command, ") {
		t.Errorf("unknown kind: %v", err)
	}
	w.Driver = &config.LatentDriver{Kind: "process", WorkerPath: fakeWorker(t)}
	if d, err := New(Env{Worker: w, Basedir: t.TempDir()}); err != nil {
		t.Errorf("process driver: %v", err)
	} else if _, ok := d.(latent.Lister); !ok {
		t.Error("the process driver is no Lister")
	}
}
