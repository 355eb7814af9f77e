// Package command implements the remote commands a worker runs for the
// master (shell, file transfers and file-system operations), as Buildbot's
// msgpack protocol defines their arguments and updates.
package command

import (
	"context"
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"github.com/starforge/starforge/worker/proto"
)

// Sender carries one running command's messages to the master.
type Sender interface {
	// Send sends a request with op and fields on behalf of the command (the
	// caller adds command_id) and waits for the master's response, whose
	// result it returns. It fails once the connection is gone.
	Send(ctx context.Context, op string, fields map[string]any) (any, error)
}

// Settings are the output-processing settings the master sets with
// set_worker_settings; they apply to commands started afterwards.
type Settings struct {
	// NewlineRE is the master's newline_re (a Python regular expression);
	// matches are replaced by "\n".
	NewlineRE string
	// MaxLineLength splits longer lines (without losing bytes).
	MaxLineLength int
	// BufferSize: an update is sent when this many bytes are buffered.
	BufferSize int
	// BufferTimeout: an update is sent this long after the first buffered item.
	BufferTimeout time.Duration
}

// DefaultSettings are Buildbot's defaults, used until the master sets others.
func DefaultSettings() Settings {
	return Settings{
		NewlineRE:     proto.DefaultNewlineRE,
		MaxLineLength: proto.DefaultMaxLineLength,
		BufferSize:    proto.DefaultBufferSize,
		BufferTimeout: time.Duration(proto.DefaultBufferTimeout * float64(time.Second)),
	}
}

// Env is what a command may know of its worker.
type Env struct {
	Basedir  string            // the worker's base directory (absolute)
	Environ  map[string]string // the worker's environment, for ${VAR} and inheritance
	Settings Settings
	Logger   *slog.Logger
	Ledger   ProcessLedger // may be nil
	// ProcAttr, if set, adjusts the attributes of every process a command
	// starts (a donated desktop's worker starts them in a cgroup).
	ProcAttr func(*syscall.SysProcAttr)
}

// ProcessLedger remembers the process groups of running commands, so that
// a worker killed before it could kill them (kill -9) kills them when it
// starts again. Implementations are safe for concurrent use.
type ProcessLedger interface {
	Started(pgid int)
	Ended(pgid int)
}

// Command is one started remote command.
type Command interface {
	// Run executes the command, sends its updates (ending with rc and
	// elapsed) through s, and returns when it is done and every update has
	// been sent. A non-nil error is the failure text of the complete
	// message; a command that ran and exited non-zero is not an error (its
	// rc says so).
	Run(ctx context.Context, s Sender) error
	// Interrupt asks a running command to stop, as interrupt_command does.
	// It is safe to call concurrently with Run, more than once, and after
	// Run returned.
	Interrupt(why string)
}

// Factory validates args and returns a command ready to Run. Validation
// errors are reported to the master as the start_command exception.
type Factory func(args proto.Args, env Env) (Command, error)

// registry maps command_name (and Buildbot's older camelCase aliases) to
// factories; each command's file registers itself in init.
var registry = map[string]Factory{}

func register(f Factory, names ...string) {
	for _, n := range names {
		registry[n] = f
	}
}

// New returns the command named name, built from args. An unknown name gives
// the error text Buildbot's worker gives.
func New(name string, args proto.Args, env Env) (Command, error) {
	f, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unrecognized WorkerCommand '%s'", name)
	}
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	return f(args, env)
}

// Names returns the registered command names with their versions, for
// get_worker_info's worker_commands.
func Names() map[string]string {
	out := make(map[string]string, len(registry))
	for n := range registry {
		out[n] = "3.1"
	}
	return out
}
