// Package registry accepts worker connections on the master: it
// authenticates the WebSocket upgrade, runs the session handshake, keeps the
// set of connected workers, and routes each worker's command traffic to the
// remote command it belongs to.
package registry

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/worker/proto"
)

// Credentials returns the password configured for a worker name, or false
// when no such worker is configured. It is consulted on every connection,
// so a reconfig takes effect for the next one.
type Credentials func(name string) (password string, ok bool)

// Hooks are called as workers come and go. Each is called from the
// connection's own goroutine; implementations must not block for long.
type Hooks struct {
	// Attached is called once the handshake succeeded and the session can
	// run commands.
	Attached func(*Session)
	// Detached is called once when an attached session's connection ends,
	// after every running command has failed with ErrWorkerLost, or, for a
	// worker with the resume extension whose connection was lost to the
	// network, once its commands are held for a reconnect (resume.go). A
	// reconnect is Attached as a new session.
	Detached func(s *Session, reason error)
	// Paused is called when a worker that negotiated the pause extension
	// (a donated desktop) stops taking builds (paused) or takes them again,
	// with its reason ("owner active", "on battery", ...). It is called
	// only between Attached and Detached, in the order the worker sent the
	// changes; if the worker was already paused when it attached, it is
	// called right after Attached. See pause.go.
	Paused func(s *Session, paused bool, reason string)
}

// Options configure a Registry.
type Options struct {
	Credentials Credentials
	Hooks       Hooks
	Logger      *slog.Logger
	// Conn tunes each connection (ping interval, frame limit).
	Conn proto.Options
	// HandshakeTimeout bounds get_worker_info and set_worker_settings.
	HandshakeTimeout time.Duration
	// Settings sent with set_worker_settings; zero values pick Buildbot's.
	Settings map[string]any
	// Extensions are the Starforge protocol extensions the master offers
	// to workers that announce them (see proto.KeyExtensions); nil means
	// all it implements, an empty non-nil slice none.
	Extensions []string
	// ResumeMargin is how much longer than a worker's resume grace the
	// master holds its session after the connection was lost; zero means
	// DefaultResumeMargin.
	ResumeMargin time.Duration
	// Clock times the resume holds; nil means the real clock.
	Clock clock.Clock
	// Instances, if set, is asked first about each connection's name and
	// password (see latent.go).
	Instances Instances
}

// Registry is an http.Handler for the worker port and the set of connected
// workers. It is safe for concurrent use.
type Registry struct {
	opts     Options
	log      *slog.Logger
	upgrader websocket.Upgrader

	mu       sync.Mutex
	sessions map[string]*Session
	away     map[string]*Session // held for a reconnect (resume.go)
	closed   bool
	// active counts running ServeHTTP calls, so Close can wait for every
	// Detached hook, including those of workers that left on their own
	// and are no longer in sessions.
	active sync.WaitGroup
}

// New returns a Registry.
func New(opts Options) *Registry {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = 30 * time.Second
	}
	if opts.Settings == nil {
		opts.Settings = map[string]any{
			"newline_re":      proto.DefaultNewlineRE,
			"max_line_length": proto.DefaultMaxLineLength,
			// A line reaches the browser within about this, plus a few ms.
			"buffer_timeout": 0.1,
			"buffer_size":    1 << 20, // fewer, larger updates: each waits for a commit
		}
	}
	if opts.Extensions == nil {
		opts.Extensions = []string{proto.ExtPause, proto.ExtResume}
	}
	if opts.ResumeMargin <= 0 {
		opts.ResumeMargin = DefaultResumeMargin
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	opts.Conn.Logger = opts.Logger
	return &Registry{
		opts:     opts,
		log:      opts.Logger,
		sessions: make(map[string]*Session),
		away:     make(map[string]*Session),
		upgrader: websocket.Upgrader{
			// Small per-connection buffers: large frames bypass the read
			// buffer, and pooled write buffers leave idle connections
			// (thousands of them) holding none.
			ReadBufferSize:  4 << 10,
			WriteBufferSize: 16 << 10,
			WriteBufferPool: &sync.Pool{},
			// Workers are not browsers; there is no origin to check.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
}

// Get returns the attached session of the named worker, or nil.
func (r *Registry) Get(name string) *Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions[name]
}

// Sessions returns the attached sessions sorted by worker name.
func (r *Registry) Sessions() []*Session {
	r.mu.Lock()
	out := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close disconnects every worker and refuses new connections. It waits
// until every connection handler has returned, so no hook runs after it.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	sessions := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		sessions = append(sessions, s)
	}
	r.mu.Unlock()
	for _, s := range sessions {
		s.conn.Close(errors.New("master shutting down"))
	}
	r.giveUpAway(errors.New("master shutting down"))
	r.active.Wait()
}

