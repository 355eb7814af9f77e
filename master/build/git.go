package build

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/worker/proto"
)

// This file runs git(repo, ...) as Buildbot's Git step does: a sequence of
// stat, rmdir, cpdir, download_file and shell commands on the worker, all
// logged to the step's stdio log, so that any Buildbot-compatible worker
// with git on its PATH can run it.

// gitRun is one git step in progress.
type gitRun struct {
	s     *stepRun
	ctx   context.Context
	stdio *logSink
	sc    *config.Step // the rendered step
	a     *config.GitAction
	// env is the environment of every git command: the step's, with
	// GIT_TERMINAL_PROMPT=0 and, with an ssh key, GIT_SSH_COMMAND.
	env map[string]string

	rev, branch string // what the build asks for; either may be ""
	depth       int    // 0: full history

	// private is a directory beside the workdir for the files the step
	// sends (the ssh key, the patch); used records that it must go.
	private string
	used    bool
}

// gitDir is a directory git works in: the step's workdir, or the source
// directory that method "copy" keeps up to date.
type gitDir struct {
	g       *gitRun
	sc      *config.Step // the step, with this directory as its workdir and g.env as its env
	path    string       // on the worker
	clobber bool         // clone afresh every time
	clean   []string     // the git clean command after an update; nil: none
}

// gitSourceDir is where method "copy" keeps its checkout, relative to the
// builder's directory, as Buildbot does.
const gitSourceDir = "source"

func (s *stepRun) git(ctx context.Context, stdio *logSink, sc *config.Step, a *config.GitAction) (res result.Result, state string) {
	env := s.b.env
	env.Print = func(msg string) { stdio.header(ctx, msg) }
	a, err := a.Rendered(env)
	env.Print = nil
	if err != nil {
		writeError(ctx, stdio, err)
		return result.Exception, "render error: " + firstLine(err.Error())
	}
	s.redactRepo(a.Repo)
	if a.SSHKey != "" {
		// A secret() key is already known; a plain string is not.
		s.b.redact.add("ssh_key", a.SSHKey)
	}

	g := &gitRun{s: s, ctx: ctx, stdio: stdio, sc: sc, a: a, env: make(map[string]string, len(sc.Env)+2)}
	for k, v := range sc.Env {
		g.env[k] = v
	}
	if _, set := g.env["GIT_TERMINAL_PROMPT"]; !set {
		g.env["GIT_TERMINAL_PROMPT"] = "0" // never wait for a password
	}
	g.rev = s.gitRevision(a.Codebase)
	g.branch = a.Branch
	if g.branch == "" {
		g.branch, _ = env.SourceRevision(a.Codebase)
	}
	g.depth = a.Depth
	if g.rev != "" {
		g.depth = 0 // a shallow fetch may not hold the revision
	}

	work := g.dir(sc.Workdir)
	var src *gitDir // method "copy"'s source checkout
	if a.Method == "copy" {
		src = g.dir(gitSourceDir)
		if s.within(work.path, src.path) || s.within(src.path, work.path) {
			msg := fmt.Sprintf("the workdir %s overlaps %s, where method \"copy\" keeps its source checkout; give the step another workdir", work.path, src.path)
			stdio.header(ctx, msg)
			return result.Failure, "workdir is the copy source"
		}
	}
	g.private = s.besidePath(work.path)
	defer func() { res, state = g.cleanup(res, state) }()

	if a.SSHKey != "" {
		if res, state := g.installSSHKey(); res != result.Success {
			return res, state
		}
	}
	if src != nil {
		if res, state := g.copy(src, work); res != result.Success {
			return res, state
		}
	} else {
		work.clobber = a.Mode == "full" && a.Method == "clobber"
		if a.Mode == "full" {
			work.clean = []string{"git", "clean", "-f", "-f", "-d"}
			if a.Method == "fresh" {
				work.clean = append(work.clean, "-x")
			}
		}
		if res, state := work.checkout(); res != result.Success {
			return res, state
		}
		if res, state := work.submodules(); res != result.Success {
			return res, state
		}
	}

	head, res, state := work.gotRevision()
	if res != result.Success {
		return res, state
	}
	state = "checked out " + shortSHA(head)
	p := s.gitPatch(a.Codebase)
	if p == nil {
		return result.Success, state
	}
	pres, pstate := work.applyPatch(p, head)
	if pres != result.Success {
		return pres, pstate
	}
	if pstate != "" {
		state += " + " + pstate
	}
	return result.Success, state
}

