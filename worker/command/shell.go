package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/starforge/starforge/worker/proto"
)

// The shell command runs a program for a build step, as Buildbot's
// commands/shell.py and runprocess.py do: it reports a header describing
// what runs, streams stdout, stderr and watched logfiles, enforces the
// timeouts, and ends with rc, the elapsed time and, when it had to kill
// the process, a failure_reason.
//
// Beyond Buildbot: signals go to the whole process group and the group is
// killed once the main process has exited (so neither a timed-out step's
// grandchildren nor a background process left holding the output pipes
// survive the step); a cancelled Run context kills the command (Buildbot's
// msgpack worker orphans it); no output byte is lost to line splitting.

func init() {
	register(newShell, proto.CmdShell)
}

// Timing knobs. They are variables so that tests can shorten them; nothing
// else changes them.
var (
	// logfilePollInterval is how often watched logfiles are checked for
	// new content (Buildbot polls every 2 s).
	logfilePollInterval = time.Second
	// stragglerGrace is how long the output pipes may stay open after the
	// main process exited, because something it started still holds them,
	// before the process group is killed.
	stragglerGrace = time.Second
	// pipeCloseGrace is how long to wait for the pipes to close once the
	// group was killed, before abandoning them (a process that left the
	// group, e.g. with setsid, may hold them forever).
	pipeCloseGrace = 2 * time.Second
	// killEscalation is how long a signal other than KILL gets before the
	// next, and how long KILL gets before the worker gives up waiting
	// (Buildbot's BACKUP_TIMEOUT).
	killEscalation = 5 * time.Second
)

// shellCommand is a validated shell command. Run may be called once;
// Interrupt at any time, from any goroutine.
type shellCommand struct {
	*interruptFlag
	freezer
	env    Env
	logger *slog.Logger

	workdir  string
	argv     []string // what runs
	isShell  bool     // command was a string, run by the system shell
	display  string   // the header's first line (fake values of obfuscated args)
	argvRepr string   // the command as Python prints it, for the header and kill messages
	environ  map[string]string

	wantStdout, wantStderr bool
	logfiles               []logfileSpec
	logfilesRepr           string
	timeout, maxTime       float64 // seconds; 0 means none
	timeoutText            string  // as the master wrote it
	maxTimeText            string
	hasSigterm             bool
	sigtermTime            float64
	interruptSig           os.Signal
	usePTY                 bool
	logEnviron             bool
	stdin                  []byte // nil: /dev/null
	maxLines               int64  // 0: unlimited
}

type logfileSpec struct {
	name, path string
	follow     bool
}

func newShell(args proto.Args, env Env) (Command, error) {
	c, err := parseShellArgs(args, env)
	if err != nil {
		return nil, fmt.Errorf("shell: %w", err)
	}
	return c, nil
}

func parseShellArgs(args proto.Args, env Env) (*shellCommand, error) {
	if err := args.Require("workdir", "command"); err != nil {
		return nil, err
	}
	c := &shellCommand{interruptFlag: newInterruptFlag(), env: env, logger: env.Logger}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	var err error
	if c.workdir, err = args.String("workdir", ""); err != nil {
		return nil, err
	}
	if c.workdir == "" {
		return nil, errors.New(`argument "workdir" is empty`)
	}
	if !filepath.IsAbs(c.workdir) {
		// PB-era masters send builder-relative paths.
		c.workdir = filepath.Join(env.Basedir, c.workdir)
	}

	base := env.Environ
	if base == nil {
		base = environMap(os.Environ())
	}
	envArg, err := args.Map("env")
	if err != nil {
		return nil, err
	}
	if c.environ, err = childEnviron(base, envArg); err != nil {
		return nil, err
	}
	c.environ["PWD"] = c.workdir // as Buildbot does; the shell may not set it

	if err := c.parseCommand(args["command"]); err != nil {
		return nil, err
	}

	if c.wantStdout, err = args.Bool("want_stdout", true); err != nil {
		return nil, err
	}
	if c.wantStderr, err = args.Bool("want_stderr", true); err != nil {
		return nil, err
	}
	if err := c.parseLogfiles(args["logfiles"]); err != nil {
		return nil, err
	}
	if c.timeout, c.timeoutText, err = seconds(args, "timeout"); err != nil {
		return nil, err
	}
	if c.maxTime, c.maxTimeText, err = seconds(args, "maxTime"); err != nil {
		return nil, err
	}
	if c.sigtermTime, c.hasSigterm, err = args.OptFloat("sigtermTime"); err != nil {
		return nil, err
	}
	c.sigtermTime = max(c.sigtermTime, 0)
	sigName, err := args.String("interruptSignal", "KILL")
	if err != nil {
		return nil, err
	}
	if sigName == "" {
		sigName = "KILL"
	}
	if c.interruptSig, err = parseSignal(sigName); err != nil {
		return nil, fmt.Errorf("argument \"interruptSignal\": %w", err)
	}
	if c.usePTY, err = args.Bool("usePTY", false); err != nil {
		return nil, err
	}
	if c.logEnviron, err = args.Bool("logEnviron", true); err != nil {
		return nil, err
	}
	if c.stdin, err = args.Bytes("initial_stdin"); err != nil {
		return nil, err
	}
	maxLines, ok, err := args.OptInt("max_lines")
	if err != nil {
		return nil, err
	}
	if ok && maxLines > 0 {
		c.maxLines = maxLines
	}
	return c, nil
}

