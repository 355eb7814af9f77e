package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// The secrets of the test hooks, as the services would be told them.
var secrets = map[string]string{
	"gh-hook":    "It's a Secret to Everybody",
	"gl-token":   "glpat-not-really",
	"tea-hook":   "t3a-s3cr3t",
	"bb-hook":    "bitbucket shared secret",
	"base-token": "base-token-value",
}

// env is a webhook handler over a real store, behind a real HTTP server.
type env struct {
	st     *store.Store
	srv    *httptest.Server
	cfg    atomic.Pointer[config.Config]
	dir    string // the secrets directory
	sink   *countingSink
	poller *fakePoller
}

// countingSink counts AddChanges calls and can be made to fail.
type countingSink struct {
	st    *store.Store
	calls atomic.Int32
	fail  atomic.Bool
}

func (s *countingSink) AddChanges(ctx context.Context, cs []store.Change, state ...store.StateValue) ([]store.Change, error) {
	s.calls.Add(1)
	if s.fail.Load() {
		return nil, errors.New("disk on fire")
	}
	return s.st.AddChanges(ctx, cs, state...)
}

// fakePoller knows some pollers and records the polls.
type fakePoller struct {
	mu     sync.Mutex
	known  []string
	polled []string
	err    error
}

type unknownPollerError struct{ name string }

func (e unknownPollerError) Error() string       { return "no poller " + e.name }
func (e unknownPollerError) UnknownPoller() bool { return true }

func (p *fakePoller) PollNow(_ context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.Contains(p.known, name) {
		return fmt.Errorf("poll: %w", unknownPollerError{name})
	}
	if p.err != nil {
		return p.err
	}
	p.polled = append(p.polled, name)
	return nil
}

