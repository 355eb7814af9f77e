package webui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starforge/starforge/master/artifact"
	"github.com/starforge/starforge/master/store"
)

// addArtifacts records one artifact per name on build, with the name as
// its content, and returns them by name.
func addArtifacts(t *testing.T, st *store.Store, build int64, names ...string) map[string]store.Artifact {
	t.Helper()
	var as []store.Artifact
	for _, n := range names {
		s := sha256.Sum256([]byte(n))
		sum := hex.EncodeToString(s[:])
		as = append(as, store.Artifact{BuildID: build, Name: n, Path: artifact.RelPath(sum), SHA256: sum, Size: int64(len(n))})
	}
	added, err := st.AddArtifacts(context.Background(), as)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Artifact{}
	for _, a := range added {
		out[a.Name] = a
	}
	return out
}

func TestArtifactsCollection(t *testing.T) {
	f := newFixture(t)
	b1, b2 := f.finished[0], f.finished[1]
	a1 := addArtifacts(t, f.st, b1.ID, "app.tar.gz", "same")
	a2 := addArtifacts(t, f.st, b2.ID, "same", "docs.zip")
	xb := firstBuild(t, f.st, f.xss)
	ax := addArtifacts(t, f.st, xb.ID, "x.bin")

	names := func(query string) string {
		t.Helper()
		var got struct {
			Artifacts []struct {
				BuilderID   int64 `json:"builderid"`
				BuildNumber int   `json:"build_number"`
				Name        string
			}
		}
		f.getJSON(t, "/api/v2/artifacts"+query, &got)
		var out []string
		for _, a := range got.Artifacts {
			out = append(out, fmt.Sprintf("%d/%d:%s", a.BuilderID, a.BuildNumber, a.Name))
		}
		return strings.Join(out, " ")
	}
	l, x := f.linux, f.xss
	same := a1["same"].SHA256
	for query, want := range map[string]string{
		"":                                     fmt.Sprintf("%d/1:x.bin %d/2:docs.zip %d/2:same %d/1:same %d/1:app.tar.gz", x, l, l, l, l),
		"?builder=linux":                       fmt.Sprintf("%d/2:docs.zip %d/2:same %d/1:same %d/1:app.tar.gz", l, l, l, l),
		fmt.Sprintf("?builder=%d", x):          fmt.Sprintf("%d/1:x.bin", x),
		"?builder=" + url.QueryEscape(xssName): fmt.Sprintf("%d/1:x.bin", x),
		fmt.Sprintf("?build=%d", b2.ID):        fmt.Sprintf("%d/2:docs.zip %d/2:same", l, l),
		"?sha256=" + same:                      fmt.Sprintf("%d/2:same %d/1:same", l, l),
		"?sha256__eq=" + same + "&order=artifactid":              fmt.Sprintf("%d/1:same %d/2:same", l, l),
		fmt.Sprintf("?builderid=%d&limit=2", l):                  fmt.Sprintf("%d/2:docs.zip %d/2:same", l, l),
		fmt.Sprintf("?builderid=%d&before=%d", l, a2["same"].ID): fmt.Sprintf("%d/1:same %d/1:app.tar.gz", l, l),
		fmt.Sprintf("?builder=linux&builderid=%d", x):            "",
		fmt.Sprintf("?build=%d&name__contains=.", b1.ID):         fmt.Sprintf("%d/1:app.tar.gz", l),
	} {
		if got := names(query); got != want {
			t.Errorf("%s:\n got %s\nwant %s", query, got, want)
		}
	}
	var one struct{ Artifacts []map[string]any }
	f.getJSON(t, fmt.Sprintf("/api/v2/artifacts?build=%d&field=name&field=download_url&field=sha256", xb.ID), &one)
	if g, w := fmt.Sprint(one.Artifacts), fmt.Sprintf("[map[download_url:/artifacts/%d/download name:x.bin sha256:%s]]", ax["x.bin"].ID, ax["x.bin"].SHA256); g != w {
		t.Errorf("fields: %s, want %s", g, w)
	}
	for path, want := range map[string]int{
		"/api/v2/artifacts?builder=nope":                   404,
		"/api/v2/artifacts?build=x":                        400,
		"/api/v2/artifacts?sha256=ABC":                     400,
		"/api/v2/artifacts?order=name":                     400,
		"/api/v2/artifacts?unknown=1":                      400,
		"/api/v2/artifacts?before=-1":                      400,
		"/api/v2/artifacts?builderid=x":                    400,
		"/artifacts?builder=nope":                          404,
		"/artifacts?sha256=zz":                             400,
		"/artifacts?before=x":                              400,
		fmt.Sprintf("/api/v2/artifacts/%d", a1["same"].ID): 200,
	} {
		if st, _, body := f.get(t, path); st != want {
			t.Errorf("%s: %d, want %d: %s", path, st, want, body)
		}
	}
}