// parseCommand accepts a string (run by the system shell) or a list of
// arguments (run directly). A list element may be Buildbot's obfuscated
// triple ["obfuscated", real, fake]: the real value runs, the fake one is
// shown. (The Python worker misses these over msgpack and shows the
// secret; see the protocol notes, 2.11.)
func (c *shellCommand) parseCommand(v any) error {
	switch t := v.(type) {
	case string, []byte:
		s := argString(t)
		if s == "" {
			return errors.New(`argument "command" is empty`)
		}
		c.isShell = true
		c.argv = shellArgv(s, c.environ)
		c.display = s
		c.argvRepr = pyBytes(s)
		return nil
	case []any:
		if len(t) == 0 {
			return errors.New(`argument "command" is an empty list`)
		}
		real := make([]string, len(t))
		fake := make([]string, len(t))
		for i, e := range t {
			switch a := e.(type) {
			case string, []byte:
				real[i] = argString(a)
				fake[i] = real[i]
			case []any:
				if len(a) == 3 && argString(a[0]) == "obfuscated" {
					real[i], fake[i] = argString(a[1]), argString(a[2])
					continue
				}
				return fmt.Errorf("argument \"command\"[%d]: want string, got list", i)
			case bool, nil:
				return fmt.Errorf("argument \"command\"[%d]: want string, got %T", i, e)
			default:
				if _, ok := proto.AsFloat(e); !ok {
					return fmt.Errorf("argument \"command\"[%d]: want string, got %T", i, e)
				}
				real[i] = pyRepr(e) // numbers, as Python's str() prints them
				fake[i] = real[i]
			}
		}
		c.argv = real
		c.display = shellQuote(fake)
		reprs := make([]string, len(fake))
		for i, f := range fake {
			reprs[i] = pyBytes(f)
		}
		c.argvRepr = "[" + strings.Join(reprs, ", ") + "]"
		return nil
	}
	return fmt.Errorf("argument \"command\": want string or list of strings, got %T", v)
}

func (c *shellCommand) parseLogfiles(v any) error {
	if v == nil {
		c.logfilesRepr = "{}"
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("argument \"logfiles\": want map, got %T", v)
	}
	c.logfilesRepr = pyRepr(m)
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		spec := logfileSpec{name: name}
		var file string
		switch t := m[name].(type) {
		case string, []byte:
			file = argString(t)
		case map[string]any:
			a := proto.Args(t)
			f, err := a.String("filename", "")
			if err != nil {
				return fmt.Errorf("logfile %q: %w", name, err)
			}
			if spec.follow, err = a.Bool("follow", false); err != nil {
				return fmt.Errorf("logfile %q: %w", name, err)
			}
			file = f
		default:
			return fmt.Errorf("logfile %q: want filename or {filename, follow}, got %T", name, t)
		}
		if file == "" {
			return fmt.Errorf("logfile %q: no filename", name)
		}
		if filepath.IsAbs(file) {
			spec.path = file
		} else {
			spec.path = filepath.Join(c.workdir, file)
		}
		c.logfiles = append(c.logfiles, spec)
	}
	return nil
}

