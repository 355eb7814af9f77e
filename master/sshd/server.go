// Package sshd is the master's SSH interface: users declared in
// master.star log in with their public keys and run commands (builders,
// force, try, logs --follow, ...) as `ssh -p PORT HOST COMMAND`, with no
// client to install. Each command is allowed by the user's roles, with
// the same rule as the web UI (config.Config.Allowed).
package sshd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/starforge/starforge/internal/clock"
	gossh "golang.org/x/crypto/ssh"
)

// Defaults for Options' zero fields.
const (
	DefaultLoginBurst       = 10
	DefaultLoginEvery       = 30 * time.Second
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultPollInterval     = 250 * time.Millisecond
)

// Options configure a Server.
type Options struct {
	Backend Backend
	// HostKeyFile holds the host key; it is created (ed25519, mode 0600)
	// if it does not exist, and kept.
	HostKeyFile string
	Logger      *slog.Logger
	// Clock drives the failed-login rate limit and the handshake timeout;
	// nil means the system clock.
	Clock clock.Clock
	// A remote IP may fail to log in LoginBurst times in a row; then one
	// more attempt is allowed every LoginEvery, and connections in
	// between are closed at once.
	LoginBurst int
	LoginEvery time.Duration
	// HandshakeTimeout is how long a connection may take to log in.
	HandshakeTimeout time.Duration
	// PollInterval is how often a follower rereads growing logs between
	// build events.
	PollInterval time.Duration
}

// Server is an SSH server serving commands to the configured users. Its
// methods are safe for concurrent use.
type Server struct {
	opts    Options
	b       Backend
	log     *slog.Logger
	clk     clock.Clock
	srv     *ssh.Server
	hostKey gossh.PublicKey
	limit   *limiter

	base context.Context // canceled by Shutdown: running commands end
	stop context.CancelFunc

	mu       sync.Mutex
	attempts map[string]*attempt // by remote address, until the connection closes
}

// attempt is one connection's login, for the failed-login log.
type attempt struct {
	ip     string
	user   string
	reason string   // why the last key offered was refused
	keys   []string // fingerprints of the keys offered
	authed bool     // a key was proven: the connection logged in
	timer  clock.Timer
}

