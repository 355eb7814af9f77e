package webui

import (
	"context"
	"fmt"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/store"
)

// TestBuildPagePatch: a try build's page shows its patch, escaped; a
// build without one has no Patch section.
func TestBuildPagePatch(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	diff := "--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-int x = <1>;\n+int x = 2; /* & more */\n"
	_, reqs, err := f.st.AddBuildset(ctx, store.NewBuildset{
		Reason: "try",
		SourceStamps: []store.SourceStamp{{Revision: "abc123", Patch: &store.Patch{
			Level: 1, Body: []byte(diff), Author: "alice", Comment: "fix <the> test",
		}}},
		BuilderIDs: []int64{f.empty},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.ClaimRequest(ctx, reqs[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	b, err := f.st.AddBuild(ctx, store.NewBuild{BuilderID: f.empty, RequestID: reqs[0].ID, WorkerID: f.w1})
	if err != nil {
		t.Fatal(err)
	}
	st, _, body := f.get(t, fmt.Sprintf("/builders/empty/builds/%d", b.Number))
	if st != 200 {
		t.Fatalf("status %d: %s", st, body)
	}
	for _, want := range []string{
		"<h2>Patch</h2>", "<dd>alice</dd>", "<dd>fix &lt;the&gt; test</dd>", "git apply -p1",
		"-int x = &lt;1&gt;;", // escaped, not markup
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("build page lacks %q", want)
		}
	}
	_, pre, ok := strings.Cut(string(body), `<pre class="patch" id="patch">`)
	pre, _, _ = strings.Cut(pre, "</pre>")
	if got := html.UnescapeString(pre); !ok || got != diff {
		t.Errorf("the page's diff reads\n%q\nwant\n%q", got, diff)
	}
	if t.Failed() {
		t.Logf("body:\n%s", body)
	}
	_, _, body = f.get(t, fmt.Sprintf("/builders/linux/builds/%d", f.finished[0].Number))
	if strings.Contains(string(body), "<h2>Patch</h2>") {
		t.Error("a build without a patch shows a Patch section")
	}
}