// dir returns the directory workdir (relative to the builder's directory
// unless absolute; "" is the default workdir) as a place git works in.
func (g *gitRun) dir(workdir string) *gitDir {
	c := *g.sc
	c.Workdir = workdir
	c.Env = g.env
	return &gitDir{g: g, sc: &c, path: g.s.workdir(&c)}
}

func (g *gitRun) header(msg string) { g.stdio.header(g.ctx, msg) }

// checkout brings the directory to the build's revision: it updates an
// existing checkout, or clones afresh.
func (d *gitDir) checkout() (result.Result, string) {
	g := d.g
	if !d.clobber {
		ok, res, state := d.exists(".git")
		if res != result.None {
			return res, state
		}
		if ok {
			res, state, clobberable := d.update()
			if res == result.Success || !clobberable || !g.a.ClobberOnFailure {
				return res, state
			}
			g.header(fmt.Sprintf("%s; clobber_on_failure: removing %s and cloning afresh", state, d.path))
		}
	}
	return d.clone()
}

// update fetches into an existing checkout and checks out the revision.
// clobberable reports whether a failure was git's own (the command ran
// and failed), which a fresh clone may cure; a revision the remote does
// not have, a stop or a lost worker is not.
func (d *gitDir) update() (res result.Result, state string, clobberable bool) {
	g := d.g
	argv := []string{"git", "fetch", "-f", "--tags"}
	if g.depth > 0 {
		argv = append(argv, "--depth", strconv.Itoa(g.depth))
	}
	argv = append(argv, g.a.Repo, orDefault(g.branch, "HEAD"))
	if res, state := d.retried("git fetch", nil, argv); res != result.Success {
		return res, state, g.s.ran(res)
	}
	target := "FETCH_HEAD"
	if g.rev != "" {
		if res, state := d.haveRevision(); res != result.Success {
			return res, state, false
		}
		target = g.rev
	}
	if res, state := d.run("git checkout", "git", "checkout", "-f", target); res != result.Success {
		return res, state, g.s.ran(res)
	}
	if res, state := d.run("git reset", "git", "reset", "--hard", target); res != result.Success {
		return res, state, g.s.ran(res)
	}
	if g.branch != "" {
		// Be on the branch, as Buildbot leaves it; a failure is harmless.
		g.s.runShell(g.ctx, d.sc, config.ShellAction{Argv: []string{"git", "checkout", "-B", g.branch}}, nil)
	}
	if d.clean != nil {
		if res, state := d.run("git clean", d.clean...); res != result.Success {
			return res, state, g.s.ran(res)
		}
	}
	return result.Success, "", false
}

// clone removes the directory and clones into it, then checks out the
// revision asked for.
func (d *gitDir) clone() (result.Result, string) {
	g := d.g
	argv := []string{"git", "clone"}
	if g.branch != "" {
		argv = append(argv, "--branch", g.branch)
	}
	if g.depth > 0 {
		argv = append(argv, "--depth", strconv.Itoa(g.depth))
	}
	argv = append(argv, g.a.Repo, ".")
	// Each attempt starts from an empty directory: a failed clone may
	// leave a partial .git behind.
	if res, state := d.retried("git clone", d.rmdir, argv); res != result.Success {
		return res, state
	}
	if g.rev == "" {
		return result.Success, ""
	}
	if res, state := d.haveRevision(); res != result.Success {
		return res, state
	}
	return d.run("git checkout", "git", "checkout", "-f", g.rev)
}

