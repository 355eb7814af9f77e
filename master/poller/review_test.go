package poller

import (
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
