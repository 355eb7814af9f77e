package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starforge/starforge/worker"
	"github.com/starforge/starforge/worker/proto"
)

type events struct {
	attached chan *Session
	detached chan *Session
}

func newRegistry(t *testing.T, creds map[string]string) (*Registry, *httptest.Server, events) {
	t.Helper()
	ev := events{attached: make(chan *Session, 10), detached: make(chan *Session, 10)}
	r := New(Options{
		Credentials: func(name string) (string, bool) { p, ok := creds[name]; return p, ok },
		Hooks: Hooks{
			Attached: func(s *Session) { ev.attached <- s },
			Detached: func(s *Session, _ error) { ev.detached <- s },
		},
	})
	srv := httptest.NewServer(r)
	t.Cleanup(func() { r.Close(); srv.Close() })
	return r, srv, ev
}

// startAgent runs a real worker agent against srv until the test ends.
func startAgent(t *testing.T, srv *httptest.Server, name, password string) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &worker.Agent{
		Master:     strings.TrimPrefix(srv.URL, "http://"),
		Name:       name,
		Password:   password,
		Basedir:    t.TempDir(),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	}
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

func waitSession(t *testing.T, ch chan *Session) *Session {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for a session event")
	}
	return nil
}

func TestAuthAnswers(t *testing.T) {
	_, srv, _ := newRegistry(t, map[string]string{"w1": "secret"})
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name, header string
		want         int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"not basic", "Bearer xyz", http.StatusBadRequest},
		{"bad base64", "Basic !!!", http.StatusBadRequest},
		{"no colon", basic("w1"), http.StatusBadRequest},
		{"wrong password", basic("w1:nope"), http.StatusUnauthorized},
		{"unknown worker", basic("w9:secret"), http.StatusUnauthorized},
		{"password prefix", basic("w1:secre"), http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.header != "" {
				h.Set("Authorization", tt.header)
			}
			_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/", h)
			if err == nil {
				t.Fatal("connection accepted")
			}
			if resp == nil || resp.StatusCode != tt.want {
				t.Fatalf("status = %v, want %d", resp, tt.want)
			}
		})
	}
}

func TestAttachRunCommandDetach(t *testing.T) {
	r, srv, ev := newRegistry(t, map[string]string{"w1": "secret"})
	stop := startAgent(t, srv, "w1", "secret")
	s := waitSession(t, ev.attached)
	if s.Name != "w1" || s.Basedir() == "" || r.Get("w1") != s {
		t.Fatalf("session %q basedir %q", s.Name, s.Basedir())
	}
	if _, ok := s.Info()["worker_commands"].(map[string]any); !ok {
		t.Fatalf("worker info lacks worker_commands: %v", s.Info())
	}
	dir := s.Join(s.Basedir(), "b1", "made")
	h := &recorder{}
	rc, err := s.Start(context.Background(), "b1", proto.CmdMkdir, map[string]any{"paths": []any{dir}}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Wait(context.Background()); err != nil {
		t.Fatalf("mkdir failed: %v", err)
	}
	if h.rc() != 0 {
		t.Fatalf("mkdir rc = %d", h.rc())
	}
	// A refused command reports the worker's reason.
	_, err = s.Start(context.Background(), "b1", "nosuch", map[string]any{}, h)
	if err == nil || !strings.Contains(err.Error(), "unrecognized WorkerCommand 'nosuch'") {
		t.Fatalf("unknown command: %v", err)
	}
	stop()
	if got := waitSession(t, ev.detached); got != s {
		t.Fatal("another session detached")
	}
	if r.Get("w1") != nil {
		t.Fatal("detached worker still registered")
	}
}

func TestLostWorkerFailsRunningCommand(t *testing.T) {
	_, srv, ev := newRegistry(t, map[string]string{"w1": "secret"})
	stop := startAgent(t, srv, "w1", "secret") // a stopping worker drops the connection first
	s := waitSession(t, ev.attached)
	rc, err := s.Start(context.Background(), "b1", proto.CmdShell, map[string]any{
		"workdir": filepath.Join(s.Basedir(), "b1"),
		"command": []any{"sleep", "60"},
	}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if err := rc.Wait(context.Background()); !errors.Is(err, ErrWorkerLost) {
		t.Fatalf("Wait = %v, want ErrWorkerLost", err)
	}
	if _, err := s.Start(context.Background(), "b1", proto.CmdMkdir, map[string]any{"paths": []any{"/tmp/x"}}, &recorder{}); !errors.Is(err, ErrWorkerLost) {
		t.Fatalf("Start on a lost session = %v", err)
	}
}

func TestDuplicateNameRefusedWhileFirstAnswers(t *testing.T) {
	_, srv, ev := newRegistry(t, map[string]string{"w1": "secret"})
	startAgent(t, srv, "w1", "secret")
	first := waitSession(t, ev.attached)
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("w1:secret")))
	_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/", h)
	if err == nil {
		t.Fatal("second connection for w1 accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusConflict {
		t.Fatalf("status = %v, want 409", resp)
	}
	select {
	case <-first.Done():
		t.Fatal("the live connection was dropped")
	default:
	}
}

func TestJoin(t *testing.T) {
	posix := &Session{info: map[string]any{"system": "posix"}}
	nt := &Session{info: map[string]any{"system": "nt"}}
	tests := []struct {
		s    *Session
		in   []string
		want string
	}{
		{posix, []string{"/w", "b1", "build"}, "/w/b1/build"},
		{posix, []string{"/w/b1", "/abs/dir"}, "/abs/dir"},
		{posix, []string{"/w/b1", "build", "../x"}, "/w/b1/x"},
		{nt, []string{`C:\w`, "b1", "build"}, `C:\w\b1\build`},
		{nt, []string{`C:\w`, `D:\x`}, `D:\x`},
		{nt, []string{`C:\w\`, "a/b"}, `C:\w\a\b`},
	}
	for _, tt := range tests {
		if got := tt.s.Join(tt.in...); got != tt.want {
			t.Errorf("Join(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// recorder is a CommandHandler that keeps the rc.
type recorder struct {
	mu   sync.Mutex
	code int64
}

func (r *recorder) HandleCommand(op string, msg proto.Message) (any, error) {
	if op != proto.OpUpdate {
		return nil, nil
	}
	ups, err := proto.DecodeUpdates(msg["args"])
	if err != nil {
		return nil, err
	}
	for _, u := range ups {
		if u.Key == proto.UpdRC {
			n, _ := proto.AsInt(u.Value)
			r.mu.Lock()
			r.code = n
			r.mu.Unlock()
		}
	}
	return nil, nil
}

func (r *recorder) rc() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.code
}

// TestCloseWaitsForHooksOfWorkersThatLeft: a worker that disconnected by
// itself is out of the session map while its Detached hook still runs;
// Close must wait for that hook (it writes to the store, which closes next).
func TestCloseWaitsForHooksOfWorkersThatLeft(t *testing.T) {
	inHook := make(chan struct{})
	release := make(chan struct{})
	attached := make(chan *Session, 1)
	r := New(Options{
		Credentials: func(name string) (string, bool) { return "secret", name == "w1" },
		Hooks: Hooks{
			Attached: func(s *Session) { attached <- s },
			Detached: func(*Session, error) { close(inHook); <-release },
		},
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	stop := startAgent(t, srv, "w1", "secret")
	waitSession(t, attached)
	stop()
	<-inHook
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a Detached hook was still running")
	case <-time.After(100 * time.Millisecond):
		// Close is still waiting, as it must; a bounded check that it
		// does not return early.
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the hook ended")
	}
}
