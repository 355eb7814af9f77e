package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// jobFarmConfig is a farm of two platforms, one worker each. Each package of
// a job is a directory holding build.sh, run with the platform's name; it
// writes its results to job/out, which job_upload() stores for the later
// packages (job/repo) and for the publish step. The publish command appends
// one line per run to BASEDIR/published.log and copies the repository, so
// a test can tell how often, and with what, it ran.
const jobFarmConfig = `
worker("w12", "pw", properties = {"os": "debian", "release": "12", "arch": "amd64"})
worker("w13", "pw", properties = {"os": "debian", "release": "13", "arch": "amd64"})

package_farm(
    "pkgs",
    steps = [
        shell("rm -rf job", name = "clean"),
        job_download(),
        shell(interpolate("sh job/%(prop:job_package)s/build.sh %(prop:job_platform)s"), name = "build"),
        job_upload("job/out"),
    ],
    incoming = "incoming",
    incoming_interval = "1s",
    publish = publish_command(["sh", "-c",
        'echo "$STARFORGE_JOB_ID $STARFORGE_PLATFORMS" >> ../../../published.log && cp -r . ../../../published-$STARFORGE_JOB_ID'],
        timeout = "1m"),
)
`

// writeJob makes a job directory in dir: two packages, "lib" and then "app",
// where app reads what lib built on the same platform. failOn names a
// platform where app fails ("" for none).
func writeJob(t *testing.T, dir, name, failOn string) {
	t.Helper()
	files := map[string]string{
		"job.json": fmt.Sprintf(`{"name": %q, "submitter": "e2e", "platforms": "all", "packages": ["lib", "app"]}`, name),
		"lib/build.sh": `set -e
mkdir -p job/out
echo "lib for $1" > job/out/lib.txt
`,
		"app/build.sh": fmt.Sprintf(`set -e
if [ "$1" = %q ]; then echo "app does not build on $1" >&2; exit 1; fi
mkdir -p job/out
# The result of the earlier package, from the job's repository.
cat job/repo/lib.txt > job/out/app.txt
echo "app for $1" >> job/out/app.txt
`, failOn),
	}
	for p, body := range files {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type jobPlatform struct {
	Platform string `json:"name"`
	State    string `json:"state"`
	Status   string `json:"status"`
	Summary  string `json:"summary"`
}

type jobInfo struct {
	ID        int64         `json:"jobid"`
	Name      string        `json:"name"`
	State     string        `json:"state"`
	Summary   string        `json:"summary"`
	Platforms []jobPlatform `json:"platforms"`
}

func (m *master) job(t *testing.T, id int64) jobInfo {
	t.Helper()
	var r struct {
		Jobs []jobInfo `json:"jobs"`
	}
	m.getJSON(t, fmt.Sprintf("api/v2/jobs/%d", id), &r)
	if len(r.Jobs) != 1 {
		t.Fatalf("GET job %d: %d jobs", id, len(r.Jobs))
	}
	return r.Jobs[0]
}

func (m *master) jobs(t *testing.T) []jobInfo {
	t.Helper()
	var r struct {
		Jobs []jobInfo `json:"jobs"`
	}
	m.getJSON(t, "api/v2/jobs", &r)
	return r.Jobs
}

// waitUntil calls cond each time the master logs a line (and at least every
// 100ms, for changes the master does not log) until it holds.
func (m *master) waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; master output:\n%s", what, timeout, m.out)
		}
		m.out.mu.Lock()
		ch := m.out.changed
		m.out.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *master) waitJobDone(t *testing.T, id int64) jobInfo {
	t.Helper()
	var j jobInfo
	m.waitUntil(t, fmt.Sprintf("job %d finished", id), 2*time.Minute, func() bool {
		j = m.job(t, id)
		return j.State == "succeeded" || j.State == "failed"
	})
	return j
}

var acceptedRE = regexp.MustCompile(`job (\d+) accepted`)

// submit runs `starforge submit` and returns the job id, the output and
// the exit code.
func (m *master) submit(t *testing.T, dir string, args ...string) (int64, string, int) {
	t.Helper()
	out, code := cli(t, append(append([]string{"submit", "--master", m.url}, args...), dir)...)
	mm := acceptedRE.FindStringSubmatch(out)
	if mm == nil {
		return 0, out, code
	}
	id, _ := strconv.ParseInt(mm[1], 10, 64)
	return id, out, code
}

