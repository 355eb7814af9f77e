package webui

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAPIQuery sends arbitrary query strings to the list endpoints. Every
// answer must be 200 or a 400 that names a parameter, always valid JSON:
// bad input is refused with a reason, never a 500, never a panic.
func FuzzAPIQuery(f *testing.F) {
	fx := newFixture(f)
	h := fx.srv.Config.Handler
	paths := []string{
		"/api/v2/builds", "/api/v2/builders/1/builds", "/api/v2/buildrequests",
		"/api/v2/workers", "/api/v2/builders",
		"/api/v2/changes", "/api/v2/sourcestamps", "/api/v2/buildsets", "/api/v2/forceschedulers",
	}
	for _, q := range []string{
		"limit=10", "limit=0", "limit=abc", "before=5&limit=2", "builderid=1&running=1",
		"pending=yes", "limit=99999999999999999999", "buildrequestid=-1", "%zz", "limit=1&limit=2",
	} {
		f.Add(uint8(0), q)
	}
	f.Add(uint8(2), "pending=1&builderid=1")
	for _, q := range []string{"results__ne=2&order=buildid&field=buildid,results", "name__contains=x&order=-name&offset=1",
		"buildid__gt=1&buildid__lt=3&buildid__in=2", "tags__contains=a", "started_at__ge=1e9&limit=1&offset=10000"} {
		f.Add(uint8(0), q)
		f.Add(uint8(4), q)
	}
	f.Fuzz(func(t *testing.T, which uint8, query string) {
		if strings.ContainsAny(query, " #\r\n") {
			return // not a query string a client can send
		}
		path := paths[int(which)%len(paths)] + "?" + query
		req, err := http.NewRequest(http.MethodGet, path, nil)
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		if !json.Valid(body) {
			t.Fatalf("GET %s: %d, body is not JSON: %q", path, rec.Code, body)
		}
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest:
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Fatalf("GET %s: 400 without a reason: %s", path, body)
			}
		default:
			t.Fatalf("GET %s: status %d: %s", path, rec.Code, body)
		}
	})
}
