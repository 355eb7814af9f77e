// Package worker is the starforge-worker agent. It connects to a master
// over Buildbot's msgpack_experimental_v7 protocol (a WebSocket carrying
// msgpack maps, see package proto), runs the remote commands the master
// starts (package command), and reconnects with backoff when the
// connection fails. It speaks the protocol as Buildbot's worker 3.7 does,
// so it can also serve a Buildbot master.
//
// The package must stay free of master-side dependencies: the worker is
// built with CGO_ENABLED=0 for Linux, macOS and Windows.
package worker

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/worker/command"
	"github.com/starforge/starforge/worker/proto"
)

// Version is the worker's version, set at link time
// (-X github.com/starforge/starforge/worker.Version=...).
var Version = "dev"

// Defaults for the Agent's zero fields.
const (
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = 60 * time.Second
	DefaultStopTimeout = 10 * time.Second
	// resetAfter: a connection that lasted this long resets the backoff even
	// if it never completed the handshake.
	resetAfter = 10 * time.Second
	// shutdownGrace is how long the worker keeps the connection after
	// answering shutdown, so that the answer leaves before the close (the
	// answer is written after the handler returns). Buildbot's worker
	// stops 0.2 s after answering, too.
	shutdownGrace = 200 * time.Millisecond
)

// Agent connects a worker to its master and serves it. Set the fields,
// then call Run; an Agent must not be copied or changed once Run started,
// and Run must not be called concurrently.
type Agent struct {
	// Master is "host:port" (connects to ws://host:port/, as Buildbot's
	// worker does) or a ws:// or wss:// URL.
	Master string
	// Name and Password are sent with HTTP Basic authentication on the
	// WebSocket upgrade. Name must not contain ":".
	Name, Password string
	// Basedir is the worker's base directory; relative paths are made
	// absolute once, when Run starts.
	Basedir string
	// Logger receives connection events and command outcomes; nil means
	// slog.Default().
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the jittered exponential delay
	// between connection attempts (defaults 1 s and 60 s). The delay
	// returns to MinBackoff after a connection that completed the
	// handshake or lasted more than 10 s.
	MinBackoff, MaxBackoff time.Duration
	// StopTimeout is how long interrupted commands get to finish and
	// report when the worker stops (Run's context ends, or the master asks
	// it to shut down) before they are cancelled. Default 10 s.
	StopTimeout time.Duration
	// Version is reported to the master as "starforge-worker " + Version;
	// empty means the package's Version.
	Version string
	// Dialer dials the master; nil means a dialer with a 30 s handshake
	// timeout that honours the HTTP(S)_PROXY environment variables.
	Dialer *websocket.Dialer
	// ConnOptions tune each protocol connection (ping interval, frame limit);
	// its Logger defaults to Logger.
	ConnOptions proto.Options
	// ResumeGrace is how long running commands outlive a lost connection
	// to a master that agreed to the resume extension (proto.ExtResume):
	// they run on, their output waits (see session_resume.go), and a
	// reconnection within the grace takes them up where they were. Zero
	// means DefaultResumeGrace; negative turns the extension off, so a lost
	// connection cancels the commands at once.
	ResumeGrace time.Duration
	// Clock times the resume grace; nil means the real clock.
	Clock clock.Clock

	// Set when Run starts, read-only afterwards.
	url     string
	basedir string
	log     *slog.Logger
	environ map[string]string
	ledger  *ledger

	// Donation, if set, makes the worker a donated desktop (donor.go).
	Donation *Donation

	mu        sync.Mutex
	settings  command.Settings // the master's latest set_worker_settings
	kept      *cmdSet          // commands waiting for a reconnect (session_resume.go)
	keptTimer clock.Timer      // ends kept when the grace passes

	donor       *donor      // set by init when Donation is
	plainMaster atomic.Bool // the last master did not agree to the pause extension
}

