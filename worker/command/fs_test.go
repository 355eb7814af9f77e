package command

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/starforge/starforge/worker/proto"
)

// mustWrite creates the file at path (and its directories) with content.
func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// anyStrings converts a decoded files value to strings.
func anyStrings(t *testing.T, v any) []string {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("files is %T, want list", v)
	}
	out := make([]string, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			t.Fatalf("files[%d] is %T", i, e)
		}
		out[i] = s
	}
	return out
}

func TestFSCommandsReportLikeBuildbot(t *testing.T) {
	env := fakeEnv(t)
	dir := env.Basedir
	file := filepath.Join(dir, "f.txt")
	mustWrite(t, file, "out2\n")
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name     string
		cmd      string
		args     proto.Args
		wantKeys []string
		wantRC   int64
		header   string // expected header text, when failing
	}{
		{"mkdir new nested", "mkdir", proto.Args{"paths": []any{filepath.Join(dir, "b1", "build"), filepath.Join(dir, "info")}}, []string{"rc", "elapsed"}, 0, ""},
		{"mkdir existing", "mkdir", proto.Args{"paths": []any{dir}}, []string{"rc", "elapsed"}, 0, ""},
		{"mkdir over file", "mkdir", proto.Args{"paths": []any{file}}, []string{"header", "rc", "elapsed"}, int64(errnoOf(syscall.EEXIST)), "mkdir: File exists: " + file + "\n"},
		{"listdir", "listdir", proto.Args{"path": dir}, []string{"files", "rc", "elapsed"}, 0, ""},
		{"listdir missing", "listdir", proto.Args{"path": missing}, []string{"header", "rc", "elapsed"}, int64(errnoOf(syscall.ENOENT)), ""},
		{"stat", "stat", proto.Args{"path": file}, []string{"stat", "rc", "elapsed"}, 0, ""},
		{"stat missing", "stat", proto.Args{"path": missing}, []string{"header", "rc", "elapsed"}, int64(errnoOf(syscall.ENOENT)), ""},
		{"glob", "glob", proto.Args{"path": filepath.Join(dir, "*.txt")}, []string{"files", "rc", "elapsed"}, 0, ""},
		{"glob nothing", "glob", proto.Args{"path": filepath.Join(missing, "*")}, []string{"files", "rc", "elapsed"}, 0, ""},
		{"rmfile missing", "rmfile", proto.Args{"path": missing}, []string{"header", "rc", "elapsed"}, int64(errnoOf(syscall.ENOENT)), ""},
		{"rmfile directory", "rmfile", proto.Args{"path": dir}, []string{"header", "rc", "elapsed"}, int64(errnoOf(syscall.EISDIR)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeMaster{}
			if err := runOnFake(t, env, m, tt.cmd, tt.args); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := m.ops(); !slices.Equal(got, []string{proto.OpUpdate}) {
				t.Fatalf("ops = %v, want exactly one update", got)
			}
			if got := m.updateKeys(); !slices.Equal(got, tt.wantKeys) {
				t.Fatalf("update keys = %v, want %v", got, tt.wantKeys)
			}
			if rc := m.rc(t); rc != tt.wantRC {
				t.Errorf("rc = %d, want %d (header %q)", rc, tt.wantRC, m.text("header"))
			}
			if tt.wantRC != 0 && !strings.HasPrefix(m.text("header"), tt.cmd+": ") {
				t.Errorf("header = %q, want %q prefix", m.text("header"), tt.cmd+": ")
			}
			if tt.header != "" && m.text("header") != tt.header {
				t.Errorf("header = %q, want %q", m.text("header"), tt.header)
			}
			el, _ := m.update("elapsed")
			if f, ok := proto.AsFloat(el); !ok || f < 0 {
				t.Errorf("elapsed = %v", el)
			}
		})
	}
}

func TestMkdirCreatesEveryPath(t *testing.T) {
	env := fakeEnv(t)
	a := filepath.Join(env.Basedir, "a", "b", "c")
	b := filepath.Join(env.Basedir, "info")
	if err := runOnFake(t, env, &fakeMaster{}, "mkdir", proto.Args{"paths": []any{a, b, "rel/dir"}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a, b, filepath.Join(env.Basedir, "rel", "dir")} {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			t.Errorf("%s: not a directory (%v)", p, err)
		}
	}
}