// childEnviron computes a command's environment as Buildbot does: the
// worker's environment, without the keys whose value is nil, with the
// other values set after joining lists with the path separator and
// expanding ${VAR} from the worker's environment. PYTHONPATH gets the
// worker's PYTHONPATH appended; unlike Buildbot, no empty entry (which
// Python reads as "the current directory") is appended when the worker has
// none.
func childEnviron(base map[string]string, overrides map[string]any) (map[string]string, error) {
	out := make(map[string]string, len(base)+len(overrides))
	for k, v := range base {
		out[k] = v
	}
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var val string
		switch t := overrides[k].(type) {
		case nil:
			delete(out, k)
			continue
		case string, []byte:
			val = argString(t)
		case []any:
			parts := make([]string, len(t))
			for i, e := range t {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("'env' values must be strings or lists; key '%s' is incorrect", k)
				}
				parts[i] = s
			}
			val = strings.Join(parts, string(os.PathListSeparator))
		default:
			return nil, fmt.Errorf("'env' values must be strings or lists; key '%s' is incorrect", k)
		}
		if k == "PYTHONPATH" && base["PYTHONPATH"] != "" {
			val += string(os.PathListSeparator) + "${PYTHONPATH}"
		}
		out[k] = envVarRE.ReplaceAllStringFunc(val, func(m string) string {
			return base[m[2:len(m)-1]]
		})
	}
	return out, nil
}

var envVarRE = regexp.MustCompile(`\$\{[0-9a-zA-Z_]*\}`)

func environMap(kvs []string) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			m[k] = v
		}
	}
	return m
}

func environList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// seconds reads a timeout argument: nil, absent, zero or negative mean
// none (Python's "if self.timeout:"). text is the value as Python prints it.
func seconds(args proto.Args, key string) (v float64, text string, err error) {
	v, ok, err := args.OptFloat(key)
	if err != nil || !ok || v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, "", err
	}
	return v, pyRepr(args[key]), nil
}

func dur(secs float64) time.Duration { return time.Duration(secs * float64(time.Second)) }

// header returns the header Buildbot's RunProcess writes before starting.
func (c *shellCommand) header() string {
	h := runHeader{
		display: c.display, dir: c.workdir, logfiles: c.logfilesRepr, argv: c.argvRepr,
		timeout: c.timeout, timeoutText: c.timeoutText, maxTime: c.maxTime, maxTimeText: c.maxTimeText,
		stdinLen: len(c.stdin), ptyWarning: c.usePTY,
	}
	if c.logEnviron {
		h.environ = c.environ
	}
	return h.String()
}

// runHeader is what Buildbot's RunProcess reports about a process it
// starts; rmdir and cpdir, which Buildbot runs as rm and cp, print the same.
type runHeader struct {
	display, dir, logfiles, argv string
	timeout, maxTime             float64
	timeoutText, maxTimeText     string
	environ                      map[string]string // nil: not logged
	stdinLen                     int
	ptyWarning                   bool
}

func (h runHeader) String() string {
	var b strings.Builder
	if h.ptyWarning {
		b.WriteString("WARNING: disabling usePTY for this command\n")
	}
	b.WriteString(h.display + "\n")
	b.WriteString(" in dir " + h.dir)
	if h.timeout > 0 {
		b.WriteString(" (timeout " + h.timeoutText + " " + plural(h.timeout, "sec", "secs") + ")")
	}
	if h.maxTime > 0 {
		b.WriteString(" (maxTime " + h.maxTimeText + " " + plural(h.maxTime, "sec", "secs") + ")")
	}
	logfiles := h.logfiles
	if logfiles == "" {
		logfiles = "{}"
	}
	b.WriteString("\n watching logfiles " + logfiles + "\n")
	b.WriteString(" argv: " + h.argv + "\n")
	if h.environ != nil {
		b.WriteString(environHeader(h.environ))
	}
	if h.stdinLen > 0 {
		fmt.Fprintf(&b, " writing %d bytes to stdin\n", h.stdinLen)
	}
	b.WriteString(" using PTY: False\n")
	return b.String()
}

