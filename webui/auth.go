package webui

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
)

// Who may do what. With master(web_auth = "users") every request has a
// principal: a user logged in with the login page (a session cookie), a
// script with an API token (Authorization: Bearer), or nobody. Nobody
// may read when web_anonymous_read allows it, and do nothing else; users
// may do what their roles grant (config.Config.AllowedOn). Without it
// (web_auth = "none", or no Options.Config) everyone may do everything,
// as before logins existed.
//
// Browser POSTs carrying the session cookie must also carry the
// session's CSRF token, in the X-CSRF-Token header (scripts of the
// pages) or a csrf_token form field (the logout form); token requests
// need none, since a browser never adds an Authorization header to a
// cross-site request.

// principal is who sent a request.
type principal struct {
	open bool   // authentication is off: everything is allowed
	user string // "" for nobody
	via  string // "session" or "token" when user is set
	sess *session
	cfg  *config.Config // the configuration the request is judged by
}

type principalKey struct{}

// principalOf returns the principal the auth middleware found for r. A
// request that did not go through it (a handler test) is open.
func principalOf(r *http.Request) principal {
	if p, ok := r.Context().Value(principalKey{}).(principal); ok {
		return p
	}
	return principal{open: true}
}

// userOf is the logged-in user of r, or "".
func userOf(r *http.Request) string { return principalOf(r).user }

// may reports whether p may do perm on builder ("": on the whole master).
func (p principal) may(perm, builder string) bool {
	switch {
	case p.open, perm == "view" && p.cfg.Master.Web.AnonymousRead:
		return true
	case p.user == "":
		return false
	}
	return p.cfg.AllowedOn(p.user, perm, builder)
}

// mayAny reports whether p may do perm on some builder.
func (p principal) mayAny(perm string) bool {
	if p.open || p.user == "" {
		return p.may(perm, "")
	}
	return p.cfg.AllowedAny(p.user, perm)
}

// JSON-RPC error codes of refusals (the server-defined range).
const (
	rpcUnauthorized = -32001
	rpcForbidden    = -32003
)

// refusal is the error for a principal that may not do what: 401 for
// nobody (log in first), 403 for a user whose roles do not allow it.
func (p principal) refusal(what string) error {
	if p.user == "" {
		return rpcErrorf(http.StatusUnauthorized, rpcUnauthorized, "%s needs a login: log in, or send an API token as \"Authorization: Bearer TOKEN\"", what)
	}
	return rpcErrorf(http.StatusForbidden, rpcForbidden, "user %q may not %s", p.user, what)
}

// allow checks that the request's principal may do perm on builder
// ("": the whole master); what describes the action for the refusal.
func allow(r *http.Request, perm, builder, what string) error {
	p := principalOf(r)
	if p.may(perm, builder) {
		return nil
	}
	return p.refusal(what)
}

// allowAny checks that the request's principal may do perm on some
// builder, before the resource is looked up: nobody gets 401 whatever
// the request's other faults.
func allowAny(r *http.Request, perm, what string) error {
	p := principalOf(r)
	if p.mayAny(perm) {
		return nil
	}
	return p.refusal(what)
}

