package build

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/worker/proto"
)

// This file runs git(repo, ...) as Buildbot's Git step does: a sequence of
// stat, rmdir and shell commands on the worker, all logged to the step's
// stdio log.

// gitRun is one git step in progress.
type gitRun struct {
	s       *stepRun
	ctx     context.Context
	stdio   *logSink
	sc      *config.Step // with GIT_TERMINAL_PROMPT=0 added to its env
	a       *config.GitAction
	workdir string
}

func (s *stepRun) git(ctx context.Context, stdio *logSink, sc *config.Step, a *config.GitAction) (result.Result, string) {
	env := s.b.env
	env.Print = func(msg string) { stdio.header(ctx, msg) }
	a, err := a.Rendered(env)
	env.Print = nil
	if err != nil {
		writeError(ctx, stdio, err)
		return result.Exception, "render error: " + firstLine(err.Error())
	}
	s.redactRepo(a.Repo)

	c := *sc
	c.Env = make(map[string]string, len(sc.Env)+1)
	for k, v := range sc.Env {
		c.Env[k] = v
	}
	if _, set := c.Env["GIT_TERMINAL_PROMPT"]; !set {
		c.Env["GIT_TERMINAL_PROMPT"] = "0" // never wait for a password
	}
	g := &gitRun{s: s, ctx: ctx, stdio: stdio, sc: &c, a: a, workdir: s.workdir(sc)}

	rev := s.gitRevision(a.Codebase)
	branch := a.Branch
	if branch == "" {
		branch, _ = env.SourceRevision(a.Codebase)
	}
	depth := a.Depth
	if rev != "" {
		depth = 0 // a shallow fetch may not hold the revision
	}

	updatable := false
	if !(a.Mode == "full" && a.Method == "clobber") {
		ok, res, state := g.exists(".git")
		if res != result.None {
			return res, state
		}
		updatable = ok
	}

	if updatable {
		argv := []string{"git", "fetch", "-f", "--tags"}
		if depth > 0 {
			argv = append(argv, "--depth", strconv.Itoa(depth))
		}
		argv = append(argv, a.Repo, orDefault(branch, "HEAD"))
		if res, state := g.run("git fetch", argv...); res != result.Success {
			return res, state
		}
		target := "FETCH_HEAD"
		if rev != "" {
			if res, state := g.haveRevision(rev, branch); res != result.Success {
				return res, state
			}
			target = rev
		}
		if res, state := g.run("git checkout", "git", "checkout", "-f", target); res != result.Success {
			return res, state
		}
		if res, state := g.run("git reset", "git", "reset", "--hard", target); res != result.Success {
			return res, state
		}
		if branch != "" {
			// Be on the branch, as Buildbot leaves it; a failure is harmless.
			g.s.runShell(ctx, g.sc, config.ShellAction{Argv: []string{"git", "checkout", "-B", branch}}, nil)
		}
		if a.Mode == "full" {
			argv := []string{"git", "clean", "-f", "-f", "-d"}
			if a.Method == "fresh" {
				argv = append(argv, "-x")
			}
			if res, state := g.run("git clean", argv...); res != result.Success {
				return res, state
			}
		}
	} else {
		if res, state := g.rmdir(); res != result.Success {
			return res, state
		}
		argv := []string{"git", "clone"}
		if branch != "" {
			argv = append(argv, "--branch", branch)
		}
		if depth > 0 {
			argv = append(argv, "--depth", strconv.Itoa(depth))
		}
		argv = append(argv, a.Repo, ".")
		if res, state := g.run("git clone", argv...); res != result.Success {
			return res, state
		}
		if rev != "" {
			if res, state := g.haveRevision(rev, branch); res != result.Success {
				return res, state
			}
			if res, state := g.run("git checkout", "git", "checkout", "-f", rev); res != result.Success {
				return res, state
			}
		}
	}

	if a.Submodules {
		if res, state := g.run("git submodule sync", "git", "submodule", "sync"); res != result.Success {
			return res, state
		}
		if res, state := g.run("git submodule update", "git", "submodule", "update", "--init", "--recursive", "--force"); res != result.Success {
			return res, state
		}
	}

	var head string
	res, state := s.runShell(ctx, g.sc, config.ShellAction{Argv: []string{"git", "rev-parse", "HEAD"}}, func(stream byte, line string) {
		if stream == 'o' && head == "" {
			head = strings.TrimSpace(line)
		}
	})
	if res != result.Success {
		return res, "git rev-parse: " + state
	}
	if head == "" {
		stdio.header(ctx, "git rev-parse HEAD printed no revision")
		return result.Failure, "no revision checked out"
	}
	if err := s.setProperty(ctx, "got_revision", head, "Git"); err != nil {
		stdio.header(ctx, err.Error())
		return result.Exception, err.Error()
	}
	stdio.header(ctx, "got_revision = "+head)
	return result.Success, "checked out " + shortSHA(head)
}