func environHeader(env map[string]string) string {
	var b strings.Builder
	b.WriteString(" environment:\n")
	for _, kv := range environList(env) {
		b.WriteString("  " + kv + "\n")
	}
	return b.String()
}

func plural(n float64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Run implements Command.
func (c *shellCommand) Run(ctx context.Context, s Sender) error {
	out, err := newOutput(ctx, s, c.env.Settings, c.logger)
	if err != nil {
		return fmt.Errorf("shell: %w", err)
	}
	runErr := c.run(ctx, out)
	closeErr := out.Close(ctx)
	switch {
	case runErr != nil:
		return runErr
	case ctx.Err() != nil:
		return fmt.Errorf("shell killed: %w", context.Cause(ctx))
	case closeErr != nil:
		return fmt.Errorf("shell: %w", closeErr)
	}
	return nil
}

// finish writes the closing entries: rc, the elapsedTime header and
// elapsed, after all text.
func finish(out *Output, rc int, elapsed time.Duration) {
	out.EndLines()
	out.Add(proto.UpdRC, rc)
	out.Write(proto.UpdHeader, fmt.Appendf(nil, "elapsedTime=%0.6f\n", elapsed.Seconds()))
	out.Add(proto.UpdElapsed, elapsed.Seconds())
}

// run runs the process and writes every update; it returns an error only
// for the complete message (the process could not be stopped).
func (c *shellCommand) run(ctx context.Context, out *Output) error {
	out.Write(proto.UpdHeader, []byte(c.header()))
	select {
	case <-c.interrupted():
		out.Write(proto.UpdHeader, []byte("command interrupted before it started\n"))
		finish(out, -1, 0)
		return nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("shell not started: %w", err)
	}
	// Buildbot creates a missing workdir (the trace's first shell step runs
	// in a directory nothing else created).
	if err := os.MkdirAll(c.workdir, 0o777); err != nil {
		out.Write(proto.UpdHeader, fmt.Appendf(nil, "workdir %s cannot be created: %v\n", c.workdir, err))
		finish(out, -1, 0)
		return nil
	}
	r := &shellRun{c: c, out: out, maxLinesHit: make(chan struct{})}
	return r.run(ctx)
}

// shellRun is one execution of a shellCommand.
type shellRun struct {
	c   *shellCommand
	out *Output

	start        time.Time
	lastActivity atomic.Int64 // time.Since(start) at the last output, in ns
	lines        atomic.Int64 // for max_lines
	overLines    atomic.Bool
	linesOnce    sync.Once
	maxLinesHit  chan struct{} // closed when max_lines is exceeded

	helpers sync.WaitGroup // pipe readers and the stdin writer
	readers sync.WaitGroup
	pipes   []*os.File // read ends, closed to abandon stuck readers
	stdinW  *os.File
	closeIn sync.Once
}

func (r *shellRun) run(ctx context.Context) error {
	c, out := r.c, r.out
	path, err := lookPathIn(c.argv[0], c.environ["PATH"], c.workdir)
	if err != nil {
		return r.startFailed(err)
	}
	cmd := &exec.Cmd{Path: path, Args: c.argv, Dir: c.workdir, Env: environList(c.environ)}

	outR, outW, err := os.Pipe()
	if err != nil {
		return r.startFailed(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW)
		return r.startFailed(err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	var inR *os.File
	if c.stdin != nil {
		if inR, r.stdinW, err = os.Pipe(); err != nil {
			closeAll(outR, outW, errR, errW)
			return r.startFailed(err)
		}
		cmd.Stdin = inR
	}
	prepareCmd(cmd, c.isShell)
	if c.env.ProcAttr != nil {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		c.env.ProcAttr(cmd.SysProcAttr)
	}

	// Watchers look at their files before the process starts, so that a
	// logfile left over from an earlier build is only sent once it changes.
	watch := newLogWatchers(c.logfiles)

	// A command frozen before its start waits, unstarted; an interrupt or
	// a cancel lets it start only to be stopped at once.
	select {
	case <-c.freezer.wait():
	case <-c.interrupted():
	case <-ctx.Done():
	}
	r.start = time.Now()
	g, err := startGroup(cmd)
	// The child has its own copies of the write ends (or failed to start);
	// ours must go so that EOF arrives when the child's side closes.
	closeAll(outW, errW, inR)
	if err != nil {
		closeAll(outR, errR, r.stdinW)
		return r.startFailed(err)
	}
	defer g.release()
	// The time without output starts again when a frozen command thaws.
	c.freezer.started(g, func() { r.lastActivity.Store(int64(time.Since(r.start))) })
	defer c.freezer.ended()
	if id := g.id(); id > 0 && c.env.Ledger != nil {
		// Recorded so that a worker killed before it could kill this
		// group does so when it starts again.
		c.env.Ledger.Started(id)
		defer c.env.Ledger.Ended(id)
	}

	r.pipes = []*os.File{outR, errR}
	r.readers.Add(2)
	r.helpers.Add(2)
	go r.readPipe(outR, proto.UpdStdout, c.wantStdout)
	go r.readPipe(errR, proto.UpdStderr, c.wantStderr)
	if r.stdinW != nil {
		r.helpers.Add(1)
		go r.writeStdin()
	}
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		watch.loop(stopWatch, r.logData)
	}()

	exited := make(chan *os.ProcessState, 1)
	go func() {
		_ = cmd.Wait() // a non-zero exit is an error here; ProcessState has it
		exited <- cmd.ProcessState
	}()

	ps, killedBy, gaveUp := r.supervise(ctx, g, exited)
	elapsed := time.Since(r.start)

	close(stopWatch)
	<-watchDone
	if !gaveUp {
		r.collectStragglers(g)
	} else {
		r.abandonPipes()
	}
	watch.final(r.logData)

	out.EndLines()
	rc := -1
	if gaveUp {
		out.Write(proto.UpdHeader, []byte("SIGKILL failed to kill process\nusing fake rc=-1\n"))
	} else {
		rc = ps.ExitCode()
		if sig, ok := exitSignal(ps); ok {
			out.Write(proto.UpdHeader, fmt.Appendf(nil, "process killed by signal %d\n", sig))
			rc = -1
		}
		if killedBy != "" {
			// Killed on purpose: -1 even if the process caught the signal
			// and exited cleanly.
			rc = -1
		}
	}
	finish(out, rc, elapsed)
	if gaveUp {
		return errors.New("SIGKILL failed to kill process")
	}
	return nil
}

// startFailed reports a process that could not be started; like a failed
// exec in Buildbot's worker it is a failed command (rc), not an exception.
func (r *shellRun) startFailed(err error) error {
	r.out.Write(proto.UpdStderr, fmt.Appendf(nil, "error starting process: %v\n", err))
	finish(r.out, -1, 0)
	return nil
}

// killStage is one step of stopping a command: send sig, then wait this
// long for the process to exit before the next step.
type killStage struct {
	sig  os.Signal
	wait time.Duration
}

// killPlan is Buildbot's sequence (TERM and sigtermTime, then
// interruptSignal) with a final KILL added, so a process that ignores a
// soft signal is not left running.
func (c *shellCommand) killPlan() []killStage {
	var plan []killStage
	if c.hasSigterm {
		plan = append(plan, killStage{sigTerm, dur(c.sigtermTime)})
		if c.interruptSig != sigTerm && c.interruptSig != sigKill {
			plan = append(plan, killStage{c.interruptSig, killEscalation})
		}
	} else if c.interruptSig != sigKill {
		plan = append(plan, killStage{c.interruptSig, killEscalation})
	}
	return append(plan, killStage{sigKill, killEscalation})
}

// supervise waits for the process to exit, enforcing the timeouts,
// max_lines, interrupts and ctx. It returns the exit state, why the
// process was killed ("" if it was not) and whether it failed to die.
func (r *shellRun) supervise(ctx context.Context, g *procGroup, exited <-chan *os.ProcessState) (ps *os.ProcessState, killedBy string, gaveUp bool) {
	c, out := r.c, r.out
	var ioC, maxC, stageC <-chan time.Time
	var ioTimer, maxTimer, stageTimer *time.Timer
	if c.timeout > 0 {
		ioTimer = time.NewTimer(dur(c.timeout))
		defer ioTimer.Stop()
		ioC = ioTimer.C
	}
	if c.maxTime > 0 {
		maxTimer = time.NewTimer(dur(c.maxTime))
		defer maxTimer.Stop()
		maxC = maxTimer.C
	}
	defer func() {
		if stageTimer != nil {
			stageTimer.Stop()
		}
	}()
	var plan []killStage
	step := func() {
		st := plan[0]
		plan = plan[1:]
		if err := g.signal(st.sig); err != nil {
			c.logger.Warn("signalling command failed", "err", err)
		}
		if stageTimer == nil {
			stageTimer = time.NewTimer(st.wait)
			stageC = stageTimer.C
		} else {
			stageTimer.Reset(st.wait)
		}
	}
	// The supervisor never waits for the master: a stalled connection must
	// not delay a kill.
	kill := func(reason, msg string, stages []killStage) {
		c.freezer.die()
		killedBy = reason
		ioC, maxC = nil, nil
		out.writeNow(proto.UpdHeader, []byte("\n"+msg+", attempting to kill\n"))
		out.kick() // let the master see it now, as Buildbot flushes on interrupt
		plan = stages
		step()
	}
	intC, ctxC, linesC := r.c.interrupted(), ctx.Done(), r.maxLinesHit
	for {
		select {
		case ps = <-exited:
			return ps, killedBy, false
		case <-intC:
			intC = nil
			c.logger.Info("interrupting command", "why", c.why())
			if killedBy == "" {
				kill("interrupt", "command interrupted", c.killPlan())
			}
		case <-ctxC:
			ctxC = nil
			// Connection lost or worker stopping: nobody will wait for a
			// graceful stop.
			if killedBy == "" {
				kill("cancel", "command cancelled: "+context.Cause(ctx).Error(), []killStage{{sigKill, killEscalation}})
			} else {
				c.freezer.die()
				plan = []killStage{{sigKill, killEscalation}}
				step()
			}
		case <-ioC:
			if frozen, _ := c.freezer.frozenTime(); frozen {
				ioTimer.Reset(dur(c.timeout))
				continue
			}
			idle := time.Since(r.start) - time.Duration(r.lastActivity.Load())
			if left := dur(c.timeout) - idle; left > 0 {
				ioTimer.Reset(left)
				continue
			}
			out.addNow(proto.UpdFailureReason, "timeout_without_output")
			kill("timeout", fmt.Sprintf("command timed out: %s seconds without output running %s", c.timeoutText, c.argvRepr), c.killPlan())
		case <-maxC:
			// Time spent frozen does not count.
			if _, frozenFor := c.freezer.frozenTime(); frozenFor > 0 {
				if left := dur(c.maxTime) - (time.Since(r.start) - frozenFor); left > 0 {
					maxTimer.Reset(left)
					continue
				}
			}
			out.addNow(proto.UpdFailureReason, "timeout")
			kill("maxTime", fmt.Sprintf("command timed out: %s seconds elapsed running %s", c.maxTimeText, c.argvRepr), c.killPlan())
		case <-linesC:
			linesC = nil
			if killedBy == "" {
				out.addNow(proto.UpdFailureReason, "max_lines_failure")
				kill("max_lines", fmt.Sprintf("command exceeds max lines: %d/%d written/allowed running %s", r.lines.Load(), c.maxLines, c.argvRepr), c.killPlan())
			}
		case <-stageC:
			if len(plan) == 0 {
				c.logger.Error("command survived SIGKILL; giving up on it")
				return nil, killedBy, true
			}
			step()
		}
	}
}

// collectStragglers runs after the main process exited: it lets the pipes
// drain for a moment, kills whatever is left of the process group (a
// background process would otherwise keep the pipes, and the step, open
// forever, and outlive the build), and waits for the readers to finish.
func (r *shellRun) collectStragglers(g *procGroup) {
	drained := waitTimeout(&r.readers, stragglerGrace)
	if err := g.signal(sigKill); err != nil {
		r.c.logger.Warn("killing the command's leftover processes failed", "err", err)
	}
	if !drained && !waitTimeout(&r.readers, pipeCloseGrace) {
		r.c.logger.Warn("output pipes still open after the process group was killed; abandoning them")
	}
	r.abandonPipes()
}

// abandonPipes closes our ends of the pipes, which ends readers and the
// stdin writer still blocked on them, and waits for them (boundedly: on
// platforms where closing does not interrupt a blocked read they are left
// to finish on their own).
func (r *shellRun) abandonPipes() {
	closeAll(r.pipes...)
	r.closeStdin()
	if !waitTimeout(&r.helpers, pipeCloseGrace) {
		r.c.logger.Warn("pipe goroutines did not stop")
	}
}

// waitTimeout waits for wg for at most d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			_ = f.Close()
		}
	}
}

