package webui

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"golang.org/x/crypto/bcrypt"
)

// BenchmarkAuth measures what logins add to a request: GET /api/v2/auth
// (which does almost nothing else) with logins off, as nobody, with a
// session cookie and with an API token.
func BenchmarkAuth(b *testing.B) {
	dir := b.TempDir()
	cfg := loadAuthConfig(b, dir, true, "")
	st := openStore(b)
	m := &controlMaster{fakeMaster: &fakeMaster{st: st}}
	open := New(m, Options{}).Handler()
	s := New(m, Options{Config: func() *config.Config { return cfg }})
	sess := s.auth.sessions.create("dev", cfg.User("dev").PasswordHash, time.Now(), time.Hour)
	on := s.Handler()
	for _, bc := range []struct {
		name string
		h    http.Handler
		hdr  []string
	}{
		{"off", open, nil},
		{"anonymous", on, nil},
		{"session", on, []string{"Cookie", sessionCookie + "=" + sess.id}},
		{"token", on, bearer("dev")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/api/v2/auth", nil)
			for i := 0; i+1 < len(bc.hdr); i += 2 {
				req.Header.Set(bc.hdr[i], bc.hdr[i+1])
			}
			for b.Loop() {
				w := httptest.NewRecorder()
				bc.h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/request")
		})
	}
}

// BenchmarkPasswordCheck is the CPU a login costs at bcrypt's default
// cost (10), which the login rate limit and the concurrency bound of
// checkPassword keep in check.
func BenchmarkPasswordCheck(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	a := newAuthState(nil, nil)
	for b.Loop() {
		if !a.checkPassword(string(h), nil, "secret") {
			b.Fatal("password refused")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/login")
}
