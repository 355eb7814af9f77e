package registry

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/starforge/starforge/worker/proto"
)

// The pause extension (proto.ExtPause), for donated desktops: the worker
// says when it stops and starts taking builds, and hands back builds its
// owner interrupted. See package proto for the wire format.

// AbandonedError is the failure of a command whose worker abandoned it: a
// donated desktop whose owner came back. It wraps ErrWorkerLost, so the
// build ends RETRY and its request goes back to the head of the queue, as
// when a worker is lost, while the worker's other builds go on.
type AbandonedError struct {
	Worker string
	Reason string
}

func (e *AbandonedError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("worker %s handed the build back", e.Worker)
	}
	return fmt.Sprintf("worker %s handed the build back (%s)", e.Worker, e.Reason)
}

// Unwrap makes errors.Is(err, ErrWorkerLost) hold.
func (e *AbandonedError) Unwrap() error { return ErrWorkerLost }

// pauseState is a session's pause. hookMu is held while the Paused hook
// runs, so that the hook sees the changes in order and the one reported at
// attach time cannot overtake a later one; mu guards the fields, so the
// hook may call Session.Paused.
type pauseState struct {
	hookMu   sync.Mutex
	mu       sync.Mutex
	attached bool // the Attached hook ran; changes go to hook from now on
	hook     func(s *Session, paused bool, reason string)
	paused   bool
	reason   string
	since    time.Time
}

// Extensions returns the protocol extensions the worker and the master
// agreed on. Do not modify it.
func (s *Session) Extensions() []string { return s.exts }

// HasExtension reports whether the session uses extension ext.
func (s *Session) HasExtension(ext string) bool { return slices.Contains(s.exts, ext) }

// Paused reports whether the worker said it takes no builds now, why, and
// since when. A worker without the pause extension is never paused.
func (s *Session) Paused() (paused bool, reason string, since time.Time) {
	s.pause.mu.Lock()
	defer s.pause.mu.Unlock()
	return s.pause.paused, s.pause.reason, s.pause.since
}

// attachedPause is called once the Attached hook returned: from now on
// pause changes go to hook, starting with the state the worker sent
// during the handshake, if it was paused.
func (s *Session) attachedPause(hook func(*Session, bool, string)) {
	p := &s.pause
	p.hookMu.Lock()
	defer p.hookMu.Unlock()
	p.mu.Lock()
	p.attached, p.hook = true, hook
	paused, reason := p.paused, p.reason
	p.mu.Unlock()
	if paused && hook != nil {
		hook(s, true, reason)
	}
}

// handlePause serves OpPause (OpAbandon is command traffic: see
// Session.HandleRequest).
func (s *Session) handlePause(op string, msg proto.Message) (any, error) {
	m, err := proto.DecodePause(msg)
	if err != nil {
		return nil, err
	}
	p := &s.pause
	p.hookMu.Lock()
	defer p.hookMu.Unlock()
	p.mu.Lock()
	if p.paused == m.Paused && p.reason == m.Reason {
		p.mu.Unlock()
		return nil, nil
	}
	if p.paused != m.Paused || p.since.IsZero() {
		p.since = time.Now()
	}
	p.paused, p.reason = m.Paused, m.Reason
	hook := p.hook
	if !p.attached {
		hook = nil
	}
	p.mu.Unlock()
	if m.Paused {
		s.log.Info("worker paused", "reason", m.Reason)
	} else {
		s.log.Info("worker takes builds again")
	}
	if hook != nil {
		hook(s, m.Paused, m.Reason)
	}
	return nil, nil
}

type buildKey struct{}

// WithBuild returns a context that makes Session.Start tell a worker with
// the pause extension which build a command belongs to.
func WithBuild(ctx context.Context, buildID int64) context.Context {
	return context.WithValue(ctx, buildKey{}, buildID)
}

// addBuild adds the build id of ctx to a start_command message, for a
// worker that uses the pause extension.
func (s *Session) addBuild(ctx context.Context, msg map[string]any) {
	if id, ok := ctx.Value(buildKey{}).(int64); ok && s.HasExtension(proto.ExtPause) {
		msg[proto.KeyBuild] = id
	}
}
