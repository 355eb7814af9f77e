package webui

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
)

// Sessions live in the master's memory: a restart logs everyone out,
// and a logout or a password change ends a session at once.

const (
	sessionCookie = "starforge_session"
	csrfHeader    = "X-CSRF-Token"
	csrfField     = "csrf_token"
	// maxSessions bounds the memory sessions take; past it, the session
	// closest to its end goes first.
	maxSessions = 10000
)

// session is one login.
type session struct {
	id, user string
	csrf     string // sent back by the pages' scripts and forms
	// pwHash is the user's password hash at login: when it changes
	// (a reconfig with a new one), the session ends.
	pwHash  string
	expires time.Time
}

func (s *session) csrfOK(tok string) bool { return equalToken(tok, s.csrf) }

// sessionStore holds the sessions. Safe for concurrent use.
type sessionStore struct {
	mu   sync.Mutex
	byID map[string]*session
}

func newSessionStore() *sessionStore { return &sessionStore{byID: map[string]*session{}} }

// randomToken returns 32 random bytes, base64url-encoded.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for user.
func (st *sessionStore) create(user, pwHash string, now time.Time, life time.Duration) *session {
	s := &session{id: randomToken(), user: user, csrf: randomToken(), pwHash: pwHash, expires: now.Add(life)}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.byID) >= maxSessions {
		st.evict(now)
	}
	st.byID[s.id] = s
	return s
}

// evict drops expired sessions, and if none was, the one ending first.
// st.mu must be held.
func (st *sessionStore) evict(now time.Time) {
	var first *session
	for id, s := range st.byID {
		if !now.Before(s.expires) {
			delete(st.byID, id)
			continue
		}
		if first == nil || s.expires.Before(first.expires) {
			first = s
		}
	}
	if len(st.byID) >= maxSessions && first != nil {
		delete(st.byID, first.id)
	}
}

// get returns the live session id, or nil.
func (st *sessionStore) get(id string, now time.Time) *session {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.byID[id]
	if s != nil && !now.Before(s.expires) {
		delete(st.byID, id)
		return nil
	}
	return s
}

func (st *sessionStore) remove(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.byID, id)
}

func (st *sessionStore) len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.byID)
}

// sessionOf returns the live session of r's cookie, if its user still
// exists with the password they logged in with; a dead session's
// cookie is cleared.
func (a *authState) sessionOf(w http.ResponseWriter, r *http.Request, cfg *config.Config) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	s := a.sessions.get(c.Value, a.now())
	if s != nil {
		if u := cfg.User(s.user); u != nil && u.PasswordHash != "" && u.PasswordHash == s.pwHash {
			return s
		}
		a.sessions.remove(s.id)
	}
	clearCookie(w, r, cfg, sessionCookie, "/")
	return nil
}

// secure reports whether cookies must be Secure: the request came over
// HTTPS (directly or through a proxy that says so), or the master's URL
// is an https one.
func secure(r *http.Request, cfg *config.Config) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") ||
		strings.HasPrefix(cfg.Master.URL, "https://")
}

// setSessionCookie gives the browser s's cookie: HttpOnly (scripts never
// see it), SameSite=Lax (other sites' forms do not send it), Secure over
// HTTPS.
func setSessionCookie(w http.ResponseWriter, r *http.Request, cfg *config.Config, s *session, now time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: s.id, Path: "/",
		Expires: s.expires, MaxAge: int(s.expires.Sub(now).Seconds()),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure(r, cfg),
	})
}

func clearCookie(w http.ResponseWriter, r *http.Request, cfg *config.Config, name, path string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure(r, cfg)})
}
