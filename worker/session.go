package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/starforge/starforge/worker/command"
	"github.com/starforge/starforge/worker/proto"
)

// session is one connection to the master. The commands it starts live
// in a cmdSet (cmdset.go): without the resume extension the set ends with
// the connection, its commands cancelled since nobody is left to hear
// their results; with it, the set may outlive the connection for a grace
// period and be adopted by the next one (session_resume.go).
type session struct {
	a    *Agent
	conn *proto.Conn
	log  *slog.Logger

	set atomic.Pointer[cmdSet] // this connection's commands; replaced when it adopts a kept set

	shutdownOnce sync.Once
	shutdown     chan struct{} // closed when the master sent shutdown

	// hungUp is set when the worker itself closed the connection (a
	// donated desktop leaving a master without the pause extension): its
	// commands are not kept for a reconnect.
	hungUp atomic.Bool
	// resumeExt: the master agreed to the resume extension.
	resumeExt atomic.Bool

	// The pause extension (donated desktops, see donor.go).
	pauseExt    atomic.Bool   // the master agreed to it
	gotSettings atomic.Bool   // set_worker_settings arrived
	pauseKick   chan struct{} // wakes the pause notifier
	notifyOnce  sync.Once
}

// exception is an error whose text goes to the master verbatim, such as
// Buildbot's "Command <op> does not exist.".
type exception string

func (e exception) Error() string { return string(e) }

// serve runs the protocol on ws until the connection ends, ctx ends or the
// master sends shutdown, then stops the session's commands, or, when the
// connection was lost and the master agreed to the resume extension, keeps
// them for the next connection. It reports whether the worker must stop,
// and why the connection ended.
func (a *Agent) serve(ctx context.Context, ws *websocket.Conn) (stop bool, err error) {
	s := &session{
		a:         a,
		log:       a.log,
		shutdown:  make(chan struct{}),
		pauseKick: make(chan struct{}, 1),
	}
	s.conn = proto.NewConn(ws, s, a.ConnOptions)
	s.set.Store(newCmdSet(a, s))
	if a.donor != nil {
		a.donor.attach(s)
		defer a.donor.detach(s)
	}
	served := make(chan error, 1)
	go func() { served <- s.conn.Serve() }()

	select {
	case err := <-served:
		select {
		case <-s.shutdown:
			// The master closed right after asking for the shutdown.
			s.set.Load().abort(errors.New("the master shut the worker down"))
			return true, err
		default:
		}
		s.lost(err)
		return false, err
	case <-s.shutdown:
		s.log.Info("master asked the worker to shut down")
		deadline := time.Now().Add(shutdownGrace)
		s.set.Load().stop("the master shut the worker down", s.conn.Done())
		if wait := time.Until(deadline); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-s.conn.Done():
				t.Stop()
			}
		}
		s.conn.Close(errors.New("worker shut down by the master"))
		<-served
		return true, errors.New("shut down by the master")
	case <-ctx.Done():
		// Close first, then kill: the master sees a lost worker and ends
		// the build RETRY, so it runs again elsewhere. Reporting the killed
		// commands as complete would have failed the build instead. The
		// close frame tells a master with the resume extension not to wait
		// for this worker to come back.
		s.conn.Close(errors.New("worker stopping"))
		<-served
		s.set.Load().abort(errors.New("worker stopping"))
		return true, errors.New("worker stopping")
	}
}

// hangUp closes the connection on the worker's own initiative; its
// commands are not kept for a reconnect.
func (s *session) hangUp(reason error) {
	s.hungUp.Store(true)
	s.conn.Close(reason)
}

// HandleRequest implements proto.Handler for the master's requests. It runs
// on the connection's read loop, so nothing here blocks or calls the
// master: commands run in their own goroutines.
func (s *session) HandleRequest(op string, msg proto.Message) (any, error) {
	args := proto.Args(msg)
	switch op {
	case proto.OpPrint:
		text, _ := args.String("message", "")
		s.log.Info("message from master", "message", text)
		return nil, nil
	case proto.OpKeepalive:
		return nil, nil
	case proto.OpGetWorkerInfo:
		return s.a.workerInfo(), nil
	case proto.OpSetWorkerSettings:
		if err := s.a.setSettings(msg); err != nil {
			return nil, err
		}
		s.settingsApplied(msg)
		s.resumeSettings(msg)
		return nil, nil
	case proto.OpStartCommand:
		return nil, s.startCommand(args)
	case proto.OpInterruptCommand:
		s.interruptCommand(args)
		return nil, nil
	case proto.OpResume:
		if s.resumeExt.Load() {
			return s.resume(msg)
		}
	case proto.OpShutdown:
		s.shutdownOnce.Do(func() { close(s.shutdown) })
		return nil, nil
	}
	return nil, exception(fmt.Sprintf("Command %s does not exist.", op))
}

