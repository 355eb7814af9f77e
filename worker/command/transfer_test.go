package command

import (
	"archive/tar"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/worker/proto"
)

func uploadArgs(path string, blocksize int, maxsize any) proto.Args {
	return proto.Args{"path": path, "blocksize": blocksize, "maxsize": maxsize}
}

func TestUploadFileLikeTheTrace(t *testing.T) {
	env := fakeEnv(t)
	file := filepath.Join(env.Basedir, "f.txt")
	mustWrite(t, file, "out2\n")
	mtime := time.Date(2026, 11, 22, 1, 2, 3, 500_000_000, time.UTC)
	if err := os.Chtimes(file, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	m := &fakeMaster{upload: &got}
	args := uploadArgs(file, 16384, nil)
	args["keepstamp"] = true
	if err := runOnFake(t, env, m, "upload_file", args); err != nil {
		t.Fatal(err)
	}
	want := []string{proto.OpUploadFileWrite, proto.OpUploadFileClose, proto.OpUploadFileUtime, proto.OpUpdate}
	if ops := m.ops(); !slices.Equal(ops, want) {
		t.Fatalf("ops = %v, want %v", ops, want)
	}
	if got.String() != "out2\n" {
		t.Fatalf("uploaded %q", got.String())
	}
	utime := m.requests(proto.OpUploadFileUtime)[0].fields
	for _, k := range []string{"access_time", "modified_time"} {
		if _, ok := utime[k].(float64); !ok {
			t.Errorf("%s is %T, want float64", k, utime[k])
		}
	}
	if mt, want := utime["modified_time"].(float64), float64(mtime.UnixMilli())/1e3; mt != want {
		t.Errorf("modified_time = %v, want %v", mt, want)
	}
	if keys := m.updateKeys(); !slices.Equal(keys, []string{"header", "rc", "elapsed"}) {
		t.Fatalf("update keys %v", keys)
	}
	if h := m.text("header"); h != "sending "+file+"\n" {
		t.Errorf("header %q", h)
	}
	if rc := m.rc(t); rc != 0 {
		t.Errorf("rc %d", rc)
	}
}

func TestUploadFileSizes(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		blocksize int
		maxsize   any
		wantRC    int64
		wantSent  int
		wantLimit bool // stderr says "Maximum filesize reached"
	}{
		{"empty", 0, 16, nil, 0, 0, false},
		{"one block", 10, 16, nil, 0, 10, false},
		{"exact blocks", 64, 16, nil, 0, 64, false},
		{"partial last block", 70, 16, nil, 0, 70, false},
		{"under maxsize", 70, 16, 100, 0, 70, false},
		{"exactly maxsize", 64, 16, 64, 0, 64, false},
		{"empty at maxsize 0", 0, 16, 0, 0, 0, false},
		{"over maxsize", 100, 16, 40, 1, 40, true},
		{"over maxsize 0", 1, 16, 0, 1, 0, true},
		{"blocksize above the cap", maxBlockSize + 10, maxBlockSize * 2, nil, 0, maxBlockSize + 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := fakeEnv(t)
			data := make([]byte, tt.size)
			rand.NewChaCha8([32]byte{1}).Read(data)
			file := filepath.Join(env.Basedir, "data")
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			m := &fakeMaster{upload: &got}
			if err := runOnFake(t, env, m, "upload_file", uploadArgs(file, tt.blocksize, tt.maxsize)); err != nil {
				t.Fatal(err)
			}
			if rc := m.rc(t); rc != tt.wantRC {
				t.Errorf("rc %d, want %d (stderr %q)", rc, tt.wantRC, m.text("stderr"))
			}
			if !bytes.Equal(got.Bytes(), data[:tt.wantSent]) {
				t.Errorf("sent %d bytes, want the first %d", got.Len(), tt.wantSent)
			}
			limit := min(tt.blocksize, maxBlockSize)
			for _, r := range m.requests(proto.OpUploadFileWrite) {
				if r.size == 0 || r.size > limit {
					t.Errorf("chunk of %d bytes, want 1..%d", r.size, limit)
				}
			}
			if want := "Maximum filesize reached, truncating file '" + file + "'\n"; tt.wantLimit != (m.text("stderr") == want) {
				t.Errorf("stderr %q", m.text("stderr"))
			}
			if n := len(m.requests(proto.OpUploadFileClose)); n != 1 {
				t.Errorf("%d closes, want 1", n)
			}
		})
	}
}

