package command

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/starforge/starforge/worker/proto"
)

// rmdir removes directory trees. Buildbot's worker runs `rm -rf PATH` for
// each path (and, if that fails, `chmod -Rf u+rwx PATH` and rm again); we
// do the same natively, so it works alike on every platform and can be
// interrupted between entries, and report it with the header rm would get.

func init() {
	register(newRmdir, proto.CmdRmdir)
}

type rmdirCommand struct {
	*interruptFlag
	env    Env
	logger *slog.Logger
	paths  []string
	limits nativeLimits
	// environ is listed in the header when logEnviron is set, as the
	// environment rm would have run with.
	environ map[string]string
}

func newRmdir(args proto.Args, env Env) (Command, error) {
	if err := args.Require("paths"); err != nil {
		return nil, fmt.Errorf("rmdir: %w", err)
	}
	var paths []string
	if s, ok := args["paths"].(string); ok {
		paths = []string{s} // lenient: a single path
	} else {
		var err error
		if paths, err = args.Strings("paths"); err != nil {
			return nil, fmt.Errorf("rmdir: %w", err)
		}
	}
	if len(paths) == 0 {
		return nil, errors.New(`rmdir: argument "paths" is empty`)
	}
	for i, p := range paths {
		if p == "" {
			return nil, fmt.Errorf("rmdir: paths[%d] is empty", i)
		}
		if !filepath.IsAbs(p) {
			paths[i] = filepath.Join(env.Basedir, p)
		}
	}
	limits, environ, err := parseNativeArgs(args, env)
	if err != nil {
		return nil, fmt.Errorf("rmdir: %w", err)
	}
	return &rmdirCommand{
		interruptFlag: newInterruptFlag(), env: env, logger: loggerOr(env.Logger),
		paths: paths, limits: limits, environ: environ,
	}, nil
}

// Run implements Command.
func (c *rmdirCommand) Run(ctx context.Context, s Sender) error {
	out, err := newOutput(ctx, s, c.env.Settings, c.logger)
	if err != nil {
		return fmt.Errorf("rmdir: %w", err)
	}
	start := time.Now()
	if notStarted(out, c.interruptFlag) {
		return closeOutput(ctx, out, "rmdir")
	}
	rc := 0
	for _, p := range c.paths {
		pstart := time.Now()
		argv := []string{"rm", "-rf", p}
		out.Write(proto.UpdHeader, []byte(c.limits.header(shellQuote(argv), c.env.Basedir, argv, c.environ)))
		run := nativeRun{out: out, limits: c.limits, argvRepr: pyArgv(argv), intr: c.interruptFlag, logger: c.logger}
		var failed []error
		killed := run.do(ctx, func(ctx context.Context, touch func()) {
			failed = removeTree(ctx, p, touch)
			if len(failed) > 0 && ctx.Err() == nil {
				// Like Buildbot: make the tree writable and try again (a
				// read-only directory's entries cannot be unlinked).
				chmodTree(ctx, p, touch)
				failed = removeTree(ctx, p, touch)
			}
		})
		switch {
		case killed:
			rc = -1
		case len(failed) > 0:
			out.Write(proto.UpdStderr, []byte(errorLines("rm", "cannot remove", failed)))
			rc = 1
		}
		out.Write(proto.UpdHeader, fmt.Appendf(nil, "elapsedTime=%0.6f\n", time.Since(pstart).Seconds()))
		if killed {
			break
		}
	}
	out.EndLines()
	out.Add(proto.UpdRC, rc)
	out.Add(proto.UpdElapsed, time.Since(start).Seconds())
	return closeOutput(ctx, out, "rmdir")
}

// notStarted reports (and writes the updates for) an interrupt that came
// before the command started: nothing is done, rc is -1.
func notStarted(out *Output, f *interruptFlag) bool {
	select {
	case <-f.interrupted():
	default:
		return false
	}
	out.Write(proto.UpdHeader, []byte("command interrupted before it started\n"))
	out.Add(proto.UpdRC, -1)
	out.Add(proto.UpdElapsed, 0.0)
	return true
}

func closeOutput(ctx context.Context, out *Output, name string) error {
	if err := out.Close(ctx); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// removeTree removes path and everything below it without following
// symlinks, continuing past failures as rm -rf does; it returns the
// failures. A missing path is not a failure.
func removeTree(ctx context.Context, path string, touch func()) []error {
	var errs []error
	removeTreeInto(ctx, path, touch, &errs)
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return errs
}

func removeTreeInto(ctx context.Context, path string, touch func(), errs *[]error) {
	if ctx.Err() != nil {
		return
	}
	touch()
	err := os.Remove(path) // a file, a symlink or an empty directory
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return
	}
	fi, lerr := os.Lstat(path)
	if lerr != nil {
		if !errors.Is(lerr, fs.ErrNotExist) {
			*errs = append(*errs, lerr)
		}
		return
	}
	if !fi.IsDir() {
		*errs = append(*errs, err)
		return
	}
	entries, rerr := os.ReadDir(path)
	for _, e := range entries {
		removeTreeInto(ctx, filepath.Join(path, e.Name()), touch, errs)
		if ctx.Err() != nil {
			return
		}
	}
	if rerr != nil {
		*errs = append(*errs, rerr)
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		*errs = append(*errs, err)
	}
}