// settingKeys are set_worker_settings' mandatory keys.
var settingKeys = []string{"buffer_size", "buffer_timeout", "newline_re", "max_line_length"}

// setSettings applies set_worker_settings to the commands started from now
// on. All four keys are required, as in Buildbot; values are checked so
// that a bad setting fails here rather than in every later command.
func (a *Agent) setSettings(msg proto.Message) error {
	raw, ok := msg["args"]
	if !ok {
		return exception(`message did not contain obligatory "args" key`)
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return exception(fmt.Sprintf("set_worker_settings: args is %T, not a map", raw))
	}
	args := proto.Args(m)
	for _, k := range settingKeys {
		if args[k] == nil {
			return exception(fmt.Sprintf(`message did not contain obligatory "%s" key`, k))
		}
	}
	size, err1 := args.Int("buffer_size", 0)
	timeout, err2 := args.Float("buffer_timeout", 0)
	re, err3 := args.String("newline_re", "")
	maxLine, err4 := args.Int("max_line_length", 0)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Errorf("set_worker_settings: %w", err)
	}
	switch {
	case size <= 0:
		return fmt.Errorf("set_worker_settings: buffer_size must be positive, got %d", size)
	case timeout < 0:
		return fmt.Errorf("set_worker_settings: buffer_timeout must not be negative, got %v", timeout)
	case maxLine <= 0:
		return fmt.Errorf("set_worker_settings: max_line_length must be positive, got %d", maxLine)
	}
	if err := command.ValidateNewlineRE(re); err != nil {
		return fmt.Errorf("set_worker_settings: newline_re: %w", err)
	}
	st := command.Settings{
		NewlineRE:     re,
		MaxLineLength: int(maxLine),
		BufferSize:    int(size),
		BufferTimeout: time.Duration(timeout * float64(time.Second)),
	}
	a.mu.Lock()
	a.settings = st
	a.mu.Unlock()
	a.log.Debug("worker settings changed", "buffer_size", size, "buffer_timeout", timeout, "max_line_length", maxLine, "newline_re", re)
	return nil
}

// commandID returns start_command's command_id as the table key, and the
// value to echo in the command's messages (its original type: Python
// masters send strings, but the id is opaque).
func commandID(args proto.Args) (key string, id any, err error) {
	switch v := args["command_id"].(type) {
	case string:
		if v != "" {
			return v, v, nil
		}
	case []byte:
		return string(v), string(v), nil
	default:
		if n, ok := proto.AsInt(v); ok {
			return strconv.FormatInt(n, 10), v, nil
		}
	}
	return "", nil, exception(fmt.Sprintf("missing or invalid command_id %v", args["command_id"]))
}

// startCommand builds the command and starts it in a goroutine; the
// response to start_command goes out as soon as this returns, possibly
// after the command's first updates (as with Buildbot).
func (s *session) startCommand(args proto.Args) error {
	key, id, err := commandID(args)
	if err != nil {
		return err
	}
	name, err := args.String("command_name", "")
	if err != nil {
		return err
	}
	cargs, err := args.Map("args")
	if err != nil {
		return err
	}
	if cargs == nil {
		cargs = map[string]any{}
	}
	builder, _ := args.String("builder_name", "")
	return s.set.Load().start(s, key, id, name, builder, args[proto.KeyBuild], cargs)
}

// runSafely runs cmd, turning a panic into the command's failure so that
// one broken command cannot take the worker down.
func runSafely(ctx context.Context, cmd command.Command, s command.Sender, log *slog.Logger) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("command panicked", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("worker error: command panicked: %v", r)
		}
	}()
	return cmd.Run(ctx, s)
}

// interruptCommand interrupts a running command; an unknown id is ignored,
// as Buildbot's worker does (the command may just have finished).
func (s *session) interruptCommand(args proto.Args) {
	key, _, err := commandID(args)
	if err != nil {
		return
	}
	why, _ := args.String("why", "")
	s.set.Load().interrupt(key, why)
}
