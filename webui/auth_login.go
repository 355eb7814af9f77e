package webui

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"golang.org/x/crypto/bcrypt"
)

// The login page, logout, and who the API thinks you are.

func init() {
	// The login page is parsed with the others (mustParsePages).
	pageNames = append(pageNames, "login")
}

const (
	loginCookie  = "starforge_login" // the login form's CSRF nonce
	maxLoginBody = 64 << 10
)

// authRoutes adds the login and logout pages, GET /api/v2/auth and the
// JSON-RPC actions (api_actions.go).
func (s *Server) authRoutes(api, mux *http.ServeMux) {
	mux.Handle("GET /login", s.page(s.loginPage))
	mux.Handle("POST /login", s.page(s.login))
	mux.Handle("POST /logout", s.page(s.logout))
	api.Handle("GET /api/v2/auth", s.api(s.whoami))
	s.actionRoutes(api)
}

type loginData struct {
	layout
	Next     string // where to go once logged in
	Nonce    string // the form's CSRF nonce, also in loginCookie
	Name     string // the name typed, shown again after a failure
	Error    string
	LoggedIn string // the user already logged in, if any
}

// loginURL is the login page that comes back to next.
func loginURL(next string) string { return "/login?next=" + url.QueryEscape(next) }

// safeNext keeps next if it is a path of this site (not another site's
// URL, not the login pages), else "/".
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, `/\`) ||
		strings.ContainsFunc(next, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "/"
	}
	if p, _, _ := strings.Cut(next, "?"); p == "/login" || p == "/logout" {
		return "/"
	}
	return next
}

var errLoginsOff = errorf(http.StatusNotFound, "no login here: this master has master(web_auth = \"none\"), so everyone may do everything")

// GET /login?next=PATH
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) error {
	cfg := s.auth.config()
	if cfg == nil {
		return errLoginsOff
	}
	return s.renderLogin(w, r, http.StatusOK, loginData{Next: safeNext(r.URL.Query().Get("next")), LoggedIn: userOf(r)})
}

// renderLogin shows the login form with a fresh nonce.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) error {
	cfg := s.auth.config()
	d.layout = layout{Site: s.m.Title(), Title: "Log in", Nav: "login"}
	d.Nonce = randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: d.Nonce, Path: "/login", MaxAge: 3600,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r, cfg)})
	return s.render(w, status, "login", d)
}

// POST /login, a form: user, password, next, csrf_token.
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	a := s.auth
	cfg := a.config()
	if cfg == nil {
		return errLoginsOff
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	d := loginData{Next: safeNext(r.PostForm.Get("next")), Name: r.PostForm.Get("user")}
	c, err := r.Cookie(loginCookie)
	if err != nil || !equalToken(r.PostForm.Get(csrfField), c.Value) {
		// Another site's form, or a form older than its cookie.
		d.Error = "This login form has expired. Please try again."
		return s.renderLogin(w, r, http.StatusForbidden, d)
	}
	name, password := d.Name, r.PostForm.Get("password")
	keys := []string{"ip:" + clientIP(r), "user:" + name}
	now := a.now()
	if wait := a.limiter.blocked(keys, now); wait > 0 {
		secs := int(wait.Round(time.Second).Seconds())
		w.Header().Set("Retry-After", strconv.Itoa(max(1, secs)))
		d.Error = fmt.Sprintf("Too many failed logins. Try again in %s.", formatDuration(wait))
		return s.renderLogin(w, r, http.StatusTooManyRequests, d)
	}
	u := cfg.User(name)
	hash := ""
	if u != nil {
		hash = u.PasswordHash
	}
	if !a.checkPassword(hash, dummyHash(cfg), password) {
		a.limiter.fail(keys, now)
		a.log.Warn("webui: failed login", "user", name, "remote", clientIP(r))
		d.Error = "Wrong user name or password."
		return s.renderLogin(w, r, http.StatusUnauthorized, d)
	}
	a.limiter.reset(keys[1])
	if old := principalOf(r).sess; old != nil {
		a.sessions.remove(old.id) // a new id at each login: no fixation
	}
	sess := a.sessions.create(u.Name, u.PasswordHash, now, cfg.Master.Web.SessionLifetime)
	setSessionCookie(w, r, cfg, sess, now)
	clearCookie(w, r, cfg, loginCookie, "/login")
	a.log.Info("webui: login", "user", u.Name, "remote", clientIP(r))
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
	return nil
}

// POST /logout, a form with the session's csrf_token and next.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	cfg := s.auth.config()
	if cfg == nil {
		return errLoginsOff
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	if sess := principalOf(r).sess; sess != nil {
		if !sess.csrfOK(r.PostForm.Get(csrfField)) && !sess.csrfOK(r.Header.Get(csrfHeader)) {
			return errorf(http.StatusForbidden, "missing or wrong %s (reload the page and log out again)", csrfField)
		}
		s.auth.sessions.remove(sess.id)
		s.auth.log.Info("webui: logout", "user", sess.user)
	}
	clearCookie(w, r, cfg, sessionCookie, "/")
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
	return nil
}

// parseForm reads a small urlencoded form into r.PostForm.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return errorf(http.StatusUnsupportedMediaType, "Content-Type: want application/x-www-form-urlencoded, got %q", r.Header.Get("Content-Type"))
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, "form larger than %d bytes", maxLoginBody)
		}
		return errorf(http.StatusBadRequest, "bad form: %v", err)
	}
	return nil
}

// dummyHashes are bcrypt hashes of nothing, by cost.
var dummyHashes sync.Map // int -> []byte

// dummyHash is compared against when the user is unknown or has no
// password, so that a wrong name takes as long as a wrong password: a
// hash with the cost of the configured users' (their first one's).
func dummyHash(cfg *config.Config) []byte {
	cost := bcrypt.DefaultCost
	for _, u := range cfg.Users {
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil {
			cost = c
			break
		}
	}
	if h, ok := dummyHashes.Load(cost); ok {
		return h.([]byte)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(randomToken()), cost)
	if err != nil {
		panic("webui: make a bcrypt hash: " + err.Error()) // cost is one bcrypt accepted
	}
	dummyHashes.Store(cost, h)
	return h
}

// checkPassword reports whether password matches bcrypt hash h ("": no
// user, or one without a password, when dummy is compared instead). At
// most len(bcrypts) checks run at once: each takes tens of
// milliseconds of CPU.
func (a *authState) checkPassword(h string, dummy []byte, password string) bool {
	a.bcrypts <- struct{}{}
	defer func() { <-a.bcrypts }()
	if h == "" {
		_ = bcrypt.CompareHashAndPassword(dummy, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(h), []byte(password)) == nil
}

// clientIP is the address the request came from (a proxy's, behind one).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// loginLimiter counts failed logins per key ("ip:…", "user:…") over a
// sliding window and blocks a key that reached its limit until its
// oldest failure leaves the window. Safe for concurrent use.
type loginLimiter struct {
	window         time.Duration
	userMax, ipMax int

	mu    sync.Mutex
	fails map[string][]time.Time // oldest first
}

// maxLimiterKeys bounds the limiter's memory: past it, keys whose
// failures all left the window are dropped.
const maxLimiterKeys = 100000

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{window: 5 * time.Minute, userMax: 5, ipMax: 20, fails: map[string][]time.Time{}}
}

func (l *loginLimiter) limit(key string) int {
	if strings.HasPrefix(key, "ip:") {
		return l.ipMax
	}
	return l.userMax
}

// recent returns key's failures within the window. l.mu must be held.
func (l *loginLimiter) recent(key string, now time.Time) []time.Time {
	fs := l.fails[key]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= l.window {
		i++
	}
	if i == len(fs) {
		delete(l.fails, key)
		return nil
	}
	if i > 0 {
		fs = slices.Clone(fs[i:])
		l.fails[key] = fs
	}
	return fs
}

// blocked returns how long the longest-blocked of keys stays blocked,
// or 0.
func (l *loginLimiter) blocked(keys []string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		fs := l.recent(k, now)
		if n := l.limit(k); len(fs) >= n {
			wait = max(wait, fs[len(fs)-n].Add(l.window).Sub(now))
		}
	}
	return wait
}

func (l *loginLimiter) fail(keys []string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) >= maxLimiterKeys {
		for k := range l.fails {
			l.recent(k, now)
		}
	}
	for _, k := range keys {
		fs := append(l.recent(k, now), now)
		if n := l.limit(k); len(fs) > n {
			fs = fs[len(fs)-n:]
		}
		l.fails[k] = fs
	}
}

func (l *loginLimiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}

// authJSON is GET /api/v2/auth: who the server thinks the caller is.
type authJSON struct {
	Auth          string   `json:"auth"` // "users" or "none"
	User          *string  `json:"user"`
	Via           *string  `json:"via"` // "session" or "token"
	AnonymousRead bool     `json:"anonymous_read"`
	Permissions   []string `json:"permissions"` // on the whole master
	// BuilderPermissions are those granted on some builders only.
	BuilderPermissions []string `json:"builder_permissions"`
}

// GET /api/v2/auth
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	p := principalOf(r)
	out := authJSON{Auth: "none", AnonymousRead: true, Permissions: []string{}, BuilderPermissions: []string{}}
	if !p.open {
		out.Auth = "users"
		out.AnonymousRead = p.cfg.Master.Web.AnonymousRead
		out.User, out.Via = nullString(p.user), nullString(p.via)
	}
	for _, perm := range []string{"view", "force", "stop", "rebuild", "cancel", "pause", "reconfig", "admin"} {
		switch {
		case p.may(perm, ""):
			out.Permissions = append(out.Permissions, perm)
		case p.mayAny(perm):
			out.BuilderPermissions = append(out.BuilderPermissions, perm)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
