package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// Defaults of git_poller().
const (
	DefaultPollInterval = 5 * time.Minute
	// DefaultTokenUser is the HTTPS user name sent with auth={"token": ...}
	// when no username is given; GitHub, Gitea and GitLab accept any name
	// with a token, and this is the one GitHub documents.
	DefaultTokenUser = "x-access-token"
)

// GitPoller is git_poller(...): a git repository the master polls for new
// commits, each of which becomes a change.
//
// Which branches are watched is one of: AllBranches, the Branches listed,
// the branches BranchRegexp matches, or, when none is set, the remote's
// default branch (the branch its HEAD names).
type GitPoller struct {
	// Name identifies the poller: in its stored state, in
	// /change_hook/poller?poller=NAME and in the web UI. It is unique among
	// pollers; default Repo.
	Name string
	// Repo is a URL (https, http, ssh, git or file), an scp-like address
	// such as "git@example.org:proj.git", or an absolute local path (a
	// relative one was made absolute against the directory of the file that
	// declared the poller).
	Repo string

	AllBranches  bool           // branches=True
	Branches     []string       // branches=["main", ...]; nil when not given
	BranchRegexp *regexp.Regexp // branches="^release/"; nil when not given

	// Tags also watches tags: each new or moved tag is one change for the
	// commit it names, on branch "refs/tags/NAME".
	Tags bool
	// Interval is the time from the end of one poll to the start of the
	// next (default DefaultPollInterval); 0 (interval=None) polls only at
	// launch and when asked through /change_hook/poller.
	Interval time.Duration
	// PollAtLaunch polls when the master starts (default true) rather than
	// one Interval later.
	PollAtLaunch bool
	// BuildOnFirstPoll: the first poll of a repository the master has no
	// record of makes one change per watched branch head. By default it
	// only records the heads.
	BuildOnFirstPoll bool

	// Set on every change the poller makes.
	Project, Codebase, Category string

	Auth GitAuth
	Pos  Pos // position of the git_poller(...) call
}

// GitAuth is how a poller authenticates to its repository. Secrets are
// names, looked up when the poller connects, never when the configuration
// loads.
type GitAuth struct {
	// TokenSecret names the secret sent as the HTTPS password with user
	// Username (default DefaultTokenUser); "" for none.
	TokenSecret string
	Username    string
	// SSHKey is the absolute path of an SSH private key file, or
	// SSHKeySecret names a secret holding the key itself; at most one is
	// set, and only for ssh repositories. With neither, ssh uses the
	// master's SSH agent.
	SSHKey       string
	SSHKeySecret string
	// KnownHosts is the absolute path of a known_hosts file; "" means
	// $SSH_KNOWN_HOSTS or ~/.ssh/known_hosts.
	KnownHosts string
}

// DefaultBranchOnly reports whether p watches only the remote's default
// branch, having been given no branches=.
func (p *GitPoller) DefaultBranchOnly() bool {
	return !p.AllBranches && p.Branches == nil && p.BranchRegexp == nil
}

// WatchesBranch reports whether branch (a name such as "main", without
// "refs/heads/") is selected by branches=. It is false for every branch when
// DefaultBranchOnly: the caller knows which branch is the default.
func (p *GitPoller) WatchesBranch(branch string) bool {
	switch {
	case p.AllBranches:
		return true
	case p.BranchRegexp != nil:
		return p.BranchRegexp.MatchString(branch)
	}
	return slices.Contains(p.Branches, branch)
}

// Equal reports whether p and q poll the same way: every field but Pos is
// the same. A reconfig restarts a poller only when it is not Equal to its
// previous declaration.
func (p *GitPoller) Equal(q *GitPoller) bool {
	re := func(r *regexp.Regexp) string {
		if r == nil {
			return ""
		}
		return "re:" + r.String()
	}
	return p.Name == q.Name && p.Repo == q.Repo &&
		p.AllBranches == q.AllBranches &&
		slices.Equal(p.Branches, q.Branches) && (p.Branches == nil) == (q.Branches == nil) &&
		re(p.BranchRegexp) == re(q.BranchRegexp) &&
		p.Tags == q.Tags && p.Interval == q.Interval &&
		p.PollAtLaunch == q.PollAtLaunch && p.BuildOnFirstPoll == q.BuildOnFirstPoll &&
		p.Project == q.Project && p.Codebase == q.Codebase && p.Category == q.Category &&
		p.Auth == q.Auth
}

