package webhook

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/starforge/starforge/config"
)

// FuzzParse feeds every dialect's parser arbitrary bodies and events: it
// must never panic, and a payload it refuses yields no change.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		name := filepath.Base(file)
		dialect, _, _ := strings.Cut(name, "_")
		dialect = strings.TrimSuffix(dialect, ".json")
		f.Add(dialect, "push", "application/json", body)
	}
	f.Add("github", "pull_request", "application/x-www-form-urlencoded", []byte("payload=%7B%7D"))
	f.Add("gitlab", "Merge Request Hook", "application/json", []byte(`{"object_kind":"merge_request"}`))
	f.Add("bitbucket", "repo:push", "application/json", []byte(`{"push":{"changes":[{"new":null}]}}`))
	f.Add("base", "", "application/x-www-form-urlencoded", []byte("author=a&files=%5B1%5D"))
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range dialects {
			if !yield(n) {
				return
			}
		}
	})
	f.Fuzz(func(t *testing.T, dialect, event, contentType string, body []byte) {
		d, ok := dialects[dialect]
		if !ok {
			dialect = names[len(body)%len(names)]
			d = dialects[dialect]
		}
		r, err := http.NewRequest("POST", "http://127.0.0.1/change_hook/"+dialect, bytes.NewReader(body))
		if err != nil {
			t.Skip()
		}
		r.Header.Set("Content-Type", contentType)
		for _, h := range []string{"X-GitHub-Event", "X-Gitea-Event", "X-Gitlab-Event", "X-Event-Key"} {
			r.Header.Set(h, event)
		}
		cs, why, err := d.parse(&request{r: r, body: body, hook: &config.ChangeHook{Dialect: dialect}})
		if err != nil && len(cs) > 0 {
			t.Fatalf("%s: refused (%v) but returned %d changes", dialect, err, len(cs))
		}
		if err == nil && len(cs) == 0 && why == "" {
			t.Fatalf("%s: no change and no reason why", dialect)
		}
	})
}
