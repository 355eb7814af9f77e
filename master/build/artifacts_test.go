package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/starforge/starforge/master/artifact"
	"github.com/starforge/starforge/master/result"
)

// TestArtifactsRecorded runs upload, upload_many and upload_dir on the
// starforge worker and checks that each file they stored on the master is
// recorded as an artifact of the build, with its size, hash and the step
// that uploaded it, and that a failed upload records nothing.
func TestArtifactsRecorded(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "elsewhere.txt")
	h := newHarness(t, `
worker("w", "pw")
builder("up", ["w"], [
    shell("mkdir -p d/sub && printf hello > a.txt && printf x > d/sub/b.txt && printf yy > d/c.txt && ln -sf c.txt d/l && printf 1 > 1.whl && printf 22 > 2.whl", name="prep"),
    upload("a.txt", "out/a.txt", name="one"),
    upload_many("*.whl", "wheels", name="many"),
    upload_dir("d", "out/docs", name="dir"),
    upload("a.txt", "`+outside+`", name="outside"),
    upload("missing.txt", "out/missing.txt", name="fails", flunk_on_failure=False),
])
`)
	h.startAgent("w")
	b := h.build("up", "w")
	for _, s := range []string{"prep", "one", "many", "dir", "outside"} {
		h.want(b, s, result.Success, "")
	}
	h.want(b, "fails", result.Failure, "")

	as, err := h.st.ListArtifacts(context.Background(), b.ID)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(s string) string { x := sha256.Sum256([]byte(s)); return hex.EncodeToString(x[:]) }
	type want struct {
		name, path, step, body string
	}
	wants := []want{
		{"1.whl", "wheels/1.whl", "many", "1"},
		{"2.whl", "wheels/2.whl", "many", "22"},
		{"a.txt", "out/a.txt", "one", "hello"},
		{"docs/c.txt", "out/docs/c.txt", "dir", "yy"},
		{"docs/sub/b.txt", "out/docs/sub/b.txt", "dir", "x"},
		{"elsewhere.txt", outside, "outside", "hello"},
	}
	slices.SortFunc(wants, func(a, b want) int { return strings.Compare(a.name, b.name) })
	if len(as) != len(wants) {
		t.Fatalf("artifacts %+v, want %d", as, len(wants))
	}
	for i, w := range wants {
		a := as[i]
		if a.Name != w.name || a.Path != artifact.RelPath(sum(w.body)) || a.StepID != b.steps[w.step].ID ||
			a.Size != int64(len(w.body)) || a.SHA256 != sum(w.body) || a.BuildID != b.ID || a.ModTime.IsZero() {
			t.Errorf("artifact %d = %+v, want %+v", i, a, w)
		}
		// The upload's destination holds the file as before; the row
		// points at its blob.
		p := w.path
		if !filepath.IsAbs(p) {
			p = filepath.Join(h.dir, p)
		}
		for _, p := range []string{p, filepath.Join(h.dir, a.Path)} {
			if got, err := os.ReadFile(p); err != nil || string(got) != w.body {
				t.Errorf("%s on the master: %q, %v", p, got, err)
			}
		}
	}
	// a.txt and elsewhere.txt hold the same bytes: one blob.
	if n := countBlobs(t, h.dir); n != len(wants)-1 {
		t.Errorf("%d blobs, want %d", n, len(wants)-1)
	}
}

// countBlobs counts the files under basedir's blob store.
func countBlobs(t *testing.T, basedir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(basedir, artifact.Dir), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestArtifactPath checks how artifact paths are stored: relative inside
// the basedir, absolute outside it.
func TestArtifactPath(t *testing.T) {
	r := &Runner{Basedir: "/srv/master"}
	for in, want := range map[string]string{
		"/srv/master/out/a.txt": "out/a.txt",
		"/srv/master/a":         "a",
		"/srv/other/a":          "/srv/other/a",
		"/srv/master":           "/srv/master",
		"/srv/master/../x":      "/srv/x",
	} {
		if got := r.artifactPath(in); got != filepath.FromSlash(want) {
			t.Errorf("artifactPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestArtifactsSurviveOverwrite checks that an artifact keeps its content
// when a later build uploads to the same master path, and that the same
// content uploaded again is stored once.
func TestArtifactsSurviveOverwrite(t *testing.T) {
	h := newHarness(t, `
worker("w", "pw")
builder("up", ["w"], [
    shell(interpolate("echo %(prop:buildnumber)s > a.txt && echo same > b.txt")),
    upload("a.txt", "out/a.txt"),
    upload("b.txt", "out/b.txt"),
])
`)
	h.startAgent("w")
	b1 := h.build("up", "w")
	b2 := h.build("up", "w")
	for i, b := range []builtBuild{b1, b2} {
		as, err := h.st.ListArtifacts(context.Background(), b.ID)
		if err != nil || len(as) != 2 {
			t.Fatalf("artifacts of build %d: %+v, %v", b.Number, as, err)
		}
		want := map[string]string{"a.txt": fmt.Sprintf("%d\n", i+1), "b.txt": "same\n"}
		for _, a := range as {
			if got, err := os.ReadFile(filepath.Join(h.dir, a.Path)); err != nil || string(got) != want[a.Name] {
				t.Errorf("build %d's %s: %q, %v; want %q", b.Number, a.Name, got, err, want[a.Name])
			}
		}
	}
	if got, _ := os.ReadFile(filepath.Join(h.dir, "out", "a.txt")); string(got) != "2\n" {
		t.Errorf("out/a.txt: %q", got)
	}
	if n := countBlobs(t, h.dir); n != 3 {
		t.Errorf("%d blobs, want 3 (a.txt twice, b.txt once)", n)
	}
}
