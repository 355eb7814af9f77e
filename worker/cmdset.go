package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starforge/starforge/worker/command"
	"github.com/starforge/starforge/worker/proto"
)

// cmdSet is the running commands of a connection and the way to the
// master for their messages. Without the resume extension a set lives and
// dies with its connection. With it (session_resume.go), a set outlives a
// lost connection for the agent's ResumeGrace: its commands run on, their
// next messages wait, and the next connection adopts the set when the
// master asks for it. Its methods are safe for concurrent use.
type cmdSet struct {
	a   *Agent
	log *slog.Logger
	// ctx is the commands' context, cancelled (with a cause) when the set
	// ends.
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu sync.Mutex
	// sess carries the messages; nil while the set waits for a reconnect.
	sess *session
	// wake is closed and replaced when sess changes or the set ends.
	wake chan struct{}
	// resume: the master agreed to the resume extension before the first
	// command started. Messages are then numbered (proto.KeySeq) and wait
	// through a disconnect. Fixed once a command started.
	resume   bool
	cmds     map[string]*running // by command_id, until the master acknowledged the completion
	stopping bool                // no new commands
	ended    bool
	wg       sync.WaitGroup // command goroutines and interrupts
}

// running is one command of a set.
type running struct {
	key    string
	cmd    command.Command
	dc     *dcmd // a donated desktop's view of it, or nil
	snd    *cmdSender
	cancel context.CancelCauseFunc
	// finished: Run returned; the command stays in the set, so that a
	// resumed master hears of it, until its completion was answered.
	finished bool
}

// errConnLost is the cause of commands cancelled because their connection
// was lost and could not be resumed.
var errConnLost = errors.New("connection lost")

// errForgotten cancels a kept command the master no longer knows.
var errForgotten = errors.New("the master no longer knows the command after the reconnect")

func newCmdSet(a *Agent, s *session) *cmdSet {
	cs := &cmdSet{a: a, log: a.log, sess: s, wake: make(chan struct{}), cmds: map[string]*running{}}
	cs.ctx, cs.cancel = context.WithCancelCause(context.Background())
	return cs
}

// broadcastLocked wakes every sender waiting for a connection.
func (cs *cmdSet) broadcastLocked() {
	close(cs.wake)
	cs.wake = make(chan struct{})
}

// resumable reports whether the set's messages are numbered and wait
// through a disconnect.
func (cs *cmdSet) resumable() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.resume
}

// size returns how many commands the set has, finished or not.
func (cs *cmdSet) size() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.cmds)
}

// current returns the session carrying the messages, or nil while away.
func (cs *cmdSet) current() *session {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.sess
}