func hooks() []*config.ChangeHook {
	return []*config.ChangeHook{
		{Dialect: "github", Secret: "gh-hook"},
		{Dialect: "gitlab", Token: "gl-token"},
		{Dialect: "gitea", Secret: "tea-hook"},
		{Dialect: "bitbucket", Secret: "bb-hook"},
		{Dialect: "base", Token: "base-token", Codebase: "from-hook"},
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{st: st, dir: t.TempDir(), sink: &countingSink{st: st}, poller: &fakePoller{known: []string{"repo-a", "repo-b"}}}
	for name, v := range secrets {
		e.setSecret(t, name, v)
	}
	e.cfg.Store(&config.Config{
		SecretProviders: []config.SecretProvider{&config.SecretsDir{Dir: e.dir}},
		ChangeHooks:     hooks(),
	})
	e.srv = httptest.NewServer(New(Options{Hooks: e.cfg.Load, Sink: e.sink, Poller: e.poller, MaxBody: 64 << 10}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) setSecret(t *testing.T, name, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// do sends a request and returns the status and body.
func (e *env) do(t *testing.T, method, path string, h http.Header, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// nothingStored fails the test if any change was stored or offered.
func (e *env) nothingStored(t *testing.T) {
	t.Helper()
	id, err := e.st.LastChangeID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if id != 0 {
		t.Errorf("change %d was stored; want none", id)
	}
	if n := e.sink.calls.Load(); n != 0 {
		t.Errorf("AddChanges called %d times; want none", n)
	}
}

// errorOf returns the error message of a JSON error reply, or the whole
// body if it is not one.
func errorOf(body []byte) string {
	var eb struct{ Error string }
	if json.Unmarshal(body, &eb) != nil || eb.Error == "" {
		return string(body)
	}
	return eb.Error
}

func hubSignature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func readPayload(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit returns the JSON document b changed by fn.
func edit(t *testing.T, b []byte, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func formBody(payload []byte) []byte {
	return []byte(url.Values{"payload": {string(payload)}}.Encode())
}

// auth says how a case authenticates.
type auth int

const (
	authGood    auth = iota // the right signature or token
	authNone                // no signature or token header
	authWrong               // a signature or token made with another secret
	authGarbled             // a header that is not a signature at all
)

type hookCase struct {
	name    string
	dialect string
	header  http.Header // event headers and content type
	payload string      // testdata file
	mutate  func(t *testing.T, b []byte) []byte
	auth    auth
	status  int
	want    string // substring of the error or ignored reason; for 200 with changes, compared with testdata/golden/NAME.golden
}

func json1(h http.Header) http.Header {
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	return h
}

func ghEvent(ev string) http.Header {
	return json1(http.Header{"X-Github-Event": {ev}, "X-Github-Delivery": {"72d3162e-cc78-11e3-81ab-4c9367dc0958"}})
}

func glEvent(ev string) http.Header  { return json1(http.Header{"X-Gitlab-Event": {ev}}) }
func teaEvent(ev string) http.Header { return json1(http.Header{"X-Gitea-Event": {ev}}) }
func bbEvent(key string) http.Header { return json1(http.Header{"X-Event-Key": {key}}) }
func withCT(ct string) http.Header   { return http.Header{"Content-Type": {ct}} }
func ghForm(ev string) http.Header {
	h := ghEvent(ev)
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	return h
}

var hookCases = []hookCase{
	// GitHub
	{name: "github_push", dialect: "github", header: ghEvent("push"), payload: "github_push.json", status: 200},
	{name: "github_push_form", dialect: "github", header: ghForm("push"), payload: "github_push.json",
		mutate: func(_ *testing.T, b []byte) []byte { return formBody(b) }, status: 200},
	{name: "github_push_tag", dialect: "github", header: ghEvent("push"), payload: "github_push_tag.json", status: 200},
	{name: "github_pull_request", dialect: "github", header: ghEvent("pull_request"), payload: "github_pull_request.json", status: 200},
	{name: "github_pull_request_closed", dialect: "github", header: ghEvent("pull_request"), payload: "github_pull_request_closed.json",
		status: 200, want: `pull request action "closed" is not built`},
	{name: "github_push_deleted", dialect: "github", header: ghEvent("push"), payload: "github_push_deleted.json",
		status: 200, want: "refs/heads/feature/old deleted"},
	{name: "github_push_deleted_by_sha", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { m["after"] = strings.Repeat("0", 40) })
		}, status: 200, want: "refs/heads/main deleted"},
	{name: "github_push_empty", dialect: "github", header: ghEvent("push"), payload: "github_push_empty.json",
		status: 200, want: "push to refs/heads/main has no commits"},
	{name: "github_ping", dialect: "github", header: ghEvent("ping"), payload: "github_ping.json", status: 200, want: "ping"},
	{name: "github_other_event", dialect: "github", header: ghEvent("issues"), payload: "github_ping.json",
		status: 200, want: `github event "issues" is not handled`},
	{name: "github_no_signature", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		auth: authNone, status: 403, want: "missing X-Hub-Signature-256 header"},
	{name: "github_wrong_signature", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		auth: authWrong, status: 403, want: "X-Hub-Signature-256 does not match the body"},
	{name: "github_garbled_signature", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		auth: authGarbled, status: 403, want: "X-Hub-Signature-256: want sha256=HEX"},
	{name: "github_truncated", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		mutate: func(_ *testing.T, b []byte) []byte { return b[:len(b)/2] }, status: 400, want: "truncated JSON"},
	{name: "github_broken_json", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		mutate: func(_ *testing.T, b []byte) []byte { return bytes.Replace(b, []byte(`"ref":`), []byte(`"ref"=`), 1) },
		status: 400, want: "invalid JSON at byte"},
	{name: "github_empty_body", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		mutate: func(_ *testing.T, b []byte) []byte { return nil }, status: 400, want: "empty payload"},
	{name: "github_array", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		mutate: func(_ *testing.T, b []byte) []byte { return []byte(`[1, 2]`) }, status: 400, want: "payload: want an object, got array"},
	{name: "github_commits_not_a_list", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { m["commits"] = map[string]any{"id": "x"} })
		}, status: 400, want: "commits: want an array, got object"},
	{name: "github_commit_without_id", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { delete(m["commits"].([]any)[1].(map[string]any), "id") })
		}, status: 400, want: "commits[1].id: missing or empty"},
	{name: "github_bad_timestamp", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { m["commits"].([]any)[0].(map[string]any)["timestamp"] = "yesterday" })
		}, status: 400, want: `commits[0].timestamp: want a timestamp such as 2024-05-01T12:00:00Z, got "yesterday"`},
	{name: "github_no_repository", dialect: "github", header: ghEvent("push"), payload: "github_push.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { delete(m, "repository") })
		}, status: 400, want: "repository: missing"},
	{name: "github_no_event", dialect: "github", header: json1(http.Header{}), payload: "github_push.json",
		status: 400, want: "missing X-GitHub-Event header"},
	{name: "github_text_plain", dialect: "github", header: func() http.Header { h := ghEvent("push"); h.Set("Content-Type", "text/plain"); return h }(),
		payload: "github_push.json", status: 415, want: "Content-Type: want application/json"},
	{name: "github_form_without_payload", dialect: "github", header: ghForm("push"), payload: "github_push.json",
		mutate: func(_ *testing.T, b []byte) []byte { return []byte("data=1") }, status: 400, want: "want one payload= field"},
	{name: "github_pr_without_sha", dialect: "github", header: ghEvent("pull_request"), payload: "github_pull_request.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) {
				delete(m["pull_request"].(map[string]any)["head"].(map[string]any), "sha")
			})
		}, status: 400, want: "pull_request.head.sha: missing or empty"},

	// GitLab
	{name: "gitlab_push", dialect: "gitlab", header: glEvent("Push Hook"), payload: "gitlab_push.json", status: 200},
	{name: "gitlab_tag_push", dialect: "gitlab", header: glEvent("Tag Push Hook"), payload: "gitlab_tag_push.json", status: 200},
	{name: "gitlab_merge_request", dialect: "gitlab", header: glEvent("Merge Request Hook"), payload: "gitlab_merge_request.json", status: 200},
	{name: "gitlab_merge_request_update", dialect: "gitlab", header: glEvent("Merge Request Hook"), payload: "gitlab_merge_request_update_nocommits.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) {
				m["object_attributes"].(map[string]any)["oldrev"] = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
			})
		}, status: 200},
	{name: "gitlab_merge_request_update_nocommits", dialect: "gitlab", header: glEvent("Merge Request Hook"),
		payload: "gitlab_merge_request_update_nocommits.json", status: 200, want: "merge request update without new commits"},
	{name: "gitlab_push_deleted", dialect: "gitlab", header: glEvent("Push Hook"), payload: "gitlab_push_deleted.json",
		status: 200, want: "refs/heads/develop deleted"},
	{name: "gitlab_note", dialect: "gitlab", header: glEvent("Note Hook"), payload: "gitlab_push.json",
		status: 200, want: `gitlab event "Note Hook" is not handled`},
	{name: "gitlab_no_token", dialect: "gitlab", header: glEvent("Push Hook"), payload: "gitlab_push.json",
		auth: authNone, status: 403, want: "missing X-Gitlab-Token header"},
	{name: "gitlab_wrong_token", dialect: "gitlab", header: glEvent("Push Hook"), payload: "gitlab_push.json",
		auth: authWrong, status: 403, want: "wrong X-Gitlab-Token"},
	{name: "gitlab_truncated", dialect: "gitlab", header: glEvent("Push Hook"), payload: "gitlab_push.json",
		mutate: func(_ *testing.T, b []byte) []byte { return b[:100] }, status: 400, want: "truncated JSON"},
	{name: "gitlab_commit_without_id", dialect: "gitlab", header: glEvent("Push Hook"), payload: "gitlab_push.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { m["commits"].([]any)[0].(map[string]any)["id"] = "" })
		}, status: 400, want: "commits[0].id: missing or empty"},
	{name: "gitlab_no_project", dialect: "gitlab", header: glEvent("Push Hook"), payload: "gitlab_push.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { delete(m, "project") })
		}, status: 400, want: "project: missing"},
	{name: "gitlab_tag_without_sha", dialect: "gitlab", header: glEvent("Tag Push Hook"), payload: "gitlab_tag_push.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { m["checkout_sha"] = nil })
		}, status: 400, want: "checkout_sha: missing or empty"},
	{name: "gitlab_mr_without_commit", dialect: "gitlab", header: glEvent("Merge Request Hook"), payload: "gitlab_merge_request.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { delete(m["object_attributes"].(map[string]any), "last_commit") })
		}, status: 400, want: "object_attributes.last_commit: missing"},

	// Gitea
	{name: "gitea_push", dialect: "gitea", header: teaEvent("push"), payload: "gitea_push.json", status: 200},
	{name: "gitea_pull_request", dialect: "gitea", header: teaEvent("pull_request"), payload: "gitea_pull_request.json", status: 200},
	{name: "gitea_no_signature", dialect: "gitea", header: teaEvent("push"), payload: "gitea_push.json",
		auth: authNone, status: 403, want: "missing X-Gitea-Signature header"},
	{name: "gitea_wrong_signature", dialect: "gitea", header: teaEvent("push"), payload: "gitea_push.json",
		auth: authWrong, status: 403, want: "X-Gitea-Signature does not match the body"},
	{name: "gitea_garbled_signature", dialect: "gitea", header: teaEvent("push"), payload: "gitea_push.json",
		auth: authGarbled, status: 403, want: "X-Gitea-Signature: invalid hex digest"},
	{name: "gitea_broken_json", dialect: "gitea", header: teaEvent("push"), payload: "gitea_push.json",
		mutate: func(_ *testing.T, b []byte) []byte { return append(b, '}') }, status: 400, want: "invalid JSON at byte"},

	// Bitbucket
	{name: "bitbucket_cloud_push", dialect: "bitbucket", header: bbEvent("repo:push"), payload: "bitbucket_cloud_push.json", status: 200},
	{name: "bitbucket_server_refs_changed", dialect: "bitbucket", header: bbEvent("repo:refs_changed"), payload: "bitbucket_server_refs_changed.json", status: 200},
	{name: "bitbucket_cloud_only_deleted", dialect: "bitbucket", header: bbEvent("repo:push"), payload: "bitbucket_cloud_push.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) {
				p := m["push"].(map[string]any)
				p["changes"] = p["changes"].([]any)[2:]
			})
		}, status: 200, want: "the push only deleted refs"},
	{name: "bitbucket_ping", dialect: "bitbucket", header: bbEvent("diagnostics:ping"), payload: "github_ping.json", status: 200, want: "ping"},
	{name: "bitbucket_no_signature", dialect: "bitbucket", header: bbEvent("repo:push"), payload: "bitbucket_cloud_push.json",
		auth: authNone, status: 403, want: "missing X-Hub-Signature header"},
	{name: "bitbucket_wrong_signature", dialect: "bitbucket", header: bbEvent("repo:push"), payload: "bitbucket_cloud_push.json",
		auth: authWrong, status: 403, want: "X-Hub-Signature does not match the body"},
	{name: "bitbucket_bad_ref_type", dialect: "bitbucket", header: bbEvent("repo:push"), payload: "bitbucket_cloud_push.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) {
				c := m["push"].(map[string]any)["changes"].([]any)[1].(map[string]any)
				c["new"].(map[string]any)["type"] = "blob"
			})
		}, status: 400, want: `push.changes[1].new.type: want branch or tag, got "blob"`},
	{name: "bitbucket_commit_without_hash", dialect: "bitbucket", header: bbEvent("repo:push"), payload: "bitbucket_cloud_push.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) {
				c := m["push"].(map[string]any)["changes"].([]any)[0].(map[string]any)
				delete(c["commits"].([]any)[1].(map[string]any), "hash")
			})
		}, status: 400, want: "push.changes[0].commits[1].hash: missing or empty"},
	{name: "bitbucket_server_bad_date", dialect: "bitbucket", header: bbEvent("repo:refs_changed"), payload: "bitbucket_server_refs_changed.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { m["date"] = "11/05/2024" })
		}, status: 400, want: `date: want a timestamp`},

	// base
	{name: "base_json", dialect: "base", header: withCT("application/json"), payload: "base.json", status: 200},
	{name: "base_form", dialect: "base", header: withCT("application/x-www-form-urlencoded"), payload: "base.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return []byte(url.Values{
				"who":        {"Form Sender <form@example.org>"},
				"comments":   {"sent as a form"},
				"branch":     {"main"},
				"revision":   {"abc123"},
				"when":       {"1714564800.5"},
				"files":      {`["a.c", "b/c.h"]`},
				"properties": {`{"ticket": "T-1"}`},
			}.Encode())
		}, status: 200},
	{name: "base_missing_author", dialect: "base", header: withCT("application/json"), payload: "base.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { delete(m, "author") })
		}, status: 400, want: "author: missing or empty"},
	{name: "base_unknown_field", dialect: "base", header: withCT("application/json"), payload: "base.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { m["brnach"] = "main" })
		}, status: 400, want: `unknown field "brnach"`},
	{name: "base_files_not_a_list", dialect: "base", header: withCT("application/json"), payload: "base.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { m["files"] = "a.c" })
		}, status: 400, want: "files: want an array, got string"},
	{name: "base_form_bad_files", dialect: "base", header: withCT("application/x-www-form-urlencoded"), payload: "base.json",
		mutate: func(_ *testing.T, b []byte) []byte { return []byte("author=me&files=a.c,b.c") }, status: 400,
		want: `files: want a JSON list of file names, got "a.c,b.c"`},
	{name: "base_form_twice", dialect: "base", header: withCT("application/x-www-form-urlencoded"), payload: "base.json",
		mutate: func(_ *testing.T, b []byte) []byte { return []byte("author=me&branch=a&branch=b") }, status: 400,
		want: "branch: given 2 times, want once"},
	{name: "base_negative_when", dialect: "base", header: withCT("application/json"), payload: "base.json",
		mutate: func(t *testing.T, b []byte) []byte {
			return edit(t, b, func(m map[string]any) { m["when_timestamp"] = -5 })
		}, status: 400, want: "when_timestamp: want unix seconds, got -5"},
	{name: "base_trailing_garbage", dialect: "base", header: withCT("application/json"), payload: "base.json",
		mutate: func(_ *testing.T, b []byte) []byte { return append(b, "}{"...) }, status: 400, want: "invalid JSON at byte"},
	{name: "base_wrong_token", dialect: "base", header: withCT("application/json"), payload: "base.json",
		auth: authWrong, status: 403, want: "wrong X-Starforge-Token"},
	{name: "base_no_token", dialect: "base", header: withCT("application/json"), payload: "base.json",
		auth: authNone, status: 403, want: "missing X-Starforge-Token header"},
}

