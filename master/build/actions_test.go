package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/worker/proto"
)

func TestTestCounter(t *testing.T) {
	tests := []struct {
		name, out              string
		passed, failed, skiped int
		seen                   bool
	}{
		{"none", "building\nall good\n", 0, 0, 0, false},
		{"generic", "12 passed, 1 failed\n", 12, 1, 0, true},
		{"generic reversed", "1 failed and 3 passed\n", 3, 1, 0, true},
		{"pytest", "collected 4 items\n\nt.py ..F.\n===== 3 passed, 1 failed, 2 skipped in 0.12s =====\n", 3, 1, 2, true},
		{"pytest only passed", "============================== 5 passed in 0.01s ===============================\n", 5, 0, 0, true},
		{"unittest ok", "....\n------\nRan 4 tests in 0.001s\n\nOK\n", 4, 0, 0, true},
		{"unittest ok skipped", "Ran 4 tests in 0.001s\n\nOK (skipped=1)\n", 3, 0, 1, true},
		{"unittest failed", "Ran 10 tests in 0.5s\n\nFAILED (failures=2, errors=1)\n", 7, 3, 0, true},
		{"tests failures", "10 tests, 20 assertions, 2 failures, 1 errors\n", 7, 3, 0, true},
		{"minitest", "5 runs, 9 assertions, 1 failures, 0 errors, 0 skips\n", 4, 1, 0, true},
		{"junit", "Tests run: 8, Failures: 1, Errors: 1, Skipped: 2\n", 4, 2, 2, true},
		{"go -v", "=== RUN   TestA\n--- PASS: TestA (0.00s)\n=== RUN   TestB\n--- FAIL: TestB (0.00s)\n    --- PASS: TestB/sub (0.00s)\nFAIL\nFAIL\texample.org/p\t0.01s\n", 2, 1, 0, true},
		{"go packages", "ok  \texample.org/a\t0.01s\nok  \texample.org/b\t(cached)\n--- FAIL: TestC (0.00s)\nFAIL\texample.org/c\t0.02s\n", 0, 1, 0, true},
		{"go packages only", "ok  \texample.org/a\t0.01s\nFAIL\texample.org/c [build failed]\n", 1, 1, 0, true},
	}
	for _, tt := range tests {
		var tc testCounter
		for _, l := range splitLines(tt.out) {
			tc.line(l)
		}
		p, f, s, seen := tc.counts()
		if p != tt.passed || f != tt.failed || s != tt.skiped || seen != tt.seen {
			t.Errorf("%s: got %d passed %d failed %d skipped seen=%v, want %d %d %d %v",
				tt.name, p, f, s, seen, tt.passed, tt.failed, tt.skiped, tt.seen)
		}
	}
}

func TestCombineWarnings(t *testing.T) {
	warn := &config.Step{WarnOnWarnings: true}
	flunk := &config.Step{WarnOnWarnings: true, FlunkOnWarnings: true}
	ignore := &config.Step{}
	if got, _ := combine(result.Success, result.Warnings, warn); got != result.Warnings {
		t.Errorf("warn_on_warnings: %v", got)
	}
	if got, halt := combine(result.Success, result.Warnings, flunk); got != result.Failure || halt {
		t.Errorf("flunk_on_warnings: %v %v", got, halt)
	}
	if got, _ := combine(result.Success, result.Warnings, ignore); got != result.Success {
		t.Errorf("neither: %v", got)
	}
}

func TestLineHook(t *testing.T) {
	var got []string
	h := &lineHook{fn: func(c byte, line string) { got = append(got, string(c)+line) }}
	h.update(proto.Update{Key: proto.UpdStdout, Value: proto.LogChunk{Text: "a\r\nb\n"}})
	h.update(proto.Update{Key: proto.UpdStderr, Value: proto.LogChunk{Text: "c\n"}})
	h.update(proto.Update{Key: proto.UpdHeader, Value: proto.LogChunk{Text: "h\n"}})
	h.update(proto.Update{Key: proto.UpdFiles, Value: []any{"/x"}})
	if strings.Join(got, ",") != "oa,ob,ec" {
		t.Errorf("lines %q", got)
	}
	if f, _ := h.values[proto.UpdFiles].([]any); len(f) != 1 {
		t.Errorf("values %v", h.values)
	}
}

type tarEntry struct {
	name, body, link string
	typ              byte
}