// retried runs argv (a fetch or a clone), after before if given, and runs
// both again up to retry_fetch times while git fails. A stop, a timeout of
// the worker's connection or a failure to start is not retried.
func (d *gitDir) retried(what string, before func() (result.Result, string), argv []string) (result.Result, string) {
	g := d.g
	tries := 1 + g.a.RetryFetch
	for i := 1; ; i++ {
		if before != nil {
			if res, state := before(); res != result.Success {
				return res, state
			}
		}
		res, state := d.run(what, argv...)
		if res == result.Success {
			return res, state
		}
		if i == tries || !g.s.ran(res) {
			if i > 1 {
				state += fmt.Sprintf(" (%d attempts)", i)
			}
			return res, state
		}
		g.header(fmt.Sprintf("%s failed (attempt %d of %d): retrying", what, i, tries))
	}
}

func (d *gitDir) submodules() (result.Result, string) {
	if !d.g.a.Submodules {
		return result.Success, ""
	}
	if res, state := d.run("git submodule sync", "git", "submodule", "sync"); res != result.Success {
		return res, state
	}
	return d.run("git submodule update", "git", "submodule", "update", "--init", "--recursive", "--force")
}

// copy brings src up to date as mode "incremental" would, then replaces
// dst with a copy of it (Buildbot's method "copy": the build starts from
// a pristine tree without a full clone each time).
func (g *gitRun) copy(src, dst *gitDir) (result.Result, string) {
	if res, state := src.checkout(); res != result.Success {
		return res, state
	}
	if res, state := src.submodules(); res != result.Success {
		return res, state
	}
	if res, state := dst.rmdir(); res != result.Success {
		return res, state
	}
	s := g.s
	res, state := s.runCommand(g.ctx, command{name: proto.CmdCpdir, args: map[string]any{
		"from_path":  src.path,
		"to_path":    dst.path,
		"logEnviron": g.sc.LogEnviron,
		"timeout":    seconds(g.sc.Timeout),
		"maxTime":    seconds(g.sc.MaxTime),
	}}, nil)
	if res != result.Success {
		return res, "cpdir: " + state
	}
	return res, state
}

// gotRevision sets got_revision to what the directory has checked out.
func (d *gitDir) gotRevision() (string, result.Result, string) {
	g := d.g
	s := g.s
	var head string
	res, state := s.runShell(g.ctx, d.sc, config.ShellAction{Argv: []string{"git", "rev-parse", "HEAD"}}, func(stream byte, line string) {
		if stream == 'o' && head == "" {
			head = strings.TrimSpace(line)
		}
	})
	if res != result.Success {
		return "", res, "git rev-parse: " + state
	}
	if head == "" {
		g.header("git rev-parse HEAD printed no revision")
		return "", result.Failure, "no revision checked out"
	}
	if err := s.setProperty(g.ctx, "got_revision", head, "Git"); err != nil {
		g.header(err.Error())
		return "", result.Exception, err.Error()
	}
	g.header("got_revision = " + head)
	return head, result.Success, ""
}

// run runs argv as a shell command in the directory; state names what ran.
func (d *gitDir) run(what string, argv ...string) (result.Result, string) {
	res, state := d.g.s.runShell(d.g.ctx, d.sc, config.ShellAction{Argv: argv}, nil)
	if res != result.Success {
		return res, what + ": " + state
	}
	return res, state
}

// exists reports whether the directory has name. A result other than None
// means the step must end with it.
func (d *gitDir) exists(name string) (bool, result.Result, string) {
	s := d.g.s
	res, state := s.runCommand(d.g.ctx, command{name: proto.CmdStat, args: map[string]any{
		"path": s.b.sess.Join(d.path, name),
	}}, &lineHook{})
	switch {
	case res == result.Success:
		return true, result.None, ""
	case s.ran(res):
		return false, result.None, "" // stat failed: not there
	}
	return false, res, state
}

// rmdir removes the directory.
func (d *gitDir) rmdir() (result.Result, string) {
	return d.g.rmdir(d.path)
}

func (g *gitRun) rmdir(path string) (result.Result, string) {
	res, state := g.s.runCommand(g.ctx, command{name: proto.CmdRmdir, args: map[string]any{
		"paths":      []any{path},
		"logEnviron": g.sc.LogEnviron,
		"timeout":    seconds(g.sc.Timeout),
		"maxTime":    seconds(g.sc.MaxTime),
	}}, nil)
	if res != result.Success {
		return res, "rmdir: " + state
	}
	return res, state
}

