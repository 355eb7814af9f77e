package command

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/worker/proto"
)

// makeSourceTree builds a tree with the cases cp -R -P -p cares about and
// returns its root.
func makeSourceTree(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "src")
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	writeFile(t, filepath.Join(src, "f.txt"), "hello\n", 0o640)
	writeFile(t, filepath.Join(src, "exe"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(src, "sub", "g"), "deep\n", 0o600)
	writeFile(t, filepath.Join(src, "ro", "x"), "x", 0o444)
	if runtime.GOOS != "windows" {
		if err := os.Symlink("f.txt", filepath.Join(src, "link")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("sub", filepath.Join(src, "dirlink")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/nonexistent/dangling", filepath.Join(src, "dangling")); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(src, "sub"), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(src, "ro"), 0o555); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"f.txt", "exe", "sub/g", "sub", "ro/x", "ro", "."} {
		if err := os.Chtimes(filepath.Join(src, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	makeWritable(t, dir)
	return src
}

// describeTree lists every entry below root with its type, permissions,
// modification time and content or link target.
func describeTree(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%s %v", filepath.ToSlash(rel), fi.Mode())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.IsDir():
			line += " " + fi.ModTime().UTC().Format(time.RFC3339)
		default:
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %s %q", fi.ModTime().UTC().Format(time.RFC3339), b)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestCpdir(t *testing.T) {
	t.Parallel()
	env := fsTestEnv(t)
	base := env.Basedir
	src := makeSourceTree(t, base)
	dst := filepath.Join(base, "out", "copy") // its parent does not exist yet
	us := runFS(t, "cpdir", env, map[string]any{"from_path": src, "to_path": dst, "logEnviron": false, "timeout": 120, "maxTime": nil})
	if got := rcOf(t, us); got != 0 {
		t.Fatalf("rc = %d%s", got, dumpUpdates(us))
	}
	if got, want := describeTree(t, dst), describeTree(t, src); got != want {
		t.Errorf("copy differs:\n got:\n%s\nwant:\n%s", got, want)
	}
	// As in the trace (c9): header, the cp -v lines, elapsedTime, rc, elapsed.
	h := us[0].Value.(proto.LogChunk).Text
	want := "cp -R -P -p -v " + src + " " + dst + "\n in dir " + base + " (timeout 120 secs)\n watching logfiles {}\n argv: [b'cp', b'-R', b'-P', b'-p', b'-v', b'" + src + "', b'" + dst + "']\n using PTY: False\n"
	if h != want {
		t.Errorf("header\n got %q\nwant %q", h, want)
	}
	out := textOf(us, "stdout")
	for _, line := range []string{
		"'" + src + "' -> '" + dst + "'\n",
		"'" + filepath.Join(src, "f.txt") + "' -> '" + filepath.Join(dst, "f.txt") + "'\n",
		"'" + filepath.Join(src, "sub", "g") + "' -> '" + filepath.Join(dst, "sub", "g") + "'\n",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("stdout lacks %q:\n%s", line, out)
		}
	}
	if !strings.HasPrefix(out, "'"+src+"' -> ") {
		t.Errorf("the top directory is not listed first:\n%s", out)
	}
	ks := keysOf(us)
	if fmt.Sprint(ks[len(ks)-3:]) != "[header rc elapsed]" {
		t.Errorf("keys %v", ks)
	}
}

// TestCpdirIntoExistingDir: like cp -R, copying to an existing directory
// puts the tree inside it.
func TestCpdirIntoExistingDir(t *testing.T) {
	t.Parallel()
	env := fsTestEnv(t)
	src := makeSourceTree(t, env.Basedir)
	dst := filepath.Join(env.Basedir, "existing")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	us := runFS(t, "cpdir", env, map[string]any{"from_path": src, "to_path": dst})
	if got := rcOf(t, us); got != 0 {
		t.Fatalf("rc = %d%s", got, dumpUpdates(us))
	}
	if got, want := describeTree(t, filepath.Join(dst, "src")), describeTree(t, src); got != want {
		t.Errorf("copy differs:\n got:\n%s\nwant:\n%s", got, want)
	}
}

// TestCpdirMatchesCp compares with the system's cp -R -P -p, where there
// is one.
func TestCpdirMatchesCp(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("compares with GNU cp")
	}
	cp, err := exec.LookPath("cp")
	if err != nil {
		t.Skip("no cp")
	}
	t.Parallel()
	env := fsTestEnv(t)
	src := makeSourceTree(t, env.Basedir)
	ours := filepath.Join(env.Basedir, "ours")
	theirs := filepath.Join(env.Basedir, "theirs")
	if out, err := exec.Command(cp, "-R", "-P", "-p", src, theirs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	runFS(t, "cpdir", env, map[string]any{"from_path": src, "to_path": ours})
	if got, want := describeTree(t, ours), describeTree(t, theirs); got != want {
		t.Errorf("differs from cp:\n ours:\n%s\ncp's:\n%s", got, want)
	}
}

func TestCpdirMissingSource(t *testing.T) {
	t.Parallel()
	env := fsTestEnv(t)
	missing := filepath.Join(env.Basedir, "missing")
	us := runFS(t, "cpdir", env, map[string]any{"from_path": missing, "to_path": filepath.Join(env.Basedir, "to")})
	if got := rcOf(t, us); got != 1 {
		t.Errorf("rc = %d", got)
	}
	if got := textOf(us, "stderr"); !strings.HasPrefix(got, "cp: cannot copy '"+missing+"': ") {
		t.Errorf("stderr %q", got)
	}
}

func TestCpdirArgs(t *testing.T) {
	env := fsTestEnv(t)
	for _, args := range []proto.Args{
		{"from_path": "/a"},
		{"to_path": "/b"},
		{"from_path": "", "to_path": "/b"},
		{"from_path": 1, "to_path": "/b"},
	} {
		if _, err := New("cpdir", args, env); err == nil {
			t.Errorf("New accepted %v", args)
		}
	}
	cmd, err := New("cpdir", proto.Args{"from_path": "a", "to_path": "b"}, env)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Interrupt("before")
	s := newTestSender(t)
	if err := cmd.Run(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if got := rcOf(t, s.updates()); got != -1 {
		t.Errorf("interrupted before start: rc %d", got)
	}
}