// chmodTree gives the owner full access to every directory and write
// access to every file under path (chmod -Rf u+rwx, minus the needless x on
// files), top down so that unreadable directories become readable before
// they are listed. Errors are ignored, as with -f; the removal that follows
// reports what still fails.
func chmodTree(ctx context.Context, path string, touch func()) {
	if ctx.Err() != nil {
		return
	}
	touch()
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&fs.ModeSymlink != 0 {
		return
	}
	if !fi.IsDir() {
		_ = os.Chmod(path, fi.Mode().Perm()|0o600)
		return
	}
	_ = os.Chmod(path, fi.Mode().Perm()|0o700)
	entries, _ := os.ReadDir(path)
	for _, e := range entries {
		chmodTree(ctx, filepath.Join(path, e.Name()), touch)
	}
}

// maxErrorLines bounds how many failures are listed for one command.
const maxErrorLines = 100

// errorLines formats failures like coreutils: "rm: cannot remove 'x': why".
func errorLines(tool, what string, errs []error) string {
	var b strings.Builder
	for i, err := range errs {
		if i == maxErrorLines {
			fmt.Fprintf(&b, "%s: ... and %d more errors\n", tool, len(errs)-i)
			break
		}
		var pe *fs.PathError
		switch {
		case errors.As(err, &pe):
			fmt.Fprintf(&b, "%s: %s '%s': %v\n", tool, what, pe.Path, pe.Err)
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			// Reported by the kill message.
		default:
			fmt.Fprintf(&b, "%s: %v\n", tool, err)
		}
	}
	return b.String()
}

// nativeLimits are the timeout arguments of rmdir and cpdir.
type nativeLimits struct {
	timeout, maxTime         float64 // seconds; 0: none
	timeoutText, maxTimeText string
}

// parseNativeArgs reads timeout (default 120 s, nil for none), maxTime and
// logEnviron (default true), and returns the environment to list.
func parseNativeArgs(args proto.Args, env Env) (nativeLimits, map[string]string, error) {
	var l nativeLimits
	if !args.Has("timeout") {
		l.timeout, l.timeoutText = 120, "120"
	} else {
		var err error
		if l.timeout, l.timeoutText, err = seconds(args, "timeout"); err != nil {
			return l, nil, err
		}
	}
	var err error
	if l.maxTime, l.maxTimeText, err = seconds(args, "maxTime"); err != nil {
		return l, nil, err
	}
	logEnviron, err := args.Bool("logEnviron", true)
	if err != nil {
		return l, nil, err
	}
	var environ map[string]string
	if logEnviron {
		environ = env.Environ
		if environ == nil {
			environ = environMap(os.Environ())
		}
	}
	return l, environ, nil
}

func (l nativeLimits) header(display, dir string, argv []string, environ map[string]string) string {
	return runHeader{
		display: display, dir: dir, argv: pyArgv(argv),
		timeout: l.timeout, timeoutText: l.timeoutText, maxTime: l.maxTime, maxTimeText: l.maxTimeText,
		environ: environ,
	}.String()
}

// pyArgv renders argv as Buildbot prints a list command: [b'rm', b'-rf', ...].
func pyArgv(argv []string) string {
	reprs := make([]string, len(argv))
	for i, a := range argv {
		reprs[i] = pyBytes(a)
	}
	return "[" + strings.Join(reprs, ", ") + "]"
}

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

// nativeRun applies Buildbot's process limits to work done in Go: the
// timeout (seconds without progress: for rm and cp Buildbot counts output,
// which rm -rf never prints, so a large tree could time out while busy),
// maxTime, interrupt_command and the command's context.
type nativeRun struct {
	out      *Output
	limits   nativeLimits
	argvRepr string
	intr     *interruptFlag
	logger   *slog.Logger
}

// do runs fn, which must return soon after its context ends and calls
// touch whenever it makes progress. It reports whether fn was stopped, in
// which case the kill message and failure_reason were written.
func (n nativeRun) do(ctx context.Context, fn func(ctx context.Context, touch func())) (killed bool) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var last atomic.Int64
	touch := func() { last.Store(int64(time.Since(start))) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(fctx, touch)
	}()

	var ioC, maxC <-chan time.Time
	var ioTimer *time.Timer
	if n.limits.timeout > 0 {
		ioTimer = time.NewTimer(dur(n.limits.timeout))
		defer ioTimer.Stop()
		ioC = ioTimer.C
	}
	if n.limits.maxTime > 0 {
		t := time.NewTimer(dur(n.limits.maxTime))
		defer t.Stop()
		maxC = t.C
	}
	stop := func(reason, msg string) {
		// Without waiting for the master: a stalled connection must not
		// delay the stop.
		if reason != "" {
			n.out.addNow(proto.UpdFailureReason, reason)
		}
		n.out.writeNow(proto.UpdHeader, []byte("\n"+msg+", attempting to kill\n"))
		killed = true
		cancel()
		ioC, maxC = nil, nil
	}
	intC, ctxC := n.intr.interrupted(), ctx.Done()
	for {
		select {
		case <-done:
			return killed
		case <-intC:
			intC = nil
			n.logger.Info("interrupting command", "why", n.intr.why())
			if !killed {
				stop("", "command interrupted")
			}
		case <-ctxC:
			ctxC = nil
			if !killed {
				stop("", "command cancelled: "+context.Cause(ctx).Error())
			}
		case <-ioC:
			idle := time.Since(start) - time.Duration(last.Load())
			if left := dur(n.limits.timeout) - idle; left > 0 {
				ioTimer.Reset(left)
				continue
			}
			stop("timeout_without_output", fmt.Sprintf("command timed out: %s seconds without output running %s", n.limits.timeoutText, n.argvRepr))
		case <-maxC:
			stop("timeout", fmt.Sprintf("command timed out: %s seconds elapsed running %s", n.limits.maxTimeText, n.argvRepr))
		}
	}
}