func makeTar(t *testing.T, gz bool, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w = &buf
	var zw *gzip.Writer
	tw := tar.NewWriter(w)
	if gz {
		zw = gzip.NewWriter(w)
		tw = tar.NewWriter(zw)
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

// receiveDir plays the worker's side of upload_directory into dest.
func receiveDir(t *testing.T, dest, compress string, data []byte) (string, error) {
	t.Helper()
	u, err := newUploadDir(dest, compress, 0)
	if err != nil {
		t.Fatal(err)
	}
	for len(data) > 0 {
		n := min(len(data), 100)
		if _, err := u.handle(proto.OpUploadDirectoryWrite, proto.Message{"args": data[:n]}); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if _, err := u.handle(proto.OpUploadDirectoryUnpack, proto.Message{}); err != nil {
		t.Fatal(err)
	}
	return u.finish(true)
}

func TestUploadDir(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out", "docs")
	data := makeTar(t, true,
		tarEntry{name: "./", typ: tar.TypeDir},
		tarEntry{name: "index.html", body: "<h1>hi</h1>", typ: tar.TypeReg},
		tarEntry{name: "sub/", typ: tar.TypeDir},
		tarEntry{name: "sub/a.txt", body: "a", typ: tar.TypeReg},
		tarEntry{name: "deep/er/b.txt", body: "b", typ: tar.TypeReg},
		tarEntry{name: "sub/link", link: "../index.html", typ: tar.TypeSymlink},
	)
	summary, err := receiveDir(t, dest, "gz", data)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(summary, "4 files") {
		t.Errorf("summary %q", summary)
	}
	for name, want := range map[string]string{"index.html": "<h1>hi</h1>", "sub/a.txt": "a", "deep/er/b.txt": "b", "sub/link": "<h1>hi</h1>"} {
		if b, err := os.ReadFile(filepath.Join(dest, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", name, b, err)
		}
	}
	// A second upload replaces the directory.
	if _, err := receiveDir(t, dest, "", makeTar(t, false, tarEntry{name: "new.txt", body: "n", typ: tar.TypeReg})); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dest, "index.html")); !os.IsNotExist(err) {
		t.Errorf("old content kept: %v", err)
	}
	// Nothing but dest is left in its parent.
	ents, _ := os.ReadDir(filepath.Dir(dest))
	if len(ents) != 1 {
		t.Errorf("leftovers: %v", ents)
	}
}

func TestUploadDirRefusesEscapes(t *testing.T) {
	bad := map[string][]tarEntry{
		"dotdot":          {{name: "../evil", body: "x", typ: tar.TypeReg}},
		"inner dotdot":    {{name: "a/../../evil", body: "x", typ: tar.TypeReg}},
		"absolute":        {{name: "/tmp/evil", body: "x", typ: tar.TypeReg}},
		"absolute link":   {{name: "l", link: "/etc/passwd", typ: tar.TypeSymlink}},
		"escaping link":   {{name: "a/l", link: "../../x", typ: tar.TypeSymlink}},
		"through a link":  {{name: "l", link: ".", typ: tar.TypeSymlink}, {name: "l/x", link: "..", typ: tar.TypeSymlink}},
		"write via link":  {{name: "l", link: "sub", typ: tar.TypeSymlink}, {name: "sub/", typ: tar.TypeDir}, {name: "l/f", body: "x", typ: tar.TypeReg}},
		"hard link":       {{name: "h", link: "/etc/passwd", typ: tar.TypeLink}},
		"device":          {{name: "d", typ: tar.TypeChar}},
		"windows abs":     {{name: `C:\evil`, body: "x", typ: tar.TypeReg}},
		"backslash climb": {{name: `a\..\..\evil`, body: "x", typ: tar.TypeReg}},
	}
	for name, entries := range bad {
		dir := t.TempDir()
		dest := filepath.Join(dir, "m", "dest")
		_, err := receiveDir(t, dest, "", makeTar(t, false, entries...))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if _, serr := os.Stat(dest); !os.IsNotExist(serr) {
			t.Errorf("%s: dest exists after a refused upload", name)
		}
		if _, serr := os.Stat(filepath.Join(dir, "evil")); !os.IsNotExist(serr) {
			t.Errorf("%s: wrote outside", name)
		}
		ents, _ := os.ReadDir(filepath.Join(dir, "m"))
		if len(ents) != 0 {
			t.Errorf("%s: leftovers %v", name, ents)
		}
	}
}

func TestStringDownload(t *testing.T) {
	d := newStringDownload("hello world")
	var got []byte
	for {
		v, err := d.handle(proto.OpReadFile, proto.Message{"length": 4})
		if err != nil {
			t.Fatal(err)
		}
		b := v.([]byte)
		if len(b) == 0 {
			break
		}
		got = append(got, b...)
	}
	if string(got) != "hello world" {
		t.Errorf("got %q", got)
	}
	if s, err := d.finish(true); err != nil || !strings.Contains(s, "11 bytes") {
		t.Errorf("finish: %q %v", s, err)
	}
}
