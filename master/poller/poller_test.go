package poller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

func TestFirstPollRecordsHeads(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("one")
	head := r.fileCommit("two")
	e := newEnv(t)
	res := e.poll(e.poller(pollerCfg("p", r.dir)))
	if len(res.Changes) != 0 {
		t.Errorf("first poll made changes: %v", revisions(res.Changes))
	}
	want := map[string]string{"repo": r.dir, "refs/heads/main": head}
	if got := e.state("p"); !maps.Equal(got, want) {
		t.Errorf("state = %v, want %v", got, want)
	}
	if last, _ := e.st.LastChangeID(context.Background()); last != 0 {
		t.Errorf("stored changes up to id %d, want none", last)
	}
	// Nothing new: nothing stored, nothing returned.
	if res := e.poll(e.poller(pollerCfg("p", r.dir))); len(res.Changes) != 0 {
		t.Errorf("second poll made changes: %v", revisions(res.Changes))
	}
}

func TestNewCommitFields(t *testing.T) {
	r := newRepo(t)
	r.commit("base", map[string]string{"a.txt": "a\n", "c.txt": "c\n", "keep.txt": "k\n"})
	e := newEnv(t)
	cfg := pollerCfg("p", "file://"+r.dir)
	cfg.Project, cfg.Codebase, cfg.Category = "proj", "cb", "cat"
	p := e.poller(cfg)
	e.poll(p)

	when := epoch.Add(time.Duration(r.tick) * time.Minute)
	rev := r.commit("Change things\n\nThe body.", map[string]string{"a.txt": "a2\n", "c.txt": "", "dir/b.txt": "b\n"})
	res := e.poll(p)
	if len(res.Changes) != 1 {
		t.Fatalf("got %d changes, want 1: %v", len(res.Changes), revisions(res.Changes))
	}
	got := res.Changes[0]
	want := store.Change{
		ID:         got.ID,
		Revision:   rev,
		Branch:     "main",
		Author:     "A U Thor <author@example.org>",
		Committer:  "C O Mitter <committer@example.org>",
		Comments:   "Change things\n\nThe body.",
		When:       when,
		Files:      []string{"a.txt", "c.txt", "dir/b.txt"},
		Repository: "file://" + r.dir,
		Project:    "proj",
		Codebase:   "cb",
		Category:   "cat",
	}
	checkChange(t, got, want)
	stored, err := e.st.GetChange(context.Background(), got.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkChange(t, stored, want)
	if s := e.state("p"); s["refs/heads/main"] != rev {
		t.Errorf("stored revision %s, want %s", s["refs/heads/main"], rev)
	}
}

func checkChange(t *testing.T, got, want store.Change) {
	t.Helper()
	if got.ID == 0 || got.SourceStampID == 0 {
		t.Errorf("change not stored: id %d, source stamp %d", got.ID, got.SourceStampID)
	}
	got.SourceStampID, got.Properties = 0, nil
	if !got.When.Equal(want.When) {
		t.Errorf("When = %v, want %v", got.When, want.When)
	}
	got.When = want.When
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Errorf("change:\ngot  %+v\nwant %+v", got, want)
	}
}

// TestOrder checks that changes come parents first, merges included, and
// that files are against the first parent.
func TestOrder(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	e := newEnv(t)
	p := e.poller(pollerCfg("p", r.dir))
	e.poll(p)

	c1 := r.fileCommit("c1")
	c2 := r.fileCommit("c2")
	res := e.poll(p)
	if got, want := revisions(res.Changes), []string{"main:" + c1, "main:" + c2}; !slices.Equal(got, want) {
		t.Errorf("two commits: got %v, want %v", got, want)
	}

	// A side branch merged in; its commits are older than main's newest.
	r.git("checkout", "-q", "-b", "side")
	s1 := r.fileCommit("s1")
	s2 := r.fileCommit("s2")
	r.git("checkout", "-q", "main")
	m1 := r.fileCommit("m1")
	r.git("merge", "-q", "--no-ff", "-m", "merge side", "side")
	r.tick++
	merge := r.rev("HEAD")
	res = e.poll(p)
	got := revisions(res.Changes)
	if len(got) != 4 || got[3] != "main:"+merge {
		t.Fatalf("merge: got %v, want 4 changes ending with the merge %s", got, merge)
	}
	pos := map[string]int{}
	for i, c := range res.Changes {
		pos[c.Revision] = i
	}
	for _, rev := range []string{s1, s2, m1} {
		if _, ok := pos[rev]; !ok {
			t.Errorf("commit %s missing from %v", rev, got)
		}
	}
	if pos[s1] > pos[s2] {
		t.Errorf("s1 after its child s2: %v", got)
	}
	if files := res.Changes[3].Files; !slices.Equal(files, []string{"s1.txt", "s2.txt"}) {
		t.Errorf("merge files = %q, want the side branch's against the first parent", files)
	}
}