func publishedLines(t *testing.T, basedir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(basedir, "published.log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestJobPublishedOnce: a job of two ordered packages builds on both
// platforms, the second package reads what the first built, and the publish
// step runs once with both platforms' results, and not again after a
// restart.
func TestJobPublishedOnce(t *testing.T) {
	dir := t.TempDir()
	basedir := filepath.Join(dir, "master")
	m := startMaster(t, basedir, jobFarmConfig)
	m.startWorker(t, "w12", "pw", filepath.Join(dir, "w12"))
	m.startWorker(t, "w13", "pw", filepath.Join(dir, "w13"))

	jobDir := filepath.Join(dir, "job")
	writeJob(t, jobDir, "both", "")
	id, out, code := m.submit(t, jobDir, "--wait")
	if code != 0 || id == 0 {
		t.Fatalf("starforge submit --wait: exit %d, want 0:\n%s", code, out)
	}
	j := m.job(t, id)
	if j.State != "succeeded" || len(j.Platforms) != 2 {
		t.Fatalf("job = %+v, want succeeded on 2 platforms", j)
	}
	for _, p := range j.Platforms {
		if p.State != "succeeded" {
			t.Errorf("platform %s: %s (%s), want succeeded", p.Platform, p.State, p.Summary)
		}
	}
	lines := publishedLines(t, basedir)
	if want := fmt.Sprintf("%d debian-12-amd64 debian-13-amd64", id); len(lines) != 1 || lines[0] != want {
		t.Errorf("published.log = %q, want one run: %q", lines, want)
	}
	for _, plat := range []string{"debian-12-amd64", "debian-13-amd64"} {
		b, err := os.ReadFile(filepath.Join(basedir, fmt.Sprintf("published-%d", id), plat, "app.txt"))
		if err != nil {
			t.Fatalf("published %s app.txt: %v", plat, err)
		}
		if want := "lib for " + plat + "\napp for " + plat + "\n"; string(b) != want {
			t.Errorf("published %s app.txt = %q, want %q (app built on lib's result)", plat, b, want)
		}
	}

	// A restart reconciles active jobs; a finished one is not published
	// again.
	m.stop(t)
	m = startMaster(t, basedir, "")
	if j := m.job(t, id); j.State != "succeeded" {
		t.Errorf("after restart: job %s", j.State)
	}
	if lines := publishedLines(t, basedir); len(lines) != 1 {
		t.Errorf("after restart published.log = %q, want one run", lines)
	}
}

// TestJobFailsOnOnePlatform: when one platform fails, nothing is published
// and the job says which platform failed.
func TestJobFailsOnOnePlatform(t *testing.T) {
	dir := t.TempDir()
	basedir := filepath.Join(dir, "master")
	m := startMaster(t, basedir, jobFarmConfig)
	m.startWorker(t, "w12", "pw", filepath.Join(dir, "w12"))
	m.startWorker(t, "w13", "pw", filepath.Join(dir, "w13"))

	jobDir := filepath.Join(dir, "job")
	writeJob(t, jobDir, "half", "debian-13-amd64")
	id, out, code := m.submit(t, jobDir, "--wait")
	if code == 0 || id == 0 {
		t.Fatalf("starforge submit --wait: exit 0 or no job id, want a failure:\n%s", out)
	}
	if !strings.Contains(out, "debian-13-amd64") {
		t.Errorf("submit output does not name the failed platform:\n%s", out)
	}
	j := m.job(t, id)
	if j.State != "failed" || !strings.Contains(j.Summary, "debian-13-amd64") || strings.Contains(j.Summary, "debian-12-amd64") {
		t.Errorf("job = %+v; want failed, the summary naming debian-13-amd64 only", j)
	}
	for _, p := range j.Platforms {
		want := map[string]string{"debian-12-amd64": "succeeded", "debian-13-amd64": "failed"}[p.Platform]
		if p.State != want {
			t.Errorf("platform %s: %s, want %s", p.Platform, p.State, want)
		}
	}
	if lines := publishedLines(t, basedir); len(lines) != 0 {
		t.Errorf("published although a platform failed: %q", lines)
	}

	// The job's page, in a browser: one row per platform with its state,
	// and each build a link to its page (where its logs are).
	br := startBrowser(t)
	br.do(t, "set the window's size", chromedp.EmulateViewport(1280, 640))
	br.navigate(t, fmt.Sprintf("%sjobs/%d", m.url, id))
	var rows []string
	br.waitFor(t, "the platform rows", `() => {
  const rows = [...document.querySelectorAll('tr[id^="platform-"]')];
  return rows.length === 2 && rows.map(r => r.querySelector('td.name').textContent.trim() + ' ' +
    r.querySelector('.status').textContent.trim() + ' ' + r.querySelectorAll('a.badge[href^="/builders/"]').length);
}`, 20*time.Second, &rows)
	if want := "debian-12-amd64 succeeded 2,debian-13-amd64 failed 2"; strings.Join(rows, ",") != want {
		t.Errorf("job page rows %q, want %q (name, state, linked builds)", rows, want)
	}
	var summary string
	br.eval(t, `document.querySelector('#job-summary').textContent`, &summary)
	if !strings.Contains(summary, "debian-13-amd64") {
		t.Errorf("job page summary %q does not name the failed platform", summary)
	}
	dirs := []string{t.TempDir(), os.Getenv("STARFORGE_SCREENSHOT_DIR")}
	if os.Getenv("STARFORGE_UPDATE_SCREENSHOTS") == "1" {
		dirs = append(dirs, filepath.Join("..", "..", "docs", "img"))
	}
	br.screenshot(t, "job.png", dirs...)
}

// TestJobDroppedWhileMasterDown: a job dropped into the incoming directory
// while the master is down is taken when it starts, waits while no worker
// is connected, and is built once workers come.
func TestJobDroppedWhileMasterDown(t *testing.T) {
	dir := t.TempDir()
	basedir := filepath.Join(dir, "master")
	m := startMaster(t, basedir, jobFarmConfig)
	m.stop(t)

	writeJob(t, filepath.Join(basedir, "incoming", "dropped"), "dropped", "")
	m = startMaster(t, basedir, "")
	var jobs []jobInfo
	m.waitUntil(t, "the dropped job accepted", time.Minute, func() bool {
		jobs = m.jobs(t)
		return len(jobs) == 1
	})
	if _, err := os.Stat(filepath.Join(basedir, "incoming", "dropped")); !os.IsNotExist(err) {
		t.Errorf("the accepted job is still in incoming/ (%v)", err)
	}
	j := m.job(t, jobs[0].ID)
	if j.State != "queued" {
		t.Errorf("job with no worker connected: %s, want queued", j.State)
	}
	for _, p := range j.Platforms {
		if !strings.Contains(p.Status, "waiting for a worker") {
			t.Errorf("platform %s: status %q, want it waiting for a worker", p.Platform, p.Status)
		}
	}

	m.startWorker(t, "w12", "pw", filepath.Join(dir, "w12"))
	m.startWorker(t, "w13", "pw", filepath.Join(dir, "w13"))
	if j := m.waitJobDone(t, j.ID); j.State != "succeeded" {
		t.Fatalf("job = %+v, want succeeded", j)
	}
	if lines := publishedLines(t, basedir); len(lines) != 1 {
		t.Errorf("published.log = %q, want one run", lines)
	}
}

// TestMalformedJobRejected: an invalid job is refused over HTTP with the
// problem named, and one dropped into incoming/ gets a report beside it;
// neither is stored or queued.
func TestMalformedJobRejected(t *testing.T) {
	dir := t.TempDir()
	basedir := filepath.Join(dir, "master")
	m := startMaster(t, basedir, jobFarmConfig)

	bad := filepath.Join(dir, "bad")
	writeJob(t, bad, "bad", "")
	if err := os.WriteFile(filepath.Join(bad, "job.json"),
		[]byte(`{"name": "bad", "packages": [{"name": "x", "files": ["missing.dsc"]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	id, out, code := m.submit(t, bad)
	if code == 0 || id != 0 {
		t.Errorf("submit of a malformed job: exit %d, job %d; want a failure and no job:\n%s", code, id, out)
	}
	if !strings.Contains(out, "missing.dsc") {
		t.Errorf("submit output does not name the missing file:\n%s", out)
	}

	dropped := filepath.Join(basedir, "incoming", "typo")
	writeJob(t, dropped, "typo", "")
	if err := os.WriteFile(filepath.Join(dropped, "job.json"),
		[]byte(`{"name": "typo", "packages": ["lib"], "platfroms": "all"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	report := dropped + ".rejected"
	m.waitUntil(t, "the report of the malformed job", time.Minute, func() bool {
		_, err := os.Stat(report)
		return err == nil
	})
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "platfroms") {
		t.Errorf("report does not name the unknown field:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(dropped, "job.json")); err != nil {
		t.Errorf("the rejected job was not left in place: %v", err)
	}
	if jobs := m.jobs(t); len(jobs) != 0 {
		t.Errorf("jobs stored: %+v, want none", jobs)
	}
	for _, b := range []string{"pkgs-debian-12-amd64", "pkgs-debian-13-amd64"} {
		if n := m.requests(t, b); n != 0 {
			t.Errorf("builder %s has %d requests, want none", b, n)
		}
	}
}
