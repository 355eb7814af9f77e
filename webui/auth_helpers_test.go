package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
	"golang.org/x/crypto/bcrypt"
)

// controlMaster is the fake master with the control actions, recording
// each call as text.
type controlMaster struct {
	*fakeMaster
	cmu   sync.Mutex
	calls []string
	err   error // returned by every action if set
}

func (m *controlMaster) record(format string, args ...any) error {
	m.cmu.Lock()
	defer m.cmu.Unlock()
	m.calls = append(m.calls, fmt.Sprintf(format, args...))
	return m.err
}

func (m *controlMaster) lastCall() string {
	m.cmu.Lock()
	defer m.cmu.Unlock()
	if len(m.calls) == 0 {
		return ""
	}
	return m.calls[len(m.calls)-1]
}

func (m *controlMaster) Rebuild(ctx context.Context, id int64, owner string) (store.Buildset, []store.BuildRequest, error) {
	if err := m.record("rebuild %d owner=%s", id, owner); err != nil {
		return store.Buildset{}, nil, err
	}
	b, err := m.st.GetBuild(ctx, id)
	if err != nil {
		return store.Buildset{}, nil, err
	}
	return m.st.AddBuildset(ctx, store.NewBuildset{Reason: "rebuild", BuilderIDs: []int64{b.BuilderID}})
}

func (m *controlMaster) CancelRequest(_ context.Context, id int64, reason string) error {
	return m.record("cancel %d reason=%s", id, reason)
}

func (m *controlMaster) SetRequestPriority(_ context.Context, id int64, prio int) error {
	return m.record("set_priority %d %d", id, prio)
}

func (m *controlMaster) PauseWorker(_ context.Context, name, reason string) error {
	return m.record("pause %s reason=%s", name, reason)
}

func (m *controlMaster) UnpauseWorker(_ context.Context, name, reason string) error {
	return m.record("unpause %s reason=%s", name, reason)
}

func (m *controlMaster) StopWorker(_ context.Context, name, reason string) error {
	return m.record("stop %s reason=%s", name, reason)
}

func (m *controlMaster) KillWorker(_ context.Context, name, reason string) error {
	return m.record("kill %s reason=%s", name, reason)
}

func (m *controlMaster) EnableScheduler(_ context.Context, name string, enabled bool, why string) error {
	return m.record("enable %s %t why=%s", name, enabled, why)
}

// The users of authConfig, with their passwords; each also has the API
// token NAME + tokenSuffix.
var authUsers = map[string]string{
	"ann": "ann-pw", // admin
	"dev": "dev-pw", // developer
	"vic": "vic-pw", // viewer
	"lin": "lin-pw", // viewer, and force/stop/rebuild/cancel on linux only
	"ops": "ops-pw", // viewer, pause and reconfig
	"nob": "nob-pw", // no role at all
}

const tokenSuffix = "-token-0123456789abcdef"

const authConfigTemplate = `
master(web_auth = "users", web_anonymous_read = %s)
secrets_dir("secrets")
worker("w1", "pw")
builder("linux", workers = ["w1"], steps = [shell("true")])
builder("empty", workers = ["w1"], steps = [shell("true")])
role("linux-only", can = ["force", "stop", "rebuild", "cancel"], builders = ["linux"])
role("operator", can = ["pause", "reconfig"])
user("ann", password_hash = %q, roles = ["admin"], tokens = [secret("ann")])
user("dev", password_hash = %q, roles = ["developer"], tokens = [secret("dev")])
user("vic", password_hash = %q, roles = ["viewer"], tokens = [secret("vic")])
user("lin", password_hash = %q, roles = ["viewer", "linux-only"], tokens = [secret("lin")])
user("ops", password_hash = %q, roles = ["viewer", "operator"], tokens = [secret("ops")])
user("nob", password_hash = %q, tokens = [secret("nob")])
user("ci", roles = ["developer"], tokens = [secret("ci"), secret("short")])
`

var hashOnce = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	for u, pw := range authUsers {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		out[u] = string(h)
	}
	return out
})

