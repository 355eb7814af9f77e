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

// Done is closed when the session's connection has ended.
func (s *Session) Done() <-chan struct{} { return s.conn.Done() }

// Disconnect closes the connection for reason.
func (s *Session) Disconnect(reason error) { s.conn.Close(reason) }

// Ping sends a print request and waits for the answer, as Buildbot does
// before a build, so a dead connection is found before work is given to it.
func (s *Session) Ping(ctx context.Context) error {
	_, err := s.conn.Call(ctx, proto.OpPrint, map[string]any{"message": "ping"})
	return err
}

// RemoteCommand is a command started on the worker.
type RemoteCommand struct {
	ID      string
	Name    string
	session *Session
	handler CommandHandler

	done    chan struct{}
	once    sync.Once
	failure error // from complete's args, or ErrWorkerLost
}

// Start sends start_command and returns once the worker accepted it. The
// command's traffic goes to h from then on (possibly before Start returns:
// a fast command may complete before its start_command is answered).
func (s *Session) Start(ctx context.Context, builder, name string, args map[string]any, h CommandHandler) (*RemoteCommand, error) {
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
		s.remove(rc.ID)
		var re *proto.RemoteError
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
// afterwards (usually with rc -1).
func (c *RemoteCommand) Interrupt(ctx context.Context, why string) error {
	_, err := c.session.conn.Call(ctx, proto.OpInterruptCommand, map[string]any{
		"command_id": c.ID,
		"why":        why,
	})
	return err
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

// HandleRequest implements proto.Handler for the worker→master ops.
func (s *Session) HandleRequest(op string, msg proto.Message) (any, error) {
	switch op {
	case proto.OpUpdate, proto.OpComplete,
		proto.OpUploadFileWrite, proto.OpUploadFileClose, proto.OpUploadFileUtime,
		proto.OpUploadDirectoryWrite, proto.OpUploadDirectoryUnpack,
		proto.OpReadFile, proto.OpReadFileClose:
	case proto.OpPause, proto.OpAbandon:
		if s.HasExtension(proto.ExtPause) {
			return s.handlePause(op, msg)
		}
		//lint:ignore ST1005 Buildbot's exact wording, which peers may match
		return nil, fmt.Errorf("Command %s does not exist.", op)
	default:
		//lint:ignore ST1005 Buildbot's exact wording, which peers may match
		return nil, fmt.Errorf("Command %s does not exist.", op)
	}
	id, err := proto.Args(msg).String("command_id", "")
	if err != nil || id == "" {
		return nil, fmt.Errorf("%s: missing command_id", op)
	}
	if op == proto.OpComplete {
		rc := s.remove(id)
		if rc == nil {
			return nil, nil // a late complete after a lost command; nothing waits for it
		}
		var failure error
		if text, ok := msg["args"].(string); ok && text != "" {
			failure = errors.New(text)
		}
		rc.finish(failure)
		return nil, nil
	}
	rc := s.lookup(id)
	if rc == nil {
		s.log.Warn("traffic for unknown command", "op", op, "command_id", id)
		return nil, fmt.Errorf("unknown command_id %q", id)
	}
	return rc.handler.HandleCommand(op, msg)
}
