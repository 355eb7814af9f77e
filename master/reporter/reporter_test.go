package reporter

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

const token = "s3cr3t-t0ken-value"

// got is one request a fake server received.
type got struct {
	path   string // escaped
	header http.Header
	body   map[string]any
}

// fakeServer answers each POST with the status next returns and sends
// what it received on the returned channel.
func fakeServer(t *testing.T, next func() int) (*httptest.Server, chan got) {
	ch := make(chan got, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		ch <- got{r.URL.EscapedPath(), r.Header.Clone(), m}
		w.WriteHeader(next())
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func ok() int { return http.StatusCreated }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is a store with one builder and a way to run builds of it.
type fixture struct {
	t       *testing.T
	st      *store.Store
	builder int64
	log     *syncBuffer
	cfg     *config.Config
}

func newFixture(t *testing.T, repo string, reporters ...*config.Reporter) *fixture {
	t.Setenv("SFTEST_tok", token)
	st, err := store.Open(filepath.Join(t.TempDir(), "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	id, err := st.EnsureBuilder(context.Background(), store.Builder{Name: "app", Tags: []string{"release"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Master:          config.MasterSettings{URL: "http://sf.example/"},
		SecretProviders: []config.SecretProvider{&config.SecretsEnv{Prefix: "SFTEST_"}},
		Reporters:       reporters,
	}
	_ = repo
	return &fixture{t: t, st: st, builder: id, log: &syncBuffer{}, cfg: cfg}
}

func (f *fixture) manager(o Options) *Manager {
	o.Store = f.st
	o.Config = func() *config.Config { return f.cfg }
	o.Logger = slog.New(slog.NewTextHandler(f.log, nil))
	if o.Backoff == nil {
		o.Backoff = func(int) time.Duration { return 0 }
	}
	m := New(o)
	f.t.Cleanup(m.Close)
	return m
}

// build runs one build of the builder on repo@main, ending with res.
func (f *fixture) build(repo string, res result.Result) (started, finished store.Build) {
	t, ctx := f.t, context.Background()
	_, reqs, err := f.st.AddBuildset(ctx, store.NewBuildset{
		Reason:       "test",
		SourceStamps: []store.SourceStamp{{Repository: repo, Branch: "main", Revision: "abc123"}},
		BuilderIDs:   []int64{f.builder},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.st.AddBuild(ctx, store.NewBuild{BuilderID: f.builder, RequestID: reqs[0].ID,
		Properties: map[string]store.Property{"got_revision": {Value: "def456", Source: "Git"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.FinishBuild(ctx, b.ID, res, "finished", time.Time{}); err != nil {
		t.Fatal(err)
	}
	fin, err := f.st.GetBuild(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	return b, fin
}

func flush(t *testing.T, m *Manager) {
	t.Helper()
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func drain(ch chan got) []got {
	var out []got
	for {
		select {
		case g := <-ch:
			out = append(out, g)
		default:
			return out
		}
	}
}

func TestKinds(t *testing.T) {
	srv, ch := fakeServer(t, ok)
	tests := []struct {
		r          *config.Reporter
		repo       string
		path       string
		authHeader string
		auth       string
		want       map[string]any // body fields
		wantStart  map[string]any
	}{
		{
			r:    &config.Reporter{Kind: "github", URL: srv.URL, Token: "tok", Context: "ci/BUILDER", Mode: "all"},
			repo: "https://github.com/acme/widget.git", path: "/repos/acme/widget/statuses/def456",
			authHeader: "Authorization", auth: "Bearer " + token,
			wantStart: map[string]any{"state": "pending", "context": "ci/app"},
			want:      map[string]any{"state": "failure", "context": "ci/app", "target_url": "http://sf.example/builders/1/builds/1"},
		},
		{
			r:    &config.Reporter{Kind: "gitea", URL: srv.URL, Token: "tok", Context: "starforge/BUILDER", Mode: "all"},
			repo: "git@tea.example.com:acme/widget.git", path: "/api/v1/repos/acme/widget/statuses/def456",
			authHeader: "Authorization", auth: "token " + token,
			wantStart: map[string]any{"state": "pending", "context": "starforge/app"},
			want:      map[string]any{"state": "failure", "context": "starforge/app"},
		},
		{
			r:    &config.Reporter{Kind: "gitlab", URL: srv.URL, Token: "tok", Context: "starforge/BUILDER", Mode: "all"},
			repo: "ssh://git@gitlab.example.com/grp/sub/widget.git", path: "/api/v4/projects/grp%2Fsub%2Fwidget/statuses/def456",
			authHeader: "Private-Token", auth: token,
			wantStart: map[string]any{"state": "running", "name": "starforge/app"},
			want:      map[string]any{"state": "failed", "name": "starforge/app"},
		},
		{
			r: &config.Reporter{Kind: "http", URL: srv.URL + "/hook", Mode: "all",
				Headers: map[string]string{"X-Plain": "p"}, SecretHeaders: map[string]string{"X-Token": "tok"}},
			repo: "https://example.com/x/y", path: "/hook",
			authHeader: "X-Token", auth: token,
			wantStart: map[string]any{"builder": "app", "result": "pending", "complete": false},
			want: map[string]any{"builder": "app", "result": "failure", "results": 2.0, "complete": true,
				"url": "http://sf.example/builders/1/builds/1", "number": 1.0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.r.Kind, func(t *testing.T) {
			f := newFixture(t, tt.repo, tt.r)
			m := f.manager(Options{})
			started, finished := f.build(tt.repo, result.Failure)
			m.BuildStarted(started)
			m.BuildFinished(finished)
			flush(t, m)
			reqs := drain(ch)
			if len(reqs) != 2 {
				t.Fatalf("got %d requests, want 2 (start, finish)", len(reqs))
			}
			for i, want := range []map[string]any{tt.wantStart, tt.want} {
				g := reqs[i]
				if g.path != tt.path {
					t.Errorf("request %d: path %s, want %s", i, g.path, tt.path)
				}
				if a := g.header.Get(tt.authHeader); a != tt.auth {
					t.Errorf("request %d: %s = %q, want %q", i, tt.authHeader, a, tt.auth)
				}
				for k, v := range want {
					if g.body[k] != v {
						t.Errorf("request %d: body[%s] = %#v, want %#v", i, k, g.body[k], v)
					}
				}
				if strings.Contains(strings.ToLower(toJSON(g.body)), strings.ToLower(token)) {
					t.Errorf("request %d: the token is in the body", i)
				}
			}
			if tt.r.Kind == "http" {
				if reqs[1].header.Get("X-Plain") != "p" {
					t.Errorf("X-Plain header missing: %v", reqs[1].header)
				}
				props, _ := reqs[1].body["properties"].(map[string]any)
				if gr, _ := props["got_revision"].([]any); len(gr) != 2 || gr[0] != "def456" {
					t.Errorf("properties = %v, want got_revision [def456 Git]", props)
				}
			}
		})
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestModes(t *testing.T) {
	const (
		S = result.Success
		W = result.Warnings
		F = result.Failure
		E = result.Exception
	)
	seq := []result.Result{F, S, S, F, F, W, E, S, F}
	tests := []struct {
		mode string
		want []int // indexes in seq that are reported
	}{
		{"all", []int{0, 1, 2, 3, 4, 5, 6, 7, 8}},
		{"failing", []int{0, 3, 4, 8}},
		{"problem", []int{3, 8}},
		{"change", []int{1, 3, 5, 6, 7, 8}},
		{"warnings", []int{0, 3, 4, 5, 8}},
		{"exception", []int{6}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			srv, ch := fakeServer(t, ok)
			repo := "https://github.com/acme/widget"
			f := newFixture(t, repo, &config.Reporter{Kind: "http", URL: srv.URL, Mode: tt.mode})
			m := f.manager(Options{})
			var gotIdx []int
			for i, res := range seq {
				_, fin := f.build(repo, res)
				m.BuildFinished(fin)
				flush(t, m)
				if n := len(drain(ch)); n > 0 {
					gotIdx = append(gotIdx, i)
				}
			}
			if toJSON(gotIdx) != toJSON(tt.want) {
				t.Errorf("reported builds %v, want %v (results %v)", gotIdx, tt.want, seq)
			}
		})
	}
}

func TestFilters(t *testing.T) {
	srv, ch := fakeServer(t, ok)
	repo := "https://github.com/acme/widget"
	tests := []struct {
		name string
		r    config.Reporter
		want bool
	}{
		{"builder listed", config.Reporter{Builders: []string{"other", "app"}}, true},
		{"builder not listed", config.Reporter{Builders: []string{"other"}}, false},
		{"tag", config.Reporter{Tags: []string{"release"}}, true},
		{"other tag", config.Reporter{Tags: []string{"nightly"}}, false},
		{"branch", config.Reporter{Branches: []string{"main"}}, true},
		{"other branch", config.Reporter{Branches: []string{"dev"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r
			r.Kind, r.URL, r.Mode = "http", srv.URL, "all"
			f := newFixture(t, repo, &r)
			m := f.manager(Options{})
			_, fin := f.build(repo, result.Success)
			m.BuildFinished(fin)
			flush(t, m)
			if got := len(drain(ch)) > 0; got != tt.want {
				t.Errorf("reported = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	var mu sync.Mutex
	answers := []int{500, 503, 201}
	srv, ch := fakeServer(t, func() int {
		mu.Lock()
		defer mu.Unlock()
		if len(answers) == 0 {
			return 500
		}
		a := answers[0]
		answers = answers[1:]
		return a
	})
	repo := "https://github.com/acme/widget"
	f := newFixture(t, repo, &config.Reporter{Kind: "github", URL: srv.URL, Token: "tok", Context: "c", Mode: "all"})
	m := f.manager(Options{Attempts: 3})
	_, fin := f.build(repo, result.Success)
	m.BuildFinished(fin)
	flush(t, m)
	if n := len(drain(ch)); n != 3 {
		t.Errorf("server got %d requests, want 3 (two failures, then success)", n)
	}
	if !strings.Contains(f.log.String(), "will retry") {
		t.Errorf("retries not logged:\n%s", f.log)
	}
	// Now the server always fails: the manager gives up and logs it.
	m.BuildFinished(fin)
	flush(t, m)
	if n := len(drain(ch)); n != 3 {
		t.Errorf("server got %d requests, want 3 attempts", n)
	}
	log := f.log.String()
	if !strings.Contains(log, "gave up after 3 attempts") {
		t.Errorf("failure not logged:\n%s", log)
	}
	if strings.Contains(log, token) {
		t.Errorf("the token is in the log:\n%s", log)
	}
}

// TestNeverBlocks: with the server stuck and the queue full, reporting
// returns at once and drops what does not fit.
func TestNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	repo := "https://github.com/acme/widget"
	f := newFixture(t, repo, &config.Reporter{Kind: "http", URL: srv.URL, Mode: "all"})
	m := f.manager(Options{QueueSize: 2})
	_, fin := f.build(repo, result.Success)
	for range 10 {
		m.BuildFinished(fin) // would hang here if it blocked
	}
	if !strings.Contains(f.log.String(), "queue full") {
		t.Errorf("dropped events not logged:\n%s", f.log)
	}
}

func TestRepoPath(t *testing.T) {
	for in, want := range map[string]string{
		"https://github.com/acme/widget.git":      "acme/widget",
		"https://github.com/acme/widget/":         "acme/widget",
		"git@github.com:acme/widget.git":          "acme/widget",
		"ssh://git@gitlab.com/grp/sub/widget.git": "grp/sub/widget",
		"https://github.com/acme":                 "",
		"/srv/git/widget":                         "", // a local path names no owner
		"widget":                                  "",
	} {
		got, err := repoPath(in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("repoPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
