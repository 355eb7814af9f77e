package config

import (
	"fmt"
	"strings"

	"go.starlark.net/starlark"
)

// gitStepKind is git(repo, ...): Buildbot's Git source step, run on the
// worker as a sequence of stat, rmdir and shell commands.
var gitStepKind = &stepKind{
	name: "git",
	params: []param{
		{name: "repo", required: true, positional: true},
		{name: "branch"},
		{name: "mode"},
		{name: "method"},
		{name: "submodules"},
		{name: "shallow"},
		{name: "codebase"},
		{name: "retry_fetch"},
		{name: "clobber_on_failure"},
		{name: "ssh_key"},
		{name: "ssh_known_hosts"},
	},
	action:        gitAction,
	haltOnFailure: true, // Buildbot's source steps halt the build on failure
}

// Git step modes and methods, as Buildbot names them.
var (
	gitModes   = []string{"incremental", "full"}
	gitMethods = []string{"clobber", "fresh", "clean", "copy"}
)

// maxGitRetries bounds retry_fetch: past a few attempts a failing
// remote is down, not flaky.
const maxGitRetries = 20

// GitAction is git(repo, ...).
type GitAction struct {
	Repo       string
	RepoR      Renderable
	Branch     string // "": the source stamp's branch, else the remote's default
	Mode       string // "incremental" or "full"
	Method     string // "" (incremental), or "clobber", "fresh", "clean" or "copy" (full)
	Submodules bool
	Depth      int // 0: no --depth; only used when no revision is asked
	Codebase   string

	// RetryFetch is how many more times a failed git fetch or git clone
	// is tried (retry_fetch=True is 1).
	RetryFetch int
	// ClobberOnFailure: when updating an existing checkout fails, remove
	// it and clone afresh, once.
	ClobberOnFailure bool

	// SSHKey is the text of a private key git uses over ssh (usually a
	// secret, in SSHKeyR); SSHKnownHosts the known_hosts lines that go
	// with it. "" and nil: none.
	SSHKey         string
	SSHKeyR        Renderable
	SSHKnownHosts  string
	SSHKnownHostsR Renderable
}

// Kind implements StepAction.
func (*GitAction) Kind() string { return "git" }

func gitAction(c *call) (StepAction, []starlark.Value) {
	a := &GitAction{
		Mode:       c.str("mode", "incremental"),
		Method:     c.str("method", ""),
		Branch:     c.str("branch", ""),
		Submodules: c.bool("submodules", false),
		Codebase:   c.str("codebase", ""),

		ClobberOnFailure: c.bool("clobber_on_failure", false),
	}
	a.Repo, a.RepoR = c.strR("repo", "", true)
	switch a.Mode {
	case "incremental":
		if a.Method != "" {
			c.argErrorf("method", "only for mode=\"full\"; mode=\"incremental\" takes no method, got %q", a.Method)
		}
	case "full":
		switch a.Method {
		case "":
			a.Method = "fresh"
		case "clobber", "fresh", "clean", "copy":
		default:
			c.argErrorf("method", "want \"clobber\", \"fresh\", \"clean\" or \"copy\", got %q%s", a.Method, didYouMean(a.Method, gitMethods))
		}
	default:
		c.argErrorf("mode", "want \"incremental\" or \"full\", got %q%s", a.Mode, didYouMean(a.Mode, gitModes))
	}
	if v, ok := c.given("shallow"); ok {
		switch x := v.(type) {
		case starlark.Bool:
			if x {
				a.Depth = 1
			}
		case starlark.Int:
			n, ok := x.Int64()
			if !ok || n <= 0 {
				c.argErrorf("shallow", "want True, False or a positive depth, got %s", x)
			} else {
				a.Depth = int(n)
			}
		default:
			c.argErrorf("shallow", "want True, False or a positive depth, got %s", v.Type())
		}
	}
	if v, ok := c.given("retry_fetch"); ok {
		switch x := v.(type) {
		case starlark.Bool:
			if x {
				a.RetryFetch = 1
			}
		case starlark.Int:
			n, ok := x.Int64()
			if !ok || n < 0 || n > maxGitRetries {
				c.argErrorf("retry_fetch", "want True, False or a number of retries from 0 to %d, got %s", maxGitRetries, x)
			} else {
				a.RetryFetch = int(n)
			}
		default:
			c.argErrorf("retry_fetch", "want True, False or a number of retries, got %s", v.Type())
		}
	}
	a.SSHKey, a.SSHKeyR = gitSSHArg(c, "ssh_key")
	a.SSHKnownHosts, a.SSHKnownHostsR = gitSSHArg(c, "ssh_known_hosts")
	if a.SSHKey != "" && !isPrivateKey(a.SSHKey) {
		// Never echo the string: it may be a mangled key.
		c.argErrorf("ssh_key", "want the text of a private key (\"-----BEGIN ... PRIVATE KEY-----\" ...), best as secret(\"name\"); the string given is not one (a path to a key file is not read)")
	}
	if (a.SSHKnownHosts != "" || a.SSHKnownHostsR != nil) && a.SSHKey == "" && a.SSHKeyR == nil {
		c.argErrorf("ssh_known_hosts", "only with ssh_key: the known hosts are checked when git connects with that key")
	}
	if strings.HasPrefix(a.Branch, "-") {
		c.argErrorf("branch", "must not start with '-', got %q", a.Branch)
	}
	if a.RepoR == nil && strings.HasPrefix(a.Repo, "-") {
		c.argErrorf("repo", "must not start with '-', got %q", a.Repo)
	}
	return a, []starlark.Value{reprArg(a.Repo, a.RepoR)}
}

