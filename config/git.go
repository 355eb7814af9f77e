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
	},
	action:        gitAction,
	haltOnFailure: true, // Buildbot's source steps halt the build on failure
}

// Git step modes and methods, as Buildbot names them.
var (
	gitModes   = []string{"incremental", "full"}
	gitMethods = []string{"clobber", "fresh", "clean", "copy"}
)

// GitAction is git(repo, ...).
type GitAction struct {
	Repo       string
	RepoR      Renderable
	Branch     string // "": the source stamp's branch, else the remote's default
	Mode       string // "incremental" or "full"
	Method     string // "" (incremental), or "clobber", "fresh" or "clean" (full)
	Submodules bool
	Depth      int // 0: no --depth; only used when no revision is asked
	Codebase   string
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
		case "clobber", "fresh", "clean":
		case "copy":
			c.argErrorf("method", "\"copy\" is not supported yet; use \"clobber\", \"fresh\" or \"clean\"")
		default:
			c.argErrorf("method", "want \"clobber\", \"fresh\" or \"clean\", got %q%s", a.Method, didYouMean(a.Method, gitMethods))
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
	if strings.HasPrefix(a.Branch, "-") {
		c.argErrorf("branch", "must not start with '-', got %q", a.Branch)
	}
	if a.RepoR == nil && strings.HasPrefix(a.Repo, "-") {
		c.argErrorf("repo", "must not start with '-', got %q", a.Repo)
	}
	return a, []starlark.Value{reprArg(a.Repo, a.RepoR)}
}

// Rendered returns a copy of a with its repository rendered for the build.
func (a *GitAction) Rendered(env *BuildEnv) (*GitAction, error) {
	if a.RepoR == nil {
		return a, nil
	}
	repo, err := a.RepoR.Render(env)
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	if repo == "" {
		return nil, fmt.Errorf("repo: %s rendered to an empty string", a.RepoR)
	}
	na := *a
	na.Repo, na.RepoR = repo, nil
	return &na, nil
}

// SourceRevision returns what the build knows of codebase from its source
// stamps: the branch and revision.
func (env *BuildEnv) SourceRevision(codebase string) (branch, revision string) {
	b, _ := env.source(codebase, "branch")
	r, _ := env.source(codebase, "revision")
	return b, r
}