// TestRestart checks that a new poller on the same store and cache, as
// after a master restart, neither repeats changes nor misses commits
// pushed while the master was down.
func TestRestart(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	e := newEnv(t)
	cfg := pollerCfg("p", r.dir)
	e.poll(e.poller(cfg))
	c1 := r.fileCommit("c1")
	if got := revisions(e.poll(e.poller(cfg)).Changes); !slices.Equal(got, []string{"main:" + c1}) {
		t.Fatalf("got %v, want c1", got)
	}

	// Down: two pushes. Up again with a new poller.
	c2 := r.fileCommit("c2")
	c3 := r.fileCommit("c3")
	if got := revisions(e.poll(e.poller(cfg)).Changes); !slices.Equal(got, []string{"main:" + c2, "main:" + c3}) {
		t.Errorf("after restart: got %v, want c2, c3", got)
	}
	if got := e.poll(e.poller(cfg)).Changes; len(got) != 0 {
		t.Errorf("restart again: got %v, want nothing", revisions(got))
	}
	all, err := e.st.ChangesAfter(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := revisions(all); !slices.Equal(got, []string{"main:" + c1, "main:" + c2, "main:" + c3}) {
		t.Errorf("stored changes %v, want c1, c2, c3 once each", got)
	}
}

// TestCacheLost checks that a cache directory removed while the master was
// down is made anew, and that the stored state still bounds the changes.
func TestCacheLost(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	r.fileCommit("more")
	e := newEnv(t)
	cfg := pollerCfg("p", r.dir)
	e.poll(e.poller(cfg))
	if err := os.RemoveAll(e.cache); err != nil {
		t.Fatal(err)
	}
	c := r.fileCommit("c")
	if got := revisions(e.poll(e.poller(cfg)).Changes); !slices.Equal(got, []string{"main:" + c}) {
		t.Errorf("got %v, want only c", got)
	}
}

func TestForcePush(t *testing.T) {
	r := newRepo(t)
	a := r.fileCommit("a")
	r.fileCommit("b")
	r.fileCommit("c")
	e := newEnv(t)
	p := e.poller(pollerCfg("p", r.dir))
	e.poll(p)

	r.git("reset", "-q", "--hard", a)
	d := r.fileCommit("d")
	f := r.fileCommit("f")
	if got := revisions(e.poll(p).Changes); !slices.Equal(got, []string{"main:" + d, "main:" + f}) {
		t.Errorf("force-push: got %v, want d, f", got)
	}
	// Back to a known commit: nothing new.
	r.git("reset", "-q", "--hard", a)
	if got := e.poll(p).Changes; len(got) != 0 {
		t.Errorf("reset to a known commit: got %v, want nothing", revisions(got))
	}
	if s := e.state("p"); s["refs/heads/main"] != a {
		t.Errorf("state %v, want main at %s", s, a)
	}
}

func TestNewAndDeletedBranch(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	m := r.fileCommit("m")
	e := newEnv(t)
	cfg := pollerCfg("p", r.dir)
	cfg.AllBranches = true
	p := e.poller(cfg)
	e.poll(p)

	// A branch made from a known commit brings nothing new, but is watched.
	r.git("branch", "same", m)
	if got := e.poll(p).Changes; len(got) != 0 {
		t.Errorf("branch at a known commit: got %v", revisions(got))
	}
	// A branch with commits of its own: only those.
	r.git("checkout", "-q", "-b", "feature")
	f1 := r.fileCommit("f1")
	f2 := r.fileCommit("f2")
	r.git("checkout", "-q", "main")
	if got := revisions(e.poll(p).Changes); !slices.Equal(got, []string{"feature:" + f1, "feature:" + f2}) {
		t.Errorf("new branch: got %v, want f1, f2", got)
	}
	// Merged into main (fast-forward): no change on main; the commits were
	// seen on feature.
	r.git("merge", "-q", "--ff-only", "feature")
	if got := e.poll(p).Changes; len(got) != 0 {
		t.Errorf("fast-forward to known commits: got %v", revisions(got))
	}

	r.git("branch", "-q", "-D", "feature", "same")
	if got := e.poll(p).Changes; len(got) != 0 {
		t.Errorf("deleting branches made changes: %v", revisions(got))
	}
	want := map[string]string{"repo": r.dir, "refs/heads/main": f2}
	if got := e.state("p"); !maps.Equal(got, want) {
		t.Errorf("state %v, want %v", got, want)
	}
	if log := e.log.String(); !strings.Contains(log, `msg="git poller: ref deleted on the remote" poller=p ref=refs/heads/feature`) {
		t.Errorf("deletion not logged:\n%s", log)
	}
}

// TestNewBranchCapped checks that a new branch with a long history of its
// own yields its newest MaxNewCommits commits.
func TestNewBranchCapped(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	e := newEnv(t)
	cfg := pollerCfg("p", r.dir)
	cfg.AllBranches = true
	p := e.poller(cfg)
	e.poll(p)

	r.git("checkout", "-q", "--orphan", "other")
	var revs []string
	for i := range MaxNewCommits + 20 {
		r.git("commit", "-q", "--allow-empty", "-m", fmt.Sprint(i))
		r.tick++
		revs = append(revs, r.rev("HEAD"))
	}
	got := e.poll(p).Changes
	if len(got) != MaxNewCommits {
		t.Fatalf("got %d changes, want %d", len(got), MaxNewCommits)
	}
	if got[0].Revision != revs[20] || got[len(got)-1].Revision != revs[len(revs)-1] {
		t.Errorf("kept %s..%s, want the newest %s..%s", got[0].Revision, got[len(got)-1].Revision, revs[20], revs[len(revs)-1])
	}
	if !strings.Contains(e.log.String(), "too many new commits") {
		t.Errorf("cap not logged:\n%s", e.log.String())
	}
}

func TestBranchSelection(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	for _, b := range []string{"dev", "rel/1", "rel/2", "relx"} {
		r.git("branch", b)
	}
	all := []string{"refs/heads/dev", "refs/heads/main", "refs/heads/rel/1", "refs/heads/rel/2", "refs/heads/relx"}
	tests := []struct {
		name string
		set  func(*config.GitPoller)
		want []string
	}{
		{"default", func(*config.GitPoller) {}, []string{"refs/heads/main"}},
		{"list", func(c *config.GitPoller) { c.Branches = []string{"dev", "rel/2", "gone"} }, []string{"refs/heads/dev", "refs/heads/rel/2"}},
		{"regexp", func(c *config.GitPoller) { c.BranchRegexp = regexp.MustCompile(`^rel/`) }, []string{"refs/heads/rel/1", "refs/heads/rel/2"}},
		{"all", func(c *config.GitPoller) { c.AllBranches = true }, all},
	}
	e := newEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := pollerCfg(tt.name, r.dir)
			tt.set(cfg)
			res := e.poll(e.poller(cfg))
			if got := slices.Sorted(maps.Keys(res.Refs)); !slices.Equal(got, tt.want) {
				t.Errorf("watched %v, want %v", got, tt.want)
			}
		})
	}

	// The default branch is whatever the remote's HEAD names.
	r.git("symbolic-ref", "HEAD", "refs/heads/dev")
	cfg := pollerCfg("default", r.dir)
	dev := r.fileCommit("on-dev")
	res := e.poll(e.poller(cfg))
	if got := slices.Sorted(maps.Keys(res.Refs)); !slices.Equal(got, []string{"refs/heads/dev"}) {
		t.Errorf("after HEAD moved: watched %v, want dev", got)
	}
	if got := revisions(res.Changes); !slices.Equal(got, []string{"dev:" + dev}) {
		t.Errorf("after HEAD moved: changes %v, want dev's new commit", got)
	}
}