// loadAuthConfig writes and loads authConfigTemplate (with extra
// appended) in dir.
func loadAuthConfig(t testing.TB, dir string, anonymousRead bool, extra string) *config.Config {
	t.Helper()
	h := hashOnce()
	anon := "False"
	if anonymousRead {
		anon = "True"
	}
	src := fmt.Sprintf(authConfigTemplate, anon, h["ann"], h["dev"], h["vic"], h["lin"], h["ops"], h["nob"]) + extra
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ann", "dev", "vic", "lin", "ops", "nob", "ci"} {
		if err := os.WriteFile(filepath.Join(secrets, u), []byte(u+tokenSuffix+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(secrets, "short"), []byte("too-short"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "master.star")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// authFixture is the fixture's store served with logins on.
type authFixture struct {
	*fixture
	cm   *controlMaster
	cfg  atomic.Pointer[config.Config]
	dir  string
	srv  *httptest.Server
	s    *Server
	skew atomic.Int64 // added to the auth clock
}

func newAuthFixture(t *testing.T, anonymousRead bool) *authFixture {
	t.Helper()
	f := &authFixture{fixture: newFixture(t), dir: t.TempDir()}
	f.cm = &controlMaster{fakeMaster: f.m}
	f.m.schedulers = []SchedulerState{{Name: "nightly", Kind: "nightly"}, {Name: "on-push", Kind: "single_branch_scheduler"}}
	f.cfg.Store(loadAuthConfig(t, f.dir, anonymousRead, ""))
	f.s = New(f.cm, Options{Config: f.cfg.Load})
	f.s.auth.now = func() time.Time { return time.Now().Add(time.Duration(f.skew.Load())) }
	f.srv = httptest.NewServer(f.s.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// client is a browser: it keeps cookies and does not follow redirects.
type client struct {
	f   *authFixture
	hc  *http.Client
	jar *cookiejar.Jar
}

func (f *authFixture) browser(t *testing.T) *client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &client{f: f, jar: jar, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request; hdr are header name, value pairs.
func (c *client) do(t *testing.T, method, path, contentType, body string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, c.f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func (c *client) get(t *testing.T, path string, hdr ...string) response {
	t.Helper()
	return c.do(t, http.MethodGet, path, "", "", hdr...)
}

var nonceRE = regexp.MustCompile(`(?s)<form class="login".*?name="csrf_token" value="([^"]+)"`)

// login logs user in through the login form and returns the response
// to the form's POST.
func (c *client) login(t *testing.T, user, password, next string) response {
	t.Helper()
	page := c.get(t, "/login?next="+url.QueryEscape(next))
	if page.status != http.StatusOK {
		t.Fatalf("GET /login: %d %s", page.status, page.body)
	}
	m := nonceRE.FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("no csrf_token in the login page:\n%s", page.body)
	}
	form := url.Values{"user": {user}, "password": {password}, "next": {next}, csrfField: {m[1]}}
	return c.do(t, http.MethodPost, "/login", "application/x-www-form-urlencoded", form.Encode())
}

// mustLogin logs user in with their password.
func (c *client) mustLogin(t *testing.T, user string) {
	t.Helper()
	if r := c.login(t, user, authUsers[user], "/"); r.status != http.StatusSeeOther {
		t.Fatalf("login %s: status %d\n%s", user, r.status, r.body)
	}
}

var csrfMetaRE = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// csrf returns the CSRF token the pages give the logged-in client.
func (c *client) csrf(t *testing.T) string {
	t.Helper()
	m := csrfMetaRE.FindStringSubmatch(c.get(t, "/").body)
	if m == nil {
		t.Fatal("no csrf-token meta in the home page")
	}
	return m[1]
}

// rpc posts a JSON-RPC call; hdr as for do.
func (c *client) rpc(t *testing.T, path, method, params string, hdr ...string) (int, rpcReply) {
	t.Helper()
	if params == "" {
		params = "{}"
	}
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":%q,"id":1,"params":%s}`, method, params)
	r := c.do(t, http.MethodPost, path, "application/json", body, hdr...)
	var reply rpcReply
	if err := json.Unmarshal([]byte(r.body), &reply); err != nil {
		t.Fatalf("POST %s %s: %v: %s", path, method, err, r.body)
	}
	return r.status, reply
}

func bearer(user string) []string { return []string{"Authorization", "Bearer " + user + tokenSuffix} }

// advance moves the auth clock on.
func (f *authFixture) advance(d time.Duration) { f.skew.Add(int64(d)) }