func TestRmfile(t *testing.T) {
	env := fakeEnv(t)
	file := filepath.Join(env.Basedir, "dl.txt")
	mustWrite(t, file, "x")
	m := &fakeMaster{}
	if err := runOnFake(t, env, m, "rmfile", proto.Args{"path": file}); err != nil {
		t.Fatal(err)
	}
	if rc := m.rc(t); rc != 0 {
		t.Fatalf("rc = %d", rc)
	}
	if _, err := os.Lstat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file still there: %v", err)
	}
	// Unlike os.Remove, rmfile never removes a directory, even an empty one.
	empty := filepath.Join(env.Basedir, "empty")
	os.Mkdir(empty, 0o755)
	m = &fakeMaster{}
	runOnFake(t, env, m, "rmfile", proto.Args{"path": empty})
	if rc := m.rc(t); rc == 0 {
		t.Fatal("rmfile of a directory succeeded")
	}
	if _, err := os.Stat(empty); err != nil {
		t.Fatalf("directory removed: %v", err)
	}
}

func TestStatValues(t *testing.T) {
	env := fakeEnv(t)
	file := filepath.Join(env.Basedir, "f.txt")
	mustWrite(t, file, "out2\n")
	if runtime.GOOS != "windows" {
		os.Chmod(file, 0o640)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path     string
		wantType int64
	}{{file, pyIFREG}, {env.Basedir, pyIFDIR}} {
		m := &fakeMaster{}
		if err := runOnFake(t, env, m, "stat", proto.Args{"path": tt.path}); err != nil {
			t.Fatal(err)
		}
		v, _ := m.update("stat")
		list, ok := v.([]any)
		if !ok || len(list) != 10 {
			t.Fatalf("stat = %#v, want 10 values", v)
		}
		vals := make([]int64, 10)
		for i, e := range list {
			n, ok := proto.AsInt(e)
			if !ok {
				t.Fatalf("stat[%d] = %T, want int", i, e)
			}
			vals[i] = n
		}
		if got := vals[0] & 0o170000; got != tt.wantType {
			t.Errorf("%s: mode type %#o, want %#o", tt.path, got, tt.wantType)
		}
		if tt.path != file {
			continue
		}
		if runtime.GOOS != "windows" && vals[0]&0o7777 != 0o640 {
			t.Errorf("mode perm %#o, want 0640", vals[0]&0o7777)
		}
		if vals[6] != 5 {
			t.Errorf("size %d, want 5", vals[6])
		}
		if vals[8] != fi.ModTime().Unix() {
			t.Errorf("mtime %d, want %d", vals[8], fi.ModTime().Unix())
		}
		if runtime.GOOS != "windows" && (vals[1] == 0 || vals[3] != 1) {
			t.Errorf("ino %d nlink %d, want real values", vals[1], vals[3])
		}
	}
}

func TestPyMode(t *testing.T) {
	tests := []struct {
		m    os.FileMode
		want int64
	}{
		{0o644, 0o100644},
		{os.ModeDir | 0o755, 0o040755},
		{os.ModeSymlink | 0o777, 0o120777},
		{os.ModeNamedPipe | 0o600, 0o010600},
		{os.ModeSocket | 0o700, 0o140700},
		{os.ModeDevice | os.ModeCharDevice | 0o666, 0o020666},
		{os.ModeDevice | 0o660, 0o060660},
		{os.ModeSetuid | os.ModeSetgid | os.ModeSticky | 0o755, 0o107755},
	}
	for _, tt := range tests {
		if got := pyMode(tt.m); got != tt.want {
			t.Errorf("pyMode(%v) = %#o, want %#o", tt.m, got, tt.want)
		}
	}
}

func TestListdirNames(t *testing.T) {
	env := fakeEnv(t)
	for _, n := range []string{"twistd.log", "buildbot.tac", ".hidden"} {
		mustWrite(t, filepath.Join(env.Basedir, n), "")
	}
	os.Mkdir(filepath.Join(env.Basedir, "info"), 0o755)
	m := &fakeMaster{}
	if err := runOnFake(t, env, m, "listdir", proto.Args{"path": env.Basedir}); err != nil {
		t.Fatal(err)
	}
	v, _ := m.update("files")
	if got, want := anyStrings(t, v), []string{".hidden", "buildbot.tac", "info", "twistd.log"}; !slices.Equal(got, want) {
		t.Fatalf("files = %v, want %v", got, want)
	}
}

// globTree builds a small tree for the glob tests and returns its root.
func globTree(t *testing.T) string {
	root := t.TempDir()
	for _, f := range []string{
		"a.txt", "b.txt", "c.log", ".hidden.txt", "x[1].txt",
		"sub/d.txt", "sub/deep/e.txt", "sub/.h/f.txt", "other/g.txt",
	} {
		mustWrite(t, filepath.Join(root, filepath.FromSlash(f)), f)
	}
	return root
}