func TestUploadFileFailures(t *testing.T) {
	env := fakeEnv(t)
	missing := filepath.Join(env.Basedir, "missing")
	args := uploadArgs(missing, 16, nil)
	args["keepstamp"] = true
	m := &fakeMaster{}
	if err := runOnFake(t, env, m, "uploadFile", args); err != nil {
		t.Fatal(err)
	}
	// Buildbot still sends the header and closes the master's writer.
	if ops := m.ops(); !slices.Equal(ops, []string{proto.OpUploadFileClose, proto.OpUpdate}) {
		t.Fatalf("ops %v", ops)
	}
	if rc := m.rc(t); rc != 1 {
		t.Errorf("rc %d", rc)
	}
	if s := m.text("stderr"); !strings.HasPrefix(s, "Cannot open file '"+missing+"' for upload") {
		t.Errorf("stderr %q", s)
	}
	if h := m.text("header"); h != "sending "+missing+"\n" {
		t.Errorf("header %q", h)
	}

	m = &fakeMaster{}
	runOnFake(t, env, m, "upload_file", uploadArgs(env.Basedir, 16, nil))
	if rc := m.rc(t); rc != 1 || !strings.HasPrefix(m.text("stderr"), "Cannot open file") {
		t.Errorf("directory: rc %d stderr %q", rc, m.text("stderr"))
	}

	// A master that refuses a chunk is a protocol failure: rc 1 with its
	// text, and the error goes to complete.
	file := filepath.Join(env.Basedir, "f")
	mustWrite(t, file, "data")
	m = &fakeMaster{refuse: map[string]string{proto.OpUploadFileWrite: "disk full"}}
	err := runOnFake(t, env, m, "upload_file", uploadArgs(file, 16, nil))
	var re *proto.RemoteError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Run = %v, want the master's error", err)
	}
	if rc := m.rc(t); rc != 1 || !strings.Contains(m.text("stderr"), "disk full") {
		t.Errorf("rc %d stderr %q", rc, m.text("stderr"))
	}
	if n := len(m.requests(proto.OpUploadFileClose)); n != 1 {
		t.Errorf("%d closes after a refused write, want 1", n)
	}
}

// interruptAt returns a hook that interrupts *cmd when op is seen for the
// n-th time.
func interruptAt(cmd *Command, op string, n int) func(string, int) {
	return func(o string, k int) {
		if o == op && k == n {
			(*cmd).Interrupt("build stopped")
		}
	}
}

func TestTransfersStopWhenInterrupted(t *testing.T) {
	env := fakeEnv(t)
	src := filepath.Join(env.Basedir, "src")
	mustWrite(t, src, strings.Repeat("x", 1000))
	mustWrite(t, filepath.Join(env.Basedir, "tree", "big"), strings.Repeat("y", 100000))
	dest := filepath.Join(env.Basedir, "dest")
	mustWrite(t, dest, "old")

	tests := []struct {
		name     string
		cmd      string
		args     proto.Args
		op       string // interrupt when this op is seen the 3rd time
		notAfter string // op that must not be sent after an interrupt
	}{
		{"upload_file", "upload_file", uploadArgs(src, 10, nil), proto.OpUploadFileWrite, proto.OpUploadFileUtime},
		{"upload_directory", "upload_directory", proto.Args{"path": filepath.Join(env.Basedir, "tree"), "blocksize": 100, "maxsize": nil, "compress": nil}, proto.OpUploadDirectoryWrite, proto.OpUploadDirectoryUnpack},
		{"download_file", "download_file", proto.Args{"path": dest, "blocksize": 10, "maxsize": nil, "mode": nil}, proto.OpReadFile, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cmd == "upload_file" {
				tt.args["keepstamp"] = true
			}
			cmd, err := New(tt.cmd, tt.args, env)
			if err != nil {
				t.Fatal(err)
			}
			m := &fakeMaster{download: strings.NewReader(strings.Repeat("z", 1000)), hook: interruptAt(&cmd, tt.op, 3)}
			if err := cmd.Run(context.Background(), m); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if n := len(m.requests(tt.op)); n != 3 {
				t.Errorf("%d %s requests, want 3 (stop between chunks)", n, tt.op)
			}
			if rc := m.rc(t); rc != 1 {
				t.Errorf("rc %d, want 1", rc)
			}
			if h := m.text("header"); !strings.Contains(h, "transfer interrupted: build stopped") {
				t.Errorf("header %q", h)
			}
			if tt.notAfter != "" && len(m.requests(tt.notAfter)) != 0 {
				t.Errorf("%s sent after an interrupt", tt.notAfter)
			}
			if ops := m.ops(); ops[len(ops)-1] != proto.OpUpdate {
				t.Errorf("last op %s, want update", ops[len(ops)-1])
			}
		})
	}
	if b, _ := os.ReadFile(dest); string(b) != "old" {
		t.Errorf("interrupted download changed the destination to %q", b)
	}
	assertNoTempFiles(t, env.Basedir)
}