// gitSSHArg returns the ssh_key or ssh_known_hosts argument: a non-empty
// string or a build-time value.
func gitSSHArg(c *call, name string) (string, Renderable) {
	v, ok := c.given(name)
	if !ok {
		return "", nil
	}
	if r, ok := asRenderable(v, c.pos); ok {
		return "", r
	}
	s, ok := v.(starlark.String)
	if !ok {
		c.argErrorf(name, "want a string or a build-time value such as secret(\"name\"), got %s", v.Type())
		return "", nil
	}
	if s == "" {
		c.argErrorf(name, "must not be empty (use None for none)")
	}
	return string(s), nil
}

// isPrivateKey reports whether s looks like the text of a private key
// file (OpenSSH or PEM), which is all ssh -i accepts.
func isPrivateKey(s string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, "-----BEGIN ") && strings.Contains(s, "PRIVATE KEY-----")
}

// Rendered returns a copy of a with its repository and ssh arguments
// rendered for the build.
func (a *GitAction) Rendered(env *BuildEnv) (*GitAction, error) {
	if a.RepoR == nil && a.SSHKeyR == nil && a.SSHKnownHostsR == nil {
		return a, nil
	}
	na := *a
	if a.RepoR != nil {
		repo, err := a.RepoR.Render(env)
		if err != nil {
			return nil, fmt.Errorf("repo: %w", err)
		}
		if repo == "" {
			return nil, fmt.Errorf("repo: %s rendered to an empty string", a.RepoR)
		}
		na.Repo, na.RepoR = repo, nil
	}
	if a.SSHKeyR != nil {
		key, err := a.SSHKeyR.Render(env)
		if err != nil {
			return nil, fmt.Errorf("ssh_key: %w", err)
		}
		if !isPrivateKey(key) {
			// Never show the value: it is a secret, or meant to be one.
			return nil, fmt.Errorf("ssh_key: %s is not the text of a private key (no \"-----BEGIN ... PRIVATE KEY-----\" line)", a.SSHKeyR)
		}
		na.SSHKey, na.SSHKeyR = key, nil
	}
	if a.SSHKnownHostsR != nil {
		kh, err := a.SSHKnownHostsR.Render(env)
		if err != nil {
			return nil, fmt.Errorf("ssh_known_hosts: %w", err)
		}
		if kh == "" {
			return nil, fmt.Errorf("ssh_known_hosts: %s rendered to an empty string", a.SSHKnownHostsR)
		}
		na.SSHKnownHosts, na.SSHKnownHostsR = kh, nil
	}
	return &na, nil
}

// SourceRevision returns what the build knows of codebase from its source
// stamps: the branch and revision.
func (env *BuildEnv) SourceRevision(codebase string) (branch, revision string) {
	b, _ := env.source(codebase, "branch")
	r, _ := env.source(codebase, "revision")
	return b, r
}