// run runs argv as a shell command in the workdir; state names what ran.
func (g *gitRun) run(what string, argv ...string) (result.Result, string) {
	res, state := g.s.runShell(g.ctx, g.sc, config.ShellAction{Argv: argv}, nil)
	if res != result.Success {
		return res, what + ": " + state
	}
	return res, state
}

// exists reports whether the workdir has name. A result other than None
// means the step must end with it.
func (g *gitRun) exists(name string) (bool, result.Result, string) {
	s := g.s
	res, state := s.runCommand(g.ctx, command{name: proto.CmdStat, args: map[string]any{
		"path": s.b.sess.Join(g.workdir, name),
	}}, &lineHook{})
	switch {
	case res == result.Success:
		return true, result.None, ""
	case s.ran(res):
		return false, result.None, "" // stat failed: not there
	}
	return false, res, state
}

// rmdir removes the workdir.
func (g *gitRun) rmdir() (result.Result, string) {
	s := g.s
	res, state := s.runCommand(g.ctx, command{name: proto.CmdRmdir, args: map[string]any{
		"paths":      []any{g.workdir},
		"logEnviron": g.sc.LogEnviron,
		"timeout":    seconds(g.sc.Timeout),
		"maxTime":    seconds(g.sc.MaxTime),
	}}, nil)
	if res != result.Success {
		return res, "rmdir: " + state
	}
	return res, state
}

// haveRevision checks that the repository in the workdir has rev.
func (g *gitRun) haveRevision(rev, branch string) (result.Result, string) {
	res, state := g.s.runShell(g.ctx, g.sc, config.ShellAction{Argv: []string{"git", "cat-file", "-e", rev + "^{commit}"}}, nil)
	if g.s.ran(res) && res != result.Success {
		where := "the default branch"
		if branch != "" {
			where = "branch " + branch
		}
		msg := fmt.Sprintf("revision %s not found in %s (fetched %s)", rev, g.a.Repo, where)
		g.stdio.header(g.ctx, msg)
		return result.Failure, fmt.Sprintf("revision %s not found", shortSHA(rev))
	}
	return res, state
}

// gitRevision is the revision the build asks of codebase: its source
// stamp's, else the build property revision (which a forced build's
// --prop revision=... sets).
func (s *stepRun) gitRevision(codebase string) string {
	b := s.b
	if _, rev := b.env.SourceRevision(codebase); rev != "" {
		return rev
	}
	// The property revision is the first source stamp's: it stands for
	// this codebase only if that is the one.
	if len(b.sources) > 0 && b.sources[0].Codebase != codebase {
		return ""
	}
	rev, _ := b.props["revision"].Value.(string)
	return rev
}

// redactRepo registers the credentials of a repository URL
// (https://user:token@host/...) as secrets of the build, so that no log
// or state string shows them.
func (s *stepRun) redactRepo(repo string) {
	u, err := url.Parse(repo)
	if err != nil || u.User == nil || u.Scheme == "" {
		return
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		s.b.redact.add("git-credentials", pw)
		if raw := rawPassword(u); raw != pw {
			s.b.redact.add("git-credentials", raw)
		}
		return
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		// https://TOKEN@host: the user name is the credential.
		if name := u.User.Username(); name != "" {
			s.b.redact.add("git-credentials", name)
			if raw := strings.SplitN(u.User.String(), ":", 2)[0]; raw != name {
				s.b.redact.add("git-credentials", raw)
			}
		}
	}
}

// rawPassword returns the password of u as written in the URL (percent
// encoded), which is how the worker's command line shows it.
func rawPassword(u *url.URL) string {
	parts := strings.SplitN(u.User.String(), ":", 2)
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

func shortSHA(rev string) string {
	if len(rev) > 7 {
		return rev[:7]
	}
	return rev
}