func TestTransfersStopWhenTheContextEnds(t *testing.T) {
	env := fakeEnv(t)
	src := filepath.Join(env.Basedir, "src")
	mustWrite(t, src, strings.Repeat("x", 1000))
	dest := filepath.Join(env.Basedir, "dest")
	for _, tt := range []struct {
		cmd  string
		args proto.Args
		op   string
	}{
		{"upload_file", uploadArgs(src, 10, nil), proto.OpUploadFileWrite},
		{"upload_directory", proto.Args{"path": env.Basedir, "blocksize": 10, "maxsize": nil, "compress": "gz"}, proto.OpUploadDirectoryWrite},
		{"download_file", proto.Args{"path": dest, "blocksize": 10, "maxsize": nil, "mode": nil}, proto.OpReadFile},
	} {
		t.Run(tt.cmd, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			m := &fakeMaster{download: strings.NewReader(strings.Repeat("z", 1000)), hook: func(op string, n int) {
				if op == tt.op && n == 2 {
					cancel() // the connection is lost
				}
			}}
			cmd, err := New(tt.cmd, tt.args, env)
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Run(ctx, m); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
			if n := len(m.requests(tt.op)); n != 2 {
				t.Errorf("%d requests, want 2", n)
			}
			if n := len(m.requests(proto.OpUpdate)); n != 0 {
				t.Errorf("%d updates after the context ended", n)
			}
		})
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("destination exists after a cancelled download: %v", err)
	}
	assertNoTempFiles(t, env.Basedir)
}

// assertNoTempFiles fails if a download left a temporary file under dir.
func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".starforge-download-") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

func TestDownloadFileLikeTheTrace(t *testing.T) {
	for _, nilEOF := range []bool{false, true} {
		env := fakeEnv(t)
		dest := filepath.Join(env.Basedir, "b1", "build", "dl.txt") // parents are created
		content := strings.Repeat("hello from master\n", 3)
		m := &fakeMaster{download: strings.NewReader(content), nilEOF: nilEOF}
		if err := runOnFake(t, env, m, "download_file", proto.Args{"path": dest, "blocksize": 16384, "maxsize": nil, "mode": nil}); err != nil {
			t.Fatal(err)
		}
		want := []string{proto.OpReadFile, proto.OpReadFile, proto.OpReadFileClose, proto.OpUpdate}
		if ops := m.ops(); !slices.Equal(ops, want) {
			t.Fatalf("nilEOF %v: ops %v, want %v", nilEOF, ops, want)
		}
		if l, _ := proto.Args(m.requests(proto.OpReadFile)[0].fields).Int("length", 0); l != 16384 {
			t.Errorf("length %d", l)
		}
		if keys := m.updateKeys(); !slices.Equal(keys, []string{"rc", "elapsed"}) {
			t.Errorf("update keys %v", keys)
		}
		if b, err := os.ReadFile(dest); err != nil || string(b) != content {
			t.Fatalf("dest = %q, %v", b, err)
		}
		if runtime.GOOS != "windows" {
			fi, _ := os.Stat(dest)
			if perm := fi.Mode().Perm(); perm != 0o666&^currentUmask(t) {
				t.Errorf("mode %v, want 0666 less the umask", perm)
			}
		}
		assertNoTempFiles(t, env.Basedir)
	}
}

// currentUmask reads the process umask from a file created with 0777.
func currentUmask(t *testing.T) os.FileMode {
	p := filepath.Join(t.TempDir(), "probe")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o777)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	fi, _ := os.Stat(p)
	return 0o777 &^ fi.Mode().Perm()
}

func TestDownloadFileOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		blocksize int
		maxsize   any
		mode      any
		wantRC    int64
		wantMode  os.FileMode
	}{
		{"empty", 0, 16, nil, nil, 0, 0},
		{"blocks", 100, 16, nil, nil, 0, 0},
		{"mode", 10, 16, nil, 0o750, 0, 0o750},
		{"mode read-only", 10, 16, nil, 0o444, 0, 0o444},
		{"under maxsize", 50, 16, 60, nil, 0, 0},
		{"exactly maxsize", 64, 16, 64, nil, 0, 0},
		{"over maxsize", 65, 16, 64, nil, 1, 0},
		{"over maxsize 0", 1, 16, 0, nil, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mode != nil && runtime.GOOS == "windows" {
				t.Skip("Unix permission modes")
			}
			env := fakeEnv(t)
			dest := filepath.Join(env.Basedir, "dest")
			mustWrite(t, dest, "previous")
			data := make([]byte, tt.size)
			rand.NewChaCha8([32]byte{2}).Read(data)
			m := &fakeMaster{download: bytes.NewReader(data)}
			err := runOnFake(t, env, m, "download_file", proto.Args{"path": dest, "blocksize": tt.blocksize, "maxsize": tt.maxsize, "mode": tt.mode})
			if err != nil {
				t.Fatal(err)
			}
			if rc := m.rc(t); rc != tt.wantRC {
				t.Fatalf("rc %d, want %d (stderr %q)", rc, tt.wantRC, m.text("stderr"))
			}
			got, _ := os.ReadFile(dest)
			if tt.wantRC != 0 {
				if want := "Maximum filesize reached, truncating file '" + dest + "'\n"; m.text("stderr") != want {
					t.Errorf("stderr %q, want %q", m.text("stderr"), want)
				}
				if string(got) != "previous" {
					t.Errorf("failed download replaced the file with %d bytes", len(got))
				}
			} else if !bytes.Equal(got, data) {
				t.Errorf("dest has %d bytes, want %d", len(got), len(data))
			}
			if tt.wantMode != 0 {
				if fi, _ := os.Stat(dest); fi.Mode().Perm() != tt.wantMode {
					t.Errorf("mode %v, want %v", fi.Mode().Perm(), tt.wantMode)
				}
			}
			for _, r := range m.requests(proto.OpReadFile) {
				if l, _ := proto.Args(r.fields).Int("length", 0); l < 1 || l > int64(tt.blocksize) {
					t.Errorf("asked for %d bytes", l)
				}
			}
			if n := len(m.requests(proto.OpReadFileClose)); n != 1 {
				t.Errorf("%d closes, want 1", n)
			}
			assertNoTempFiles(t, env.Basedir)
		})
	}
}

// TestDownloadFileModePrivateWhileWriting checks that a download with a
// mode (an ssh key the git step sends) is not readable by others while its
// data arrives, and gets its mode at the end.
func TestDownloadFileModePrivateWhileWriting(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix permission modes")
	}
	env := fakeEnv(t)
	dir := filepath.Join(env.Basedir, "keys")
	dest := filepath.Join(dir, "key")
	var seen []os.FileMode
	m := &fakeMaster{download: strings.NewReader(strings.Repeat("k", 40)), hook: func(op string, n int) {
		if op != proto.OpReadFile || n != 2 {
			return
		}
		tmps, _ := filepath.Glob(filepath.Join(dir, ".starforge-download-*"))
		for _, p := range tmps {
			if fi, err := os.Stat(p); err == nil {
				seen = append(seen, fi.Mode().Perm())
			}
		}
	}}
	if err := runOnFake(t, env, m, "download_file", proto.Args{"path": dest, "blocksize": 16, "maxsize": nil, "mode": 0o640}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0]&0o077 != 0 {
		t.Errorf("temporary file modes while writing: %v, want one, private to its owner", seen)
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("final file: %v, %v; want mode 0640", fi, err)
	}
}

func TestDownloadFileFailures(t *testing.T) {
	env := fakeEnv(t)
	// The destination is a directory: nothing is read, the reader is closed.
	m := &fakeMaster{download: strings.NewReader("data")}
	if err := runOnFake(t, env, m, "downloadFile", proto.Args{"path": env.Basedir, "blocksize": 16, "maxsize": nil, "mode": nil}); err != nil {
		t.Fatal(err)
	}
	if ops := m.ops(); !slices.Equal(ops, []string{proto.OpReadFileClose, proto.OpUpdate}) {
		t.Errorf("ops %v", ops)
	}
	if rc := m.rc(t); rc != 1 || !strings.HasPrefix(m.text("stderr"), "Cannot open file '"+env.Basedir+"' for download") {
		t.Errorf("rc %d stderr %q", rc, m.text("stderr"))
	}

	// The master refuses to read: a protocol failure.
	dest := filepath.Join(env.Basedir, "dest")
	m = &fakeMaster{refuse: map[string]string{proto.OpReadFile: "no reader"}}
	err := runOnFake(t, env, m, "download_file", proto.Args{"path": dest, "blocksize": 16, "maxsize": nil, "mode": nil})
	if err == nil || !strings.Contains(err.Error(), "no reader") {
		t.Fatalf("Run = %v", err)
	}
	if rc := m.rc(t); rc != 1 {
		t.Errorf("rc %d", rc)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dest exists: %v", err)
	}
	assertNoTempFiles(t, env.Basedir)
}