// ServeHTTP authenticates and upgrades a worker connection, then serves it
// until it ends.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		http.Error(w, "master shutting down", http.StatusServiceUnavailable)
		return
	}
	r.active.Add(1) // under the lock, so never after Close began waiting
	r.mu.Unlock()
	handed := false // whether the connection's goroutine owns the Done
	defer func() {
		if !handed {
			r.active.Done()
		}
	}()

	name, password, status := basicAuth(req)
	if status != 0 {
		r.log.Warn("refused worker connection", "remote", req.RemoteAddr, "status", status, "reason", "missing or malformed Authorization header")
		http.Error(w, http.StatusText(status), status)
		return
	}
	login := name
	name, ok := r.login(name, password) // the session's name: latent.go
	if !ok {
		// One message for both cases, so names cannot be probed.
		r.log.Warn("refused worker connection: wrong name or password", "worker", login, "remote", req.RemoteAddr)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	if reason := r.checkDuplicate(req.Context(), name); reason != "" {
		r.log.Warn("refused worker connection", "worker", name, "remote", req.RemoteAddr, "reason", reason)
		http.Error(w, reason, http.StatusConflict)
		return
	}
	ws, err := r.upgrader.Upgrade(w, req, nil)
	if err != nil {
		r.log.Warn("worker upgrade failed", "worker", name, "remote", req.RemoteAddr, "err", err)
		return
	}
	s := newSession(name, req.RemoteAddr, r.log.With("worker", name))
	s.conn = proto.NewConn(ws, s, r.opts.Conn)
	// The WebSocket was hijacked, so this handler may return while the
	// connection lives on: its read loop's goroutine detaches it at the
	// end, and an idle worker costs one goroutine, not two. It learns
	// whether the worker was attached only after the Attached hook ran,
	// so a Detached can never overtake it.
	attached := make(chan bool, 1)
	handed = true
	go func() {
		defer r.active.Done()
		reason := s.conn.Serve()
		if <-attached {
			r.detach(s, reason)
		}
	}()

	if err := r.handshake(s); err != nil {
		r.log.Warn("worker handshake failed", "worker", name, "err", err)
		s.conn.Close(fmt.Errorf("handshake: %w", err))
		s.neverAttached(err)
		attached <- false
		return
	}
	if !r.attach(s) {
		err := errors.New("duplicate connection or master shutting down")
		s.conn.Close(err)
		s.neverAttached(err)
		attached <- false
		return
	}
	r.log.Info("worker attached", "worker", name, "remote", req.RemoteAddr, "version", s.InfoString("version"))
	if h := r.opts.Hooks.Attached; h != nil {
		h(s)
	}
	s.attachedPause(r.opts.Hooks.Paused)
	attached <- true
}