// connection returns the session to send on: the current one unless it is
// after (whose connection just failed a send), waiting while there is
// none. It fails when the set ended or ctx ends.
func (cs *cmdSet) connection(ctx context.Context, after *session) (*session, error) {
	for {
		cs.mu.Lock()
		s, wake, ended := cs.sess, cs.wake, cs.ended
		cs.mu.Unlock()
		if ended {
			return nil, fmt.Errorf("%w: %v", proto.ErrConnClosed, context.Cause(cs.ctx))
		}
		if s != nil && s != after {
			return s, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// start builds a command and runs it in a goroutine.
func (cs *cmdSet) start(s *session, key string, id any, name, builder string, buildID any, cargs map[string]any) error {
	log := s.log.With("command_id", key, "command", name)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.stopping {
		return exception("worker is shutting down")
	}
	if old, dup := cs.cmds[key]; dup && !old.finished {
		return exception(fmt.Sprintf("duplicate command_id %s", key))
	}
	a := cs.a
	env := command.Env{
		Basedir:  a.basedir,
		Environ:  a.environ,
		Settings: a.currentSettings(),
		Logger:   log,
		Ledger:   a.ledger,
	}
	var ledger *cmdLedger
	if d := a.donor; d != nil {
		ledger = &cmdLedger{inner: a.ledger, d: d}
		env.Ledger = ledger
		env.ProcAttr = d.lim.ProcAttr()
	}
	cmd, err := command.New(name, proto.Args(cargs), env)
	if err != nil {
		log.Warn("cannot start command", "err", err)
		return err
	}
	ctx, cancel := context.WithCancelCause(cs.ctx)
	r := &running{key: key, cmd: cmd, cancel: cancel, snd: &cmdSender{set: cs, id: id, numbered: cs.resume}}
	if d := a.donor; d != nil {
		r.dc = d.admit(builder, buildID, s, cmd, cancel)
		ledger.c = r.dc
	}
	// A finished command with the same id (the master reused it before the
	// completion's answer reached the worker) is replaced; its goroutine
	// only removes its own entry.
	cs.cmds[key] = r
	cs.wg.Add(1)
	go cs.run(ctx, r, log)
	return nil
}

// run runs one command and reports its completion. On a donated desktop
// (r.dc set) it first waits until the command's build may run, and reports
// a build handed back with starforge_abandon instead of complete.
func (cs *cmdSet) run(ctx context.Context, r *running, log *slog.Logger) {
	defer cs.wg.Done()
	defer r.cancel(nil)
	start := time.Now()
	abandoned := ""
	var err error
	if dc := r.dc; dc != nil {
		d := cs.a.donor
		defer d.ended(dc)
		if abandoned, err = d.wait(ctx, dc); abandoned == "" && err == nil {
			log.Info("command started")
			err = runSafely(ctx, r.cmd, r.snd, log)
			abandoned = d.abandonedReason(dc)
		}
	} else {
		log.Info("command started")
		err = runSafely(ctx, r.cmd, r.snd, log)
	}
	cs.mu.Lock()
	r.finished = true // interrupts no longer apply
	cs.mu.Unlock()
	defer cs.remove(r)

	var result any // nil: success, as Buildbot's complete args
	if err != nil {
		result = err.Error()
	}
	if cs.ctx.Err() != nil || errors.Is(context.Cause(ctx), errForgotten) {
		log.Warn("command ended without a connection to report to", "elapsed", time.Since(start), "err", err)
		return
	}
	if abandoned != "" {
		cs.reportAbandon(r, abandoned, log)
		return
	}
	log.Info("command finished", "elapsed", time.Since(start), "err", err)
	if _, cerr := r.snd.Send(cs.ctx, proto.OpComplete, map[string]any{"args": result}); cerr != nil {
		log.Warn("cannot report command completion", "err", cerr)
	}
}

// remove takes r out of the set, unless another command took its id.
func (cs *cmdSet) remove(r *running) {
	cs.mu.Lock()
	if cs.cmds[r.key] == r {
		delete(cs.cmds, r.key)
	}
	cs.mu.Unlock()
}

// reportAbandon tells the master the command's build is handed back. A
// master without the pause extension learns it from the connection
// closing instead (abandonLocked closes it).
func (cs *cmdSet) reportAbandon(r *running, reason string, log *slog.Logger) {
	// While away (resume) the message waits for the next connection.
	if s := cs.current(); (s == nil && !cs.resumable()) || (s != nil && !s.hasPause()) {
		log.Warn("build handed back by closing the connection", "reason", reason)
		return
	}
	log.Info("build handed back to the master", "reason", reason)
	if _, err := r.snd.Send(cs.ctx, proto.OpAbandon, map[string]any{"reason": reason}); err != nil {
		log.Warn("cannot hand the build back", "err", err)
	}
}

// interrupt interrupts a running command; an unknown or finished one is
// ignored.
func (cs *cmdSet) interrupt(key, why string) {
	cs.mu.Lock()
	r := cs.cmds[key]
	if r != nil && r.finished {
		r = nil
	}
	if r != nil {
		if r.dc != nil {
			// A command waiting for its frozen build goes, to be stopped.
			cs.a.donor.interrupt(r.dc)
		}
		// The command's own count keeps the group above zero here.
		cs.wg.Add(1)
	}
	cs.mu.Unlock()
	if r == nil {
		cs.log.Debug("interrupt for a command not running", "command_id", key)
		return
	}
	cs.log.Info("interrupting command", "command_id", key, "why", why)
	// Off the read loop: an Interrupt may flush output to the master, whose
	// answer this loop must be free to read.
	go func() {
		defer cs.wg.Done()
		r.cmd.Interrupt(why)
	}()
}

// stop refuses new commands, interrupts the running ones and waits up to
// StopTimeout for them to report (or for connDone), then cancels the rest
// and waits for them. The connection stays open meanwhile, so that the
// interrupted commands' last updates and completions reach the master.
func (cs *cmdSet) stop(why string, connDone <-chan struct{}) {
	cs.mu.Lock()
	cs.stopping = true
	var live []command.Command
	for _, r := range cs.cmds {
		if !r.finished {
			live = append(live, r.cmd)
		}
	}
	cs.mu.Unlock()
	if len(live) > 0 {
		cs.log.Info("interrupting running commands", "count", len(live), "why", why)
	}
	for _, c := range live {
		c.Interrupt(why)
	}
	done := make(chan struct{})
	go func() { cs.wg.Wait(); close(done) }()
	t := time.NewTimer(cs.a.StopTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-connDone:
	case <-t.C:
		cs.log.Warn("commands outlived the stop timeout; cancelling them", "timeout", cs.a.StopTimeout)
	}
	cs.abort(errors.New(why))
}

// abort ends the set: cancelling the commands' context kills their
// processes, and their sends fail at once. It waits for the commands'
// goroutines.
func (cs *cmdSet) abort(cause error) {
	cs.mu.Lock()
	cs.stopping = true
	n := 0
	for _, r := range cs.cmds {
		if !r.finished {
			n++
		}
	}
	already := cs.ended
	cs.ended = true
	cs.broadcastLocked()
	cs.mu.Unlock()
	if n > 0 && !already {
		msg := "cancelling running commands"
		if errors.Is(cause, errConnLost) {
			msg = "connection lost: cancelling running commands"
		}
		cs.log.Warn(msg, "count", n, "why", cause)
	}
	cs.cancel(cause)
	cs.wg.Wait()
}

// cmdSender sends one command's messages, adding its command_id. With the
// resume extension (numbered) it numbers them (proto.KeySeq), sends one at
// a time, and sends a message again on the next connection when the
// connection drops before its answer; the master drops repeats.
type cmdSender struct {
	set      *cmdSet
	id       any
	numbered bool

	mu   sync.Mutex   // held while a numbered message is out
	sent atomic.Int64 // messages numbered so far
	// forgotten: the master no longer knows the command; its last
	// messages (killed, rc -1) go nowhere.
	forgotten atomic.Bool
}

// Send implements command.Sender.
func (c *cmdSender) Send(ctx context.Context, op string, fields map[string]any) (any, error) {
	m := make(map[string]any, len(fields)+2)
	maps.Copy(m, fields)
	m["command_id"] = c.id
	if !c.numbered {
		s, err := c.set.connection(ctx, nil)
		if err != nil {
			return nil, err
		}
		return s.conn.Call(ctx, op, m)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forgotten.Load() {
		return nil, errForgotten
	}
	m[proto.KeySeq] = c.sent.Add(1)
	var failed *session
	for {
		s, err := c.set.connection(ctx, failed)
		if err != nil {
			return nil, err
		}
		if c.forgotten.Load() {
			return nil, errForgotten
		}
		res, err := s.conn.Call(ctx, op, m)
		var re *proto.RemoteError
		if err == nil || errors.As(err, &re) || ctx.Err() != nil || s.conn.Err() == nil {
			return res, err
		}
		// The connection dropped with the message unanswered: the master
		// may or may not have it. Send it again on the next connection.
		failed = s
	}
}