// authHeader returns the header carrying a's signature or token of body
// for dialect.
func authHeader(dialect string, a auth, body []byte) http.Header {
	h := http.Header{}
	secret := map[string]string{"github": "gh-hook", "gitlab": "gl-token", "gitea": "tea-hook", "bitbucket": "bb-hook", "base": "base-token"}[dialect]
	value := secrets[secret]
	switch a {
	case authNone:
		return h
	case authWrong:
		value = "not the secret"
	}
	sig := hubSignature(value, body)
	if a == authGarbled {
		sig = "sha1=0123456789abcdef"
	}
	switch dialect {
	case "github":
		h.Set("X-Hub-Signature-256", sig)
	case "bitbucket":
		h.Set("X-Hub-Signature", sig)
	case "gitea":
		h.Set("X-Gitea-Signature", strings.TrimPrefix(sig, "sha256="))
	case "gitlab":
		h.Set("X-Gitlab-Token", value)
	case "base":
		h.Set("X-Starforge-Token", value)
	}
	return h
}

func TestHooks(t *testing.T) {
	for _, tc := range hookCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			body := readPayload(t, tc.payload)
			if tc.mutate != nil {
				body = tc.mutate(t, body)
			}
			h := authHeader(tc.dialect, tc.auth, body)
			for k, vs := range tc.header {
				h[k] = vs
			}
			sent := time.Now()
			status, _, resp := e.do(t, http.MethodPost, "/change_hook/"+tc.dialect, h, body)
			if status != tc.status {
				t.Fatalf("status %d, want %d; body %s", status, tc.status, resp)
			}
			if status != http.StatusOK {
				var eb struct{ Error string }
				if err := json.Unmarshal(resp, &eb); err != nil || !strings.Contains(eb.Error, tc.want) {
					t.Errorf("error %q (%s), want it to contain %q", eb.Error, resp, tc.want)
				}
				e.nothingStored(t)
				return
			}
			var r struct {
				ChangeIDs []int64 `json:"changeids"`
				Ignored   string  `json:"ignored"`
			}
			if err := json.Unmarshal(resp, &r); err != nil {
				t.Fatalf("%v in %s", err, resp)
			}
			if tc.want != "" {
				if len(r.ChangeIDs) != 0 || !strings.Contains(r.Ignored, tc.want) {
					t.Errorf("reply %s, want no change and ignored containing %q", resp, tc.want)
				}
				e.nothingStored(t)
				return
			}
			if len(r.ChangeIDs) == 0 {
				t.Fatalf("reply %s: no change created", resp)
			}
			if n := e.sink.calls.Load(); n != 1 {
				t.Errorf("AddChanges called %d times, want once for the whole request", n)
			}
			goldenChanges(t, e.st, tc.name, r.ChangeIDs, sent)
		})
	}
}