// makeTree creates a directory tree for upload_directory and returns it.
func makeTree(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "build")
	mustWrite(t, filepath.Join(dir, "f.txt"), "out2\n")
	mustWrite(t, filepath.Join(dir, "sub", "x"), strings.Repeat("x", 70000))
	mustWrite(t, filepath.Join(dir, ".hidden"), "h")
	os.MkdirAll(filepath.Join(dir, "empty"), 0o755)
	if runtime.GOOS != "windows" {
		os.Symlink("f.txt", filepath.Join(dir, "link"))
	}
	return dir
}

// readTar reads an archive into name → content ("dir" for directories,
// "-> target" for symlinks).
func readTar(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			out[h.Name] = "dir"
		case tar.TypeSymlink:
			out[h.Name] = "-> " + h.Linkname
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name] = string(b)
		default:
			t.Errorf("unexpected entry %q type %c", h.Name, h.Typeflag)
		}
	}
}

func TestUploadDirectory(t *testing.T) {
	tree := makeTree(t)
	want := map[string]string{
		"./": "dir", "f.txt": "out2\n", "sub/": "dir", "sub/x": strings.Repeat("x", 70000),
		".hidden": "h", "empty/": "dir",
	}
	if runtime.GOOS != "windows" {
		want["link"] = "-> f.txt"
	}
	for _, compress := range []any{nil, "gz", "bz2"} {
		t.Run(fmtCompress(compress), func(t *testing.T) {
			if compress == "bz2" {
				testenv.LookPath(t, "bzip2", "bzip2")
			}
			env := fakeEnv(t)
			var got bytes.Buffer
			m := &fakeMaster{upload: &got}
			if err := runOnFake(t, env, m, "upload_directory", proto.Args{"path": tree, "blocksize": 16384, "maxsize": nil, "compress": compress}); err != nil {
				t.Fatal(err)
			}
			ops := m.ops()
			if len(ops) < 3 || ops[len(ops)-2] != proto.OpUploadDirectoryUnpack || ops[len(ops)-1] != proto.OpUpdate {
				t.Fatalf("ops %v, want writes, unpack, update", ops)
			}
			if rc := m.rc(t); rc != 0 {
				t.Fatalf("rc %d stderr %q", rc, m.text("stderr"))
			}
			if h := m.text("header"); h != "sending "+tree+"\n" {
				t.Errorf("header %q", h)
			}
			var r io.Reader = &got
			switch compress {
			case "gz":
				zr, err := gzip.NewReader(r)
				if err != nil {
					t.Fatal(err)
				}
				r = zr
			case "bz2":
				r = bzip2.NewReader(r)
			}
			if entries := readTar(t, r); !stringMapsEqual(entries, want) {
				t.Errorf("archive has %v, want %v", sortedKeys(entries), sortedKeys(want))
			}
		})
	}
}

func fmtCompress(c any) string {
	if c == nil {
		return "none"
	}
	return c.(string)
}

func stringMapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestUploadDirectoryFailures(t *testing.T) {
	env := fakeEnv(t)
	missing := filepath.Join(env.Basedir, "missing")
	m := &fakeMaster{}
	if err := runOnFake(t, env, m, "uploadDirectory", proto.Args{"path": missing, "blocksize": 16, "maxsize": nil, "compress": nil}); err != nil {
		t.Fatal(err)
	}
	// As in Buildbot: no header, no data, no unpack; rc 1 with the reason.
	if ops := m.ops(); !slices.Equal(ops, []string{proto.OpUpdate}) {
		t.Errorf("ops %v", ops)
	}
	if keys := m.updateKeys(); !slices.Equal(keys, []string{"rc", "stderr", "elapsed"}) {
		t.Errorf("update keys %v", keys)
	}
	if s := m.text("stderr"); !strings.HasPrefix(s, "Cannot read directory '"+missing+"' for upload: ") {
		t.Errorf("stderr %q", s)
	}

	// Over maxsize: what fits is sent, then no unpack of a truncated archive.
	tree := makeTree(t)
	var got bytes.Buffer
	m = &fakeMaster{upload: &got}
	if err := runOnFake(t, env, m, "upload_directory", proto.Args{"path": tree, "blocksize": 1000, "maxsize": 5000, "compress": nil}); err != nil {
		t.Fatal(err)
	}
	if rc := m.rc(t); rc != 1 || !strings.HasPrefix(m.text("stderr"), "Maximum filesize reached") {
		t.Errorf("rc %d stderr %q", rc, m.text("stderr"))
	}
	if got.Len() != 5000 {
		t.Errorf("sent %d bytes, want 5000", got.Len())
	}
	if n := len(m.requests(proto.OpUploadDirectoryUnpack)); n != 0 {
		t.Errorf("truncated archive unpacked")
	}
}

