package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/testenv"
)

// buildProperty returns a build property's value, nil if it has none.
func (m *master) buildProperty(t *testing.T, buildID int64, name string) any {
	t.Helper()
	var r struct {
		Properties []map[string][]any `json:"properties"`
	}
	m.getJSON(t, fmt.Sprintf("api/v2/builds/%d/properties", buildID), &r)
	for _, p := range r.Properties {
		if v, ok := p[name]; ok && len(v) == 2 {
			return v[0]
		}
	}
	return nil
}

type change struct {
	ID       int64    `json:"changeid"`
	Revision string   `json:"revision"`
	Branch   string   `json:"branch"`
	Author   string   `json:"author"`
	Comments string   `json:"comments"`
	Files    []string `json:"files"`
}

// buildChanges returns the changes a build built.
func (m *master) buildChanges(t *testing.T, buildID int64) []change {
	t.Helper()
	var r struct {
		Changes []change `json:"changes"`
	}
	m.getJSON(t, fmt.Sprintf("api/v2/builds/%d/changes", buildID), &r)
	return r.Changes
}

// pollNow asks the master to poll a git_poller at once; it returns once
// the poll is done and its changes are stored.
func (m *master) pollNow(t *testing.T, poller string) {
	t.Helper()
	resp, err := http.Post(m.url+"change_hook/poller?poller="+poller, "text/plain", nil)
	if err != nil {
		t.Fatalf("poll %s: %v", poller, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("poll %s: %s: %s", poller, resp.Status, b)
	}
}

// waitFinished waits until the master logged n finished builds of builder.
func (m *master) waitFinished(t *testing.T, builder string, n int) {
	t.Helper()
	re := `build finished.*builder=` + builder + ` `
	deadline := time.Now().Add(60 * time.Second)
	for m.out.count(re) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d builds of %s finished within 60s, want %d; master output:\n%s", m.out.count(re), builder, n, m.out)
		}
		m.out.mu.Lock()
		ch := m.out.changed
		m.out.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
		}
	}
}

// requests returns how many build requests a builder has had.
func (m *master) requests(t *testing.T, builder string) int {
	t.Helper()
	var b struct {
		Builders []struct {
			ID int64 `json:"builderid"`
		} `json:"builders"`
	}
	m.getJSON(t, "api/v2/builders/"+builder, &b)
	var r struct {
		Requests []struct{ ID int64 } `json:"buildrequests"`
	}
	m.getJSON(t, fmt.Sprintf("api/v2/buildrequests?builderid=%d&limit=1000", b.Builders[0].ID), &r)
	return len(r.Requests)
}

