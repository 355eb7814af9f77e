package poller

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/master/store"
)

// epoch is the time of the first commit a test makes; each commit is a
// minute after the one before, so that commit times order them.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// gitRepo is a repository made with the git program in a temporary
// directory: the "remote" a poller polls.
type gitRepo struct {
	t    testing.TB
	dir  string
	tick int // minutes after epoch of the next commit
}

func newRepo(t testing.TB) *gitRepo {
	t.Helper()
	testenv.LookPath(t, "git", "git")
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

// git runs git in the repository and returns its output, trimmed.
func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	when := epoch.Add(time.Duration(r.tick) * time.Minute).Format(time.RFC3339)
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+r.dir,
		"GIT_AUTHOR_NAME=A U Thor", "GIT_AUTHOR_EMAIL=author@example.org", "GIT_AUTHOR_DATE="+when,
		"GIT_COMMITTER_NAME=C O Mitter", "GIT_COMMITTER_EMAIL=committer@example.org", "GIT_COMMITTER_DATE="+when,
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (a "" content deletes the file), commits them with
// msg and returns the commit's hash.
func (r *gitRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		path := filepath.Join(r.dir, name)
		if content == "" {
			r.git("rm", "-q", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
		r.git("add", name)
	}
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	r.tick++
	return r.git("rev-parse", "HEAD")
}

// fileCommit commits one new file named after msg.
func (r *gitRepo) fileCommit(msg string) string {
	r.t.Helper()
	return r.commit(msg, map[string]string{msg + ".txt": msg + "\n"})
}

func (r *gitRepo) rev(ref string) string {
	r.t.Helper()
	return r.git("rev-parse", ref)
}

// openStore opens a store in a new file of dir.
func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// env is what a test's pollers share: a store and a cache directory, kept
// across "restarts".
type env struct {
	t     testing.TB
	st    *store.Store
	cache string
	log   *testenv.Buffer
}

func newEnv(t testing.TB) *env {
	dir := t.TempDir()
	return &env{t: t, st: openStore(t, dir), cache: filepath.Join(dir, "gitpoller"), log: &testenv.Buffer{}}
}

func (e *env) options() Options {
	return Options{
		Dir:    e.cache,
		Sink:   e.st,
		State:  e.st,
		Logger: slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Secret: func(name string) (string, error) { return "", fmt.Errorf("secret %s not found", name) },
	}
}

// poller returns a new Poller of cfg, as after a restart.
func (e *env) poller(cfg *config.GitPoller) *Poller {
	return NewPoller(cfg, e.options())
}

// poll polls once and fails the test on error.
func (e *env) poll(p *Poller) Result {
	e.t.Helper()
	res, err := p.Poll(context.Background())
	if err != nil {
		e.t.Fatalf("poll: %v", err)
	}
	return res
}

// state returns the stored revisions of the poller called name.
func (e *env) state(name string) map[string]string {
	e.t.Helper()
	vals, err := e.st.ObjectState(context.Background(), StateObject(name))
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range vals {
		out[k] = strings.Trim(string(v), `"`)
	}
	return out
}

// pollerCfg returns a poller declaration for repo with the defaults of
// git_poller().
func pollerCfg(name, repo string) *config.GitPoller {
	return &config.GitPoller{Name: name, Repo: repo, Interval: config.DefaultPollInterval, PollAtLaunch: true}
}

// revisions returns the branch:revision of each change.
func revisions(cs []store.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Branch + ":" + c.Revision
	}
	return out
}

// signalSink is a Sink that stores in st and then reports each call.
type signalSink struct {
	st    *store.Store
	calls chan []store.Change

	mu   sync.Mutex
	fail error // returned instead of storing while set
}

func (s *signalSink) AddChanges(ctx context.Context, cs []store.Change, state ...store.StateValue) ([]store.Change, error) {
	s.mu.Lock()
	fail := s.fail
	s.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	out, err := s.st.AddChanges(ctx, cs, state...)
	if err == nil && s.calls != nil {
		s.calls <- out
	}
	return out, err
}

// fastCommits adds n commits to branch with git fast-import, which is much
// faster than n git commit runs. Each changes the file "counter".
func (r *gitRepo) fastCommits(branch string, n int) {
	r.t.Helper()
	var b strings.Builder
	for i := range n {
		when := epoch.Add(time.Duration(r.tick) * time.Minute).Unix()
		r.tick++
		data := fmt.Sprintf("%d\n", i)
		fmt.Fprintf(&b, "commit refs/heads/%s\ncommitter C O Mitter <committer@example.org> %d +0000\ndata 2\nc\n", branch, when)
		if i == 0 {
			fmt.Fprintf(&b, "from refs/heads/%s^0\n", branch)
		}
		fmt.Fprintf(&b, "M 644 inline counter\ndata %d\n%s\n", len(data), data)
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = r.dir
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("git fast-import: %v\n%s", err, out)
	}
	r.git("reset", "-q", "--hard")
}
