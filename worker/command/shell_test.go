//go:build unix

package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starforge/starforge/worker/proto"
)

func init() {
	// Shorter waits keep the suite fast; the logic does not change.
	logfilePollInterval = 20 * time.Millisecond
	stragglerGrace = 200 * time.Millisecond
	killEscalation = time.Second
}

func testEnv(t *testing.T) Env {
	return Env{
		Basedir:  t.TempDir(),
		Environ:  map[string]string{"PATH": os.Getenv("PATH"), "HOME": "/nonexistent", "LC_ALL": "C"},
		Settings: testSettings(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// shellRunner is a shell command running in the background.
type shellRunner struct {
	cmd  Command
	s    *cmdTestSender
	done chan error
}

func startCommand(t *testing.T, ctx context.Context, name string, env Env, args map[string]any) *shellRunner {
	t.Helper()
	cmd, err := New(name, proto.Args(args), env)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	r := &shellRunner{cmd: cmd, s: newTestSender(t), done: make(chan error, 1)}
	go func() { r.done <- cmd.Run(ctx, r.s) }()
	return r
}

// wait waits for Run to return and gives its error and every update.
func (r *shellRunner) wait(t *testing.T) ([]proto.Update, error) {
	t.Helper()
	select {
	case err := <-r.done:
		return r.s.updates(), err
	case <-time.After(20 * time.Second):
		t.Fatalf("command did not finish; got so far:%s", dumpUpdates(r.s.updates()))
		return nil, nil
	}
}

func runCommand(t *testing.T, name string, env Env, args map[string]any) []proto.Update {
	t.Helper()
	us, err := startCommand(t, context.Background(), name, env, args).wait(t)
	if err != nil {
		t.Fatalf("Run: %v%s", err, dumpUpdates(us))
	}
	return us
}

func shellArgs(workdir string, command any, extra ...any) map[string]any {
	args := map[string]any{"workdir": workdir, "command": command}
	for i := 0; i+1 < len(extra); i += 2 {
		args[extra[i].(string)] = extra[i+1]
	}
	return args
}

// checkEnding asserts the closing entries: rc, the elapsedTime header and
// elapsed, after everything else.
func checkEnding(t *testing.T, us []proto.Update, rc int64) {
	t.Helper()
	if got := rcOf(t, us); got != rc {
		t.Errorf("rc = %d, want %d%s", got, rc, dumpUpdates(us))
	}
	n := len(us)
	if n < 3 || us[n-3].Key != proto.UpdRC || us[n-2].Key != proto.UpdHeader || us[n-1].Key != proto.UpdElapsed {
		t.Fatalf("want rc, header, elapsed at the end:%s", dumpUpdates(us))
	}
	if h := us[n-2].Value.(proto.LogChunk).Text; !strings.HasPrefix(h, "elapsedTime=") {
		t.Errorf("last header %q", h)
	}
	if _, ok := us[n-1].Value.(float64); !ok {
		t.Errorf("elapsed is %T", us[n-1].Value)
	}
	if us[0].Key != proto.UpdHeader {
		t.Errorf("first entry is %s, want header", us[0].Key)
	}
}

// processGone reports whether pid has exited. Callers first await an
// event proving the process is exiting (EOF on a pipe or FIFO it held:
// exit closes the files before the process becomes a zombie); finishing
// the exit has no portable notification for a process that is not our
// child, so that last step is given a bounded moment. A zombie counts as
// gone: reaping it is its new parent's business (in a container PID 1 may
// never do it).
func processGone(t *testing.T, pid int) bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if exited(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

func exited(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, fs.ErrNotExist) && runtime.GOOS == "linux"
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && (fields[0] == "Z" || fields[0] == "X")
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestShellTraceHeader checks the header against the captured Buildbot
// exchange (buildbot-msgpack-trace.jsonl, commands c3 and c12).
func TestShellTraceHeader(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	wd := filepath.Join(env.Basedir, "b1", "build")
	script := "echo out1; echo err1 >&2; printf partial; echo; echo out2 > f.txt; exit 3"
	us := runCommand(t, "shell", env, map[string]any{
		"workdir": wd, "command": []any{"sh", "-c", script}, "env": map[string]any{"FOO": "bar"},
		"want_stdout": true, "want_stderr": true, "logfiles": map[string]any{}, "timeout": 30,
		"maxTime": nil, "max_lines": nil, "sigtermTime": nil, "usePTY": false, "logEnviron": false,
		"initial_stdin": nil,
	})
	want := "sh -c '" + script + "'\n in dir " + wd + " (timeout 30 secs)\n watching logfiles {}\n argv: [b'sh', b'-c', b'" + script + "']\n using PTY: False\n"
	if got := us[0].Value.(proto.LogChunk).Text; got != want {
		t.Errorf("header\n got %q\nwant %q", got, want)
	}
	checkEnding(t, us, 3)
	if got := textOf(us, "stdout"); got != "out1\npartial\n" {
		t.Errorf("stdout %q", got)
	}
	if got := textOf(us, "stderr"); got != "err1\n" {
		t.Errorf("stderr %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(wd, "f.txt")); err != nil || string(b) != "out2\n" {
		t.Errorf("f.txt in the (created) workdir: %q, %v", b, err)
	}

	us = runCommand(t, "shell", env, map[string]any{
		"workdir": wd, "command": "echo tick", "env": map[string]any{}, "timeout": 1, "logEnviron": false,
	})
	want = "echo tick\n in dir " + wd + " (timeout 1 sec)\n watching logfiles {}\n argv: b'echo tick'\n using PTY: False\n"
	if got := us[0].Value.(proto.LogChunk).Text; got != want {
		t.Errorf("header\n got %q\nwant %q", got, want)
	}
}

// TestShellInterleaving drives the process step by step (it waits for
// files the test creates once it saw the previous output), so the order of
// stdout and stderr lines is deterministic.
func TestShellInterleaving(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	wd := env.Basedir
	script := `echo out1; while [ ! -e go1 ]; do sleep 0.01; done; echo err1 >&2; while [ ! -e go2 ]; do sleep 0.01; done; echo out2; printf partial`
	r := startCommand(t, context.Background(), "shell", env, shellArgs(wd, script, "logEnviron", false))
	r.s.waitFor(t, "out1", func(us []proto.Update) bool { return textOf(us, "stdout") == "out1\n" })
	touch(t, filepath.Join(wd, "go1"))
	r.s.waitFor(t, "err1", func(us []proto.Update) bool { return textOf(us, "stderr") == "err1\n" })
	touch(t, filepath.Join(wd, "go2"))
	us, err := r.wait(t)
	if err != nil {
		t.Fatal(err)
	}
	checkEnding(t, us, 0)
	var got []string
	for _, u := range us {
		if u.Key == "stdout" || u.Key == "stderr" {
			got = append(got, u.Key+":"+u.Value.(proto.LogChunk).Text)
		}
	}
	want := []string{"stdout:out1\n", "stderr:err1\n", "stdout:out2\npartial\n"}
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Errorf("text entries %q, want %q", got, want)
	}
}

func TestShellExitCodesAndCommandForms(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	tests := []struct {
		command any
		rc      int64
		stdout  string
		display string
	}{
		{"exit 0", 0, "", "exit 0"},
		{"exit 3", 3, "", "exit 3"},
		{[]any{"sh", "-c", "exit 3"}, 3, "", "sh -c 'exit 3'"},
		{[]any{"printf", "%s|", "a b", "c", ""}, 0, "a b|c||\n", `printf '%s|' 'a b' c ""`},
		{"printf '%s|' 'a b' c", 0, "a b|c|\n", "printf '%s|' 'a b' c"},
		{"kill -TERM $$", -1, "", "kill -TERM $$"}, // died of a signal nobody sent
	}
	for _, tt := range tests {
		us := runCommand(t, "shell", env, shellArgs(env.Basedir, tt.command, "logEnviron", false))
		checkEnding(t, us, tt.rc)
		if got := textOf(us, "stdout"); got != tt.stdout {
			t.Errorf("%v: stdout %q, want %q", tt.command, got, tt.stdout)
		}
		if h := us[0].Value.(proto.LogChunk).Text; !strings.HasPrefix(h, tt.display+"\n") {
			t.Errorf("%v: header %q", tt.command, h)
		}
	}
}

func TestShellEnvironment(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	env.Environ["UNSETME"] = "1"
	env.Environ["HOME_X"] = "/h"
	env.Environ["PYTHONPATH"] = "/w"
	script := `printf '%s|' "$FOO" "${UNSETME-unset}" "$EXP" "$PL" "$PYTHONPATH" "$PWD"`
	us := runCommand(t, "shell", env, shellArgs(env.Basedir, script, "env", map[string]any{
		"FOO": "bar", "UNSETME": nil, "EXP": "${HOME_X}/x${NOPE}", "PL": []any{"a", "b"}, "PYTHONPATH": "/p",
	}))
	checkEnding(t, us, 0)
	want := "bar|unset|/h/x|a:b|/p:/w|" + env.Basedir + "|\n"
	if got := textOf(us, "stdout"); got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	h := us[0].Value.(proto.LogChunk).Text
	if !strings.Contains(h, " environment:\n") || !strings.Contains(h, "\n  FOO=bar\n") || strings.Contains(h, "  UNSETME=") {
		t.Errorf("logEnviron header:\n%s", h)
	}

	// Without a worker PYTHONPATH nothing (no empty entry) is appended.
	delete(env.Environ, "PYTHONPATH")
	us = runCommand(t, "shell", env, shellArgs(env.Basedir, `printf %s "$PYTHONPATH"`, "env", map[string]any{"PYTHONPATH": "/p"}))
	if got := textOf(us, "stdout"); got != "/p\n" {
		t.Errorf("PYTHONPATH %q", got)
	}
}

// TestShellChildPath: a list command is looked up in the child's PATH, as
// execvp in Buildbot's worker does, not in the worker's.
func TestShellChildPath(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	bin := filepath.Join(env.Basedir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "hello-tool"), []byte("#!/bin/sh\necho hi from tool\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	us := runCommand(t, "shell", env, shellArgs(env.Basedir, []any{"hello-tool"}, "env", map[string]any{"PATH": []any{bin, "/bin", "/usr/bin"}}))
	checkEnding(t, us, 0)
	if got := textOf(us, "stdout"); got != "hi from tool\n" {
		t.Errorf("stdout %q", got)
	}
	us = runCommand(t, "shell", env, shellArgs(env.Basedir, []any{"definitely-not-a-program-xyz"}))
	checkEnding(t, us, -1)
	if got := textOf(us, "stderr"); !strings.Contains(got, "error starting process") || !strings.Contains(got, "not found") {
		t.Errorf("stderr %q", got)
	}
}

func TestShellWorkdir(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	wd := filepath.Join(env.Basedir, "a", "b", "c")
	us := runCommand(t, "shell", env, shellArgs(wd, "pwd"))
	checkEnding(t, us, 0)
	if got := textOf(us, "stdout"); got != wd+"\n" {
		t.Errorf("pwd %q, want %q", got, wd)
	}
	// A PB-style relative workdir is relative to the worker's basedir.
	us = runCommand(t, "shell", env, shellArgs("rel/dir", "pwd"))
	if got, want := textOf(us, "stdout"), filepath.Join(env.Basedir, "rel", "dir")+"\n"; got != want {
		t.Errorf("pwd %q, want %q", got, want)
	}
	// A workdir that cannot be created fails the command with rc, not
	// with an exception.
	blocker := filepath.Join(env.Basedir, "file")
	touch(t, blocker)
	us = runCommand(t, "shell", env, shellArgs(filepath.Join(blocker, "sub"), "true"))
	checkEnding(t, us, -1)
	if got := textOf(us, "header"); !strings.Contains(got, "cannot be created") {
		t.Errorf("header %q", got)
	}
}

func TestShellStdin(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	us := runCommand(t, "shell", env, shellArgs(env.Basedir, []any{"cat"}, "initial_stdin", "hello\nworld"))
	checkEnding(t, us, 0)
	if got := textOf(us, "stdout"); got != "hello\nworld\n" {
		t.Errorf("stdout %q", got)
	}
	if h := textOf(us, "header"); !strings.Contains(h, " writing 11 bytes to stdin\n") {
		t.Errorf("header %q", h)
	}
	// Without initial_stdin, stdin is empty: cat ends at once.
	us = runCommand(t, "shell", env, shellArgs(env.Basedir, []any{"cat"}))
	checkEnding(t, us, 0)
	// A process that never reads a large stdin does not hang the command.
	us = runCommand(t, "shell", env, shellArgs(env.Basedir, "exit 0", "initial_stdin", strings.Repeat("x", 1<<20)))
	checkEnding(t, us, 0)
}

func TestShellPartialAndLongLines(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	us := runCommand(t, "shell", env, shellArgs(env.Basedir, "printf abc; printf err >&2"))
	checkEnding(t, us, 0)
	if textOf(us, "stdout") != "abc\n" || textOf(us, "stderr") != "err\n" {
		t.Errorf("partial lines:%s", dumpUpdates(us))
	}

	us = runCommand(t, "shell", env, shellArgs(env.Basedir, `head -c 10000 /dev/zero | tr '\0' x; echo; echo next`))
	checkEnding(t, us, 0)
	lines := strings.Split(strings.TrimSuffix(textOf(us, "stdout"), "\n"), "\n")
	var lens []int
	for _, l := range lines {
		lens = append(lens, len(l))
	}
	if fmt.Sprint(lens) != "[4096 4096 1808 4]" || strings.Join(lines[:3], "") != strings.Repeat("x", 10000) {
		t.Errorf("line lengths %v", lens)
	}
}

// TestShellTimeoutKillsTree: a command silent for longer than timeout is
// killed with its whole process group, grandchildren included.
func TestShellTimeoutKillsTree(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	script := "sleep 1000 & echo $! > gc.pid; echo started; sleep 1000"
	us := runCommand(t, "shell", env, shellArgs(env.Basedir, script, "timeout", 0.5, "logEnviron", false))
	checkEnding(t, us, -1)
	if textOf(us, "stdout") != "started\n" {
		t.Errorf("stdout %q", textOf(us, "stdout"))
	}
	if v, _ := valueOf(us, proto.UpdFailureReason); v != "timeout_without_output" {
		t.Errorf("failure_reason %v", v)
	}
	want := "\ncommand timed out: 0.5 seconds without output running b'" + script + "', attempting to kill\nprocess killed by signal 9\n"
	if h := textOf(us, "header"); !strings.Contains(h, want) {
		t.Errorf("header %q lacks %q", h, want)
	}
	if h := textOf(us, "header"); !strings.Contains(h, " (timeout 0.5 secs)\n") {
		t.Errorf("header %q", h)
	}
	if pid := readPid(t, filepath.Join(env.Basedir, "gc.pid")); !processGone(t, pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("grandchild %d survived the timeout", pid)
	}
}

func TestShellMaxTime(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	// Output keeps coming, so only maxTime can stop it.
	us := runCommand(t, "shell", env, shellArgs(env.Basedir, "while :; do echo tick; sleep 0.05; done", "maxTime", 0.3, "timeout", 10))
	checkEnding(t, us, -1)
	if v, _ := valueOf(us, proto.UpdFailureReason); v != "timeout" {
		t.Errorf("failure_reason %v", v)
	}
	h := textOf(us, "header")
	if !strings.Contains(h, "\ncommand timed out: 0.3 seconds elapsed running b'while") || !strings.Contains(h, " (timeout 10 secs) (maxTime 0.3 secs)\n") {
		t.Errorf("header %q", h)
	}
}

func TestShellInterrupt(t *testing.T) {
	t.Parallel()
	t.Run("sigterm", func(t *testing.T) {
		// As in the trace (c13): TERM ends sleep within sigtermTime.
		t.Parallel()
		env := testEnv(t)
		r := startCommand(t, context.Background(), "shell", env, shellArgs(env.Basedir, []any{"sh", "-c", "echo ready; exec sleep 1000"}, "sigtermTime", 1))
		r.s.waitFor(t, "ready", func(us []proto.Update) bool { return textOf(us, "stdout") == "ready\n" })
		r.cmd.Interrupt("test interrupt")
		us, err := r.wait(t)
		if err != nil {
			t.Fatal(err)
		}
		checkEnding(t, us, -1)
		if h := textOf(us, "header"); !strings.Contains(h, "\ncommand interrupted, attempting to kill\nprocess killed by signal 15\n") {
			t.Errorf("header %q", h)
		}
		if _, ok := valueOf(us, proto.UpdFailureReason); ok {
			t.Error("an interrupt has no failure_reason")
		}
		r.cmd.Interrupt("again, after Run") // harmless
	})
	t.Run("trapped TERM then KILL", func(t *testing.T) {
		t.Parallel()
		env := testEnv(t)
		script := "trap 'echo got TERM' TERM; echo ready; while :; do sleep 0.05; done"
		r := startCommand(t, context.Background(), "shell", env, shellArgs(env.Basedir, script, "sigtermTime", 0.3))
		r.s.waitFor(t, "ready", func(us []proto.Update) bool { return textOf(us, "stdout") == "ready\n" })
		start := time.Now()
		r.cmd.Interrupt("stop")
		r.cmd.Interrupt("stop twice")
		us, err := r.wait(t)
		if err != nil {
			t.Fatal(err)
		}
		checkEnding(t, us, -1)
		if !strings.Contains(textOf(us, "stdout"), "got TERM\n") {
			t.Errorf("the process did not see TERM:%s", dumpUpdates(us))
		}
		if h := textOf(us, "header"); !strings.Contains(h, "process killed by signal 9\n") {
			t.Errorf("header %q", h)
		}
		if el := time.Since(start); el < 300*time.Millisecond {
			t.Errorf("KILL came after %v, before sigtermTime", el)
		}
	})
	t.Run("ignored interruptSignal escalates", func(t *testing.T) {
		t.Parallel()
		env := testEnv(t)
		script := "trap '' INT; echo ready; while :; do sleep 0.05; done"
		r := startCommand(t, context.Background(), "shell", env, shellArgs(env.Basedir, script, "interruptSignal", "INT"))
		r.s.waitFor(t, "ready", func(us []proto.Update) bool { return textOf(us, "stdout") == "ready\n" })
		r.cmd.Interrupt("stop")
		us, err := r.wait(t)
		if err != nil {
			t.Fatal(err)
		}
		checkEnding(t, us, -1)
		if h := textOf(us, "header"); !strings.Contains(h, "process killed by signal 9\n") {
			t.Errorf("header %q", h)
		}
	})
	t.Run("before start", func(t *testing.T) {
		t.Parallel()
		env := testEnv(t)
		cmd, err := New("shell", proto.Args(shellArgs(env.Basedir, "touch ran")), env)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Interrupt("too early")
		s := newTestSender(t)
		if err := cmd.Run(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		checkEnding(t, s.updates(), -1)
		if _, err := os.Stat(filepath.Join(env.Basedir, "ran")); err == nil {
			t.Error("an interrupted command started anyway")
		}
	})
}

// TestShellContextCancel: losing the connection (or stopping the worker)
// kills the command and its process tree; Buildbot's msgpack worker leaves
// them running.
func TestShellContextCancel(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startCommand(t, ctx, "shell", env, shellArgs(env.Basedir, "sleep 1000 & echo $! > gc.pid; echo ready; wait"))
	r.s.waitFor(t, "ready", func(us []proto.Update) bool { return textOf(us, "stdout") == "ready\n" })
	cancel()
	_, err := r.wait(t)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if pid := readPid(t, filepath.Join(env.Basedir, "gc.pid")); !processGone(t, pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("grandchild %d survived the cancelled command", pid)
	}
}

// TestShellStragglers: what the command leaves behind in its process group
// is killed once it exits, whether or not it holds the output pipes.
func TestShellStragglers(t *testing.T) {
	t.Parallel()
	t.Run("holding stdout", func(t *testing.T) {
		t.Parallel()
		env := testEnv(t)
		us := runCommand(t, "shell", env, shellArgs(env.Basedir, "sleep 1000 & echo $! > gc.pid; echo done"))
		checkEnding(t, us, 0)
		if got := textOf(us, "stdout"); got != "done\n" {
			t.Errorf("stdout %q", got)
		}
		// Run waited for the pipe's EOF: the holder is dead.
		if pid := readPid(t, filepath.Join(env.Basedir, "gc.pid")); !processGone(t, pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("background process %d survived", pid)
		}
	})
	t.Run("detached from the pipes", func(t *testing.T) {
		t.Parallel()
		env := testEnv(t)
		// The background process holds only a FIFO the test reads: EOF on
		// it is the event that every holder has exited.
		fifo := filepath.Join(env.Basedir, "lifeline")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		lifeline, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer lifeline.Close()
		script := "exec 3>lifeline; sleep 1000 >/dev/null 2>&1 & exec 3>&-; echo $! > gc.pid; echo done"
		us := runCommand(t, "shell", env, shellArgs(env.Basedir, script))
		checkEnding(t, us, 0)
		if err := lifeline.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(lifeline); err != nil {
			t.Fatalf("background process still holds its FIFO: %v", err)
		}
		if pid := readPid(t, filepath.Join(env.Basedir, "gc.pid")); !processGone(t, pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("background process %d survived", pid)
		}
	})
}

// TestShellKillDoesNotWaitForMaster: with a master that answers nothing,
// output backs up into the process (flow control), and the timeout still
// kills it on time.
func TestShellKillDoesNotWaitForMaster(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	fifo := filepath.Join(env.Basedir, "lifeline")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	lifeline, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lifeline.Close()
	cmd, err := New("shell", proto.Args(shellArgs(env.Basedir, "exec 3>lifeline; head -c 4000000 /dev/zero; exec sleep 1000", "timeout", 0.3)), env)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSender(t)
	s.gate = make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- cmd.Run(context.Background(), s) }()
	if err := lifeline.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(lifeline); err != nil {
		t.Fatalf("process not killed while the master was stalled: %v", err)
	}
	close(s.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	us := s.updates()
	checkEnding(t, us, -1)
	if v, _ := valueOf(us, proto.UpdFailureReason); v != "timeout_without_output" {
		t.Errorf("failure_reason %v", v)
	}
}

func TestShellLogfiles(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	wd := env.Basedir
	if err := os.WriteFile(filepath.Join(wd, "f.log"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wd, "stale.log"), []byte("from an earlier build\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "echo line1 > my.log; echo new >> f.log; while [ ! -e go ]; do sleep 0.01; done; printf line2 >> my.log"
	r := startCommand(t, context.Background(), "shell", env, shellArgs(wd, script, "logEnviron", false, "timeout", 10, "logfiles", map[string]any{
		"mylog": "my.log",
		"fol":   map[string]any{"filename": "f.log", "follow": true},
		"stale": "stale.log",
	}))
	// Logfiles are tailed while the command runs.
	r.s.waitFor(t, "mylog's first line", func(us []proto.Update) bool { return textOf(us, "log:mylog") == "line1\n" })
	touch(t, filepath.Join(wd, "go"))
	us, err := r.wait(t)
	if err != nil {
		t.Fatal(err)
	}
	checkEnding(t, us, 0)
	if got := textOf(us, "log:mylog"); got != "line1\nline2\n" {
		t.Errorf("mylog %q", got)
	}
	if got := textOf(us, "log:fol"); got != "new\n" {
		t.Errorf("followed log %q, want only what was appended", got)
	}
	if got := textOf(us, "log:stale"); got != "" {
		t.Errorf("unchanged logfile sent: %q", got)
	}
	want := " watching logfiles {'fol': {'filename': 'f.log', 'follow': True}, 'mylog': 'my.log', 'stale': 'stale.log'}\n"
	if h := textOf(us, "header"); !strings.Contains(h, want) {
		t.Errorf("header %q lacks %q", h, want)
	}
}

func TestShellMaxLines(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	script := "i=0; while [ $i -lt 50 ]; do echo line $i; i=$((i+1)); done; sleep 1000"
	us := runCommand(t, "shell", env, shellArgs(env.Basedir, script, "max_lines", 10))
	checkEnding(t, us, -1)
	if v, _ := valueOf(us, proto.UpdFailureReason); v != "max_lines_failure" {
		t.Errorf("failure_reason %v", v)
	}
	if h := textOf(us, "header"); !strings.Contains(h, "\ncommand exceeds max lines: ") || !strings.Contains(h, "/10 written/allowed running b'i=0;") {
		t.Errorf("header %q", h)
	}
	if !strings.HasPrefix(textOf(us, "stdout"), "line 0\nline 1\n") {
		t.Errorf("stdout %q", textOf(us, "stdout"))
	}
}

func TestShellWantStdout(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	us := runCommand(t, "shell", env, shellArgs(env.Basedir, "echo out; echo err >&2", "want_stdout", false))
	checkEnding(t, us, 0)
	if textOf(us, "stdout") != "" || textOf(us, "stderr") != "err\n" {
		t.Errorf("want_stdout=false:%s", dumpUpdates(us))
	}
	us = runCommand(t, "shell", env, shellArgs(env.Basedir, "echo out; echo err >&2", "want_stderr", 0))
	if textOf(us, "stdout") != "out\n" || textOf(us, "stderr") != "" {
		t.Errorf("want_stderr=0:%s", dumpUpdates(us))
	}
}

// TestShellObfuscated: Buildbot's ["obfuscated", real, fake] arguments run
// the real value and show the fake one.
func TestShellObfuscated(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	us := runCommand(t, "shell", env, shellArgs(env.Basedir, []any{"echo", []any{"obfuscated", "SECRET", "XXXX"}}, "logEnviron", false))
	checkEnding(t, us, 0)
	if got := textOf(us, "stdout"); got != "SECRET\n" {
		t.Errorf("stdout %q", got)
	}
	if h := textOf(us, "header"); strings.Contains(h, "SECRET") || !strings.Contains(h, "echo XXXX\n") || !strings.Contains(h, "argv: [b'echo', b'XXXX']") {
		t.Errorf("header %q", h)
	}
}

func TestShellPTYWarning(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	us := runCommand(t, "shell", env, shellArgs(env.Basedir, "true", "usePTY", true, "logEnviron", false))
	if h := textOf(us, "header"); !strings.HasPrefix(h, "WARNING: disabling usePTY for this command\n") || !strings.Contains(h, " using PTY: False\n") {
		t.Errorf("header %q", h)
	}
}

// TestShellSendFailure: when the master goes away the command still ends
// (and reaps its process); Run reports the failure.
func TestShellSendFailure(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	cmd, err := New("shell", proto.Args(shellArgs(env.Basedir, "echo a; echo b")), env)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSender(t)
	s.failAt = 1
	if err := cmd.Run(context.Background(), s); !errors.Is(err, errSendFailed) {
		t.Errorf("Run = %v, want %v", err, errSendFailed)
	}
}

func TestShellBadArgs(t *testing.T) {
	t.Parallel()
	env := testEnv(t)
	for _, args := range []map[string]any{
		{"workdir": env.Basedir},
		{"command": "true"},
		{"workdir": env.Basedir, "command": []any{}},
		{"workdir": env.Basedir, "command": 5},
		{"workdir": env.Basedir, "command": "true", "env": map[string]any{"X": 5}},
		{"workdir": env.Basedir, "command": "true", "env": map[string]any{"X": []any{"a", 1}}},
		{"workdir": env.Basedir, "command": "true", "interruptSignal": "BOGUS"},
		{"workdir": env.Basedir, "command": "true", "logfiles": map[string]any{"x": 5}},
		{"workdir": env.Basedir, "command": "true", "timeout": "soon"},
	} {
		if _, err := New("shell", proto.Args(args), env); err == nil {
			t.Errorf("New accepted %v", args)
		}
	}
}

func TestPyRepr(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{nil, "None"},
		{true, "True"},
		{int64(30), "30"},
		{uint8(1), "1"},
		{1.5, "1.5"},
		{120.0, "120.0"},
		{"it's", `"it's"`},
		{"a'b\"c", `'a\'b"c'`},
		{"tab\there\n", `'tab\there\n'`},
		{"é", "'é'"},
		{[]any{"a", int64(1)}, "['a', 1]"},
		{map[string]any{"b": "x", "a": map[string]any{"follow": false}}, "{'a': {'follow': False}, 'b': 'x'}"},
	}
	for _, tt := range tests {
		if got := pyRepr(tt.in); got != tt.want {
			t.Errorf("pyRepr(%#v) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := pyBytes("é\x01'"); got != `b"\xc3\xa9\x01'"` {
		t.Errorf("pyBytes = %s", got)
	}
	if got := shellQuote([]string{"a", "b c", "it's", "", "x=y,z:/w@%+"}); got != `a 'b c' 'it'"'"'s' "" x=y,z:/w@%+` {
		t.Errorf("shellQuote = %s", got)
	}
}
