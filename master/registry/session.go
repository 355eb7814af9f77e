package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/starforge/starforge/worker/proto"
)

// ErrWorkerLost is returned by RemoteCommand.Wait when the worker's
// connection ended before the command completed.
var ErrWorkerLost = errors.New("worker lost")

// CommandHandler receives the traffic a worker sends about one remote
// command: updates, upload data, download reads. HandleCommand is called
// from the connection's read loop in arrival order; it must not block for
// long. op is one of proto's worker→master ops other than "complete".
type CommandHandler interface {
	HandleCommand(op string, msg proto.Message) (result any, err error)
}

// Session is one attached worker connection. Its methods are safe for
// concurrent use.
type Session struct {
	Name        string
	Remote      string
	ConnectedAt time.Time

	log      *slog.Logger
	conn     *proto.Conn
	info     map[string]any // set during the handshake, read-only after
	exts     []string       // the agreed extensions; set during the handshake, read-only after
	detached chan struct{}
	pause    pauseState
	resume   resumeState // guarded by mu

	mu       sync.Mutex
	nextID   int64
	commands map[string]*RemoteCommand
	lost     error
}

func newSession(name, remote string, log *slog.Logger) *Session {
	return &Session{
		Name:        name,
		Remote:      remote,
		ConnectedAt: time.Now(),
		log:         log,
		detached:    make(chan struct{}),
		commands:    make(map[string]*RemoteCommand),
	}
}

// Info returns the worker's get_worker_info map. Do not modify it.
func (s *Session) Info() map[string]any { return s.info }

// InfoString returns one string field of the worker info, or "".
func (s *Session) InfoString(key string) string {
	v, _ := s.info[key].(string)
	return v
}

// Basedir is the worker's base directory, as it reported it.
func (s *Session) Basedir() string { return s.InfoString("basedir") }

// Windows reports whether the worker joins paths the Windows way.
func (s *Session) Windows() bool { return s.InfoString("system") == "nt" }

