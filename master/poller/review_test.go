package poller

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"testing"
)

// A poller whose repo= now names the same repository another way (a
// mirror, file:// added) polls its first poll of the new URL fine, with
// build_on_first_poll too: its cache is another directory, which must be
// filled although the stored revisions did not change.
func TestRepoURLChangedSameRevisions(t *testing.T) {
	r := newRepo(t)
	head := r.fileCommit("one")
	e := newEnv(t)
	cfg := pollerCfg("p", r.dir)
	cfg.BuildOnFirstPoll = true
	if got := revisions(e.poll(e.poller(cfg)).Changes); !slices.Equal(got, []string{"main:" + head}) {
		t.Fatalf("first poll: %v", got)
	}
	cfg2 := *cfg
	cfg2.Repo = "file://" + r.dir
	// The head was built already: not again.
	if got := revisions(e.poll(e.poller(&cfg2)).Changes); len(got) != 0 {
		t.Errorf("first poll of the new URL: %v, want nothing", got)
	}
	if s := e.state("p"); s["repo"] != cfg2.Repo || s["refs/heads/main"] != head {
		t.Errorf("state %v", s)
	}
	c := r.fileCommit("two")
	if got := revisions(e.poll(e.poller(&cfg2)).Changes); !slices.Equal(got, []string{"main:" + c}) {
		t.Errorf("next poll: %v, want the new commit", got)
	}
}

// Two pollers of one repository share its cache. When one has fetched a
// force-push, the revision the other last stored is no longer reachable
// from the cache's refs; a repack (which either poller does when packs
// pile up) must not drop it, or the other takes the old history for new
// commits and builds it again.
func TestSharedCacheForcePushRepack(t *testing.T) {
	r := newRepo(t)
	a := r.fileCommit("a")
	r.fileCommit("b")
	r.fileCommit("c")
	e := newEnv(t)
	p1 := e.poller(pollerCfg("p1", r.dir))
	p2 := e.poller(pollerCfg("p2", r.dir))
	e.poll(p1)
	e.poll(p2)

	r.git("reset", "-q", "--hard", a)
	d := r.fileCommit("d")
	want := []string{"main:" + d}
	if got := revisions(e.poll(p1).Changes); !slices.Equal(got, want) {
		t.Fatalf("p1: got %v, want %v", got, want)
	}
	repackCache(t, CacheDir(e.cache, r.dir))
	if got := revisions(e.poll(p2).Changes); !slices.Equal(got, want) {
		t.Errorf("p2, after p1 fetched the force-push and the cache was repacked: got %v, want %v", got, want)
	}
}

// As TestSharedCacheForcePushRepack, for one poller whose changes could
// not be stored after it had fetched a force-push.
func TestForcePushSinkFailureRepack(t *testing.T) {
	r := newRepo(t)
	a := r.fileCommit("a")
	r.fileCommit("b")
	e := newEnv(t)
	sink := &signalSink{st: e.st}
	o := e.options()
	o.Sink = sink
	p := NewPoller(pollerCfg("p", r.dir), o)
	e.poll(p)

	r.git("reset", "-q", "--hard", a)
	d := r.fileCommit("d")
	sink.fail = errors.New("disk full")
	if _, err := p.Poll(context.Background()); err == nil {
		t.Fatal("poll with a failing sink succeeded")
	}
	sink.fail = nil
	repackCache(t, CacheDir(e.cache, r.dir))
	if got := revisions(e.poll(p).Changes); !slices.Equal(got, []string{"main:" + d}) {
		t.Errorf("got %v, want d only", got)
	}
}

func repackCache(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("git", "-C", dir, "repack", "-a", "-d", "-q").CombinedOutput(); err != nil {
		t.Fatalf("git repack: %v\n%s", err, out)
	}
	if out, err := exec.Command("git", "-C", dir, "prune").CombinedOutput(); err != nil {
		t.Fatalf("git prune: %v\n%s", err, out)
	}
}
