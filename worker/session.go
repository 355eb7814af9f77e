package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/starforge/starforge/worker/command"
	"github.com/starforge/starforge/worker/proto"
)

// session is one connection to the master and the commands it started.
// The commands live as long as the connection: when it is lost they are
// cancelled, since nobody is left to hear their results.
type session struct {
	a    *Agent
	conn *proto.Conn
	log  *slog.Logger

	// ctx is the commands' context, cancelled when the session ends.
	ctx    context.Context
	cancel context.CancelFunc

	shutdownOnce sync.Once
	shutdown     chan struct{} // closed when the master sent shutdown

	mu       sync.Mutex
	cmds     map[string]command.Command // running, by command_id
	dcmds    map[string]*dcmd           // a donor's view of them, by command_id
	stopping bool                       // no new commands
	wg       sync.WaitGroup             // command goroutines and interrupts

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
// master sends shutdown, then stops the session's commands. It reports
// whether the worker must stop, and why the connection ended.
func (a *Agent) serve(ctx context.Context, ws *websocket.Conn) (stop bool, err error) {
	s := &session{
		a:         a,
		log:       a.log,
		shutdown:  make(chan struct{}),
		cmds:      map[string]command.Command{},
		dcmds:     map[string]*dcmd{},
		pauseKick: make(chan struct{}, 1),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	defer s.cancel()
	s.conn = proto.NewConn(ws, s, a.ConnOptions)
	if a.donor != nil {
		a.donor.attach(s)
		defer a.donor.detach(s)
	}
	served := make(chan error, 1)
	go func() { served <- s.conn.Serve() }()

	select {
	case err := <-served:
		s.abort()
		select {
		case <-s.shutdown:
			// The master closed right after asking for the shutdown.
			return true, err
		default:
		}
		return false, err
	case <-s.shutdown:
		s.log.Info("master asked the worker to shut down")
		deadline := time.Now().Add(shutdownGrace)
		s.stop("the master shut the worker down")
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
		// commands as complete would have failed the build instead.
		s.conn.Close(errors.New("worker stopping"))
		<-served
		s.abort()
		return true, errors.New("worker stopping")
	}
}

// stop refuses new commands, interrupts the running ones and waits up to
// StopTimeout for them to report, then cancels the rest and waits for them.
// The connection stays open meanwhile, so that the interrupted commands'
// last updates and completions reach the master.
func (s *session) stop(why string) {
	s.mu.Lock()
	s.stopping = true
	running := make([]command.Command, 0, len(s.cmds))
	for _, c := range s.cmds {
		running = append(running, c)
	}
	s.mu.Unlock()
	if len(running) > 0 {
		s.log.Info("interrupting running commands", "count", len(running), "why", why)
	}
	for _, c := range running {
		c.Interrupt(why)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	t := time.NewTimer(s.a.StopTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-s.conn.Done():
	case <-t.C:
		s.log.Warn("commands outlived the stop timeout; cancelling them", "timeout", s.a.StopTimeout)
	}
	s.cancel()
	<-done
}

// abort ends the commands of a lost connection: cancelling their context
// kills their processes, and their sends fail at once.
func (s *session) abort() {
	s.mu.Lock()
	s.stopping = true
	n := len(s.cmds)
	s.mu.Unlock()
	if n > 0 {
		s.log.Warn("connection lost: cancelling running commands", "count", n)
	}
	s.cancel()
	s.wg.Wait()
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
		return nil, nil
	case proto.OpStartCommand:
		return nil, s.startCommand(args)
	case proto.OpInterruptCommand:
		s.interruptCommand(args)
		return nil, nil
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
	log := s.log.With("command_id", key, "command", name)
	builder, _ := args.String("builder_name", "")

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return exception("worker is shutting down")
	}
	if _, dup := s.cmds[key]; dup {
		return exception(fmt.Sprintf("duplicate command_id %s", key))
	}
	env := command.Env{
		Basedir:  s.a.basedir,
		Environ:  s.a.environ,
		Settings: s.a.currentSettings(),
		Logger:   log,
		Ledger:   s.a.ledger,
	}
	var ledger *cmdLedger
	if d := s.a.donor; d != nil {
		ledger = &cmdLedger{inner: s.a.ledger, d: d}
		env.Ledger = ledger
		env.ProcAttr = d.lim.ProcAttr()
	}
	cmd, err := command.New(name, proto.Args(cargs), env)
	if err != nil {
		log.Warn("cannot start command", "err", err)
		return err
	}
	var dc *dcmd
	ctx := s.ctx
	if d := s.a.donor; d != nil {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(s.ctx)
		dc = d.admit(builder, args[proto.KeyBuild], s, cmd, cancel)
		ledger.c = dc
		s.dcmds[key] = dc
	}
	s.cmds[key] = cmd
	s.wg.Add(1)
	go s.run(ctx, key, id, cmd, dc, log)
	return nil
}

// run runs one command and reports its completion. On a donated desktop
// (dc set) it first waits until the command's build may run, and reports
// a build handed back with starforge_abandon instead of complete.
func (s *session) run(ctx context.Context, key string, id any, cmd command.Command, dc *dcmd, log *slog.Logger) {
	defer s.wg.Done()
	start := time.Now()
	abandoned := ""
	var err error
	if dc != nil {
		d := s.a.donor
		defer d.ended(dc)
		defer dc.cancel(nil) // its context is a child of the session's
		if abandoned, err = d.wait(ctx, dc); abandoned == "" && err == nil {
			log.Info("command started")
			err = runSafely(ctx, cmd, cmdSender{conn: s.conn, id: id}, log)
			abandoned = d.abandonedReason(dc)
		}
	} else {
		log.Info("command started")
		err = runSafely(ctx, cmd, cmdSender{conn: s.conn, id: id}, log)
	}

	// Out of the table before complete goes out, so that the master may
	// reuse the id as soon as it knows the command ended.
	s.mu.Lock()
	delete(s.cmds, key)
	delete(s.dcmds, key)
	s.mu.Unlock()

	var result any // nil: success, as Buildbot's complete args
	if err != nil {
		result = err.Error()
	}
	if s.ctx.Err() != nil || s.conn.Err() != nil {
		log.Warn("command ended without a connection to report to", "elapsed", time.Since(start), "err", err)
		return
	}
	if abandoned != "" {
		s.reportAbandon(id, abandoned, log)
		return
	}
	log.Info("command finished", "elapsed", time.Since(start), "err", err)
	if _, cerr := s.conn.Call(s.ctx, proto.OpComplete, map[string]any{"command_id": id, "args": result}); cerr != nil {
		log.Warn("cannot report command completion", "err", cerr)
	}
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
	s.mu.Lock()
	cmd := s.cmds[key]
	if dc := s.dcmds[key]; dc != nil {
		// A command waiting for its frozen build goes, to be stopped.
		s.a.donor.interrupt(dc)
	}
	if cmd != nil {
		// The command's own count keeps the group above zero here.
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if cmd == nil {
		s.log.Debug("interrupt for a command not running", "command_id", key)
		return
	}
	s.log.Info("interrupting command", "command_id", key, "why", why)
	// Off the read loop: an Interrupt may flush output to the master, whose
	// answer this loop must be free to read.
	go func() {
		defer s.wg.Done()
		cmd.Interrupt(why)
	}()
}

// cmdSender sends a command's messages, adding its command_id.
type cmdSender struct {
	conn *proto.Conn
	id   any
}

// Send implements command.Sender.
func (c cmdSender) Send(ctx context.Context, op string, fields map[string]any) (any, error) {
	m := make(map[string]any, len(fields)+1)
	maps.Copy(m, fields)
	m["command_id"] = c.id
	return c.conn.Call(ctx, op, m)
}