func TestUploadDirectoryUnreadableFile(t *testing.T) {
	if runtime.GOOS == "windows" || os.Getuid() == 0 {
		t.Skip("needs Unix permissions that bind a non-root user")
	}
	tree := makeTree(t)
	secret := filepath.Join(tree, "secret")
	mustWrite(t, secret, "s")
	os.Chmod(secret, 0)
	m := &fakeMaster{}
	runOnFake(t, fakeEnv(t), m, "upload_directory", proto.Args{"path": tree, "blocksize": 16384, "maxsize": nil, "compress": "gz"})
	if rc := m.rc(t); rc != 1 || !strings.Contains(m.text("stderr"), "permission denied") {
		t.Errorf("rc %d stderr %q", rc, m.text("stderr"))
	}
	if n := len(m.requests(proto.OpUploadDirectoryUnpack)); n != 0 {
		t.Errorf("incomplete archive unpacked")
	}
}

// TestTransferRoundTrip100MB uploads a 100 MB file, then downloads what
// the master received, comparing SHA-256 sums at each step.
func TestTransferRoundTrip100MB(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB transfer")
	}
	const size = 100 << 20
	env := fakeEnv(t)
	src := filepath.Join(env.Basedir, "src.bin")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	srcHash := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, srcHash), rand.NewChaCha8([32]byte{3}), size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := srcHash.Sum(nil)

	// Upload: the master stores what it receives.
	received := filepath.Join(t.TempDir(), "received.bin")
	rf, err := os.Create(received)
	if err != nil {
		t.Fatal(err)
	}
	upHash := sha256.New()
	m := &fakeMaster{upload: io.MultiWriter(rf, upHash)}
	if err := runOnFake(t, env, m, "upload_file", uploadArgs(src, 256<<10, int64(size))); err != nil {
		t.Fatal(err)
	}
	rf.Close()
	if rc := m.rc(t); rc != 0 {
		t.Fatalf("upload rc %d: %q", rc, m.text("stderr"))
	}
	if got := upHash.Sum(nil); !bytes.Equal(got, want) {
		t.Fatalf("uploaded sha256 %x, want %x", got, want)
	}

	// Download it back.
	rf, err = os.Open(received)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	dest := filepath.Join(env.Basedir, "out", "dest.bin")
	m = &fakeMaster{download: rf}
	if err := runOnFake(t, env, m, "download_file", proto.Args{"path": dest, "blocksize": 256 << 10, "maxsize": int64(size), "mode": 0o600}); err != nil {
		t.Fatal(err)
	}
	if rc := m.rc(t); rc != 0 {
		t.Fatalf("download rc %d: %q", rc, m.text("stderr"))
	}
	df, err := os.Open(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	downHash := sha256.New()
	if _, err := io.Copy(downHash, df); err != nil {
		t.Fatal(err)
	}
	if got := downHash.Sum(nil); !bytes.Equal(got, want) {
		t.Fatalf("downloaded sha256 %x, want %x", got, want)
	}
}

func TestErrnoOf(t *testing.T) {
	_, err := os.Stat(filepath.Join(t.TempDir(), "missing"))
	if got := errnoOf(err); got != 2 {
		t.Errorf("errnoOf(missing) = %d, want 2 (ENOENT)", got)
	}
	if got := errnoOf(errors.New("plain")); got != 1 {
		t.Errorf("errnoOf(plain) = %d, want 1", got)
	}
	if got := strerror(&os.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}); runtime.GOOS != "windows" && got != "No such file or directory" {
		t.Errorf("strerror = %q", got)
	}
}
