package webui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
)

func cookieOf(r response, name string) *http.Cookie {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

type whoamiReply struct {
	Auth        string   `json:"auth"`
	User        *string  `json:"user"`
	Via         *string  `json:"via"`
	Permissions []string `json:"permissions"`
	Builder     []string `json:"builder_permissions"`
}

func whoami(t *testing.T, c *client, hdr ...string) whoamiReply {
	t.Helper()
	r := c.get(t, "/api/v2/auth", hdr...)
	if r.status != http.StatusOK {
		t.Fatalf("GET /api/v2/auth: %d %s", r.status, r.body)
	}
	var w whoamiReply
	if err := json.Unmarshal([]byte(r.body), &w); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w whoamiReply) user() string {
	if w.User == nil {
		return ""
	}
	return *w.User
}

func TestLoginLogout(t *testing.T) {
	f := newAuthFixture(t, true)
	c := f.browser(t)

	if w := whoami(t, c); w.Auth != "users" || w.User != nil || strings.Join(w.Permissions, ",") != "view" {
		t.Errorf("anonymous whoami %+v", w)
	}
	home := c.get(t, "/")
	if !strings.Contains(home.body, `<a class="login" href="/login?next=%2f">Log in</a>`) || strings.Contains(home.body, "csrf-token") {
		t.Errorf("anonymous home page lacks the login link or has a CSRF token:\n%s", home.body)
	}

	r := c.login(t, "ann", "wrong", "/queue")
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "Wrong user name or password.") || cookieOf(r, sessionCookie) != nil {
		t.Errorf("wrong password: %d, session cookie %v\n%s", r.status, cookieOf(r, sessionCookie), r.body)
	}
	if r := c.login(t, "ghost", "x", "/queue"); r.status != http.StatusUnauthorized {
		t.Errorf("unknown user: %d", r.status)
	}
	r = c.login(t, "ann", "ann-pw", "/queue")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/queue" {
		t.Fatalf("login: %d to %q\n%s", r.status, r.header.Get("Location"), r.body)
	}
	ck := cookieOf(r, sessionCookie)
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure || ck.MaxAge <= 0 {
		t.Errorf("session cookie %+v; want HttpOnly, SameSite=Lax, Path=/, not Secure over http, with a lifetime", ck)
	}
	sessionID := ck.Value
	if w := whoami(t, c); w.user() != "ann" || *w.Via != "session" || len(w.Permissions) != 8 {
		t.Errorf("whoami after login %+v", w)
	}
	home = c.get(t, "/")
	if !strings.Contains(home.body, `<span class="user">ann</span>`) || !strings.Contains(home.body, `action="/logout"`) {
		t.Errorf("home page after login lacks the user and the logout form:\n%s", home.body)
	}
	tok := c.csrf(t)

	// Logging out needs the CSRF token: another site cannot log you out.
	form := url.Values{"next": {"/workers"}}
	if r := c.do(t, http.MethodPost, "/logout", "application/x-www-form-urlencoded", form.Encode()); r.status != http.StatusForbidden {
		t.Errorf("logout without csrf_token: %d", r.status)
	}
	form.Set(csrfField, tok)
	r = c.do(t, http.MethodPost, "/logout", "application/x-www-form-urlencoded", form.Encode())
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/workers" {
		t.Errorf("logout: %d to %q", r.status, r.header.Get("Location"))
	}
	if ck := cookieOf(r, sessionCookie); ck == nil || ck.MaxAge >= 0 || ck.Value != "" {
		t.Errorf("logout did not clear the cookie: %+v", ck)
	}
	if w := whoami(t, c); w.User != nil {
		t.Errorf("whoami after logout %+v", w)
	}
	// The old cookie, replayed, is dead.
	old := f.browser(t)
	old.jar.SetCookies(mustURL(t, f.srv.URL), []*http.Cookie{{Name: sessionCookie, Value: sessionID}})
	if w := whoami(t, old); w.User != nil {
		t.Errorf("a logged-out session still works: %+v", w)
	}
	if f.s.auth.sessions.len() != 0 {
		t.Errorf("%d sessions left after logout", f.s.auth.sessions.len())
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestLoginFormChecks(t *testing.T) {
	f := newAuthFixture(t, true)
	c := f.browser(t)

	// No nonce cookie (another site's form): refused even with the right password.
	form := url.Values{"user": {"ann"}, "password": {"ann-pw"}, csrfField: {"forged"}}
	r := c.do(t, http.MethodPost, "/login", "application/x-www-form-urlencoded", form.Encode())
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "expired") {
		t.Errorf("forged login form: %d\n%s", r.status, r.body)
	}
	if r := c.do(t, http.MethodPost, "/login", "application/json", `{}`); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("JSON login: %d", r.status)
	}
	// next may only lead within the site.
	for next, want := range map[string]string{
		"//evil.example/x": "/", "https://evil.example/": "/", `/\evil.example`: "/", "/logout": "/",
		"/builders/1?before=3": "/builders/1?before=3",
	} {
		c := f.browser(t)
		if r := c.login(t, "dev", "dev-pw", next); r.header.Get("Location") != want {
			t.Errorf("next=%q: redirected to %q, want %q", next, r.header.Get("Location"), want)
		}
	}
	// Secure cookies behind HTTPS.
	c = f.browser(t)
	page := c.get(t, "/login")
	nonce := nonceRE.FindStringSubmatch(page.body)[1]
	form = url.Values{"user": {"dev"}, "password": {"dev-pw"}, csrfField: {nonce}}
	r = c.do(t, http.MethodPost, "/login", "application/x-www-form-urlencoded", form.Encode(), "X-Forwarded-Proto", "https")
	if ck := cookieOf(r, sessionCookie); ck == nil || !ck.Secure {
		t.Errorf("session cookie over https: %+v, want Secure", ck)
	}
	// Already logged in: the page says so.
	if r := c.get(t, "/login"); !strings.Contains(r.body, "You are logged in as <strong>dev</strong>") {
		t.Errorf("login page of a logged-in user:\n%s", r.body)
	}
}