// challenge adds the header a 401 must carry.
func challenge(w http.ResponseWriter, status int) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="starforge"`)
	}
}

// authState is the Server's authentication state.
type authState struct {
	cfg      func() *config.Config // nil: open
	log      *slog.Logger
	now      func() time.Time
	sessions *sessionStore
	limiter  *loginLimiter
	bcrypts  chan struct{} // bounds concurrent password checks

	mu     sync.Mutex
	tokens tokenIndex
}

func newAuthState(cfg func() *config.Config, log *slog.Logger) *authState {
	return &authState{
		cfg:      cfg,
		log:      log,
		now:      time.Now,
		sessions: newSessionStore(),
		limiter:  newLoginLimiter(),
		bcrypts:  make(chan struct{}, max(1, runtime.NumCPU())),
	}
}

// config returns the configuration if it asks for logins, else nil.
func (a *authState) config() *config.Config {
	if a.cfg == nil {
		return nil
	}
	c := a.cfg()
	if c == nil || c.Master.WebAuth != "users" {
		return nil
	}
	return c
}

// tokenIndex maps the SHA-256 of each API token to its user, for one
// configuration, rebuilt after tokenTTL so that a secret changed on disk
// takes effect without a reconfig.
type tokenIndex struct {
	cfg    *config.Config
	built  time.Time
	byHash map[[32]byte]string
}

const (
	tokenTTL       = time.Minute
	minTokenLength = 16
)

// tokenUser returns the user whose API token is tok, if any.
func (a *authState) tokenUser(cfg *config.Config, tok string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if a.tokens.cfg != cfg || now.Sub(a.tokens.built) > tokenTTL {
		a.tokens = buildTokenIndex(cfg, a.log, now)
	}
	// The map is keyed by a hash: looking a token up takes the same time
	// whatever prefix of it is right.
	user, ok := a.tokens.byHash[sha256.Sum256([]byte(tok))]
	return user, ok
}

func buildTokenIndex(cfg *config.Config, log *slog.Logger, now time.Time) tokenIndex {
	idx := tokenIndex{cfg: cfg, built: now, byHash: map[[32]byte]string{}}
	taken := map[[32]byte]bool{}
	for _, u := range cfg.Users {
		for _, name := range u.Tokens {
			v, err := cfg.Secret(name)
			switch {
			case err != nil:
				log.Warn("webui: API token unusable", "user", u.Name, "secret", name, "err", err)
				continue
			case len(v) < minTokenLength:
				log.Warn("webui: API token ignored: shorter than 16 characters", "user", u.Name, "secret", name)
				continue
			}
			h := sha256.Sum256([]byte(v))
			if taken[h] {
				log.Warn("webui: API token ignored: the same value is a token of two users", "user", u.Name, "secret", name)
				delete(idx.byHash, h)
				continue
			}
			taken[h] = true
			idx.byHash[h] = u.Name
		}
	}
	return idx
}

// exemptPath reports whether path is served whatever the principal:
// what logging in needs, and the webhooks, which check their own
// signatures.
func exemptPath(path string) bool {
	return path == "/login" || path == "/logout" ||
		strings.HasPrefix(path, "/static/") || strings.HasPrefix(path, "/change_hook/")
}

func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// authenticate finds each request's principal and refuses what nobody
// may do whatever the handler: reading without web_anonymous_read, a
// bad API token, a browser POST without its CSRF token.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := s.auth
		cfg := a.config()
		p := principal{open: cfg == nil, cfg: cfg}
		if cfg != nil {
			if h := r.Header.Get("Authorization"); h != "" {
				scheme, tok, _ := strings.Cut(h, " ")
				if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
					s.refuse(w, r, http.StatusUnauthorized, "Authorization: want \"Bearer TOKEN\"")
					return
				}
				user, ok := a.tokenUser(cfg, strings.TrimSpace(tok))
				if !ok || cfg.User(user) == nil {
					s.refuse(w, r, http.StatusUnauthorized, "invalid API token")
					return
				}
				p.user, p.via = user, "token"
			} else if sess := a.sessionOf(w, r, cfg); sess != nil {
				p.user, p.via, p.sess = sess.user, "session", sess
			}
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		if p.open || exemptPath(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if p.via == "session" && unsafeMethod(r.Method) && !p.sess.csrfOK(r.Header.Get(csrfHeader)) {
			s.refuse(w, r, http.StatusForbidden, "missing or wrong "+csrfHeader+" header (reload the page)")
			return
		}
		if !p.may("view", "") && !unsafeMethod(r.Method) {
			if p.user == "" {
				s.refuse(w, r, http.StatusUnauthorized, "reading needs a login here: log in, or send an API token as \"Authorization: Bearer TOKEN\"")
			} else {
				s.refuse(w, r, http.StatusForbidden, "user "+p.user+" may not view")
			}
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuse answers a request the middleware turns away: a JSON error for
// the API (a JSON-RPC one for its POSTs), the login page or an error
// page for pages.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	challenge(w, status)
	if strings.HasPrefix(r.URL.Path, "/api/") || r.Header.Get("Authorization") != "" || r.URL.Path == "/ws" {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/") {
			code := rpcUnauthorized
			if status == http.StatusForbidden {
				code = rpcForbidden
			}
			writeJSON(w, status, rpcFailure{JSONRPC: "2.0", ID: rpcID(nil), Error: rpcErrorBody{Code: code, Message: msg}})
			return
		}
		writeJSON(w, status, errorBody{Error: msg})
		return
	}
	if status == http.StatusUnauthorized && r.Method == http.MethodGet {
		http.Redirect(w, r, loginURL(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	s.page(func(http.ResponseWriter, *http.Request) error { return errorf(status, "%s", msg) }).ServeHTTP(w, r)
}

// viewer is what the templates know of the reader: whether logins are
// on, who is logged in, and what they may do. The zero viewer (logins
// off) may do everything.
type viewer struct {
	Auth bool   // master(web_auth = "users")
	User string // "" for nobody
	CSRF string // the session's CSRF token, for forms
	Path string // the page's path and query, for the login link's next=
	p    principal
}

// Can reports whether the reader may do perm on builder ("": on the
// whole master); the templates show only the buttons that would work.
func (v viewer) Can(perm, builder string) bool {
	if !v.Auth {
		return true
	}
	return v.p.may(perm, builder)
}

func viewerOf(r *http.Request) viewer {
	p := principalOf(r)
	v := viewer{Auth: !p.open, User: p.user, Path: r.URL.RequestURI(), p: p}
	if p.sess != nil {
		v.CSRF = p.sess.csrf
	}
	return v
}

// equalToken compares secrets in constant time.
func equalToken(a, b string) bool {
	return len(a) > 0 && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