// Run connects to the master and serves it, reconnecting after failures,
// until ctx ends or the master sends shutdown. Either way it stops the
// running commands (interrupting them, then cancelling those that outlast
// StopTimeout), closes the connection and returns nil. It returns an error
// only for an unusable configuration.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.init(); err != nil {
		return err
	}
	// Before taking new work: kill what a killed previous run left behind.
	a.ledger.cleanup()
	// Commands kept for a reconnect do not outlive the worker.
	defer a.dropKept(errors.New("worker stopping"))
	if a.donor != nil {
		done := make(chan struct{})
		go func() { a.donor.run(ctx); close(done) }()
		defer func() { <-done }()
	}
	bo := backoff{min: a.MinBackoff, max: a.MaxBackoff}
	for {
		if a.donor != nil && a.plainMaster.Load() {
			// A master that cannot be told of pauses gets no connection
			// while the worker is paused.
			a.donor.waitAccepting(ctx)
			if ctx.Err() != nil {
				return nil
			}
		}
		began := time.Now()
		handshake, stop, err := a.connect(ctx)
		if stop || ctx.Err() != nil {
			return nil
		}
		if handshake || time.Since(began) > resetAfter {
			bo.reset()
		}
		delay := bo.next()
		if a.keeping() {
			delay = min(delay, resumeRetry)
		}
		var authErr *authError
		switch {
		case errors.As(err, &authErr):
			a.log.Error(authErr.Error(), "retry_in", delay.Round(time.Millisecond))
		case handshake:
			a.log.Warn("disconnected from master", "master", a.url, "reason", err, "retry_in", delay.Round(time.Millisecond))
		default:
			a.log.Warn("cannot connect to master", "master", a.url, "err", err, "retry_in", delay.Round(time.Millisecond))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// init checks the configuration and fills in the defaults.
func (a *Agent) init() error {
	switch {
	case a.Master == "":
		return errors.New("worker: no master address")
	case a.Name == "":
		return errors.New("worker: no worker name")
	case strings.Contains(a.Name, ":"):
		return fmt.Errorf("worker: name %q contains ':', which HTTP Basic authentication cannot carry", a.Name)
	case a.Basedir == "":
		return errors.New("worker: no base directory")
	}
	u, err := masterURL(a.Master)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	a.url = u
	if a.basedir, err = filepath.Abs(a.Basedir); err != nil {
		return fmt.Errorf("worker: base directory: %w", err)
	}
	a.log = a.Logger
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.MinBackoff <= 0 {
		a.MinBackoff = DefaultMinBackoff
	}
	if a.MaxBackoff <= 0 {
		a.MaxBackoff = DefaultMaxBackoff
	}
	a.MaxBackoff = max(a.MaxBackoff, a.MinBackoff)
	if a.StopTimeout <= 0 {
		a.StopTimeout = DefaultStopTimeout
	}
	if a.ConnOptions.Logger == nil {
		a.ConnOptions.Logger = a.log
	}
	a.environ = environMap()
	if err := os.MkdirAll(a.basedir, 0o755); err != nil {
		return fmt.Errorf("worker: base directory: %w", err)
	}
	a.ledger = newLedger(a.basedir, a.log)
	if a.Donation != nil {
		a.donor = newDonor(a, a.Donation)
	}
	a.mu.Lock()
	if a.settings == (command.Settings{}) {
		a.settings = command.DefaultSettings()
	}
	a.mu.Unlock()
	return nil
}

func (a *Agent) version() string {
	if a.Version != "" {
		return a.Version
	}
	return Version
}

// masterURL turns the Master setting into the WebSocket URL to dial.
func masterURL(master string) (string, error) {
	if !strings.Contains(master, "://") {
		if _, _, err := net.SplitHostPort(master); err != nil {
			return "", fmt.Errorf("master %q: want host:port or a ws:// URL: %w", master, err)
		}
		return "ws://" + master + "/", nil
	}
	u, err := url.Parse(master)
	if err != nil {
		return "", fmt.Errorf("master %q: %w", master, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("master %q: scheme %q is not ws or wss", master, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("master %q: no host", master)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u.String(), nil
}

// authError is a master's refusal of the worker's credentials.
type authError struct{ name string }

func (e *authError) Error() string {
	return fmt.Sprintf("master refused worker %s: wrong name or password (401)", e.name)
}

// connect dials the master and serves the connection until it ends. It
// reports whether the WebSocket handshake succeeded and whether the worker
// must stop (the master asked it to, or ctx ended).
func (a *Agent) connect(ctx context.Context) (handshake, stop bool, err error) {
	ws, err := a.dial(ctx)
	if err != nil {
		return false, false, err
	}
	a.log.Info("connected to master", "master", a.url, "worker", a.Name)
	stop, err = a.serve(ctx, ws)
	if stop {
		a.log.Info("disconnected from master", "master", a.url, "reason", err)
	}
	return true, stop, err
}

func (a *Agent) dial(ctx context.Context) (*websocket.Conn, error) {
	d := a.Dialer
	if d == nil {
		d = &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 30 * time.Second}
	}
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(a.Name+":"+a.Password)))
	h.Set("User-Agent", "starforge-worker/"+a.version())
	ws, resp, err := d.DialContext(ctx, a.url, h)
	if err != nil {
		if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
			if resp.StatusCode == http.StatusUnauthorized {
				return nil, &authError{name: a.Name}
			}
			return nil, fmt.Errorf("master answered the WebSocket upgrade with HTTP %s", resp.Status)
		}
		return nil, fmt.Errorf("dial %s: %w", a.url, err)
	}
	return ws, nil
}

// currentSettings returns the settings for a command starting now.
func (a *Agent) currentSettings() command.Settings {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.settings
}