func TestLoginRateLimit(t *testing.T) {
	f := newAuthFixture(t, true)
	c := f.browser(t)
	for i := range 5 {
		if r := c.login(t, "dev", fmt.Sprint("guess", i), "/"); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d", i+1, r.status)
		}
	}
	r := c.login(t, "dev", "dev-pw", "/")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "Too many failed logins") {
		t.Fatalf("sixth try, right password: %d Retry-After=%q\n%s", r.status, r.header.Get("Retry-After"), r.body)
	}
	// Another user from the same address still may.
	if r := f.browser(t).login(t, "vic", "vic-pw", "/"); r.status != http.StatusSeeOther {
		t.Errorf("vic: %d", r.status)
	}
	f.advance(5 * time.Minute)
	if r := c.login(t, "dev", "dev-pw", "/"); r.status != http.StatusSeeOther {
		t.Errorf("after the window: %d", r.status)
	}
	// Many names from one address: the address is blocked.
	for i := range 20 {
		if r := c.login(t, fmt.Sprint("user", i), "x", "/"); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d of user%d: %d %s", i+1, i, r.status, r.body)
		}
	}
	if r := f.browser(t).login(t, "ann", "ann-pw", "/"); r.status != http.StatusTooManyRequests {
		t.Errorf("after 20 failures from one address: %d, want 429", r.status)
	}
}