func (r *shellRun) closeStdin() {
	if r.stdinW != nil {
		r.closeIn.Do(func() { _ = r.stdinW.Close() })
	}
}

func (r *shellRun) writeStdin() {
	defer r.helpers.Done()
	// A process that exits without reading makes this fail with EPIPE,
	// which is not our problem to report.
	_, _ = r.stdinW.Write(r.c.stdin)
	r.closeStdin()
}

func (r *shellRun) activity() {
	r.lastActivity.Store(int64(time.Since(r.start)))
}

// readPipe forwards one output pipe until EOF. Output a step does not want
// is still read (and counts as activity), so the process never blocks on
// a full pipe.
func (r *shellRun) readPipe(f *os.File, key string, want bool) {
	defer r.helpers.Done()
	defer r.readers.Done()
	defer f.Close()
	buf := make([]byte, 32<<10)
	lastCR := false
	for {
		n, err := f.Read(buf)
		if n > 0 {
			r.activity()
			if want && !r.overLines.Load() {
				if r.c.maxLines > 0 && r.countLines(buf[:n], &lastCR) {
					// Like Buildbot, send the read that crossed the limit
					// and drop what follows while the process is killed.
					r.overLines.Store(true)
					r.linesOnce.Do(func() { close(r.maxLinesHit) })
				}
				r.out.Write(key, buf[:n])
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				r.c.logger.Debug("reading command output", "stream", key, "err", err)
			}
			return
		}
	}
}