// New returns a server for o, with its host key loaded or created.
func New(o Options) (*Server, error) {
	if o.Backend == nil || o.HostKeyFile == "" {
		return nil, errors.New("sshd: Backend and HostKeyFile are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if o.LoginBurst <= 0 {
		o.LoginBurst = DefaultLoginBurst
	}
	if o.LoginEvery <= 0 {
		o.LoginEvery = DefaultLoginEvery
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	signer, created, err := loadHostKey(o.HostKeyFile)
	if err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	if created {
		o.Logger.Info("ssh: created the host key", "file", o.HostKeyFile, "fingerprint", gossh.FingerprintSHA256(signer.PublicKey()))
	} else if fi, err := os.Stat(o.HostKeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		// Whoever can read it can pose as this master.
		o.Logger.Warn("ssh: other users can read the host key file; chmod 600 it", "file", o.HostKeyFile, "mode", fi.Mode().Perm())
	}
	s := &Server{
		opts: o, b: o.Backend, log: o.Logger, clk: o.Clock, hostKey: signer.PublicKey(),
		limit:    newLimiter(o.Clock, o.LoginBurst, o.LoginEvery),
		attempts: map[string]*attempt{},
	}
	s.base, s.stop = context.WithCancel(context.Background())
	s.srv = &ssh.Server{
		Version:                  "Starforge",
		HostSigners:              []ssh.Signer{signer},
		Handler:                  s.handle,
		PublicKeyHandler:         s.checkKey,
		ConnCallback:             s.connected,
		ConnectionFailedCallback: s.failed,
		ServerConfigCallback: func(ssh.Context) *gossh.ServerConfig {
			return &gossh.ServerConfig{VerifiedPublicKeyCallback: s.loggedIn}
		},
		// No port forwarding, agent forwarding or subsystems: the zero
		// values refuse them.
	}
	return s, nil
}

// HostKey returns the server's public host key.
func (s *Server) HostKey() gossh.PublicKey { return s.hostKey }

// Serve serves connections from l until Shutdown; it then returns nil.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(l)
	if errors.Is(err, ssh.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and ends the running commands,
// which tell their users that the master is stopping and exit; it waits
// for the connections to close until ctx ends, and then closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}

// connected admits a new connection unless its IP failed to log in too
// often, and bounds how long it may take to log in.
func (s *Server) connected(ctx ssh.Context, conn net.Conn) net.Conn {
	addr := conn.RemoteAddr().String()
	ip := hostOf(conn.RemoteAddr())
	if ok, first := s.limit.allow(ip); !ok {
		if first {
			s.log.Warn("ssh: refusing connections from this address for a while: too many failed logins", "remote", ip)
		}
		conn.Close()
		return nil
	}
	a := &attempt{ip: ip}
	a.timer = s.clk.AfterFunc(s.opts.HandshakeTimeout, func() {
		s.mu.Lock()
		authed := a.authed
		s.mu.Unlock()
		if !authed {
			conn.Close()
		}
	})
	s.mu.Lock()
	s.attempts[addr] = a
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		a.timer.Stop()
		// A connection that did not log in is forgotten by failed, which
		// runs after the close and needs the attempt.
		s.mu.Lock()
		if a.authed && s.attempts[addr] == a {
			delete(s.attempts, addr)
		}
		s.mu.Unlock()
	})
	return conn
}

func (s *Server) attempt(addr net.Addr) *attempt {
	if addr == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[addr.String()]
}

// checkKey says whether key may log in as the user the client named:
// the configuration in force now decides, and the user's authorized_keys
// file is read now.
func (s *Server) checkKey(ctx ssh.Context, key ssh.PublicKey) bool {
	name := ctx.User()
	a := s.attempt(ctx.RemoteAddr())
	note := func(reason string) {
		if a == nil {
			return
		}
		s.mu.Lock()
		a.user, a.reason = name, reason
		if fp := gossh.FingerprintSHA256(key); len(a.keys) < 8 {
			a.keys = append(a.keys, fp)
		}
		s.mu.Unlock()
	}
	u := s.b.Config().User(name)
	if u == nil {
		note("no such user in the configuration")
		return false
	}
	ok, problems := keyAllowed(u, key)
	for _, p := range problems {
		s.log.Warn("ssh: a key of the user cannot be used", "user", name, "problem", p)
	}
	if !ok {
		note("the key is not one of the user's keys")
		return false
	}
	note("")
	return true
}

// loggedIn is called once the client proved it holds the private key.
func (s *Server) loggedIn(conn gossh.ConnMetadata, key gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
	if a := s.attempt(conn.RemoteAddr()); a != nil {
		s.mu.Lock()
		a.authed = true
		s.mu.Unlock()
	}
	s.log.Info("ssh: login", "user", conn.User(), "remote", conn.RemoteAddr().String(), "key", gossh.FingerprintSHA256(key))
	return perms, nil
}

// failed logs a connection that did not log in, and counts it against
// its IP when authentication failed.
func (s *Server) failed(conn net.Conn, err error) {
	addr := conn.RemoteAddr().String()
	s.mu.Lock()
	a := s.attempts[addr]
	delete(s.attempts, addr)
	var user, reason string
	var keys []string
	if a != nil {
		user, reason, keys = a.user, a.reason, a.keys
	}
	s.mu.Unlock()
	var authErr *gossh.ServerAuthError
	if !errors.As(err, &authErr) {
		// A port scan, a dropped connection, a client without a common
		// algorithm: no login was attempted.
		s.log.Debug("ssh: connection failed before login", "remote", addr, "err", err)
		return
	}
	ip := hostOf(conn.RemoteAddr())
	if reason == "" {
		reason = "no acceptable key was proven"
		if len(keys) == 0 {
			reason = "no public key offered (only public key logins are accepted)"
		}
	}
	left := s.limit.fail(ip)
	s.log.Warn("ssh: failed login", "user", user, "remote", addr, "reason", reason, "keys_offered", keys, "attempts_left", left)
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}