// haveRevision checks that the repository in the directory has the
// revision asked for.
func (d *gitDir) haveRevision() (result.Result, string) {
	g := d.g
	res, state := g.s.runShell(g.ctx, d.sc, config.ShellAction{Argv: []string{"git", "cat-file", "-e", g.rev + "^{commit}"}}, nil)
	if g.s.ran(res) && res != result.Success {
		where := "the default branch"
		if g.branch != "" {
			where = "branch " + g.branch
		}
		g.header(fmt.Sprintf("revision %s not found in %s (fetched %s)", g.rev, g.a.Repo, where))
		return result.Failure, fmt.Sprintf("revision %s not found", shortSHA(g.rev))
	}
	return res, state
}

// --- files beside the workdir: the ssh key and the patch ---

// besidePath returns the directory beside workdir that holds the files the
// git step sends: ".NAME.starforge" for workdir NAME (Buildbot's is
// ".NAME.buildbot"), outside the checkout so that neither git nor the
// build sees them there.
func (s *stepRun) besidePath(workdir string) string {
	sep := s.sep()
	dir := strings.TrimRight(workdir, sep)
	i := strings.LastIndex(dir, sep)
	return dir[:i+1] + "." + dir[i+1:] + ".starforge"
}

// sep is the worker's path separator.
func (s *stepRun) sep() string {
	if s.b.sess.Windows() {
		return `\`
	}
	return "/"
}

// within reports whether the worker path p is dir or inside it.
func (s *stepRun) within(p, dir string) bool {
	sep := s.sep()
	dir = strings.TrimRight(dir, sep)
	return p == dir || strings.HasPrefix(p, dir+sep)
}

// privateDownload sends a string to the worker and logs only its size:
// the sha256 that a download_string logs would fingerprint a secret.
type privateDownload struct {
	*stringDownload
	what string
}

func (d privateDownload) finish(ok bool) (string, error) {
	if !ok {
		return "", nil
	}
	return fmt.Sprintf("wrote %s (%d bytes)", d.what, d.n), nil
}

// send writes content to path on the worker with mode (nil: the worker's
// default).
func (g *gitRun) send(path, what, content string, mode any) (result.Result, string) {
	g.used = true // from here on, the directory must go at the end
	res, state := g.s.runCommand(g.ctx, command{
		name:     proto.CmdDownloadFile,
		transfer: privateDownload{newStringDownload(content), what + " to " + path},
		args: map[string]any{
			"path":      path,
			"blocksize": transferBlockSize,
			"maxsize":   nil,
			"mode":      mode,
		},
	}, nil)
	if res != result.Success {
		return res, "writing " + what + ": " + state
	}
	return res, state
}

// installSSHKey writes the key (and known hosts) into the private
// directory and points git's ssh at them.
func (g *gitRun) installSSHKey() (result.Result, string) {
	sess := g.s.b.sess
	key := g.a.SSHKey
	if !strings.HasSuffix(key, "\n") {
		key += "\n" // ssh refuses a key whose last line has no newline
	}
	keyPath := sess.Join(g.private, "ssh-key")
	// An empty file first, then the key: Buildbot's worker writes the key
	// into the file it finds, which then already has mode 0600, instead of
	// creating it with the umask's mode and only then restricting it.
	if res, state := g.send(keyPath, "an empty key file", "", 0o600); res != result.Success {
		return res, state
	}
	if res, state := g.send(keyPath, "the ssh key", key, 0o600); res != result.Success {
		return res, state
	}
	cmd := "ssh -i " + shellQuote(keyPath) + " -o IdentitiesOnly=yes -o BatchMode=yes"
	if kh := g.a.SSHKnownHosts; kh != "" {
		if !strings.HasSuffix(kh, "\n") {
			kh += "\n"
		}
		khPath := sess.Join(g.private, "known_hosts")
		if res, state := g.send(khPath, "the known hosts", kh, 0o600); res != result.Success {
			return res, state
		}
		cmd += " -o " + shellQuote("UserKnownHostsFile="+khPath)
	}
	if old, set := g.env["GIT_SSH_COMMAND"]; set {
		g.header(fmt.Sprintf("ssh_key replaces the step's GIT_SSH_COMMAND %q", old))
	}
	g.env["GIT_SSH_COMMAND"] = cmd
	return result.Success, ""
}

// cleanup removes the private directory when the step wrote into it,
// whatever the step's outcome, even after a stop: a key must not stay on
// the worker. A step that succeeded fails when the key could not go.
func (g *gitRun) cleanup(res result.Result, state string) (result.Result, string) {
	if !g.used {
		return res, state
	}
	s := g.s
	after := s.afterStop
	s.afterStop = true // run even if the build was stopped
	cres, cstate := g.rmdir(g.private)
	s.afterStop = after
	if cres == result.Success {
		return res, state
	}
	g.header(fmt.Sprintf("could not remove %s, which holds the step's key or patch: %s", g.private, cstate))
	if res == result.Success {
		return result.Failure, "cleanup " + cstate
	}
	return res, state
}

// shellQuote quotes s for the POSIX shell through which git runs
// GIT_SSH_COMMAND (on Windows too: Git for Windows brings its own sh).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// gitPatch returns the patch of the build's source stamp for codebase,
// or nil.
func (s *stepRun) gitPatch(codebase string) *store.Patch {
	for _, ss := range s.b.sources {
		if ss.Codebase == codebase && ss.Patch != nil {
			return ss.Patch
		}
	}
	return nil
}

// applyPatch applies the build's patch (a try build's) to the checkout
// with git apply --index, which also stages new files. It returns a state
// suffix, "" when there was nothing to apply.
func (d *gitDir) applyPatch(p *store.Patch, head string) (result.Result, string) {
	g := d.g
	if len(p.Body) == 0 {
		g.header("the build's patch is empty: nothing to apply")
		return result.Success, ""
	}
	if p.Level < 0 {
		g.header(fmt.Sprintf("the build's patch has level %d; want 0 or more", p.Level))
		return result.Failure, "patch failed"
	}
	argv := []string{"git", "apply", "--index", "-p" + strconv.Itoa(p.Level)}
	if p.Subdir != "" && p.Subdir != "." {
		sub, ok := patchSubdir(p.Subdir)
		if !ok {
			g.header(fmt.Sprintf("the build's patch applies in %q, which is not a directory inside the checkout", p.Subdir))
			return result.Failure, "patch failed"
		}
		argv = append(argv, "--directory="+sub)
	}
	file := g.s.b.sess.Join(g.private, "patch.diff")
	if res, state := g.send(file, "the patch", string(p.Body), nil); res != result.Success {
		return res, state
	}
	argv = append(argv, file)
	// A copied tree has new inodes: refresh the index's stat data, or
	// git apply --index takes every file for modified.
	g.s.runShell(g.ctx, d.sc, config.ShellAction{Argv: []string{"git", "update-index", "-q", "--refresh"}}, nil)
	res, state := g.s.runShell(g.ctx, d.sc, config.ShellAction{Argv: argv}, nil)
	if g.s.ran(res) && res != result.Success {
		g.header(fmt.Sprintf("the build's patch does not apply to %s (git apply's output above)", head))
		return result.Failure, "patch failed"
	}
	if res != result.Success {
		return res, "git apply: " + state
	}
	return result.Success, "patch"
}

// patchSubdir checks a patch's subdirectory: relative, inside the
// checkout. It returns it with forward slashes, as git apply wants.
func patchSubdir(sub string) (string, bool) {
	sub = strings.ReplaceAll(sub, `\`, "/")
	if strings.HasPrefix(sub, "/") || (len(sub) > 1 && sub[1] == ':') {
		return "", false
	}
	sub = strings.TrimRight(sub, "/")
	if sub == "" {
		return "", false
	}
	for _, part := range strings.Split(sub, "/") {
		if part == ".." {
			return "", false
		}
	}
	return sub, true
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