func TestTags(t *testing.T) {
	r := newRepo(t)
	base := r.fileCommit("base")
	r.git("tag", "v0")
	e := newEnv(t)
	cfg := pollerCfg("p", r.dir)
	cfg.Tags = true
	p := e.poller(cfg)
	if res := e.poll(p); len(res.Changes) != 0 || res.Refs["refs/tags/v0"] != base {
		t.Fatalf("first poll: changes %v, refs %v", revisions(res.Changes), res.Refs)
	}

	r.git("tag", "v1", base) // lightweight, on a known commit
	c := r.fileCommit("c")
	r.git("tag", "-a", "-m", "release 2", "v2", c) // annotated, on a new commit
	got := e.poll(p).Changes
	want := []string{"main:" + c, "refs/tags/v1:" + base, "refs/tags/v2:" + c}
	if !slices.Equal(revisions(got), want) {
		t.Errorf("got %v, want %v", revisions(got), want)
	}
	if s := e.state("p"); s["refs/tags/v2"] != r.rev("v2") || s["refs/tags/v2"] == c {
		t.Errorf("stored %s for v2, want the tag object %s", s["refs/tags/v2"], r.rev("v2"))
	}
	// A moved tag is a change again; a deleted one is forgotten.
	r.git("tag", "-f", "v1", c)
	r.git("tag", "-d", "v0")
	if got := revisions(e.poll(p).Changes); !slices.Equal(got, []string{"refs/tags/v1:" + c}) {
		t.Errorf("moved tag: got %v", got)
	}
	if _, ok := e.state("p")["refs/tags/v0"]; ok {
		t.Errorf("deleted tag still in state")
	}
}

