package reporter

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// job stores a job of farm "packages" on two platforms of f's builder,
// finished in state (on debian-13-amd64 alone if JobFailed).
func (f *fixture) job(t *testing.T, state string) store.Job {
	ctx := context.Background()
	j, err := f.st.AddJob(ctx, store.Job{Farm: "packages", Name: "hello", Submitter: "alice", Dir: "jobs/x",
		Spec:      []byte(`{"farm":"packages","name":"hello","packages":[{"name":"hello","files":["a.dsc"]},{"name":"libfoo","files":[]}]}`),
		Platforms: []store.JobPlatform{{Platform: "debian-12-amd64", BuilderID: f.builder}, {Platform: "debian-13-amd64", BuilderID: f.builder}}})
	if err != nil {
		t.Fatal(err)
	}
	u := store.JobUpdate{State: state, Summary: "all built; published",
		Platforms: []store.PlatformUpdate{{Platform: "debian-12-amd64", State: store.PlatformSucceeded}, {Platform: "debian-13-amd64", State: store.PlatformSucceeded}}}
	if state == store.JobFailed {
		u.Summary = "failed on debian-13-amd64: hello (build 17: failure); nothing published"
		u.Platforms[1] = store.PlatformUpdate{Platform: "debian-13-amd64", State: store.PlatformFailed, Summary: "hello (build 17: failure)"}
	}
	if err := f.st.UpdateJob(ctx, j.ID, u); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJobFinished(t *testing.T) {
	cert, key := selfSigned(t, t.TempDir())
	srv := startSMTPD(t, "--cert", cert, "--key", key, "--user", "ci", "--password", smtpPassword)
	hook, hooked := fakeServer(t, ok)
	f := newFixture(t, "")
	f.cfg = loadReporters(t, fmt.Sprintf(`
master(url = "http://sf.example/")
mail_reporter(to = ["ops@example.org"], from_addr = "ci@example.org", smtp_host = "127.0.0.1", smtp_port = %d,
    smtp_user = "ci", smtp_password = secret("smtp"), smtp_ca = %q)
http_reporter(%q, mode = "all")
github_status(token = secret("smtp"))
`, srv.port, cert, hook.URL))
	m := f.manager(Options{})
	good, bad := f.job(t, store.JobSucceeded), f.job(t, store.JobFailed)
	m.JobFinished(good) // http only: the mail reporter's mode is "failing"
	m.JobFinished(store.Job{ID: bad.ID})
	flush(t, m)

	posts := drain(hooked)
	if len(posts) != 2 {
		t.Fatalf("%d posts, want 2; log:\n%s", len(posts), f.log)
	}
	for i, want := range []store.Job{good, bad} {
		j, _ := posts[i].body["job"].(map[string]any)
		plats, _ := j["platforms"].([]any)
		if j == nil || j["jobid"] != float64(want.ID) || j["name"] != "hello" || j["farm"] != "packages" || len(plats) != 2 ||
			j["url"] != fmt.Sprintf("http://sf.example/jobs/%d", want.ID) {
			t.Errorf("post %d: %v", i, posts[i].body)
		}
	}
	if j := posts[1].body["job"].(map[string]any); j["state"] != "failed" || !strings.Contains(j["summary"].(string), "debian-13-amd64") {
		t.Errorf("failed job posted as %v", j)
	}

	got := srv.messages(t)
	if len(got) != 1 {
		t.Fatalf("%d mails, want 1 (the failed job's); log:\n%s", len(got), f.log)
	}
	_, subject, body := parse(t, got[0])
	if want := fmt.Sprintf("Starforge: job %d hello failed", bad.ID); subject != want {
		t.Errorf("subject %q, want %q", subject, want)
	}
	for _, want := range []string{
		fmt.Sprintf("Job %d \"hello\" of farm packages, submitted by alice, failed.", bad.ID),
		fmt.Sprintf("Job page:  http://sf.example/jobs/%d", bad.ID),
		"failed on debian-13-amd64: hello (build 17: failure); nothing published",
		"debian-12-amd64: succeeded",
		"debian-13-amd64: failed (hello (build 17: failure))",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(f.log.String(), "level=ERROR") {
		t.Errorf("errors:\n%s", f.log)
	}
}

func TestJobWanted(t *testing.T) {
	failed := &store.Job{Farm: "packages", State: store.JobFailed}
	succeeded := &store.Job{Farm: "packages", State: store.JobSucceeded}
	for _, tc := range []struct {
		r          config.Reporter
		fail, succ bool
	}{
		{config.Reporter{Mode: "all"}, true, true},
		{config.Reporter{Mode: "failing"}, true, false},
		{config.Reporter{Mode: "problem"}, true, false},
		{config.Reporter{Mode: "change"}, true, false},
		{config.Reporter{Mode: "warnings"}, true, false},
		{config.Reporter{Mode: "exception"}, false, false},
		{config.Reporter{Mode: "all", Builders: []string{"app"}}, false, false},
		{config.Reporter{Mode: "all", Builders: []string{"app", "packages"}}, true, true},
		{config.Reporter{Mode: "all", Tags: []string{"packages"}}, true, true},
		{config.Reporter{Mode: "all", Tags: []string{"release"}}, false, false},
		{config.Reporter{Mode: "all", Branches: []string{"main"}}, true, true},
	} {
		if got := jobWanted(&tc.r, failed); got != tc.fail {
			t.Errorf("%+v: failed job wanted = %v", tc.r, got)
		}
		if got := jobWanted(&tc.r, succeeded); got != tc.succ {
			t.Errorf("%+v: succeeded job wanted = %v", tc.r, got)
		}
	}
}
