package build

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// These tests run the git step on real workers (see harness_test.go)
// against real repositories made with the git binary in temp dirs.

// testRepo is a git repository made for a test.
type testRepo struct {
	t   *testing.T
	git string
	dir string
}

func newTestRepo(t *testing.T, dir string) *testRepo {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the git step tests use POSIX shell scripts")
	}
	r := &testRepo{t: t, git: testenv.LookPath(t, "git", "git"), dir: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.run("-c", "init.defaultBranch=main", "init", "-q")
	return r
}

// run runs git in the repository and returns its trimmed output.
func (r *testRepo) run(args ...string) string {
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

// commit writes files (creating their directories) and commits them,
// returning the new head.
func (r *testRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, body := range files {
		p := filepath.Join(r.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.run("add", "-A")
	r.run("commit", "-q", "-m", msg)
	return r.run("rev-parse", "HEAD")
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func mustWrite(t *testing.T, p, body string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeSSH writes an ssh stand-in into dir/bin and returns dir/bin and the
// directory where it records each call N: args.N (one argument per
// line), key.N and known_hosts.N (copies, mode kept, of the files it was
// given). It prints the key to stderr, as a leaky tool might, so that the
// log shows whether the key is redacted. While rec/fail holds a number
// above 0 it counts it down and fails as an unreachable host does; while
// rec/block is a FIFO it says "started" into it and hangs. Otherwise it
// runs the remote command (git-upload-pack 'path') locally.
func fakeSSH(t *testing.T, dir string) (bin, rec string) {
	t.Helper()
	bin, rec = filepath.Join(dir, "bin"), filepath.Join(dir, "rec")
	for _, d := range []string{bin, rec} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := `#!/bin/sh
rec=` + shellQuote(rec) + `
n=$(cat "$rec/calls" 2>/dev/null || echo 0)
n=$((n + 1))
echo $n > "$rec/calls"
printf '%s\n' "$@" > "$rec/args.$n"
key=
while [ $# -gt 0 ]; do
	case "$1" in
	-i) key=$2; shift 2 ;;
	-o) case "$2" in UserKnownHostsFile=*) cp -p "${2#UserKnownHostsFile=}" "$rec/known_hosts.$n" ;; esac; shift 2 ;;
	-p|-l) shift 2 ;;
	-*) shift ;;
	*) break ;;
	esac
done
if [ -n "$key" ]; then
	cp -p "$key" "$rec/key.$n"
	cat "$key" >&2
fi
if [ -p "$rec/block" ]; then
	echo started > "$rec/block"
	exec sleep 600
fi
fails=$(cat "$rec/fail" 2>/dev/null || echo 0)
if [ "$fails" -gt 0 ]; then
	echo $((fails - 1)) > "$rec/fail"
	echo "ssh: connect to host $1 port 22: Connection refused" >&2
	exit 255
fi
shift
exec sh -c "$*"
`
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, rec
}

// TestGitRetryAndClobberOnFailure: retry_fetch retries a failing clone
// and fetch, and gives up after its count; clobber_on_failure recovers a
// checkout whose .git is corrupt by cloning afresh, which the same step
// without it cannot.
func TestGitRetryAndClobberOnFailure(t *testing.T) {
	dir := t.TempDir()
	repo := newTestRepo(t, filepath.Join(dir, "repo"))
	first := repo.commit("first", map[string]string{"hello.txt": "hello one\n"})
	bin, rec := fakeSSH(t, dir)
	h := newHarness(t, fmt.Sprintf(`
worker("w", "pw")
env = {"PATH": %[1]q + ":${PATH}"}
builder("missing", ["w"], [git(%[2]q, retry_fetch = 2)])
builder("flaky", ["w"], [git("ssh://fakehost" + %[3]q, retry_fetch = True, env = env)])
builder("clobber", ["w"], [git(%[3]q, clobber_on_failure = True)])
builder("noclobber", ["w"], [git(%[3]q)])
`, bin, filepath.Join(dir, "no-such-repo"), repo.dir))
	wd := h.startAgent("w")

	t.Run("gives up", func(t *testing.T) {
		b := h.build("missing", "w")
		h.want(b, "git", result.Failure, "git clone: failed (exit 128) (3 attempts)")
		log := h.log(b.steps["git"])
		for _, want := range []string{"git clone failed (attempt 1 of 3): retrying", "git clone failed (attempt 2 of 3): retrying"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
		if n := strings.Count(log, "does not exist"); n != 3 {
			t.Errorf("git clone failed %d times, want 3:\n%s", n, log)
		}
	})

	t.Run("recovers", func(t *testing.T) {
		mustWrite(t, filepath.Join(rec, "fail"), "1")
		b := h.build("flaky", "w") // a clone
		h.want(b, "git", result.Success, "checked out "+first[:7])
		if log := h.log(b.steps["git"]); !strings.Contains(log, "git clone failed (attempt 1 of 2): retrying") || !strings.Contains(log, "Connection refused") {
			t.Errorf("log:\n%s", log)
		}
		second := repo.commit("second", map[string]string{"hello.txt": "hello two\n"})
		mustWrite(t, filepath.Join(rec, "fail"), "1")
		b = h.build("flaky", "w") // a fetch
		h.want(b, "git", result.Success, "checked out "+second[:7])
		if log := h.log(b.steps["git"]); !strings.Contains(log, "git fetch failed (attempt 1 of 2): retrying") {
			t.Errorf("log:\n%s", log)
		}
		if got := h.prop(b, "got_revision"); got != second {
			t.Errorf("got_revision %q, want %q", got, second)
		}
	})

	t.Run("clobber_on_failure", func(t *testing.T) {
		head := repo.run("rev-parse", "HEAD")
		for _, builder := range []string{"clobber", "noclobber"} {
			h.want(h.build(builder, "w"), "git", result.Success, "checked out "+head[:7])
			// A corrupt repository: git no longer recognises it.
			mustWrite(t, filepath.Join(wd, builder, "build", ".git", "HEAD"), "garbage\n")
		}
		b := h.build("clobber", "w")
		h.want(b, "git", result.Success, "checked out "+head[:7])
		log := h.log(b.steps["git"])
		if !strings.Contains(log, "git fetch: failed (exit 128); clobber_on_failure: removing "+filepath.Join(wd, "clobber", "build")+" and cloning afresh") ||
			!strings.Contains(log, "git clone") {
			t.Errorf("log:\n%s", log)
		}
		if got := h.prop(b, "got_revision"); got != head {
			t.Errorf("got_revision %q, want %q", got, head)
		}
		b = h.build("noclobber", "w")
		h.want(b, "git", result.Failure, "git fetch: failed (exit 128)")
	})
}

// TestGitCopy: method "copy" keeps a checkout in the builder's "source"
// directory, updated by fetching, and gives each build a fresh copy of it.
func TestGitCopy(t *testing.T) {
	dir := t.TempDir()
	repo := newTestRepo(t, filepath.Join(dir, "repo"))
	first := repo.commit("first", map[string]string{"hello.txt": "hello one\n", "sub/deep.txt": "deep\n"})
	h := newHarness(t, fmt.Sprintf(`
worker("w", "pw")
builder("copy", ["w"], [
    git(%q, mode = "full", method = "copy"),
    shell("cat hello.txt sub/deep.txt; if test -f junk.txt; then echo JUNK-PRESENT; fi", name = "probe"),
])
builder("clash", ["w"], [git(%[1]q, mode = "full", method = "copy", workdir = "source")])
`, repo.dir))
	wd := h.startAgent("w")
	src, work := filepath.Join(wd, "copy", "source"), filepath.Join(wd, "copy", "build")

	b := h.build("copy", "w")
	h.want(b, "git", result.Success, "checked out "+first[:7])
	if got := h.prop(b, "got_revision"); got != first {
		t.Errorf("got_revision %q, want %q", got, first)
	}
	if log := h.log(b.steps["probe"]); !strings.Contains(log, "ohello one\nodeep\n") {
		t.Errorf("probe:\n%s", log)
	}
	for _, p := range []string{filepath.Join(src, ".git"), filepath.Join(work, ".git"), filepath.Join(work, "sub", "deep.txt")} {
		if !exists(p) {
			t.Errorf("%s is missing after the copy", p)
		}
	}

	mustWrite(t, filepath.Join(work, "junk.txt"), "junk\n")
	second := repo.commit("second", map[string]string{"hello.txt": "hello two\n"})
	b = h.build("copy", "w")
	h.want(b, "git", result.Success, "checked out "+second[:7])
	if got := h.prop(b, "got_revision"); got != second {
		t.Errorf("got_revision %q, want %q", got, second)
	}
	log := h.log(b.steps["git"])
	if !strings.Contains(log, "git fetch -f --tags") || strings.Contains(log, "git clone") || !strings.Contains(log, "hcp -R -P -p -v "+src+" "+work+"\n") {
		t.Errorf("the second build did not fetch into the source and copy it:\n%s", log)
	}
	if log := h.log(b.steps["probe"]); !strings.Contains(log, "ohello two\n") || strings.Contains(log, "oJUNK-PRESENT") {
		t.Errorf("probe, want a fresh copy of the new revision:\n%s", log)
	}
	if got, err := os.ReadFile(filepath.Join(src, "hello.txt")); err != nil || string(got) != "hello two\n" {
		t.Errorf("source checkout: %q, %v", got, err)
	}

	b = h.build("clash", "w")
	h.want(b, "git", result.Failure, "workdir is the copy source")
}

// A unified diff of hello.txt: "hello one" becomes "hello patched".
const helloPatch = `diff --git a/hello.txt b/hello.txt
--- a/hello.txt
+++ b/hello.txt
@@ -1 +1 @@
-hello one
+hello patched
`

// TestGitPatch: the build's patch is applied after the checkout of its
// revision, in every method, at its level and in its subdirectory; a patch
// that does not apply fails the step with git apply's output.
func TestGitPatch(t *testing.T) {
	dir := t.TempDir()
	repo := newTestRepo(t, filepath.Join(dir, "repo"))
	first := repo.commit("first", map[string]string{"hello.txt": "hello one\n", "sub/deep.txt": "deep\n"})
	repo.commit("second", map[string]string{"hello.txt": "hello two\n"})
	h := newHarness(t, fmt.Sprintf(`
worker("w", "pw")
probe = shell("cat hello.txt sub/deep.txt; git status --porcelain", name = "probe")
builder("incr", ["w"], [git(%[1]q), probe])
builder("copy", ["w"], [git(%[1]q, mode = "full", method = "copy"), probe])
builder("clobber", ["w"], [git(%[1]q, mode = "full", method = "clobber"), probe])
builder("other", ["w"], [git(%[1]q, codebase = "other"), probe])
`, repo.dir))
	wd := h.startAgent("w")
	stamp := func(p *store.Patch) store.SourceStamp {
		return store.SourceStamp{Repository: repo.dir, Branch: "main", Revision: first, Patch: p}
	}

	for _, builder := range []string{"incr", "copy", "clobber"} {
		t.Run(builder, func(t *testing.T) {
			for range 2 { // the second build patches a tree the first patched
				b := h.build(builder, "w", stamp(&store.Patch{Level: 1, Body: []byte(helloPatch)}))
				h.want(b, "git", result.Success, "checked out "+first[:7]+" + patch")
				if got := h.prop(b, "got_revision"); got != first {
					t.Errorf("got_revision %q, want %q", got, first)
				}
				if log := h.log(b.steps["probe"]); !strings.Contains(log, "ohello patched\nodeep\noM  hello.txt\n") {
					t.Errorf("probe:\n%s", log)
				}
				if p := filepath.Join(wd, builder, ".build.starforge"); exists(p) {
					t.Errorf("%s is left behind", p)
				}
			}
		})
	}

	t.Run("level and subdir", func(t *testing.T) {
		const deep = "--- deep.txt\n+++ deep.txt\n@@ -1 +1,2 @@\n deep\n+deeper\n"
		b := h.build("incr", "w", stamp(&store.Patch{Level: 0, Body: []byte(deep), Subdir: "sub"}))
		h.want(b, "git", result.Success, "checked out "+first[:7]+" + patch")
		if log := h.log(b.steps["probe"]); !strings.Contains(log, "ohello one\nodeep\nodeeper\noM  sub/deep.txt\n") {
			t.Errorf("probe:\n%s", log)
		}
	})

	t.Run("does not apply", func(t *testing.T) {
		bad := strings.ReplaceAll(helloPatch, "-hello one", "-hello zero")
		b := h.build("incr", "w", stamp(&store.Patch{Level: 1, Body: []byte(bad)}))
		h.want(b, "git", result.Failure, "patch failed")
		log := h.log(b.steps["git"])
		if !strings.Contains(log, "error: patch failed: hello.txt:1") || !strings.Contains(log, "the build's patch does not apply to "+first) {
			t.Errorf("log:\n%s", log)
		}
		if got := h.prop(b, "got_revision"); got != first {
			t.Errorf("got_revision %q, want %q even though the patch failed", got, first)
		}
		if _, ran := b.steps["probe"]; ran && b.steps["probe"].Results != result.Skipped {
			t.Errorf("the build went on after the patch failed: %+v", b.steps["probe"])
		}
		if p := filepath.Join(wd, "incr", ".build.starforge"); exists(p) {
			t.Errorf("%s is left behind", p)
		}
	})

	t.Run("bad subdir", func(t *testing.T) {
		b := h.build("incr", "w", stamp(&store.Patch{Level: 1, Body: []byte(helloPatch), Subdir: "../elsewhere"}))
		h.want(b, "git", result.Failure, "patch failed")
		if log := h.log(b.steps["git"]); !strings.Contains(log, `the build's patch applies in "../elsewhere", which is not a directory inside the checkout`) {
			t.Errorf("log:\n%s", log)
		}
	})

	t.Run("other codebase", func(t *testing.T) {
		// The patch belongs to codebase "": a step for "other" leaves it.
		b := h.build("other", "w", stamp(&store.Patch{Level: 1, Body: []byte(helloPatch)}),
			store.SourceStamp{Codebase: "other", Repository: repo.dir, Branch: "main", Revision: first})
		h.want(b, "git", result.Success, "checked out "+first[:7])
		if log := h.log(b.steps["probe"]); !strings.Contains(log, "ohello one\n") {
			t.Errorf("probe:\n%s", log)
		}
	})
}

// A private key that is no key: the fake ssh only copies and prints it.
const fakeKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZS1rZXktbWF0ZXJpYWwtMDEyMzQ1Njc4OQ\nc2Vjb25kLWtleS1saW5lLWFiY2RlZmdoaWprbG1u\n-----END OPENSSH PRIVATE KEY-----"

// TestGitSSHKey: ssh_key and ssh_known_hosts reach git's ssh as private
// files beside the workdir, through GIT_SSH_COMMAND, and are removed after
// the step whether it succeeded, failed or was stopped; the key never
// shows in a log.
func TestGitSSHKey(t *testing.T) {
	dir := t.TempDir()
	repo := newTestRepo(t, filepath.Join(dir, "repo"))
	head := repo.commit("first", map[string]string{"hello.txt": "hello one\n"})
	bin, rec := fakeSSH(t, dir)
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(secrets, "deploy-key"), fakeKey+"\n")
	const knownHosts = "fakehost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKeyForTests"
	h := newHarness(t, fmt.Sprintf(`
secrets_dir(%[1]q)
worker("w", "pw")
env = {"PATH": %[2]q + ":${PATH}"}
builder("ssh", ["w"], [git("ssh://fakehost" + %[3]q, ssh_key = secret("deploy-key"), ssh_known_hosts = %[4]q, env = env)])
builder("sshmissing", ["w"], [git("ssh://fakehost/no/such/repo", ssh_key = secret("deploy-key"), env = env)])
`, secrets, bin, repo.dir, knownHosts))
	wd := h.startAgent("w")

	checkCall := func(t *testing.T, n int, private string, withKnownHosts bool) {
		t.Helper()
		args, err := os.ReadFile(filepath.Join(rec, fmt.Sprintf("args.%d", n)))
		if err != nil {
			t.Fatalf("ssh call %d: %v", n, err)
		}
		keyPath := filepath.Join(private, "ssh-key")
		want := "-i\n" + keyPath + "\n-o\nIdentitiesOnly=yes\n-o\nBatchMode=yes\n"
		if withKnownHosts {
			want += "-o\nUserKnownHostsFile=" + filepath.Join(private, "known_hosts") + "\n"
		}
		if !strings.HasPrefix(string(args), want) {
			t.Errorf("ssh arguments:\n%s\nwant them to start with:\n%s", args, want)
		}
		fi, err := os.Stat(filepath.Join(rec, fmt.Sprintf("key.%d", n)))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key file as ssh saw it: %v, %v; want mode 0600", fi, err)
		}
		if got, _ := os.ReadFile(filepath.Join(rec, fmt.Sprintf("key.%d", n))); string(got) != fakeKey+"\n" {
			t.Errorf("key file holds %q", got)
		}
		if withKnownHosts {
			if got, _ := os.ReadFile(filepath.Join(rec, fmt.Sprintf("known_hosts.%d", n))); string(got) != knownHosts+"\n" {
				t.Errorf("known_hosts file holds %q", got)
			}
		}
	}
	noKeyInLogs := func(t *testing.T, b builtBuild) {
		t.Helper()
		logs := h.allLogs(b)
		for _, line := range strings.Split(fakeKey, "\n") {
			if strings.Contains(logs, line) {
				t.Errorf("the logs show the key's line %q:\n%s", line, logs)
			}
		}
		if !strings.Contains(logs, "<secret:deploy-key>") {
			t.Errorf("the key ssh printed is not shown redacted:\n%s", logs)
		}
	}

	t.Run("clone", func(t *testing.T) {
		private := filepath.Join(wd, "ssh", ".build.starforge")
		b := h.build("ssh", "w")
		h.want(b, "git", result.Success, "checked out "+head[:7])
		if got := h.prop(b, "got_revision"); got != head {
			t.Errorf("got_revision %q, want %q", got, head)
		}
		checkCall(t, 1, private, true)
		log := h.log(b.steps["git"])
		wantEnv := "GIT_SSH_COMMAND=ssh -i '" + filepath.Join(private, "ssh-key") + "' -o IdentitiesOnly=yes -o BatchMode=yes -o 'UserKnownHostsFile=" + filepath.Join(private, "known_hosts") + "'"
		if !strings.Contains(log, wantEnv) {
			t.Errorf("log lacks %q:\n%s", wantEnv, log)
		}
		noKeyInLogs(t, b)
		if exists(private) {
			t.Errorf("%s is left behind", private)
		}
		// The second build fetches with the key.
		h.want(h.build("ssh", "w"), "git", result.Success, "checked out "+head[:7])
		checkCall(t, 2, private, true)
	})

	t.Run("failure", func(t *testing.T) {
		b := h.build("sshmissing", "w")
		h.want(b, "git", result.Failure, "git clone: failed (exit 128)")
		noKeyInLogs(t, b)
		if p := filepath.Join(wd, "sshmissing", ".build.starforge"); exists(p) {
			t.Errorf("%s is left behind after a failure", p)
		}
	})

	t.Run("stopped", func(t *testing.T) {
		block := filepath.Join(rec, "block")
		if err := syscall.Mkfifo(block, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(block)
		done := make(chan builtBuild)
		go func() { done <- h.build("sshmissing", "w") }()
		f, err := os.Open(block) // blocks until ssh runs
		if err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(f).ReadString('\n')
		f.Close()
		if line != "started\n" {
			t.Fatalf("fake ssh said %q", line)
		}
		ids := h.runner.Running()
		if len(ids) != 1 {
			t.Fatalf("running builds %v", ids)
		}
		if err := h.runner.Stop(ids[0], "stopped by the test"); err != nil {
			t.Fatal(err)
		}
		b := <-done
		h.want(b, "git", result.Cancelled, "")
		if p := filepath.Join(wd, "sshmissing", ".build.starforge"); exists(p) {
			t.Errorf("%s is left behind after a stop", p)
		}
	})
}

// TestGitBuildbotWorker runs the git step on Debian's buildbot-worker:
// method copy (its cpdir), an ssh key (its download_file with a mode) and
// a patch.
func TestGitBuildbotWorker(t *testing.T) {
	bbw := testenv.LookPath(t, "buildbot-worker", "buildbot-worker")
	dir := t.TempDir()
	repo := newTestRepo(t, filepath.Join(dir, "repo"))
	first := repo.commit("first", map[string]string{"hello.txt": "hello one\n"})
	second := repo.commit("second", map[string]string{"hello.txt": "hello two\n"})
	bin, rec := fakeSSH(t, dir)
	h := newHarness(t, fmt.Sprintf(`
worker("bb", "bbpass")
builder("copy", ["bb"], [
    git("ssh://fakehost" + %[1]q, mode = "full", method = "copy", ssh_key = %[2]q, retry_fetch = 1,
        env = {"PATH": %[3]q + ":${PATH}"}),
    shell("cat hello.txt; git status --porcelain", name = "probe"),
])
`, repo.dir, fakeKey, bin))
	wd := h.startBuildbotWorker(bbw, "bb")

	mustWrite(t, filepath.Join(rec, "fail"), "1")
	b := h.build("copy", "bb", store.SourceStamp{Repository: repo.dir, Branch: "main", Revision: first, Patch: &store.Patch{Level: 1, Body: []byte(helloPatch)}})
	h.want(b, "git", result.Success, "checked out "+first[:7]+" + patch")
	if got := h.prop(b, "got_revision"); got != first {
		t.Errorf("got_revision %q, want %q", got, first)
	}
	if log := h.log(b.steps["probe"]); !strings.Contains(log, "ohello patched\noM  hello.txt\n") {
		t.Errorf("probe:\n%s", log)
	}
	if log := h.log(b.steps["git"]); !strings.Contains(log, "git clone failed (attempt 1 of 2): retrying") {
		t.Errorf("log:\n%s", log)
	}
	fi, err := os.Stat(filepath.Join(rec, "key.2"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file as ssh saw it: %v, %v; want mode 0600", fi, err)
	}
	if logs := h.allLogs(b); strings.Contains(logs, "ZmFrZS1rZXktbWF0ZXJpYWwtMDEyMzQ1Njc4OQ") {
		t.Errorf("the key shows in the logs:\n%s", logs)
	}
	for _, p := range []string{filepath.Join(wd, "copy", "source", ".git"), filepath.Join(wd, "copy", "build", ".git")} {
		if !exists(p) {
			t.Errorf("%s is missing", p)
		}
	}
	if p := filepath.Join(wd, "copy", ".build.starforge"); exists(p) {
		t.Errorf("%s is left behind", p)
	}

	// No revision asked: the branch head, fetched into the source.
	b = h.build("copy", "bb")
	h.want(b, "git", result.Success, "checked out "+second[:7])
	if log := h.log(b.steps["probe"]); !strings.Contains(log, "ohello two\n") {
		t.Errorf("probe:\n%s", log)
	}
}