func TestPyGlob(t *testing.T) {
	root := globTree(t)
	sep := string(filepath.Separator)
	tests := []struct {
		pattern string
		want    []string // relative to root, slash-separated; a trailing "/" is kept
	}{
		{"*.txt", []string{"a.txt", "b.txt", "x[1].txt"}},
		{".*", []string{".hidden.txt"}},
		{"?.txt", []string{"a.txt", "b.txt"}},
		{"[ab].txt", []string{"a.txt", "b.txt"}},
		{"[!a].txt", []string{"b.txt"}},
		{"[a-b].*", []string{"a.txt", "b.txt"}},
		{"[b-a].txt", nil}, // a reversed range matches nothing
		{"x[[]1].txt", []string{"x[1].txt"}},
		{"x[1].txt", nil}, // "[1]" is a set matching "1", so this names "x1.txt"
		{"*/*.txt", []string{"other/g.txt", "sub/d.txt"}},
		{"*/", []string{"other/", "sub/"}},
		{"**/*.txt", []string{"a.txt", "b.txt", "x[1].txt", "other/g.txt", "sub/d.txt", "sub/deep/e.txt"}},
		{"sub/**", []string{"sub/", "sub/d.txt", "sub/deep", "sub/deep/e.txt"}},
		{"sub/**/", []string{"sub/", "sub/deep/"}},
		{"a.txt", []string{"a.txt"}},
		{"nope.txt", nil},
		{"nope/*", nil},
		{"c.log/*", nil},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			pattern := root + sep + filepath.FromSlash(tt.pattern)
			var got []string
			for _, p := range pyGlob(pattern) {
				rel, ok := strings.CutPrefix(p, root+sep)
				if !ok {
					t.Fatalf("match %q is not under %q", p, root)
				}
				got = append(got, filepath.ToSlash(rel))
			}
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("glob %q = %q, want %q", tt.pattern, got, want)
			}
		})
	}
}

func TestGlobCommandReturnsAbsolutePaths(t *testing.T) {
	root := globTree(t)
	env := fakeEnv(t)
	m := &fakeMaster{}
	if err := runOnFake(t, env, m, "glob", proto.Args{"path": filepath.Join(root, "sub", "*.txt")}); err != nil {
		t.Fatal(err)
	}
	v, _ := m.update("files")
	if got, want := anyStrings(t, v), []string{filepath.Join(root, "sub", "d.txt")}; !slices.Equal(got, want) {
		t.Fatalf("files = %q, want %q", got, want)
	}
}

func TestFnmatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "anything", true},
		{"*", "", true},
		{"a*b", "ab", true},
		{"a*b", "axxb", true},
		{"a*b", "axxc", false},
		{"?", "a", true},
		{"?", "", false},
		{"[abc]", "b", true},
		{"[!abc]", "b", false},
		{"[!abc]", "d", true},
		{"[]]", "]", true},
		{"[!]]", "]", false},
		{"[!]]", "a", true},
		{"[a-]", "-", true},
		{"[-a]", "-", true},
		{"[", "[", true},
		{"[abc", "[abc", true},
		{`\*`, `\x`, true}, // no escapes: a backslash is literal
		{"*.[ch]", "main.c", true},
		{"*.[ch]", "main.go", false},
		{"a.b", "axb", false},
		{"^$.+", "^$.+", true},
		{"[^a]", "^", true}, // "^" is literal in fnmatch sets
		{"x", "x\ny", false},
		{"x*", "x\ny", true},
	}
	for _, tt := range tests {
		if got := fnmatchRegexp(tt.pattern).MatchString(tt.name); got != tt.want {
			t.Errorf("fnmatch(%q, %q) = %v, want %v (regexp %s)", tt.name, tt.pattern, got, tt.want, fnmatchRegexp(tt.pattern))
		}
	}
}