func (r *Registry) handshake(s *Session) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.HandshakeTimeout)
	defer cancel()
	res, err := s.conn.Call(ctx, proto.OpGetWorkerInfo, nil)
	if err != nil {
		return fmt.Errorf("get_worker_info: %w", err)
	}
	info, ok := res.(map[string]any)
	if !ok {
		return fmt.Errorf("get_worker_info: want a map, got %T", res)
	}
	s.info = info
	settings := r.opts.Settings
	if offered, ok := info[proto.KeyExtensions]; ok {
		// Only a worker that announced extensions hears of them: a plain
		// Buildbot worker gets exactly Buildbot's settings.
		s.exts = proto.Agree(proto.Extensions(offered), r.opts.Extensions)
		settings = maps.Clone(settings)
		settings[proto.KeyExtensions] = proto.ExtensionList(s.exts)
	}
	if s.HasExtension(proto.ExtResume) {
		s.mu.Lock()
		s.resume.hold = r.holdFor(info)
		s.mu.Unlock()
	}
	if _, err := s.conn.Call(ctx, proto.OpSetWorkerSettings, map[string]any{"args": settings}); err != nil {
		return fmt.Errorf("set_worker_settings: %w", err)
	}
	if s.HasExtension(proto.ExtResume) {
		if err := r.resumeSession(ctx, s); err != nil {
			return err
		}
	} else if old := r.takeAway(s.Name); old != nil {
		old.endHold(nil, errors.New("the worker reconnected without the resume extension"), true)
	}
	if _, err := s.conn.Call(ctx, proto.OpPrint, map[string]any{"message": "attached"}); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}

// checkDuplicate decides a second connection for a connected name, as
// Buildbot does: if the old connection still answers, it keeps the name and
// the new one is refused; otherwise the old one is dropped.
func (r *Registry) checkDuplicate(ctx context.Context, name string) string {
	r.mu.Lock()
	old := r.sessions[name]
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return "master shutting down"
	}
	if old == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := old.conn.Call(ctx, proto.OpPrint, map[string]any{"message": "master got a duplicate connection"}); err == nil {
		return fmt.Sprintf("worker %q is already connected from %s", name, old.Remote)
	}
	old.conn.Close(errReplaced)
	<-old.detached
	return ""
}

func (r *Registry) attach(s *Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.sessions[s.Name] != nil {
		return false
	}
	r.sessions[s.Name] = s
	return true
}

func (r *Registry) detach(s *Session, reason error) {
	r.mu.Lock()
	if r.sessions[s.Name] == s {
		delete(r.sessions, s.Name)
	}
	held := !r.closed && s.holdable(reason)
	var older *Session
	var hold time.Duration
	n := 0
	if held {
		// There is no older one: a reconnect with the extension took it up
		// during its handshake. Defensive all the same.
		if o := r.away[s.Name]; o != s {
			older = o
		}
		r.away[s.Name] = s
		hold, n = s.holdLocked(r.opts.Clock, func() { r.expire(s) })
	}
	r.mu.Unlock()
	if older != nil {
		older.endHold(nil, errors.New("superseded by a newer held session"), true)
	}
	if held {
		r.log.Warn("worker connection lost: holding its commands for a reconnect", "worker", s.Name, "commands", n, "hold", hold, "reason", reason)
	} else {
		s.failAll(reason)
		r.log.Info("worker detached", "worker", s.Name, "reason", reason)
	}
	if h := r.opts.Hooks.Detached; h != nil {
		h(s, reason)
	}
	close(s.detached)
}

// basicAuth parses the Authorization header. status is 401 when it is
// missing and 400 when it cannot be decoded, as Buildbot answers.
func basicAuth(req *http.Request) (name, password string, status int) {
	h := req.Header.Get("Authorization")
	if h == "" {
		return "", "", http.StatusUnauthorized
	}
	const prefix = "Basic "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", "", http.StatusBadRequest
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len(prefix):]))
	if err != nil {
		return "", "", http.StatusBadRequest
	}
	name, password, ok := strings.Cut(string(raw), ":")
	if !ok || name == "" {
		return "", "", http.StatusBadRequest
	}
	return name, password, 0
}

// equalSecret compares in constant time; hashing first hides the length.
func equalSecret(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