func TestTokenAuth(t *testing.T) {
	f := newAuthFixture(t, true)
	c := f.browser(t)
	if w := whoami(t, c, bearer("ci")...); w.user() != "ci" || *w.Via != "token" {
		t.Errorf("whoami with ci's token: %+v", w)
	}
	// Tokens need no CSRF token: browsers never send them cross-site.
	path := fmt.Sprintf("/api/v2/builds/%d", f.running.ID)
	if st, r := c.rpc(t, path, "stop", "", bearer("ci")...); st != 200 || r.Error != nil {
		t.Errorf("stop with a token: %d %+v", st, r.Error)
	}
	for _, h := range [][]string{
		{"Authorization", "Bearer wrong-token-0123456789abcdef"},
		{"Authorization", "Bearer too-short"}, // ci's second token: ignored, too short
		{"Authorization", "Basic YW5uOmFubi1wdw=="},
		{"Authorization", "Bearer "},
	} {
		r := c.get(t, "/api/v2/builders", h...)
		var e errorBody
		if r.status != http.StatusUnauthorized || json.Unmarshal([]byte(r.body), &e) != nil || e.Error == "" || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %q WWW-Authenticate=%q", h[1], r.status, r.body, r.header.Get("WWW-Authenticate"))
		}
		if st, reply := c.rpc(t, path, "stop", "", h...); st != http.StatusUnauthorized || reply.Error == nil || reply.Error.Code != rpcUnauthorized {
			t.Errorf("%s POST: %d %+v", h[1], st, reply.Error)
		}
	}
	// A token changed on disk takes effect within a minute, without a reconfig.
	if err := os.WriteFile(filepath.Join(f.dir, "secrets", "ci"), []byte("rotated"+tokenSuffix), 0o600); err != nil {
		t.Fatal(err)
	}
	f.advance(2 * time.Minute)
	if r := c.get(t, "/api/v2/auth", bearer("ci")...); r.status != http.StatusUnauthorized {
		t.Errorf("old token after rotation: %d", r.status)
	}
	if w := whoami(t, c, "Authorization", "Bearer rotated"+tokenSuffix); w.user() != "ci" {
		t.Errorf("rotated token: %+v", w)
	}
}

func TestAnonymousReadOff(t *testing.T) {
	f := newAuthFixture(t, false)
	c := f.browser(t)
	r := c.get(t, "/api/v2/builders")
	var e errorBody
	if r.status != http.StatusUnauthorized || json.Unmarshal([]byte(r.body), &e) != nil || !strings.Contains(e.Error, "needs a login") {
		t.Errorf("anonymous API read: %d %s", r.status, r.body)
	}
	r = c.get(t, "/builders/1?before=9")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login?next="+url.QueryEscape("/builders/1?before=9") {
		t.Errorf("anonymous page: %d to %q", r.status, r.header.Get("Location"))
	}
	for _, p := range []string{"/login", "/static/app.js", "/static/actions.js"} {
		if r := c.get(t, p); r.status != http.StatusOK {
			t.Errorf("GET %s anonymously: %d", p, r.status)
		}
	}
	if r := c.get(t, "/badges/linux.svg"); r.status != http.StatusSeeOther {
		t.Errorf("badge anonymously: %d", r.status)
	}
	c.mustLogin(t, "vic")
	if r := c.get(t, "/api/v2/builders"); r.status != http.StatusOK {
		t.Errorf("vic reads the API: %d", r.status)
	}
	// A user without "view" may not read.
	n := f.browser(t)
	n.mustLogin(t, "nob")
	if r := n.get(t, "/api/v2/builders"); r.status != http.StatusForbidden {
		t.Errorf("nob reads the API: %d", r.status)
	}
	if r := n.get(t, "/workers"); r.status != http.StatusForbidden || !strings.Contains(r.body, "may not view") {
		t.Errorf("nob reads a page: %d", r.status)
	}
	if r := c.get(t, "/api/v2/builders", bearer("nob")...); r.status != http.StatusForbidden {
		t.Errorf("nob's token reads the API: %d", r.status)
	}
}

func TestCSRF(t *testing.T) {
	f := newAuthFixture(t, true)
	c := f.browser(t)
	c.mustLogin(t, "dev")
	path := fmt.Sprintf("/api/v2/builds/%d", f.running.ID)
	for _, hdr := range [][]string{nil, {csrfHeader, "wrong"}} {
		st, r := c.rpc(t, path, "stop", "", hdr...)
		if st != http.StatusForbidden || r.Error == nil || r.Error.Code != rpcForbidden || !strings.Contains(r.Error.Message, csrfHeader) {
			t.Errorf("stop with CSRF header %v: %d %+v", hdr, st, r.Error)
		}
	}
	if n := len(f.m.stopped); n != 0 {
		t.Fatalf("the master was asked to stop %d builds", n)
	}
	if st, r := c.rpc(t, path, "stop", "", csrfHeader, c.csrf(t)); st != 200 || r.Error != nil {
		t.Errorf("stop with the CSRF token: %d %+v", st, r.Error)
	}
	// Other POSTs too.
	r := c.do(t, http.MethodPost, "/api/v2/changes", "application/json", `{"revision":"abc"}`)
	if r.status != http.StatusForbidden {
		t.Errorf("POST changes without the CSRF token: %d", r.status)
	}
}