var gitPollerParams = []param{
	{name: "repo", required: true, positional: true},
	{name: "branches"},
	{name: "tags"},
	{name: "interval"},
	{name: "poll_at_launch"},
	{name: "project"},
	{name: "codebase"},
	{name: "category"},
	{name: "name"},
	{name: "build_on_first_poll"},
	{name: "auth"},
}

// gitAuthKeys are the keys of git_poller(auth={...}).
var gitAuthKeys = []string{"token", "username", "ssh_key", "known_hosts"}

const gitPollersKey = "starforge/config.gitpollers"

// gitPollers returns the pollers declared so far in this load.
func (l *loader) gitPollers() *[]*GitPoller {
	if p, ok := l.thread.Local(gitPollersKey).(*[]*GitPoller); ok {
		return p
	}
	p := new([]*GitPoller)
	l.thread.SetLocal(gitPollersKey, p)
	return p
}

// builtinGitPoller implements git_poller(repo, branches=None, tags=False,
// interval="5m", poll_at_launch=True, project="", codebase="",
// category="", name=repo, build_on_first_poll=False, auth=None).
func builtinGitPoller(c *call) (starlark.Value, error) {
	p := &GitPoller{Pos: c.pos}
	repo := c.nonEmptyStr("repo", "")
	kind := ""
	if repo != "" {
		var err error
		if p.Repo, kind, err = checkRepo(repo, c.l.baseDir()); err != nil {
			c.argErrorf("repo", "%v", err)
		}
	}
	c.pollerBranches(p)
	p.Tags = c.bool("tags", false)
	if v := c.value("interval"); v != starlark.None {
		p.Interval = c.duration("interval", DefaultPollInterval)
	}
	p.PollAtLaunch = c.bool("poll_at_launch", true)
	p.Project = c.str("project", "")
	p.Codebase = c.str("codebase", "")
	p.Category = c.str("category", "")
	p.Name = c.nonEmptyStr("name", p.Repo)
	p.BuildOnFirstPoll = c.bool("build_on_first_poll", false)
	c.pollerAuth(p, kind)
	if p.Name != "" {
		ps := c.l.gitPollers()
		*ps = append(*ps, p)
	}
	return starlark.None, nil
}

// checkRepo checks a repository address and returns it with a relative
// local path made absolute against dir, and its kind: "http" (http and
// https), "ssh" (ssh URLs and scp-like addresses), "git" or "local".
func checkRepo(repo, dir string) (abs, kind string, err error) {
	if strings.HasPrefix(repo, "-") {
		return "", "", fmt.Errorf("must not start with '-', got %q", repo)
	}
	if strings.ContainsAny(repo, "\x00\n\r") {
		return "", "", fmt.Errorf("%q contains a control character", repo)
	}
	if i := strings.Index(repo, "://"); i >= 0 {
		u, err := url.Parse(repo)
		if err != nil {
			return "", "", fmt.Errorf("invalid URL %q: %v", repo, err)
		}
		if _, hasPw := u.User.Password(); hasPw {
			return "", "", fmt.Errorf("%q has a password in it; give it as auth={\"token\": secret(\"NAME\")} so that it is neither shown nor stored", u.Redacted())
		}
		switch u.Scheme {
		case "http", "https":
			kind = "http"
		case "ssh", "git":
			kind = u.Scheme
		case "file":
			if u.Host != "" && u.Host != "localhost" {
				return "", "", fmt.Errorf("file URL %q names host %q; want file:///path", repo, u.Host)
			}
			if u.Path == "" {
				return "", "", fmt.Errorf("file URL %q has no path", repo)
			}
			return repo, "local", nil
		default:
			return "", "", fmt.Errorf("unsupported URL scheme %q in %q; want https, http, ssh, git or file", u.Scheme, repo)
		}
		if u.Host == "" {
			return "", "", fmt.Errorf("URL %q has no host", repo)
		}
		return repo, kind, nil
	}
	// As git does: a colon before the first slash makes an scp-like
	// address (user@host:path).
	if colon := strings.IndexByte(repo, ':'); colon > 0 && !strings.Contains(repo[:colon], "/") {
		if colon == len(repo)-1 {
			return "", "", fmt.Errorf("scp-like address %q has no path after ':'", repo)
		}
		return repo, "ssh", nil
	}
	if !filepath.IsAbs(repo) {
		repo = filepath.Join(dir, repo)
	}
	return filepath.Clean(repo), "local", nil
}