// goldenChanges compares the stored changes ids with
// testdata/golden/NAME.golden. A change whose payload has no time gets
// the time of arrival, after sent; the file shows it as "arrival".
func goldenChanges(t *testing.T, st *store.Store, name string, ids []int64, sent time.Time) {
	t.Helper()
	var out []map[string]any
	for _, id := range ids {
		c, err := st.GetChange(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		props := map[string]any{}
		for k, p := range c.Properties {
			props[k] = []any{p.Value, p.Source}
		}
		when := c.When.UTC().Format(time.RFC3339Nano)
		if !c.When.Before(sent.Truncate(time.Microsecond)) {
			when = "arrival"
		}
		out = append(out, map[string]any{
			"author": c.Author, "committer": c.Committer, "comments": c.Comments,
			"branch": c.Branch, "revision": c.Revision, "revlink": c.Revlink,
			"when": when, "category": c.Category,
			"repository": c.Repository, "codebase": c.Codebase, "project": c.Project,
			"files": c.Files, "properties": props,
		})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	path := filepath.Join("testdata", "golden", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: mismatch (run go test -update to accept)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

// TestGiteaHubSignature checks that Gitea's X-Hub-Signature-256, which
// newer versions and Forgejo send as well, is accepted on its own.
func TestGiteaHubSignature(t *testing.T) {
	e := newEnv(t)
	body := readPayload(t, "gitea_push.json")
	h := teaEvent("push")
	h.Set("X-Hub-Signature-256", hubSignature(secrets["tea-hook"], body))
	if st, _, resp := e.do(t, http.MethodPost, "/change_hook/gitea", h, body); st != http.StatusOK || !bytes.Contains(resp, []byte(`"changeids":[1]`)) {
		t.Fatalf("status %d, body %s", st, resp)
	}
}

func TestRequestErrors(t *testing.T) {
	e := newEnv(t)
	body := readPayload(t, "github_push.json")
	signed := ghEvent("push")
	signed.Set("X-Hub-Signature-256", hubSignature(secrets["gh-hook"], body))

	big := bytes.Repeat([]byte(" "), 100<<10)
	bigSigned := ghEvent("push")
	bigSigned.Set("X-Hub-Signature-256", hubSignature(secrets["gh-hook"], big))

	tests := []struct {
		name, method, path string
		h                  http.Header
		body               []byte
		status             int
		want               string
	}{
		{"get", http.MethodGet, "/change_hook/github", signed, nil, 405, "method GET not allowed"},
		{"put", http.MethodPut, "/change_hook/github", signed, body, 405, "method PUT not allowed"},
		{"unknown dialect", http.MethodPost, "/change_hook/jenkins", signed, body, 404, `no change hook dialect "jenkins"`},
		{"nested path", http.MethodPost, "/change_hook/github/extra", signed, body, 404, `no change hook dialect "github/extra"`},
		{"empty dialect", http.MethodPost, "/change_hook/", signed, body, 404, `no change hook dialect ""`},
		{"too big", http.MethodPost, "/change_hook/github", bigSigned, big, 413, "larger than the limit of 65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, hdr, resp := e.do(t, tt.method, tt.path, tt.h, tt.body)
			if st != tt.status || !strings.Contains(errorOf(resp), tt.want) {
				t.Errorf("status %d body %s, want %d and %q", st, resp, tt.status, tt.want)
			}
			if st == 405 && hdr.Get("Allow") != "POST" {
				t.Errorf("Allow: %q, want POST", hdr.Get("Allow"))
			}
		})
	}

	// A body that grows past the limit without a Content-Length.
	t.Run("too big chunked", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/change_hook/github", io.MultiReader(bytes.NewReader(big)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = bigSigned.Clone()
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || req.ContentLength != 0 {
			t.Errorf("status %d (content length %d), want 413", resp.StatusCode, req.ContentLength)
		}
	})

	t.Run("store fails", func(t *testing.T) {
		e.sink.fail.Store(true)
		defer e.sink.fail.Store(false)
		st, _, resp := e.do(t, http.MethodPost, "/change_hook/github", signed, body)
		if st != 500 || bytes.Contains(resp, []byte("disk on fire")) {
			t.Errorf("status %d body %s, want 500 without the details", st, resp)
		}
		e.sink.calls.Store(0)
	})
	e.nothingStored(t)
}

// TestReconfig checks that every request reads the configuration and the
// secret in force: a rotated secret and a removed hook apply at once.
func TestReconfig(t *testing.T) {
	e := newEnv(t)
	body := readPayload(t, "github_push.json")
	send := func(secret string) (int, []byte) {
		h := ghEvent("push")
		h.Set("X-Hub-Signature-256", hubSignature(secret, body))
		st, _, resp := e.do(t, http.MethodPost, "/change_hook/github", h, body)
		return st, resp
	}
	if st, resp := send(secrets["gh-hook"]); st != 200 {
		t.Fatalf("status %d %s", st, resp)
	}
	e.setSecret(t, "gh-hook", "rotated")
	if st, resp := send(secrets["gh-hook"]); st != 403 {
		t.Errorf("old secret after rotation: status %d %s, want 403", st, resp)
	}
	if st, resp := send("rotated"); st != 200 {
		t.Errorf("new secret: status %d %s, want 200", st, resp)
	}
	if err := os.Remove(filepath.Join(e.dir, "gh-hook")); err != nil {
		t.Fatal(err)
	}
	if st, resp := send("rotated"); st != 500 || !bytes.Contains(resp, []byte("master's log")) {
		t.Errorf("missing secret: status %d %s, want 500", st, resp)
	}

	e.cfg.Store(&config.Config{ChangeHooks: hooks()[1:]})
	if st, resp := send("rotated"); st != 404 || !strings.Contains(errorOf(resp), `no change_hook("github")`) {
		t.Errorf("hook removed: status %d %s, want 404", st, resp)
	}
	// Without a secret, anything is accepted.
	e.cfg.Store(&config.Config{ChangeHooks: []*config.ChangeHook{{Dialect: "github", Project: "override", Category: "ci"}}})
	st, resp := send("whatever")
	if st != 200 {
		t.Fatalf("hook without secret: status %d %s, want 200", st, resp)
	}
	var r struct{ ChangeIDs []int64 }
	if err := json.Unmarshal(resp, &r); err != nil || len(r.ChangeIDs) != 2 {
		t.Fatalf("reply %s", resp)
	}
	c, err := e.st.GetChange(context.Background(), r.ChangeIDs[1])
	if err != nil {
		t.Fatal(err)
	}
	if c.Project != "override" || c.Category != "ci" || c.Codebase != "" {
		t.Errorf("change %+v: want the hook's project and category", c)
	}
	e.cfg.Store(nil)
	if st, resp := send("whatever"); st != 503 {
		t.Errorf("no configuration: status %d %s, want 503", st, resp)
	}
}

func TestPoller(t *testing.T) {
	e := newEnv(t)
	multipartBody := func(names ...string) (http.Header, []byte) {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		for _, n := range names {
			if err := w.WriteField("poller", n); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
		return http.Header{"Content-Type": {w.FormDataContentType()}}, b.Bytes()
	}
	mh, mb := multipartBody("repo-b")
	tests := []struct {
		name, method, path string
		h                  http.Header
		body               []byte
		status             int
		want               string
		polled             []string
	}{
		{"get", http.MethodGet, "/change_hook/poller?poller=repo-a", nil, nil, 200, "polled", []string{"repo-a"}},
		{"post form", http.MethodPost, "/change_hook/poller", withCT("application/x-www-form-urlencoded"), []byte("poller=repo-a&poller=repo-b"), 200, "polled", []string{"repo-a", "repo-b"}},
		{"post multipart", http.MethodPost, "/change_hook/poller", mh, mb, 200, "polled", []string{"repo-b"}},
		{"unknown", http.MethodGet, "/change_hook/poller?poller=repo-a&poller=nope&poller=zilch", nil, nil, 404, `unknown poller "nope", "zilch"`, []string{"repo-a"}},
		{"none", http.MethodGet, "/change_hook/poller", nil, nil, 400, "want at least one poller=NAME", nil},
		{"put", http.MethodPut, "/change_hook/poller?poller=repo-a", nil, nil, 405, "use GET or POST", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.poller.mu.Lock()
			e.poller.polled = nil
			e.poller.mu.Unlock()
			st, hdr, resp := e.do(t, tt.method, tt.path, tt.h, tt.body)
			got := string(resp)
			if st != 200 {
				got = errorOf(resp)
			}
			if st != tt.status || !strings.Contains(got, tt.want) {
				t.Errorf("status %d body %s, want %d and %q", st, resp, tt.status, tt.want)
			}
			if st == 405 && hdr.Get("Allow") != "GET, POST" {
				t.Errorf("Allow: %q", hdr.Get("Allow"))
			}
			e.poller.mu.Lock()
			defer e.poller.mu.Unlock()
			if !slices.Equal(e.poller.polled, tt.polled) {
				t.Errorf("polled %q, want %q", e.poller.polled, tt.polled)
			}
		})
	}
	t.Run("poll fails", func(t *testing.T) {
		e.poller.mu.Lock()
		e.poller.err = errors.New("network down")
		e.poller.mu.Unlock()
		if st, _, resp := e.do(t, http.MethodGet, "/change_hook/poller?poller=repo-a", nil, nil); st != 500 {
			t.Errorf("status %d %s, want 500", st, resp)
		}
	})
	t.Run("no poller", func(t *testing.T) {
		srv := httptest.NewServer(New(Options{Hooks: e.cfg.Load, Sink: e.sink}))
		defer srv.Close()
		resp, err := srv.Client().Get(srv.URL + "/change_hook/poller?poller=repo-a")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("status %d, want 404", resp.StatusCode)
		}
	})
	e.nothingStored(t)
}

func TestIsUnknownPoller(t *testing.T) {
	if !IsUnknownPoller(fmt.Errorf("x: %w", unknownPollerError{"a"})) {
		t.Error("wrapped unknown poller error not recognised")
	}
	if IsUnknownPoller(errors.New("no poller a")) || IsUnknownPoller(nil) {
		t.Error("plain error taken for an unknown poller")
	}
}

// BenchmarkGitHubPush measures a signed two-commit GitHub push, from the
// request to the reply, the changes stored in SQLite.
func BenchmarkGitHubPush(b *testing.B) {
	st, err := store.Open(filepath.Join(b.TempDir(), "state.sqlite"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gh-hook"), []byte(secrets["gh-hook"]), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := &config.Config{SecretProviders: []config.SecretProvider{&config.SecretsDir{Dir: dir}}, ChangeHooks: hooks()}
	srv := httptest.NewServer(New(Options{Hooks: func() *config.Config { return cfg }, Sink: st}))
	defer srv.Close()
	body, err := os.ReadFile("testdata/github_push.json")
	if err != nil {
		b.Fatal(err)
	}
	sig := hubSignature(secrets["gh-hook"], body)
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/change_hook/github", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
