package latent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/latent"
)

func init() { Register("command", newCommandDriver) }

// Command runs the commands of command_driver(start, stop, check) on the
// master, in the directory of master.star, with the instance in the
// environment:
//
//	STARFORGE_INSTANCE     the instance's name (all three commands)
//	STARFORGE_WORKER_NAME  the latent worker's name, which the worker logs in with (all three)
//	STARFORGE_MASTER       the master's worker port, host:port (start)
//	STARFORGE_PASSWORD     the instance's one-time password (start; also as
//	                       STARFORGE_WORKER_PASSWORD, which starforge-worker reads)
//
// start must start the worker and return (a worker it runs in the
// background does not hold it up); a non-zero exit is a failed start.
// stop must stop the instance and clean up, and succeed for one already
// gone. check, if given, exits 0 while the instance runs and non-zero once
// it is gone. It implements latent.Driver and latent.Checker; its methods
// are safe for concurrent use.
type Command struct {
	start, stop, check *config.ShellAction
	dir                string // where the commands run
	worker             string
	log                *slog.Logger
}

func newCommandDriver(env Env) (latent.Driver, error) {
	d := env.Worker.Driver
	if d.Start == nil || d.Stop == nil {
		return nil, errors.New("needs start and stop commands")
	}
	return NewCommand(d.Start, d.Stop, d.Check, env.ConfigDir, env.Worker.Name, env.Logger), nil
}

// NewCommand returns a driver for latent worker worker that runs start,
// stop and check (which may be nil) in dir.
func NewCommand(start, stop, check *config.ShellAction, dir, worker string, log *slog.Logger) *Command {
	if log == nil {
		log = slog.Default()
	}
	return &Command{start: start, stop: stop, check: check, dir: dir, worker: worker, log: log}
}

// Start implements latent.Driver.
func (c *Command) Start(ctx context.Context, inst latent.Instance) error {
	_, err := c.run(ctx, "start", c.start, inst.Name,
		"STARFORGE_MASTER="+inst.MasterAddr,
		"STARFORGE_PASSWORD="+inst.Password,
		"STARFORGE_WORKER_PASSWORD="+inst.Password)
	return err
}

// Stop implements latent.Driver.
func (c *Command) Stop(ctx context.Context, name string) error {
	_, err := c.run(ctx, "stop", c.stop, name)
	return err
}

// Check implements latent.Checker: without a check command every instance
// counts as running.
func (c *Command) Check(ctx context.Context, name string) error {
	if c.check == nil {
		return nil
	}
	_, err := c.run(ctx, "check", c.check, name)
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("%w: %w", err, latent.ErrGone)
	}
	return err
}

// run runs one of the commands for instance name and returns its output.
// Its output goes to a file rather than a pipe, so that a worker it
// starts in the background, which inherits the descriptors, does not keep
// it from returning.
func (c *Command) run(ctx context.Context, what string, a *config.ShellAction, name string, env ...string) (string, error) {
	var cmd *exec.Cmd
	shown := ""
	if a.Argv != nil {
		cmd = exec.Command(a.Argv[0], a.Argv[1:]...)
		shown = fmt.Sprintf("%q", a.Argv)
	} else {
		cmd = exec.Command("/bin/sh", "-c", a.Script)
		shown = fmt.Sprintf("%q", a.Script)
	}
	out, err := os.CreateTemp("", "starforge-latent-*.log")
	if err != nil {
		return "", fmt.Errorf("%s command: %w", what, err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd.Dir = c.dir
	cmd.Env = append(workerEnv(os.Environ()),
		"STARFORGE_INSTANCE="+name,
		"STARFORGE_WORKER_NAME="+c.worker)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, out
	newGroup(cmd)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s command %s: %w", what, shown, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		// The whole group: a script's children too.
		killGroup(cmd.Process.Pid, syscall.SIGKILL)
		<-waited
		err = ctx.Err()
	}
	text := tail(out.Name(), 4096)
	if err != nil {
		if text != "" {
			return text, fmt.Errorf("%s command %s in %s: %w; its output ends:\n%s", what, shown, c.dir, err, indent(text))
		}
		return text, fmt.Errorf("%s command %s in %s: %w (no output)", what, shown, c.dir, err)
	}
	if text != "" {
		c.log.Info("latent command ran", "worker", c.worker, "command", what, "instance", name, "output", text)
	}
	return text, nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