// pollerBranches parses branches= into p.
func (c *call) pollerBranches(p *GitPoller) {
	v, ok := c.given("branches")
	if !ok {
		return
	}
	const want = `want a list of branch names, True for all branches, or a regular expression starting with "^"`
	switch v := v.(type) {
	case starlark.Bool:
		if !v {
			c.argErrorf("branches", "%s, got False (leave branches out to watch the default branch)", want)
			return
		}
		p.AllBranches = true
	case starlark.String:
		s := string(v)
		if !strings.HasPrefix(s, "^") {
			c.argErrorf("branches", "%s, got %q (did you mean [%q]?)", want, s, s)
			return
		}
		re, err := regexp.Compile(s)
		if err != nil {
			c.argErrorf("branches", "invalid regular expression %q: %v", s, err)
			return
		}
		p.BranchRegexp = re
	case *starlark.List, starlark.Tuple:
		names := c.strList("branches")
		if v.(starlark.Indexable).Len() == 0 {
			c.argErrorf("branches", "empty list; leave branches out to watch the default branch, or use True for all")
			return
		}
		seen := make(map[string]bool, len(names))
		for i, n := range names {
			if err := checkBranchName(n); err != nil {
				c.argErrorf(fmt.Sprintf("branches[%d]", i), "%v", err)
				continue
			}
			if seen[n] {
				c.argErrorf(fmt.Sprintf("branches[%d]", i), "branch %q listed twice", n)
				continue
			}
			seen[n] = true
			p.Branches = append(p.Branches, n)
		}
		if p.Branches == nil {
			p.Branches = []string{} // still a list: not "the default branch"
		}
	default:
		c.argErrorf("branches", "%s, got %s", want, v.Type())
	}
}

// checkBranchName checks a branch name given in branches=[...]. It catches
// the mistakes that would make a branch silently never match, not every
// rule of git check-ref-format.
func checkBranchName(n string) error {
	switch {
	case n == "":
		return fmt.Errorf("empty branch name")
	case strings.HasPrefix(n, "refs/"):
		return fmt.Errorf("%q: give the branch name without refs/heads/, e.g. %q", n, strings.TrimPrefix(strings.TrimPrefix(n, "refs/"), "heads/"))
	case strings.HasPrefix(n, "-") || strings.HasPrefix(n, "/") || strings.HasSuffix(n, "/") || strings.HasSuffix(n, ".lock"):
		return fmt.Errorf("%q is not a valid branch name", n)
	case strings.ContainsAny(n, " ~^:?*[\\\x7f") || strings.Contains(n, "..") || strings.Contains(n, "@{") || strings.Contains(n, "//"):
		return fmt.Errorf("%q is not a valid branch name (to match several branches use a regular expression starting with \"^\")", n)
	}
	for _, r := range n {
		if r < ' ' {
			return fmt.Errorf("%q contains a control character", n)
		}
	}
	return nil
}