func TestArtifactsPage(t *testing.T) {
	f := newFixture(t)
	b1 := f.finished[0]
	a := addArtifacts(t, f.st, b1.ID, "app.tar.gz")["app.tar.gz"]
	xb := firstBuild(t, f.st, f.xss)
	addArtifacts(t, f.st, xb.ID, "x.bin")
	f.checkPage(t, "/artifacts", 200, []string{
		`<a href="/artifacts" aria-current="page">Artifacts</a>`,
		fmt.Sprintf(`<tr id="artifact-%d">`, a.ID),
		`<td class="name">app.tar.gz</td>`,
		`<td class="num" title="10 bytes">10 B</td>`,
		fmt.Sprintf(`<a href="/artifacts?sha256=%s"><code title="%s">%s</code></a>`, a.SHA256, a.SHA256, a.SHA256[:12]),
		fmt.Sprintf(`<a href="/builders/%d">linux</a>`, f.linux),
		fmt.Sprintf(`<a href="/builders/%d/builds/1">#1</a>`, f.linux),
		fmt.Sprintf(`<a href="/artifacts/%d/download" download>download</a>`, a.ID),
		"&lt;script&gt;",
	}, []string{xssName, "Older »"})
	// Newest first.
	body := f.checkPage(t, "/artifacts", 200, nil, nil)
	if strings.Index(body, "x.bin") > strings.Index(body, "app.tar.gz") {
		t.Error("x.bin, recorded last, is not first")
	}
	f.checkPage(t, "/artifacts?builder=linux", 200, []string{"app.tar.gz", "Only the artifacts of builder linux"}, []string{"x.bin"})
	f.checkPage(t, "/artifacts?build=999", 200, []string{"No artifacts"}, nil)

	// A page holds artifactsPageSize; the pager goes on from the last one.
	names := make([]string, artifactsPageSize+1)
	for i := range names {
		names[i] = fmt.Sprintf("f%03d", i)
	}
	many := addArtifacts(t, f.st, f.finished[1].ID, names...)
	oldest := many["f000"]
	f.checkPage(t, "/artifacts?builder=linux", 200, []string{
		fmt.Sprintf(`<a href="/artifacts?before=%d&amp;builder=linux">Older »</a>`, many["f001"].ID),
	}, []string{"f000<"})
	f.checkPage(t, fmt.Sprintf("/artifacts?builder=linux&before=%d", many["f001"].ID), 200, []string{
		fmt.Sprintf(`<tr id="artifact-%d">`, oldest.ID), "app.tar.gz", "« Newest",
	}, []string{"Older »", "f001<"})
}

// TestArtifactDownloadBlob checks that a download serves the artifact's
// blob: what the build uploaded, even once a later upload replaced the
// file at the same master path.
func TestArtifactDownloadBlob(t *testing.T) {
	f := newArtifactFixture(t)
	dest := filepath.Join(f.dir, "out", "pkg.deb")
	if err := os.WriteFile(dest, []byte("version 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256([]byte("version 1"))
	sum := hex.EncodeToString(s[:])
	blob, err := artifact.Open(f.dir).Put(dest, sum)
	if err != nil {
		t.Fatal(err)
	}
	as, err := f.st.AddArtifacts(context.Background(), []store.Artifact{{BuildID: f.finished[0].ID, Name: "pkg.deb",
		Path: blob, SHA256: sum, Size: 9}})
	if err != nil {
		t.Fatal(err)
	}
	f.arts["pkg.deb"] = as[0]
	// The next upload to the same path: a new file renamed over it.
	tmp := dest + ".tmp"
	if err := os.WriteFile(tmp, []byte("version 2, longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		t.Fatal(err)
	}
	resp, body := f.download(t, "pkg.deb")
	if resp.StatusCode != 200 || body != "version 1" {
		t.Errorf("download: %d %q, want version 1", resp.StatusCode, body)
	}
	if err := os.Remove(filepath.Join(f.dir, filepath.FromSlash(blob))); err != nil {
		t.Fatal(err)
	}
	if resp, body := f.download(t, "pkg.deb"); resp.StatusCode != 410 || !strings.Contains(body, "no longer on the master") {
		t.Errorf("download of a removed blob: %d %q", resp.StatusCode, body)
	}
}

func firstBuild(t *testing.T, st *store.Store, builder int64) store.Build {
	t.Helper()
	bs, err := st.ListBuilds(context.Background(), store.BuildFilter{BuilderID: builder})
	if err != nil || len(bs) == 0 {
		t.Fatalf("builds of builder %d: %v, %v", builder, bs, err)
	}
	return bs[len(bs)-1]
}