// TestCommitTriggeredBuilds follows commits from a real repository to
// builds: the poller sees a pushed commit, the scheduler queues it, and
// the build checks out exactly that revision; two commits within the
// tree-stable timer give one build with both changes; a restart triggers
// nothing twice and misses nothing pushed while the master was down; a
// signed GitHub push starts a build and a badly signed one does not.
func TestCommitTriggeredBuilds(t *testing.T) {
	git := testenv.LookPath(t, "git", "git")
	dir := t.TempDir()
	repo := newGitRepo(t, git, filepath.Join(dir, "repo"))
	repo.commit("initial", map[string]string{"a.txt": "a0\n"})
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	const hookSecret = "hook-s3cret"
	if err := os.WriteFile(filepath.Join(secrets, "github"), []byte(hookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	basedir := filepath.Join(dir, "master")
	cfg := fmt.Sprintf(`
secrets_dir(%[2]q)
worker("w1", password="pw")
git_poller(%[1]q, name="repo", branches=["main"], interval="1h")
change_hook("github", secret=secret("github"))
steps = [git(%[1]q), shell("git log -1 --format=%%H", name="show")]
builder("each", workers=["w1"], steps=steps)
builder("stable", workers=["w1"], steps=steps)
single_branch_scheduler("each", builders=["each"], branch="main")
single_branch_scheduler("stable", builders=["stable"], branch="main", tree_stable_timer="4s")
`, repo.dir, secrets)
	m := startMaster(t, basedir, cfg)
	w := m.startWorker(t, "w1", "pw", filepath.Join(dir, "worker"))

	// The first poll only records the heads: nothing is built.
	m.pollNow(t, "repo")
	c1 := repo.commit("one", map[string]string{"a.txt": "a1\n"})
	m.pollNow(t, "repo")
	c2 := repo.commit("two", map[string]string{"b.txt": "b\n"})
	m.pollNow(t, "repo")

	m.waitFinished(t, "each", 2)
	m.waitFinished(t, "stable", 1)
	each := m.builds(t, "each")
	if len(each) != 2 {
		t.Fatalf("%d builds of each, want one per commit", len(each))
	}
	for i, want := range []string{c2, c1} { // newest first
		b := each[i]
		if resultOf(b.Results) != 0 {
			t.Errorf("build %d: results %d", b.ID, resultOf(b.Results))
		}
		if got := m.buildProperty(t, b.ID, "got_revision"); got != want {
			t.Errorf("build %d: got_revision %v, want %s", b.ID, got, want)
		}
		cs := m.buildChanges(t, b.ID)
		if len(cs) != 1 || cs[0].Revision != want {
			t.Errorf("build %d: changes %+v, want the one of %s", b.ID, cs, want)
		}
	}
	stable := m.builds(t, "stable")
	if len(stable) != 1 {
		t.Fatalf("%d builds of stable, want one for both commits", len(stable))
	}
	if got := m.buildProperty(t, stable[0].ID, "got_revision"); got != c2 {
		t.Errorf("stable build: got_revision %v, want the last commit %s", got, c2)
	}
	cs := m.buildChanges(t, stable[0].ID)
	if len(cs) != 2 || cs[0].Revision != c1 || cs[1].Revision != c2 {
		t.Errorf("stable build's changes = %+v, want %s then %s", cs, c1, c2)
	} else if cs[1].Comments != "two" || len(cs[1].Files) != 1 || cs[1].Files[0] != "b.txt" {
		t.Errorf("change of %s = %+v", c2, cs[1])
	}

	// Down: a commit is pushed; up again: it is built, once, and nothing
	// else is.
	m.stop(t)
	w.stop(t)
	c3 := repo.commit("three", map[string]string{"a.txt": "a3\n"})
	m = startMaster(t, basedir, cfg)
	m.startWorker(t, "w1", "pw", filepath.Join(dir, "worker"))
	m.pollNow(t, "repo")
	m.waitFinished(t, "each", 1)
	m.waitFinished(t, "stable", 1)
	if n := m.requests(t, "each"); n != 3 {
		t.Errorf("each had %d requests after the restart, want 3 (one per commit)", n)
	}
	if n := m.requests(t, "stable"); n != 2 {
		t.Errorf("stable had %d requests after the restart, want 2", n)
	}
	if b := m.builds(t, "each")[0]; m.buildProperty(t, b.ID, "got_revision") != c3 {
		t.Errorf("after the restart, each built %v, want %s", m.buildProperty(t, b.ID, "got_revision"), c3)
	}

	// A GitHub push: signed, it builds; badly signed, it is refused.
	c4 := repo.commit("four", map[string]string{"a.txt": "a4\n"})
	payload, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": c3, "after": c4,
		"repository": map[string]any{"full_name": "e2e/repo", "clone_url": repo.dir, "html_url": "https://example.org/e2e/repo"},
		"pusher":     map[string]any{"name": "Test"},
		"commits": []map[string]any{{
			"id": c4, "message": "four", "timestamp": time.Now().UTC().Format(time.RFC3339),
			"url":    "https://example.org/e2e/repo/commit/" + c4,
			"author": map[string]any{"name": "Test", "email": "test@example.org"},
			"added":  []string{}, "modified": []string{"a.txt"}, "removed": []string{},
		}},
	})
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write(payload)
	sign := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if code := m.githubPush(t, payload, "sha256="+strings.Repeat("0", 64)); code != http.StatusForbidden {
		t.Errorf("badly signed push: status %d, want 403", code)
	}
	if code := m.githubPush(t, payload, sign); code != http.StatusOK {
		t.Fatalf("signed push: status %d, want 200", code)
	}
	m.waitFinished(t, "each", 2)
	if n := m.requests(t, "each"); n != 4 {
		t.Errorf("each had %d requests after the push, want 4 (the bad signature must add none)", n)
	}
	if b := m.builds(t, "each")[0]; m.buildProperty(t, b.ID, "got_revision") != c4 {
		t.Errorf("after the push, each built %v, want %s", m.buildProperty(t, b.ID, "got_revision"), c4)
		for _, s := range m.steps(t, b.ID) {
			t.Logf("step %s: %s\n%s", s.Name, s.StateString, m.stepLog(t, s.ID))
		}
	}
}

func (m *master) githubPush(t *testing.T, payload []byte, signature string) int {
	t.Helper()
	req, err := http.NewRequest("POST", m.url+"change_hook/github", strings.NewReader(string(payload)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", signature)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Logf("github push: %s: %s", resp.Status, b)
	}
	return resp.StatusCode
}
