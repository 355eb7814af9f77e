package command

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/worker/proto"
)

func fsTestEnv(t *testing.T) Env {
	return Env{
		Basedir:  t.TempDir(),
		Environ:  map[string]string{"PATH": os.Getenv("PATH"), "HOME": "/nonexistent"},
		Settings: testSettings(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// runFS runs a command to completion and returns its updates.
func runFS(t *testing.T, name string, env Env, args map[string]any) []proto.Update {
	t.Helper()
	cmd, err := New(name, proto.Args(args), env)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	s := newTestSender(t)
	if err := cmd.Run(context.Background(), s); err != nil {
		t.Fatalf("Run: %v%s", err, dumpUpdates(s.updates()))
	}
	return s.updates()
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// makeWritable lets t.TempDir's cleanup remove what a failed test left
// read-only.
func makeWritable(t *testing.T, root string) {
	t.Cleanup(func() { chmodTree(context.Background(), root, func() {}) })
}

func TestRmdir(t *testing.T) {
	t.Parallel()
	env := fsTestEnv(t)
	base := env.Basedir
	tree := filepath.Join(base, "tree")
	writeFile(t, filepath.Join(tree, "a", "file"), "x", 0o644)
	writeFile(t, filepath.Join(tree, "ro", "inner", "f"), "x", 0o444)
	// Symlinks are removed, never followed.
	outside := filepath.Join(base, "outside")
	writeFile(t, filepath.Join(outside, "keep"), "precious", 0o644)
	symlinks := runtime.GOOS != "windows"
	if symlinks {
		if err := os.Symlink(outside, filepath.Join(tree, "dirlink")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(outside, "keep"), filepath.Join(tree, "a", "filelink")); err != nil {
			t.Fatal(err)
		}
	}
	// A read-only directory (and an unreadable one): Buildbot's chmod
	// retry case.
	if err := os.Chmod(filepath.Join(tree, "ro", "inner"), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(tree, "ro"), 0o500); err != nil {
		t.Fatal(err)
	}
	makeWritable(t, tree)
	missing := filepath.Join(base, "never-was")

	us := runFS(t, "rmdir", env, map[string]any{"paths": []any{tree, missing}, "logEnviron": false, "timeout": 120, "maxTime": nil})
	if _, err := os.Lstat(tree); !os.IsNotExist(err) {
		t.Errorf("tree still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(b) != "precious" {
		t.Errorf("symlink target damaged: %q, %v", b, err)
	}
	if got := rcOf(t, us); got != 0 {
		t.Errorf("rc = %d%s", got, dumpUpdates(us))
	}
	// As in the trace (c11): one header per path, then rc and elapsed.
	h := textOf(us, "header")
	want := "rm -rf " + tree + "\n in dir " + base + " (timeout 120 secs)\n watching logfiles {}\n argv: [b'rm', b'-rf', b'" + tree + "']\n using PTY: False\nelapsedTime="
	if !strings.HasPrefix(h, want) {
		t.Errorf("header\n got %q\nwant prefix %q", h, want)
	}
	if !strings.Contains(h, "\nrm -rf "+missing+"\n") {
		t.Errorf("no header for the second path: %q", h)
	}
	if ks := keysOf(us); ks[len(ks)-2] != "rc" || ks[len(ks)-1] != "elapsed" {
		t.Errorf("keys %v", ks)
	}
}

// TestRmdirChmodRetry exercises the retry directly; as root nothing is
// read-only, so it only means something for other users.
func TestRmdirChmodRetry(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() == 0 {
		t.Skip("needs a user whom permissions stop")
	}
	t.Parallel()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	writeFile(t, filepath.Join(tree, "locked", "f"), "x", 0o644)
	if err := os.Chmod(filepath.Join(tree, "locked"), 0o500); err != nil {
		t.Fatal(err)
	}
	makeWritable(t, tree)
	if errs := removeTree(context.Background(), tree, func() {}); len(errs) == 0 {
		t.Fatal("removing below a read-only directory succeeded without chmod")
	}
	chmodTree(context.Background(), tree, func() {})
	if errs := removeTree(context.Background(), tree, func() {}); len(errs) != 0 {
		t.Fatalf("after chmod: %v", errs)
	}
}

func TestRmdirFailure(t *testing.T) {
	t.Parallel()
	env := fsTestEnv(t)
	file := filepath.Join(env.Basedir, "file")
	writeFile(t, file, "x", 0o644)
	bad := filepath.Join(file, "sub") // below a file: cannot be removed (nor exists)
	if runtime.GOOS == "windows" {
		t.Skip("ENOTDIR semantics")
	}
	us := runFS(t, "rmdir", env, map[string]any{"paths": []any{bad}, "logEnviron": false})
	if got := rcOf(t, us); got != 1 {
		t.Errorf("rc = %d%s", got, dumpUpdates(us))
	}
	if got := textOf(us, "stderr"); !strings.HasPrefix(got, "rm: cannot remove '"+bad+"': ") {
		t.Errorf("stderr %q", got)
	}
}

func TestRmdirInterruptedBeforeStart(t *testing.T) {
	t.Parallel()
	env := fsTestEnv(t)
	tree := filepath.Join(env.Basedir, "tree")
	writeFile(t, filepath.Join(tree, "f"), "x", 0o644)
	cmd, err := New("rmdir", proto.Args{"paths": []any{tree}}, env)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Interrupt("stop")
	s := newTestSender(t)
	if err := cmd.Run(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if got := rcOf(t, s.updates()); got != -1 {
		t.Errorf("rc = %d", got)
	}
	if _, err := os.Stat(tree); err != nil {
		t.Errorf("interrupted rmdir removed the tree: %v", err)
	}
}

func TestRmdirArgs(t *testing.T) {
	env := fsTestEnv(t)
	for _, args := range []proto.Args{
		{},
		{"paths": []any{}},
		{"paths": []any{5}},
		{"paths": []any{"/x"}, "timeout": "long"},
	} {
		if _, err := New("rmdir", args, env); err == nil {
			t.Errorf("New accepted %v", args)
		}
	}
	// PB-style: a single string and relative paths.
	c, err := New("rmdir", proto.Args{"paths": "rel"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.(*rmdirCommand).paths; len(got) != 1 || got[0] != filepath.Join(env.Basedir, "rel") {
		t.Errorf("paths %v", got)
	}
	if l := c.(*rmdirCommand).limits; l.timeout != 120 || l.maxTime != 0 {
		t.Errorf("default limits %+v", l)
	}
}

// TestNativeRunLimits drives the timeout logic of rmdir and cpdir with
// work that is stopped only by its context.
func TestNativeRunLimits(t *testing.T) {
	t.Parallel()
	blockUntilStopped := func(ctx context.Context, touch func()) { <-ctx.Done() }
	tests := []struct {
		name, reason, header string
		limits               nativeLimits
		interrupt            bool
	}{
		{"timeout", "timeout_without_output", "\ncommand timed out: 0.05 seconds without output running [b'rm'], attempting to kill\n",
			nativeLimits{timeout: 0.05, timeoutText: "0.05"}, false},
		{"maxTime", "timeout", "\ncommand timed out: 0.05 seconds elapsed running [b'rm'], attempting to kill\n",
			nativeLimits{timeout: 60, timeoutText: "60", maxTime: 0.05, maxTimeText: "0.05"}, false},
		{"interrupt", "", "\ncommand interrupted, attempting to kill\n", nativeLimits{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newTestSender(t)
			out, err := NewOutput(s, DefaultSettings(), nil)
			if err != nil {
				t.Fatal(err)
			}
			intr := newInterruptFlag()
			if tt.interrupt {
				intr.Interrupt("test")
			}
			run := nativeRun{out: out, limits: tt.limits, argvRepr: "[b'rm']", intr: intr, logger: slog.Default()}
			if !run.do(context.Background(), blockUntilStopped) {
				t.Fatal("not killed")
			}
			if err := out.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			us := s.updates()
			if got := textOf(us, "header"); got != tt.header {
				t.Errorf("header %q, want %q", got, tt.header)
			}
			if v, _ := valueOf(us, proto.UpdFailureReason); tt.reason != "" && v != tt.reason {
				t.Errorf("failure_reason %v, want %s", v, tt.reason)
			}
		})
	}
	t.Run("progress is not silence", func(t *testing.T) {
		t.Parallel()
		out, err := NewOutput(newTestSender(t), DefaultSettings(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close(context.Background())
		run := nativeRun{out: out, limits: nativeLimits{timeout: 0.1, timeoutText: "0.1"}, intr: newInterruptFlag(), logger: slog.Default()}
		// Busy for three timeouts, touching often: never silent for long.
		killed := run.do(context.Background(), func(ctx context.Context, touch func()) {
			end := time.Now().Add(300 * time.Millisecond)
			for time.Now().Before(end) && ctx.Err() == nil {
				touch()
				time.Sleep(5 * time.Millisecond) // simulated work
			}
		})
		if killed {
			t.Error("killed although it kept making progress")
		}
	})
}
