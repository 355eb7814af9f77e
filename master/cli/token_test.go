package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestTokenSent: with STARFORGE_TOKEN set, every API request carries it
// as a bearer token; without it, a 401 says how to give one.
func TestTokenSent(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		switch {
		case r.Header.Get("Authorization") == "":
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"reading needs a login here"}`))
		case r.Method == http.MethodPost:
			w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":[1,{}]}`))
		default:
			w.Write([]byte(`{"builders":[]}`))
		}
	}))
	defer srv.Close()
	c, err := newClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	t.Setenv("STARFORGE_TOKEN", "")
	err = c.get(context.Background(), "builders", nil, &v)
	if err == nil || !strings.Contains(err.Error(), "set STARFORGE_TOKEN") {
		t.Errorf("without a token: %v", err)
	}
	t.Setenv("STARFORGE_TOKEN", "tok-0123456789abcdef")
	if err := c.get(context.Background(), "builders", nil, &v); err != nil {
		t.Fatal(err)
	}
	if err := c.rpc(context.Background(), "forceschedulers/force", "force", nil, &v); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got[1] != "Bearer tok-0123456789abcdef" || got[2] != got[1] {
		t.Errorf("Authorization headers %q", got)
	}
}