// countLines adds p's line ends ("\r\n", "\r" or "\n", as Buildbot counts)
// to the total and reports whether it now exceeds max_lines.
func (r *shellRun) countLines(p []byte, lastCR *bool) bool {
	n := 0
	prevCR := *lastCR
	for _, b := range p {
		switch b {
		case '\n':
			if !prevCR {
				n++
			}
			prevCR = false
		case '\r':
			n++
			prevCR = true
		default:
			prevCR = false
		}
	}
	*lastCR = prevCR
	return r.lines.Add(int64(n)) > r.c.maxLines
}

func (r *shellRun) logData(name string, p []byte) {
	r.activity()
	r.out.Log(name, p)
}

// logWatchers tail a command's logfiles by polling, as Buildbot's
// LogFileWatcher does: a file is picked up once it differs from what was
// there when the command started (so a stale file from an earlier build is
// not sent again), then read from the start, or with follow from where it
// ended when the command started.
type logWatchers []*logWatcher

type logWatcher struct {
	spec    logfileSpec
	initial os.FileInfo // before the command started; nil if absent
	f       *os.File
	buf     []byte
}

func newLogWatchers(specs []logfileSpec) logWatchers {
	ws := make(logWatchers, len(specs))
	for i, s := range specs {
		ws[i] = &logWatcher{spec: s}
		if fi, err := os.Stat(s.path); err == nil {
			ws[i].initial = fi
		}
	}
	return ws
}