// Join joins path elements with the worker's separator; an absolute
// element restarts the path, as os.path.join does.
func (s *Session) Join(elem ...string) string {
	if !s.Windows() {
		out := ""
		for _, e := range elem {
			if strings.HasPrefix(e, "/") || out == "" {
				out = e
				continue
			}
			out = path.Join(out, e)
		}
		return out
	}
	out := ""
	for _, e := range elem {
		e = strings.ReplaceAll(e, "/", `\`)
		if out == "" || strings.HasPrefix(e, `\`) || (len(e) > 1 && e[1] == ':') {
			out = e
			continue
		}
		out = strings.TrimRight(out, `\`) + `\` + e
	}
	return out
}

// Done is closed when the session's connection has ended. With the resume
// extension the session may be taken up by the next connection of its
// worker: Start and Ping follow it there.
func (s *Session) Done() <-chan struct{} { return s.conn.Done() }

// Disconnect closes the connection for reason. The worker's commands are
// not held for a reconnect.
func (s *Session) Disconnect(reason error) {
	s.mu.Lock()
	s.resume.noHold = true
	s.mu.Unlock()
	s.conn.Close(reason)
}

// Ping sends a print request and waits for the answer, as Buildbot does
// before a build, so a dead connection is found before work is given to it.
// While the worker is away (resume extension) it waits for it to come back.
func (s *Session) Ping(ctx context.Context) error {
	for {
		cur, err := s.live(ctx)
		if err != nil {
			return err
		}
		_, err = cur.conn.Call(ctx, proto.OpPrint, map[string]any{"message": "ping"})
		if err == nil || !cur.resumable() || cur.conn.Err() == nil {
			return err
		}
		if err := cur.awaitSettled(ctx); err != nil {
			return err
		}
		s = cur
	}
}

// RemoteCommand is a command started on the worker.
type RemoteCommand struct {
	ID      string
	Name    string
	handler CommandHandler

	mu sync.Mutex
	// session carries the command's traffic; it changes when a reconnect
	// takes the command up (resume extension).
	session *Session
	// pending is an interrupt asked for while the command was being taken
	// up by a reconnect; it is sent once it was.
	pending string

	// seqMu serialises the handling of numbered messages (resume
	// extension); seq is the number of the last one handled, and last its
	// answer, given again when the worker repeats it after a reconnect.
	seqMu   sync.Mutex
	seq     int64
	lastRes any
	lastErr error

	done    chan struct{}
	once    sync.Once
	failure error // from complete's args, or ErrWorkerLost
}

// Start sends start_command and returns once the worker accepted it. The
// command's traffic goes to h from then on (possibly before Start returns:
// a fast command may complete before its start_command is answered).
// While the worker is away (resume extension) Start waits for it to come
// back; if the connection drops before the worker answered, Start learns
// from the reconnect whether the worker has the command, and starts it
// again on the new connection if it has not.
func (s *Session) Start(ctx context.Context, builder, name string, args map[string]any, h CommandHandler) (*RemoteCommand, error) {
	for {
		cur, err := s.live(ctx)
		if err != nil {
			return nil, fmt.Errorf("start %s on %s: %w", name, s.Name, err)
		}
		rc, err := cur.start(ctx, builder, name, args, h)
		if !errors.Is(err, errDropped) {
			return rc, err
		}
		if err := cur.awaitSettled(ctx); err != nil {
			return nil, fmt.Errorf("start %s on %s: %w", name, s.Name, err)
		}
		if rc.owner() != cur {
			return rc, nil // the worker reported it after reconnecting
		}
		if werr := rc.Wait(ctx); !errors.Is(werr, errNotReported) {
			return nil, fmt.Errorf("start %s on %s: %w", name, s.Name, werr)
		}
		s = cur // the worker never got it: start it on the next connection
	}
}

// errDropped: start_command's connection dropped before its answer, and
// the session may be taken up by a reconnect.
var errDropped = errors.New("connection dropped before the worker answered")

func (s *Session) start(ctx context.Context, builder, name string, args map[string]any, h CommandHandler) (*RemoteCommand, error) {
	s.mu.Lock()
	if s.lost != nil {
		err := s.lost
		s.mu.Unlock()
		return nil, fmt.Errorf("start %s on %s: %w: %v", name, s.Name, ErrWorkerLost, err)
	}
	s.nextID++
	rc := &RemoteCommand{
		ID:      strconv.FormatInt(s.nextID, 10),
		Name:    name,
		session: s,
		handler: h,
		done:    make(chan struct{}),
	}
	s.commands[rc.ID] = rc
	s.mu.Unlock()

	msg := map[string]any{
		"builder_name": builder,
		"command_id":   rc.ID,
		"command_name": name,
		"args":         args,
	}
	s.addBuild(ctx, msg)
	_, err := s.conn.Call(ctx, proto.OpStartCommand, msg)
	if err != nil {
		var re *proto.RemoteError
		if !errors.As(err, &re) && s.resumable() && s.conn.Err() != nil {
			// Held with the session's other commands: the reconnect says
			// whether the worker has it.
			return rc, errDropped
		}
		s.remove(rc.ID)
		if errors.As(err, &re) {
			return nil, fmt.Errorf("worker %s refused %s: %s", s.Name, name, re.Msg)
		}
		if errors.Is(err, proto.ErrConnClosed) {
			return nil, fmt.Errorf("start %s on %s: %w: %v", name, s.Name, ErrWorkerLost, err)
		}
		return nil, fmt.Errorf("start %s on %s: %w", name, s.Name, err)
	}
	return rc, nil
}

// Wait blocks until the command completes, the worker is lost, or ctx ends.
// It returns nil for a command that completed normally (its updates tell
// how it went), the worker's failure text as an error, or ErrWorkerLost.
func (c *RemoteCommand) Wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.failure
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the command has completed or the worker was lost.
func (c *RemoteCommand) Done() <-chan struct{} { return c.done }

// Interrupt sends interrupt_command. The command still completes normally
// afterwards (usually with rc -1). While the worker is away (resume
// extension) the command ends at once, failing with an error that says so,
// and the worker, which no longer finds it listed, kills it when it
// reconnects (or when its grace passes).
func (c *RemoteCommand) Interrupt(ctx context.Context, why string) error {
	var err error
	for range 3 {
		s := c.owner()
		done, moved := s.interruptHeld(c, why)
		if done {
			return nil
		}
		if moved {
			continue
		}
		_, err = s.conn.Call(ctx, proto.OpInterruptCommand, map[string]any{
			"command_id": c.ID,
			"why":        why,
		})
		if err == nil || !s.resumable() || s.conn.Err() == nil {
			return err
		}
		// The connection dropped: once the registry decided about the
		// session, the command is held, moved or failed.
		select {
		case <-s.detached:
		case <-ctx.Done():
			return err
		}
	}
	return err
}

// owner returns the session carrying c's traffic.
func (c *RemoteCommand) owner() *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// received returns how many numbered messages of c were handled.
func (c *RemoteCommand) received() int64 {
	c.seqMu.Lock()
	defer c.seqMu.Unlock()
	return c.seq
}

func (c *RemoteCommand) finish(failure error) {
	c.once.Do(func() {
		c.failure = failure
		close(c.done)
	})
}

func (s *Session) remove(id string) *RemoteCommand {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.commands[id]
	delete(s.commands, id)
	return rc
}

func (s *Session) lookup(id string) *RemoteCommand {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands[id]
}

func (s *Session) failAll(reason error) {
	s.mu.Lock()
	if reason == nil {
		reason = errors.New("connection closed")
	}
	s.lost = reason
	cmds := s.commands
	s.commands = map[string]*RemoteCommand{}
	s.mu.Unlock()
	for _, c := range cmds {
		c.finish(fmt.Errorf("%w: %v", ErrWorkerLost, reason))
	}
}

// neverAttached ends a session whose handshake or attach failed: commands
// it took up from a held session fail, and waiters see it detached.
func (s *Session) neverAttached(reason error) {
	s.failAll(reason)
	close(s.detached)
}

// HandleRequest implements proto.Handler for the worker→master ops.
func (s *Session) HandleRequest(op string, msg proto.Message) (any, error) {
	switch op {
	case proto.OpUpdate, proto.OpComplete,
		proto.OpUploadFileWrite, proto.OpUploadFileClose, proto.OpUploadFileUtime,
		proto.OpUploadDirectoryWrite, proto.OpUploadDirectoryUnpack,
		proto.OpReadFile, proto.OpReadFileClose:
	case proto.OpPause:
		if s.HasExtension(proto.ExtPause) {
			return s.handlePause(op, msg)
		}
		return nil, noSuchOp(op)
	case proto.OpAbandon:
		if !s.HasExtension(proto.ExtPause) {
			return nil, noSuchOp(op)
		}
	default:
		return nil, noSuchOp(op)
	}
	var id, reason string
	var err error
	if op == proto.OpAbandon {
		id, reason, err = proto.DecodeAbandon(msg)
		if err != nil {
			return nil, err
		}
	} else if id, err = proto.Args(msg).String("command_id", ""); err != nil || id == "" {
		return nil, fmt.Errorf("%s: missing command_id", op)
	}
	rc := s.lookup(id)
	if rc == nil {
		if op == proto.OpComplete || op == proto.OpAbandon {
			return nil, nil // a late end after a lost command; nothing waits for it
		}
		s.log.Warn("traffic for unknown command", "op", op, "command_id", id)
		return nil, fmt.Errorf("unknown command_id %q", id)
	}
	seq, numbered, err := s.seqNumber(msg)
	if err != nil {
		return nil, err
	}
	if !numbered {
		return s.commandOp(rc, op, msg, reason)
	}
	rc.seqMu.Lock()
	defer rc.seqMu.Unlock()
	switch {
	case seq <= rc.seq:
		// Sent again after a reconnect: the first copy was handled.
		s.log.Debug("repeated message of a resumed command", "op", op, "command_id", id, "seq", seq)
		if seq == rc.seq {
			return rc.lastRes, rc.lastErr
		}
		return nil, nil
	case seq > rc.seq+1:
		err := fmt.Errorf("%w: messages %d to %d of command %s never arrived", ErrWorkerLost, rc.seq+1, seq-1, id)
		s.remove(id)
		rc.finish(err)
		return nil, err
	}
	res, err := s.commandOp(rc, op, msg, reason)
	rc.seq, rc.lastRes, rc.lastErr = seq, res, err
	return res, err
}

// commandOp handles one message about rc.
func (s *Session) commandOp(rc *RemoteCommand, op string, msg proto.Message, reason string) (any, error) {
	switch op {
	case proto.OpComplete:
		if s.remove(rc.ID) == nil {
			return nil, nil
		}
		var failure error
		if text, ok := msg["args"].(string); ok && text != "" {
			failure = errors.New(text)
		}
		rc.finish(failure)
		return nil, nil
	case proto.OpAbandon:
		if s.remove(rc.ID) == nil {
			return nil, nil
		}
		s.log.Info("worker handed a build back", "command_id", rc.ID, "command", rc.Name, "reason", reason)
		rc.finish(&AbandonedError{Worker: s.Name, Reason: reason})
		return nil, nil
	}
	return rc.handler.HandleCommand(op, msg)
}

// noSuchOp is Buildbot's answer to an op it does not know.
func noSuchOp(op string) error {
	//lint:ignore ST1005 Buildbot's exact wording, which peers may match
	return fmt.Errorf("Command %s does not exist.", op)
}