func TestSessionEnds(t *testing.T) {
	f := newAuthFixture(t, true)
	c := f.browser(t)
	c.mustLogin(t, "dev")
	// A new password (a reconfig) ends the session.
	cfg := loadAuthConfig(t, f.dir, true, "")
	for _, u := range cfg.Users {
		if u.Name == "dev" {
			u.PasswordHash = hashOnce()["ann"]
		}
	}
	f.cfg.Store(cfg)
	if w := whoami(t, c); w.User != nil {
		t.Errorf("session after a password change: %+v", w)
	}
	// The session's lifetime ends it too.
	c.mustLogin(t, "vic")
	f.advance(config.DefaultSessionLifetime + time.Second)
	if w := whoami(t, c); w.User != nil {
		t.Errorf("session after its lifetime: %+v", w)
	}
}

func TestHtpasswdLogin(t *testing.T) {
	f := newAuthFixture(t, true)
	h := hashOnce()["ops"] // ops-pw
	if err := os.WriteFile(filepath.Join(f.dir, "web.htpasswd"), []byte("# made with htpasswd -B\nhugo:"+h+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(f.dir, "master.star"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(src), `web_anonymous_read = True`, `web_anonymous_read = True, web_htpasswd = "web.htpasswd", web_htpasswd_roles = ["developer"]`, 1)
	if err := os.WriteFile(filepath.Join(f.dir, "master.star"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(f.dir, "master.star"))
	if err != nil {
		t.Fatal(err)
	}
	f.cfg.Store(cfg)
	c := f.browser(t)
	if r := c.login(t, "hugo", "ops-pw", "/"); r.status != http.StatusSeeOther {
		t.Fatalf("htpasswd login: %d", r.status)
	}
	if w := whoami(t, c); w.user() != "hugo" || !strings.Contains(strings.Join(w.Permissions, ","), "force") {
		t.Errorf("htpasswd user: %+v", w)
	}
}

func TestAuthOff(t *testing.T) {
	f := newFixture(t) // Options{}: no configuration, everyone may everything
	st, _, body := f.get(t, "/login")
	if st != http.StatusNotFound {
		t.Errorf("/login without logins: %d", st)
	}
	var w whoamiReply
	f.getJSON(t, "/api/v2/auth", &w)
	if w.Auth != "none" || len(w.Permissions) != 8 {
		t.Errorf("whoami without logins: %+v (%s)", w, body)
	}
	// A master without the control actions: 501.
	st, r := f.rpc(t, fmt.Sprintf("/api/v2/buildrequests/%d", f.pending.ID), "application/json", `{"jsonrpc":"2.0","method":"cancel","id":1}`)
	if st != http.StatusNotImplemented || r.Error == nil {
		t.Errorf("cancel on a master without Controller: %d %+v", st, r.Error)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", "/": "/", "/queue": "/queue", "//x": "/", "http://x/": "/", "/a\nb": "/", "/login?next=/": "/",
		"/builders/2/builds/3#l12": "/builders/2/builds/3#l12",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSessionStoreBounded(t *testing.T) {
	st := newSessionStore()
	now := time.Now()
	first := st.create("u", "h", now, time.Hour)
	for i := 1; i < maxSessions; i++ {
		st.create("u", "h", now, 2*time.Hour)
	}
	st.create("u", "h", now, 2*time.Hour)
	if n := st.len(); n != maxSessions {
		t.Errorf("%d sessions, want at most %d", n, maxSessions)
	}
	if st.get(first.id, now) != nil {
		t.Error("the session ending first was kept")
	}
}