// loop polls until stop is closed.
func (ws logWatchers) loop(stop <-chan struct{}, emit func(name string, p []byte)) {
	if len(ws) == 0 {
		return
	}
	t := time.NewTicker(logfilePollInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, w := range ws {
				w.poll(emit)
			}
		}
	}
}

// final reads what was added since the last poll and closes the files.
func (ws logWatchers) final(emit func(name string, p []byte)) {
	for _, w := range ws {
		w.poll(emit)
		if w.f != nil {
			_ = w.f.Close()
			w.f = nil
		}
	}
}

func (w *logWatcher) poll(emit func(name string, p []byte)) {
	if w.f == nil {
		fi, err := os.Stat(w.spec.path)
		if err != nil {
			// Deleted (perhaps to be recreated): whatever appears next is new.
			w.initial = nil
			return
		}
		if w.initial != nil && os.SameFile(w.initial, fi) && fi.Size() == w.initial.Size() && fi.ModTime().Equal(w.initial.ModTime()) {
			return // unchanged since the command started
		}
		f, err := os.Open(w.spec.path)
		if err != nil {
			return
		}
		if w.spec.follow && w.initial != nil && os.SameFile(w.initial, fi) && fi.Size() >= w.initial.Size() {
			if _, err := f.Seek(w.initial.Size(), io.SeekStart); err != nil {
				_ = f.Close()
				return
			}
		}
		w.f = f
		w.buf = make([]byte, 32<<10)
	}
	// A file rewritten from scratch (truncated below what we read) is
	// read again from its start.
	if pos, err := w.f.Seek(0, io.SeekCurrent); err == nil {
		if fi, err := w.f.Stat(); err == nil && fi.Size() < pos {
			_, _ = w.f.Seek(0, io.SeekStart)
		}
	}
	for {
		n, err := w.f.Read(w.buf)
		if n > 0 {
			emit(w.spec.name, w.buf[:n])
		}
		if err != nil || n == 0 {
			return
		}
	}
}