// pollerAuth parses auth={...} into p; kind is the repository's kind from
// checkRepo ("" if the repository was invalid).
func (c *call) pollerAuth(p *GitPoller, kind string) {
	v, ok := c.given("auth")
	if !ok {
		return
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		c.argErrorf("auth", `want a dict such as {"token": secret("NAME")} or {"ssh_key": "PATH"}, got %s`, v.Type())
		return
	}
	a := &p.Auth
	for _, kv := range d.Items() {
		k, ok := starlark.AsString(kv[0])
		if !ok {
			c.argErrorf("auth", "want string keys, got %s key %s", kv[0].Type(), kv[0])
			continue
		}
		arg := fmt.Sprintf("auth[%q]", k)
		switch k {
		case "token":
			rv, _ := kv[1].(*renderValue)
			sr, _ := secretOf(rv)
			if sr == nil {
				c.argErrorf(arg, `want secret("NAME"), got %s; a token written in master.star is visible to anyone who can read the file`, kv[1].Type())
				continue
			}
			a.TokenSecret = sr.name
		case "username":
			s, ok := starlark.AsString(kv[1])
			if !ok || s == "" {
				c.argErrorf(arg, "want a non-empty string, got %s", kv[1].String())
				continue
			}
			a.Username = s
		case "ssh_key", "known_hosts":
			want := "want a file path"
			if k == "ssh_key" {
				want += ` or secret("NAME")`
			}
			if rv, isRV := kv[1].(*renderValue); isRV && k == "ssh_key" {
				if sr, _ := secretOf(rv); sr != nil {
					a.SSHKeySecret = sr.name
					continue
				}
			}
			path, isStr := kv[1].(starlark.String)
			if !isStr {
				c.argErrorf(arg, "%s, got %s", want, kv[1].Type())
				continue
			}
			if path == "" {
				c.argErrorf(arg, "must not be empty")
				continue
			}
			abs := string(path)
			if !filepath.IsAbs(abs) {
				abs = filepath.Join(c.l.baseDir(), abs)
			}
			if k == "ssh_key" {
				a.SSHKey = filepath.Clean(abs)
			} else {
				a.KnownHosts = filepath.Clean(abs)
			}
		default:
			c.argErrorf("auth", "unknown key %q%s; want %s", k, didYouMean(k, gitAuthKeys), strings.Join(gitAuthKeys, ", "))
		}
	}
	ssh := a.SSHKey != "" || a.SSHKeySecret != "" || a.KnownHosts != ""
	switch {
	case a.TokenSecret != "" && ssh:
		c.argErrorf("auth", "token is for https repositories and ssh_key and known_hosts for ssh ones; give one kind")
	case a.Username != "" && a.TokenSecret == "":
		c.argErrorf("auth", "username without token; for ssh the user is part of the address, as in git@host:path")
	case a.TokenSecret != "" && kind != "" && kind != "http":
		c.argErrorf("auth", "token is sent over https only, but repo %q is not an http(s) URL", p.Repo)
	case ssh && kind != "" && kind != "ssh":
		c.argErrorf("auth", "ssh_key and known_hosts are for ssh repositories, but repo %q is not one (want ssh://... or user@host:path)", p.Repo)
	}
	if a.TokenSecret != "" && a.Username == "" {
		a.Username = DefaultTokenUser
	}
}

// secretOf returns the secret renderer of v, or nil if v is not secret(...).
func secretOf(v *renderValue) (*secretRenderer, bool) {
	if v == nil {
		return nil, false
	}
	sr, ok := v.r.(*secretRenderer)
	return sr, ok
}

// collectGitPollers moves the declared pollers into cfg and checks that
// their names are unique.
func (l *loader) collectGitPollers(cfg *Config) {
	ps := *l.gitPollers()
	byName := make(map[string]*GitPoller, len(ps))
	for _, p := range ps {
		if first := byName[p.Name]; first != nil {
			hint := ""
			if p.Name == p.Repo {
				hint = "; give each a different name="
			}
			l.errs.addf(p.Pos, "git_poller: duplicate name %q (first declared at %s)%s", p.Name, first.Pos, hint)
			continue
		}
		byName[p.Name] = p
		cfg.GitPollers = append(cfg.GitPollers, p)
	}
}