func TestBuildOnFirstPoll(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	head := r.fileCommit("head")
	r.git("branch", "dev", "HEAD~1")
	e := newEnv(t)
	cfg := pollerCfg("p", r.dir)
	cfg.AllBranches, cfg.BuildOnFirstPoll = true, true
	got := revisions(e.poll(e.poller(cfg)).Changes)
	if want := []string{"dev:" + r.rev("dev"), "main:" + head}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := e.poll(e.poller(cfg)).Changes; len(got) != 0 {
		t.Errorf("second poll: %v", revisions(got))
	}
}

// TestSinkFailure checks that the state moves only with the changes: when
// storing fails, the next poll finds the same commits.
func TestSinkFailure(t *testing.T) {
	r := newRepo(t)
	base := r.fileCommit("base")
	e := newEnv(t)
	sink := &signalSink{st: e.st}
	o := e.options()
	o.Sink = sink
	p := NewPoller(pollerCfg("p", r.dir), o)
	e.poll(p)

	c := r.fileCommit("c")
	sink.fail = errors.New("disk full")
	if _, err := p.Poll(context.Background()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("poll with a failing sink: err = %v", err)
	}
	if s := e.state("p"); s["refs/heads/main"] != base {
		t.Errorf("state moved to %s without its changes", s["refs/heads/main"])
	}
	sink.fail = nil
	if got := revisions(e.poll(p).Changes); !slices.Equal(got, []string{"main:" + c}) {
		t.Errorf("after the failure: got %v, want c", got)
	}
}

// TestRepoChanged checks that a poller whose repo= changed records the new
// repository's heads afresh instead of taking them all for new commits.
func TestRepoChanged(t *testing.T) {
	r1, r2 := newRepo(t), newRepo(t)
	r1.fileCommit("one")
	r2.fileCommit("two")
	r2.git("branch", "extra")
	e := newEnv(t)
	cfg := pollerCfg("p", r1.dir)
	cfg.AllBranches = true
	e.poll(e.poller(cfg))
	cfg2 := *cfg
	cfg2.Repo = r2.dir
	if got := e.poll(e.poller(&cfg2)).Changes; len(got) != 0 {
		t.Errorf("changed repo: got %v, want nothing", revisions(got))
	}
	want := map[string]string{"repo": r2.dir, "refs/heads/main": r2.rev("main"), "refs/heads/extra": r2.rev("main")}
	if got := e.state("p"); !maps.Equal(got, want) {
		t.Errorf("state %v, want %v", got, want)
	}
}

func TestPollErrors(t *testing.T) {
	e := newEnv(t)
	missing := t.TempDir() + "/nothing-here"
	_, err := e.poller(pollerCfg("p", missing)).Poll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "git poller p: list refs of "+missing) {
		t.Errorf("missing repository: err = %v", err)
	}

	r := newRepo(t) // empty: no commits, no default branch
	_, err = e.poller(pollerCfg("q", r.dir)).Poll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "give branches=") {
		t.Errorf("empty repository: err = %v", err)
	}

	cfg := pollerCfg("s", "https://example.invalid/x.git")
	cfg.Auth = config.GitAuth{TokenSecret: "gh", Username: "x"}
	_, err = e.poller(cfg).Poll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "secret gh not found") {
		t.Errorf("missing secret: err = %v", err)
	}
}

// TestNewBranchFromOldCommit checks that a new branch made from a commit
// far back in a long known history yields only its own commits: the walk
// must reach the branch point through the known history.
func TestNewBranchFromOldCommit(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	r.fastCommits("main", 400)
	e := newEnv(t)
	cfg := pollerCfg("p", r.dir)
	cfg.AllBranches = true
	p := e.poller(cfg)
	e.poll(p)

	r.git("checkout", "-q", "-b", "old", "main~350")
	c := r.fileCommit("on-old")
	if got := revisions(e.poll(p).Changes); !slices.Equal(got, []string{"old:" + c}) {
		t.Errorf("got %v, want only the new branch's commit", got)
	}
}