// interruptFlag records interrupt_command for a command; it implements
// Command.Interrupt. Interrupt may be called at any time, concurrently and
// more than once; the first reason wins.
type interruptFlag struct {
	once   sync.Once
	ch     chan struct{}
	reason string
}

func newInterruptFlag() *interruptFlag { return &interruptFlag{ch: make(chan struct{})} }

// Interrupt implements Command.
func (f *interruptFlag) Interrupt(why string) {
	f.once.Do(func() {
		f.reason = why
		close(f.ch)
	})
}

// interrupted is closed once Interrupt was called.
func (f *interruptFlag) interrupted() <-chan struct{} { return f.ch }

// why returns the interrupt's reason; only valid after interrupted() closed.
func (f *interruptFlag) why() string {
	select {
	case <-f.ch:
		return f.reason
	default:
		return ""
	}
}

// argString converts a str or bin argument value to a string.
func argString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case []byte:
		return string(t)
	}
	return ""
}

// shellQuote joins args for display the way Buildbot's shell_quote does
// (shlex.quote, with "" for an empty argument).
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		switch {
		case a == "":
			q[i] = `""`
		case shlexSafe.MatchString(a):
			q[i] = a
		default:
			q[i] = "'" + strings.ReplaceAll(a, "'", `'"'"'`) + "'"
		}
	}
	return strings.Join(q, " ")
}

var shlexSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// pyBytes renders s as Python 3 prints a bytes object: b'...'.
func pyBytes(s string) string { return "b" + pyQuote(s, true) }

// pyQuote renders s as Python's repr does for str (or, with asBytes, for
// bytes: every non-ASCII byte escaped).
func pyQuote(s string, asBytes bool) string {
	quote := byte('\'')
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\' || c == quote:
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f || (asBytes && c >= 0x80):
			fmt.Fprintf(&b, `\x%02x`, c)
		case c >= 0x80:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				fmt.Fprintf(&b, `\x%02x`, c)
			} else {
				b.WriteString(s[i : i+size])
			}
			i += size
			continue
		default:
			b.WriteByte(c)
		}
		i++
	}
	b.WriteByte(quote)
	return b.String()
}

// pyRepr renders a decoded msgpack value as Python's repr would, for
// header lines that Buildbot writes with repr (logfiles, numbers).
func pyRepr(v any) string {
	switch t := v.(type) {
	case nil:
		return "None"
	case bool:
		if t {
			return "True"
		}
		return "False"
	case string:
		return pyQuote(t, false)
	case []byte:
		return pyBytes(string(t))
	case float32:
		return pyFloat(float64(t))
	case float64:
		return pyFloat(t)
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			parts[i] = pyRepr(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = pyQuote(k, false) + ": " + pyRepr(t[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	if n, ok := proto.AsInt(v); ok {
		return strconv.FormatInt(n, 10)
	}
	return fmt.Sprint(v)
}

func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	case f == math.Trunc(f) && math.Abs(f) < 1e16:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
