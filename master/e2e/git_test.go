package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starforge/starforge/internal/testenv"
)

// gitRepo is a real git repository made for a test.
type gitRepo struct {
	t   *testing.T
	git string
	dir string
}

func newGitRepo(t *testing.T, git, dir string) *gitRepo {
	t.Helper()
	r := &gitRepo{t: t, git: git, dir: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.run("-c", "init.defaultBranch=main", "init", "-q")
	return r
}

// newGitRepoAt opens an existing repository (made by someone else) for
// commits.
func newGitRepoAt(t *testing.T, dir string) *gitRepo {
	t.Helper()
	return &gitRepo{t: t, git: testenv.LookPath(t, "git", "git"), dir: dir}
}

// run runs git in the repository and returns its trimmed output.
func (r *gitRepo) run(args ...string) string {
	r.t.Helper()
	cmd := exec.Command(r.git, append([]string{"-c", "user.name=Test", "-c", "user.email=test@example.org"}, args...)...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+r.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files and commits them, returning the new head.
func (r *gitRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(body), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.run("add", "-A")
	r.run("commit", "-q", "-m", msg)
	return r.run("rev-parse", "HEAD")
}

// TestGitStep runs git() against real repositories: clobber clones,
// incremental, fresh and copy updates, a revision asked by property, a missing
// revision, credentials kept out of the log.
func TestGitStep(t *testing.T) {
	git := testenv.LookPath(t, "git", "git")
	dir := t.TempDir()
	repo := newGitRepo(t, git, filepath.Join(dir, "repo"))
	first := repo.commit("first", map[string]string{
		"hello.txt": "hello one\n",
		"build.sh":  "cat hello.txt > built.txt\necho built: $(cat built.txt)\n",
	})

	// The junk file is untracked: incremental keeps it, fresh removes it.
	const probe = `cat hello.txt; if test -f junk.txt; then echo JUNK-PRESENT; else echo JUNK-ABSENT; fi; echo junk > junk.txt`
	m := startMaster(t, filepath.Join(dir, "master"), fmt.Sprintf(`
worker("w1", password="pw1")
builder("clobber", workers=["w1"], steps=[
    git(%[1]q, mode="full", method="clobber"),
    shell("sh build.sh", name="build"),
])
builder("incr", workers=["w1"], steps=[
    git(%[2]q),
    shell(%[3]q, name="probe"),
])
builder("fresh", workers=["w1"], steps=[
    git(%[1]q, mode="full", method="fresh", branch="main"),
    shell(%[3]q, name="probe"),
])
builder("copy", workers=["w1"], steps=[
    git(%[1]q, mode="full", method="copy", retry_fetch=1, clobber_on_failure=True),
    shell(%[3]q, name="probe"),
])
builder("rev", workers=["w1"], steps=[
    git(%[1]q, shallow=True),
    shell("cat hello.txt", name="show"),
])
builder("cred", workers=["w1"], steps=[
    git(interpolate("http://ci:s3cr3t-t0ken@127.0.0.1:%[4]d/%%(prop:buildername)s.git")),
])
force_scheduler("force", builders=["clobber", "incr", "fresh", "copy", "rev", "cred"])
`, repo.dir, "file://"+repo.dir, probe, freePort(t)))
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))

	run := func(t *testing.T, builder string, wantResult int, args ...string) (build, map[string]step) {
		t.Helper()
		m.force(t, builder, args...)
		bs := m.builds(t, builder)
		if len(bs) == 0 {
			t.Fatalf("no build of %s", builder)
		}
		steps := map[string]step{}
		for _, s := range m.steps(t, bs[0].ID) {
			steps[s.Name] = s
		}
		if resultOf(bs[0].Results) != wantResult {
			t.Errorf("build of %s: results %d, want %d; steps %+v", builder, resultOf(bs[0].Results), wantResult, steps)
			for _, s := range steps {
				t.Logf("log of %s:\n%s", s.Name, m.stepLog(t, s.ID))
			}
		}
		return bs[0], steps
	}
	gotRevision := func(t *testing.T, buildID int64) string {
		t.Helper()
		var r struct {
			Properties []map[string][]any `json:"properties"`
		}
		m.getJSON(t, fmt.Sprintf("api/v2/builds/%d/properties", buildID), &r)
		for _, p := range r.Properties {
			if v, ok := p["got_revision"]; ok {
				if len(v) != 2 || v[1] != "Git" {
					t.Errorf("got_revision = %v; want source Git", v)
				}
				s, _ := v[0].(string)
				return s
			}
		}
		t.Errorf("build %d has no got_revision", buildID)
		return ""
	}
	wantState := func(t *testing.T, s step, res int, state string) {
		t.Helper()
		if resultOf(s.Results) != res || s.StateString != state {
			t.Errorf("step %s: results %d state %q, want %d %q", s.Name, resultOf(s.Results), s.StateString, res, state)
		}
	}

	t.Run("clobber", func(t *testing.T) {
		for range 2 { // the second build clobbers the first's checkout
			b, steps := run(t, "clobber", 0)
			wantState(t, steps["git"], 0, "checked out "+first[:7])
			if got := gotRevision(t, b.ID); got != first {
				t.Errorf("got_revision %q, want %q", got, first)
			}
			if log := m.stepLog(t, steps["build"].ID); !strings.Contains(log, "built: hello one") {
				t.Errorf("build log:\n%s", log)
			}
			if log := m.stepLog(t, steps["git"].ID); !strings.Contains(log, "git clone") || !strings.Contains(log, "rev-parse") {
				t.Errorf("git log lacks its commands:\n%s", log)
			}
		}
	})

	t.Run("incremental and fresh", func(t *testing.T) {
		for _, builder := range []string{"incr", "fresh", "copy"} {
			_, steps := run(t, builder, 0)
			if log := m.stepLog(t, steps["probe"].ID); !strings.Contains(log, "hello one") || !strings.Contains(log, "JUNK-ABSENT") {
				t.Errorf("%s: first probe:\n%s", builder, log)
			}
		}
		second := repo.commit("second", map[string]string{"hello.txt": "hello two\n"})
		for _, tc := range []struct{ builder, junk string }{{"incr", "JUNK-PRESENT"}, {"fresh", "JUNK-ABSENT"}, {"copy", "JUNK-ABSENT"}} {
			b, steps := run(t, tc.builder, 0)
			wantState(t, steps["git"], 0, "checked out "+second[:7])
			if got := gotRevision(t, b.ID); got != second {
				t.Errorf("%s: got_revision %q, want %q", tc.builder, got, second)
			}
			if log := m.stepLog(t, steps["git"].ID); !strings.Contains(log, "git fetch -f --tags") || strings.Contains(log, "git clone") {
				t.Errorf("%s: second build did not fetch:\n%s", tc.builder, log)
			}
			if log := m.stepLog(t, steps["probe"].ID); !strings.Contains(log, "hello two") || !strings.Contains(log, tc.junk) {
				t.Errorf("%s: second probe, want %s:\n%s", tc.builder, tc.junk, log)
			}
		}
	})

	t.Run("revision", func(t *testing.T) {
		b, steps := run(t, "rev", 0, "--prop", "revision="+first)
		wantState(t, steps["git"], 0, "checked out "+first[:7])
		if got := gotRevision(t, b.ID); got != first {
			t.Errorf("got_revision %q, want %q", got, first)
		}
		if log := m.stepLog(t, steps["show"].ID); !strings.Contains(log, "hello one") {
			t.Errorf("show log:\n%s", log)
		}
		// The second build fetches into the first's checkout.
		b, steps = run(t, "rev", 0, "--prop", "revision="+first)
		if got := gotRevision(t, b.ID); got != first {
			t.Errorf("second build: got_revision %q, want %q", got, first)
		}
		wantState(t, steps["git"], 0, "checked out "+first[:7])
		// No revision asked: the branch head, shallow.
		b, _ = run(t, "rev", 0)
		if got, head := gotRevision(t, b.ID), repo.run("rev-parse", "HEAD"); got != head {
			t.Errorf("got_revision %q, want the head %q", got, head)
		}
	})

	t.Run("missing revision", func(t *testing.T) {
		const missing = "0123456789abcdef0123456789abcdef01234567"
		_, steps := run(t, "rev", resFailure, "--prop", "revision="+missing)
		wantState(t, steps["git"], resFailure, "revision 0123456 not found")
		if log := m.stepLog(t, steps["git"].ID); !strings.Contains(log, "revision "+missing+" not found in "+repo.dir) {
			t.Errorf("git log:\n%s", log)
		}
		if s, ok := steps["show"]; ok && resultOf(s.Results) == 0 {
			t.Errorf("show ran after the missing revision: %+v", s)
		}
	})

	t.Run("credentials", func(t *testing.T) {
		_, steps := run(t, "cred", resFailure)
		log := m.stepLog(t, steps["git"].ID)
		if strings.Contains(log, "s3cr3t-t0ken") || strings.Contains(steps["git"].StateString, "s3cr3t-t0ken") {
			t.Errorf("the token shows in the log:\n%s", log)
		}
		if !strings.Contains(log, "http://ci:<secret:git-credentials>@127.0.0.1") {
			t.Errorf("the log does not show the redacted URL:\n%s", log)
		}
	})

}