func TestPySplitAndJoin(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix path forms")
	}
	for _, tt := range []struct{ in, dir, base string }{
		{"/a/b", "/a", "b"},
		{"/a/b/", "/a/b", ""},
		{"/a//b", "/a", "b"},
		{"/a", "/", "a"},
		{"//a", "//", "a"},
		{"a", "", "a"},
	} {
		if d, b := pySplit(tt.in); d != tt.dir || b != tt.base {
			t.Errorf("pySplit(%q) = %q, %q; want %q, %q", tt.in, d, b, tt.dir, tt.base)
		}
	}
	for _, tt := range []struct{ a, b, want string }{
		{"/a", "b", "/a/b"},
		{"/a/", "b", "/a/b"},
		{"/a", "", "/a/"},
		{"/a", "/b", "/b"},
		{"", "b", "b"},
	} {
		if got := pyJoin(tt.a, tt.b); got != tt.want {
			t.Errorf("pyJoin(%q, %q) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestMissingArgsFailTheFactory(t *testing.T) {
	tests := []struct {
		name string
		args proto.Args
		want string
	}{
		{"mkdir", proto.Args{}, "mkdir is missing args: paths"},
		{"rmfile", proto.Args{}, "rmfile is missing args: path"},
		{"stat", proto.Args{}, "stat is missing args: path"},
		{"glob", proto.Args{}, "glob is missing args: path"},
		{"listdir", proto.Args{}, "listdir is missing args: path"},
		{"upload_file", proto.Args{"path": "/x"}, "upload_file is missing args: blocksize, maxsize"},
		{"uploadFile", proto.Args{"path": "/x", "blocksize": 16384}, "upload_file is missing args: maxsize"},
		{"upload_directory", proto.Args{"path": "/x", "blocksize": 1, "maxsize": nil}, "upload_directory is missing args: compress"},
		{"uploadDirectory", proto.Args{}, "upload_directory is missing args: path, blocksize, maxsize, compress"},
		{"download_file", proto.Args{"path": "/x", "blocksize": 1, "maxsize": nil}, "download_file is missing args: mode"},
		{"downloadFile", proto.Args{"path": "/x", "maxsize": nil, "mode": nil}, "download_file is missing args: blocksize"},
	}
	for _, tt := range tests {
		_, err := New(tt.name, tt.args, fakeEnv(t))
		if err == nil || err.Error() != tt.want {
			t.Errorf("New(%s, %v) error = %v, want %q", tt.name, tt.args, err, tt.want)
		}
	}
}

func TestBadArgsFailTheFactory(t *testing.T) {
	tests := []struct {
		name string
		args proto.Args
	}{
		{"mkdir", proto.Args{"paths": "/not/a/list"}},
		{"stat", proto.Args{"path": 3}},
		{"stat", proto.Args{"path": ""}},
		{"upload_file", proto.Args{"path": "/x", "blocksize": 0, "maxsize": nil}},
		{"upload_file", proto.Args{"path": "/x", "blocksize": 10, "maxsize": -1}},
		{"upload_file", proto.Args{"path": "/x", "blocksize": "big", "maxsize": nil}},
		{"upload_directory", proto.Args{"path": "/x", "blocksize": 10, "maxsize": nil, "compress": "xz"}},
		{"download_file", proto.Args{"path": "/x", "blocksize": 10, "maxsize": nil, "mode": 0o10000}},
	}
	for _, tt := range tests {
		if _, err := New(tt.name, tt.args, fakeEnv(t)); err == nil {
			t.Errorf("New(%s, %v) succeeded", tt.name, tt.args)
		}
	}
}

func TestFSCommandInterruptedOrCancelledBeforeStart(t *testing.T) {
	env := fakeEnv(t)
	dir := filepath.Join(env.Basedir, "never")

	cmd, err := New("mkdir", proto.Args{"paths": []any{dir}}, env)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Interrupt("stop")
	m := &fakeMaster{}
	if err := cmd.Run(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if rc := m.rc(t); rc != 1 || !strings.Contains(m.text("header"), "stop") {
		t.Fatalf("rc %d header %q, want rc 1 and the reason", rc, m.text("header"))
	}
	cmd.Interrupt("again") // safe after Run

	cmd, _ = New("mkdir", proto.Args{"paths": []any{dir}}, env)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m = &fakeMaster{}
	if err := cmd.Run(ctx, m); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context: %v", err)
	}
	if len(m.ops()) != 0 {
		t.Fatalf("sent %v after cancellation", m.ops())
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("directory created")
	}
}

func TestPyGlobFollowsSymlinkedDirectoriesButNotCycles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks need privileges on Windows")
	}
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "real", "f.txt"), "")
	os.Symlink("real", filepath.Join(root, "alias"))
	os.Symlink("..", filepath.Join(root, "real", "up")) // a cycle
	var got []string
	for _, p := range pyGlob(filepath.Join(root, "**", "f.txt")) {
		got = append(got, strings.TrimPrefix(filepath.ToSlash(p), filepath.ToSlash(root)+"/"))
	}
	slices.Sort(got)
	want := []string{"alias/f.txt", "real/f.txt"} // "up" leads back to root: listed, not entered
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
