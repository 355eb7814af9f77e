package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGitPollerParse checks what git_poller() keeps of its arguments.
func TestGitPollerParse(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "master.star")
	src := `
git_poller("https://example.org/a.git")
git_poller("git@example.org:b.git", branches = ["main", "dev"], tags = True, interval = 60,
           poll_at_launch = False, project = "p", codebase = "cb", category = "c", name = "b",
           build_on_first_poll = True, auth = {"ssh_key": "keys/id", "known_hosts": "/etc/kh"})
git_poller("repos/c", branches = True, interval = None, auth = None)
git_poller("https://example.org/d.git", branches = "^release/", auth = {"token": secret("gh"), "username": "bot"})
git_poller("ssh://git@example.org/e.git", branches = ("x",), auth = {"ssh_key": secret("deploy_key")})
git_poller("https://example.org/f.git", auth = {"token": secret("gh")})
git_poller("file:///srv/git/g.git")
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		GitPoller
		re string
	}
	var got []summary
	for _, p := range cfg.GitPollers {
		s := summary{GitPoller: *p}
		if p.BranchRegexp != nil {
			s.re = p.BranchRegexp.String()
		}
		s.BranchRegexp, s.Pos = nil, Pos{}
		got = append(got, s)
	}
	want := []summary{
		{GitPoller: GitPoller{Name: "https://example.org/a.git", Repo: "https://example.org/a.git", Interval: DefaultPollInterval, PollAtLaunch: true}},
		{GitPoller: GitPoller{Name: "b", Repo: "git@example.org:b.git", Branches: []string{"main", "dev"}, Tags: true,
			Interval: time.Minute, Project: "p", Codebase: "cb", Category: "c", BuildOnFirstPoll: true,
			Auth: GitAuth{SSHKey: filepath.Join(dir, "keys/id"), KnownHosts: "/etc/kh"}}},
		{GitPoller: GitPoller{Name: filepath.Join(dir, "repos/c"), Repo: filepath.Join(dir, "repos/c"), AllBranches: true, PollAtLaunch: true}},
		{GitPoller: GitPoller{Name: "https://example.org/d.git", Repo: "https://example.org/d.git", Interval: DefaultPollInterval, PollAtLaunch: true,
			Auth: GitAuth{TokenSecret: "gh", Username: "bot"}}, re: "^release/"},
		{GitPoller: GitPoller{Name: "ssh://git@example.org/e.git", Repo: "ssh://git@example.org/e.git", Branches: []string{"x"},
			Interval: DefaultPollInterval, PollAtLaunch: true, Auth: GitAuth{SSHKeySecret: "deploy_key"}}},
		{GitPoller: GitPoller{Name: "https://example.org/f.git", Repo: "https://example.org/f.git", Interval: DefaultPollInterval, PollAtLaunch: true,
			Auth: GitAuth{TokenSecret: "gh", Username: DefaultTokenUser}}},
		{GitPoller: GitPoller{Name: "file:///srv/git/g.git", Repo: "file:///srv/git/g.git", Interval: DefaultPollInterval, PollAtLaunch: true}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d pollers, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.GitPoller.Equal(&w.GitPoller) || g.re != w.re {
			t.Errorf("poller %d:\ngot  %+v re=%q\nwant %+v re=%q", i, g.GitPoller, g.re, w.GitPoller, w.re)
		}
	}
	if p := cfg.GitPollers[0]; p.Pos.Line != 2 || !strings.HasSuffix(p.Pos.File, "master.star") {
		t.Errorf("pos = %s, want master.star:2", p.Pos)
	}
}

func TestGitPollerWatchesBranch(t *testing.T) {
	cfg := loadSrc(t, `
git_poller("https://example.org/a.git", name = "default")
git_poller("https://example.org/a.git", name = "all", branches = True)
git_poller("https://example.org/a.git", name = "list", branches = ["main", "release/1"])
git_poller("https://example.org/a.git", name = "re", branches = "^release/[0-9]+$")
`)
	tests := []struct {
		poller, branch string
		want           bool
	}{
		{"default", "main", false}, // the caller decides for the default branch
		{"all", "main", true},
		{"all", "anything/at/all", true},
		{"list", "main", true},
		{"list", "release/1", true},
		{"list", "release/2", false},
		{"list", "mai", false},
		{"re", "release/12", true},
		{"re", "release/12-rc", false},
		{"re", "main", false},
	}
	byName := map[string]*GitPoller{}
	for _, p := range cfg.GitPollers {
		byName[p.Name] = p
	}
	if !byName["default"].DefaultBranchOnly() || byName["all"].DefaultBranchOnly() || byName["re"].DefaultBranchOnly() {
		t.Errorf("DefaultBranchOnly wrong")
	}
	for _, tt := range tests {
		if got := byName[tt.poller].WatchesBranch(tt.branch); got != tt.want {
			t.Errorf("%s.WatchesBranch(%q) = %t, want %t", tt.poller, tt.branch, got, tt.want)
		}
	}
}

// TestGitPollerEqual checks that Equal sees every difference that matters
// to polling and ignores the position.
func TestGitPollerEqual(t *testing.T) {
	a := loadSrc(t, `git_poller("https://example.org/a.git", branches = "^x")`).GitPollers[0]
	b := loadSrc(t, "\n\n"+`git_poller("https://example.org/a.git", branches = "^x")`).GitPollers[0]
	if !a.Equal(b) {
		t.Errorf("same declaration at another position: not Equal")
	}
	for _, src := range []string{
		`git_poller("https://example.org/a.git", branches = "^y")`,
		`git_poller("https://example.org/a.git", branches = ["x"])`,
		`git_poller("https://example.org/a.git")`,
		`git_poller("https://example.org/a.git", branches = "^x", interval = 10)`,
		`git_poller("https://example.org/a.git", branches = "^x", auth = {"token": secret("t")})`,
		`git_poller("https://example.org/a.git", branches = "^x", name = "other")`,
	} {
		if c := loadSrc(t, src).GitPollers[0]; a.Equal(c) {
			t.Errorf("%s: Equal to %+v", src, a)
		}
	}
}
