package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/registry"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/worker/proto"
)

// transferBlockSize is the chunk size asked of the worker for uploads and
// downloads; larger than Buildbot's 16 KiB to cut round trips on big files.
const transferBlockSize = 256 << 10

// interruptGrace is how long a stopped command may take to complete after
// interrupt_command before the step gives up on it.
const interruptGrace = 30 * time.Second

// command is one remote command a step sends, with what handles its traffic.
type command struct {
	name string
	args map[string]any
	// transfer handles upload/download traffic; nil for other commands.
	transfer transfer
}

// transfer is the master side of a file transfer.
type transfer interface {
	handle(op string, msg proto.Message) (any, error)
	// finish completes (ok) or abandons the transfer and returns a line
	// for the step's log describing the outcome.
	finish(ok bool) (summary string, err error)
}

// runStep runs step i and returns its result.
func (b *run) runStep(ctx context.Context, i int, sc *config.Step) result.Result {
	r := b.runner
	st := &b.steps[i]
	now := r.now()
	if err := r.Store.StartStep(ctx, st.ID, now); err != nil {
		b.log.Error("record step start", "step", sc.Name, "err", err)
		return result.Exception
	}
	st.StartedAt = now
	_ = r.Store.SetStepState(ctx, st.ID, "running")
	st.StateString = "running"
	if o := r.Observer; o != nil {
		o.StepChanged(b.build.ID, *st)
	}
	_ = b.setState(ctx, "running step "+sc.Name)

	// A step that starts after a stop (an always_run cleanup) runs to its
	// end; the stop was about the steps before it.
	reason, _ := b.stopped()
	sr := &stepRun{b: b, step: st, logs: map[string]*logSink{}, afterStop: reason != ""}
	res, state := sr.run(ctx, sc)
	if sc.HideStepIf != nil && sr.logs["stdio"] != nil {
		res, state = sr.hide(ctx, sc, res, state)
	}
	sr.closeLogs(ctx)
	b.finishStep(ctx, i, res, state)
	return res
}

// stepRun is one step in progress; it handles the traffic of its command.
type stepRun struct {
	b    *run
	step *store.Step
	logs map[string]*logSink

	transfer transfer
	rc       *int64
	reason   string // failure_reason from the worker
	lastErr  error  // a store failure while handling traffic

	afterStop bool // the build was already stopped when this step began

	// hook, when set, also sees the command's updates (actions.go).
	hook updateHook

	// Updates are stored by one writer goroutine per step, fed through a
	// bounded queue: the worker gets its answer as soon as an update is
	// queued, so it reads and sends the next output while this one is
	// committed. Order is kept; a full queue holds the worker back.
	qmu     sync.Mutex
	queue   chan []proto.Update
	qclosed bool
	drained chan struct{}
	// storeFailed is closed when storing the command's output failed (the
	// disk is full): the command is interrupted, since its output is lost.
	storeFailed chan struct{}
}

// updateQueueLen bounds the updates waiting to be stored per step (each at
// most the worker's buffer_size).
const updateQueueLen = 8

func (s *stepRun) startWriter(ctx context.Context) {
	s.qmu.Lock()
	s.queue = make(chan []proto.Update, updateQueueLen)
	s.qclosed = false // a step may run several commands (actions.go)
	s.qmu.Unlock()
	s.drained = make(chan struct{})
	failed := make(chan struct{})
	s.storeFailed = failed
	go func() {
		defer close(s.drained)
		for ups := range s.queue {
			if err := s.update(ctx, ups); err != nil && s.lastErr == nil {
				s.lastErr = err
				close(failed)
			}
		}
	}()
}

// enqueue hands updates to the writer; after drain they are dropped (a
// command that outlived its step).
func (s *stepRun) enqueue(ups []proto.Update) error {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.qclosed {
		return fmt.Errorf("step %q has ended", s.step.Name)
	}
	s.queue <- ups
	return nil
}

// drain waits until every queued update is stored. rc, reason and lastErr
// may be read after it.
func (s *stepRun) drain() {
	s.qmu.Lock()
	if !s.qclosed {
		s.qclosed = true
		close(s.queue)
	}
	s.qmu.Unlock()
	<-s.drained
}

// stopped is the build's stop as it concerns this step.
func (s *stepRun) stopped() (string, result.Result) {
	if s.afterStop {
		return "", result.None
	}
	return s.b.stopped()
}

func (s *stepRun) run(ctx context.Context, sc *config.Step) (result.Result, string) {
	stdio, err := s.log(ctx, "stdio")
	if err != nil {
		return result.Exception, "cannot store log: " + err.Error()
	}
	sc, res, state := s.prepare(ctx, stdio, sc)
	if sc == nil {
		return res, state
	}
	if act := s.action(sc); act != nil {
		return act(ctx, stdio, sc) // the kinds of actions.go
	}
	cmd, err := s.command(sc)
	if err != nil {
		stdio.header(ctx, err.Error())
		return result.Failure, err.Error()
	}
	s.transfer = cmd.transfer
	res, state = s.remote(ctx, cmd)
	res, state = finishTransfer(ctx, stdio, cmd, res, state)
	s.recordArtifacts(ctx, cmd, res)
	if s.lastErr != nil && res == result.Success {
		return s.storeFailure(ctx)
	}
	return res, state
}

// storeFailure ends a step whose output could not be stored: EXCEPTION,
// saying why as plainly as it can.
func (s *stepRun) storeFailure(ctx context.Context) (result.Result, string) {
	if errors.Is(s.lastErr, store.ErrDiskFull) {
		s.b.log.Error("step output lost: the disk is full", "step", s.step.Name, "err", s.lastErr)
		return result.Exception, "the disk is full: output not stored"
	}
	s.b.log.Error("step output lost", "step", s.step.Name, "err", s.lastErr)
	return result.Exception, "storing output failed: " + firstLine(s.lastErr.Error())
}

// remote runs cmd on the worker and maps its outcome to a result.
func (s *stepRun) remote(ctx context.Context, cmd command) (result.Result, string) {
	b := s.b
	if reason, res := s.stopped(); reason != "" {
		return res, "not started: " + reason
	}
	s.startWriter(ctx)
	rc, err := b.sess.Start(ctx, b.bcfg.Name, cmd.name, cmd.args, s)
	if err != nil {
		s.drain()
		if errors.Is(err, registry.ErrWorkerLost) {
			return result.Retry, "worker lost"
		}
		s.logs["stdio"].header(ctx, err.Error())
		return result.Exception, err.Error()
	}
	if o := b.runner.Observer; o != nil {
		o.CommandStarted(b.build.ID, *s.step, cmd.name)
	}
	if reason := b.setCurrent(rc); reason != "" && !s.afterStop {
		// A stop raced with the start; interrupt what we just started.
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = rc.Interrupt(ictx, reason)
		cancel()
	}
	err = s.wait(ctx, rc)
	s.drain()
	b.setCurrent(nil)
	if s.lastErr != nil {
		return s.storeFailure(ctx)
	}
	stopReason, stopResult := s.stopped()
	var abandoned *registry.AbandonedError
	switch {
	case errors.As(err, &abandoned):
		s.logs["stdio"].header(ctx, abandoned.Error()+"; the build goes back to the queue")
		return result.Retry, "handed back by a donated worker"
	case errors.Is(err, registry.ErrWorkerLost):
		s.logs["stdio"].header(ctx, "worker connection lost: "+err.Error())
		if stopReason != "" {
			// Stopped while its worker was away: a stopped build is not
			// retried.
			return stopResult, "interrupted: " + stopReason
		}
		return result.Retry, "worker lost"
	case err != nil:
		s.logs["stdio"].header(ctx, "command failed on the worker: "+err.Error())
		if stopReason != "" {
			return stopResult, "interrupted: " + stopReason
		}
		return result.Exception, "worker error: " + firstLine(err.Error())
	}
	if stopReason != "" {
		return stopResult, "interrupted: " + stopReason
	}
	if s.rc == nil {
		return result.Exception, "worker sent no exit code"
	}
	code := *s.rc
	switch {
	case code == 0:
		if cmd.name == proto.CmdShell {
			return result.Success, "exit 0"
		}
		return result.Success, "done"
	case s.reason == "timeout_without_output" || s.reason == "timeout":
		return result.Failure, "timed out"
	case s.reason != "":
		return result.Failure, fmt.Sprintf("failed (%s)", s.reason)
	case code < 0:
		return result.Failure, "killed"
	}
	return result.Failure, fmt.Sprintf("failed (exit %d)", code)
}

// wait waits for the command; after a stop it bounds how long the worker
// may take to finish it.
func (s *stepRun) wait(ctx context.Context, rc *registry.RemoteCommand) error {
	for {
		select {
		case <-rc.Done():
			return rc.Wait(ctx)
		case <-ctx.Done():
			return ctx.Err()
		case <-s.storeFailed:
			ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_ = rc.Interrupt(ictx, "the master cannot store the output")
			cancel()
			t := time.NewTimer(interruptGrace)
			defer t.Stop()
			select {
			case <-rc.Done():
				return rc.Wait(ctx)
			case <-t.C:
				return fmt.Errorf("the worker did not end the command %s after it was interrupted", interruptGrace)
			}
		case <-s.stopSignal():
			if s.afterStop {
				// Already stopped before this step: nothing new to wait for.
				select {
				case <-rc.Done():
					return rc.Wait(ctx)
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			t := time.NewTimer(interruptGrace)
			select {
			case <-rc.Done():
				t.Stop()
				return rc.Wait(ctx)
			case <-t.C:
				return fmt.Errorf("the worker did not end the command %s after it was interrupted", interruptGrace)
			}
		}
	}
}

// stopSignal returns a channel that is closed once the build is stopped.
func (s *stepRun) stopSignal() <-chan struct{} {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopCh == nil {
		b.stopCh = make(chan struct{})
		if b.stopReason != "" {
			close(b.stopCh)
		}
	}
	return b.stopCh
}

// command builds the remote command for a step.
func (s *stepRun) command(sc *config.Step) (command, error) {
	b := s.b
	workdir := b.sess.Join(b.builddir, orDefault(sc.Workdir, "build"))
	switch a := sc.Action.(type) {
	case *config.ShellAction:
		var c any
		if a.Argv != nil {
			argv := make([]any, len(a.Argv))
			for i, v := range a.Argv {
				argv[i] = v
			}
			c = argv
		} else {
			c = a.Script
		}
		env := map[string]any{}
		for k, v := range b.bcfg.Env {
			env[k] = v
		}
		for k, v := range sc.Env {
			env[k] = v
		}
		return command{name: proto.CmdShell, args: map[string]any{
			"workdir":     workdir,
			"command":     c,
			"env":         env,
			"want_stdout": true,
			"want_stderr": true,
			"logfiles":    map[string]any{},
			"timeout":     seconds(sc.Timeout),
			"maxTime":     seconds(sc.MaxTime),
			"sigtermTime": nil,
			"usePTY":      false,
			"logEnviron":  sc.LogEnviron,
		}}, nil
	case *config.UploadAction:
		t, err := newUpload(b.runner.masterPath(a.MasterDest), a.Mode, b.cfg.Master.UploadMaxSize)
		if err != nil {
			return command{}, err
		}
		return command{name: proto.CmdUploadFile, transfer: t, args: map[string]any{
			"path":      b.sess.Join(workdir, a.WorkerSrc),
			"blocksize": transferBlockSize,
			"maxsize":   nil,
			"keepstamp": false,
		}}, nil
	case *config.DownloadAction:
		t, err := newDownload(b.runner.masterPath(a.MasterSrc))
		if err != nil {
			return command{}, err
		}
		var mode any
		if a.Mode >= 0 {
			mode = a.Mode
		}
		return command{name: proto.CmdDownloadFile, transfer: t, args: map[string]any{
			"path":      b.sess.Join(workdir, a.WorkerDest),
			"blocksize": transferBlockSize,
			"maxsize":   nil,
			"mode":      mode,
		}}, nil
	case *config.MkdirAction:
		// Buildbot resolves these against the builder's directory.
		return command{name: proto.CmdMkdir, args: map[string]any{
			"paths": []any{b.sess.Join(b.builddir, a.Dir)},
		}}, nil
	case *config.RmdirAction:
		return command{name: proto.CmdRmdir, args: map[string]any{
			"paths":      []any{b.sess.Join(b.builddir, a.Dir)},
			"logEnviron": sc.LogEnviron,
			"timeout":    seconds(sc.Timeout),
			"maxTime":    seconds(sc.MaxTime),
		}}, nil
	}
	return command{}, fmt.Errorf("step %q: unsupported step kind %q", sc.Name, sc.Action.Kind())
}

// HandleCommand implements registry.CommandHandler.
func (s *stepRun) HandleCommand(op string, msg proto.Message) (any, error) {
	if op == proto.OpUpdate {
		ups, err := proto.DecodeUpdates(msg["args"])
		if err != nil {
			return nil, err
		}
		return nil, s.enqueue(ups)
	}
	if s.transfer == nil {
		return nil, fmt.Errorf("unexpected %s for a %s step", op, s.step.Name)
	}
	return s.transfer.handle(op, msg)
}

// update stores one update message: text goes to the logs in one append
// per log, in the order the worker produced it.
func (s *stepRun) update(ctx context.Context, ups []proto.Update) error {
	var stdio bytes.Buffer
	named := map[string]*bytes.Buffer{}
	var order []string
	for _, u := range ups {
		if s.hook != nil {
			s.hook.update(u)
		}
		switch v := u.Value.(type) {
		case proto.LogChunk:
			prefixLines(&stdio, streamChar(u.Key), v.Text)
			continue
		case proto.NamedLogChunk:
			buf := named[v.Name]
			if buf == nil {
				buf = &bytes.Buffer{}
				named[v.Name] = buf
				order = append(order, v.Name)
			}
			prefixLines(buf, 'o', v.Chunk.Text)
			continue
		}
		switch u.Key {
		case proto.UpdRC:
			if n, ok := proto.AsInt(u.Value); ok {
				s.rc = &n
			}
		case proto.UpdFailureReason:
			if r, ok := u.Value.(string); ok {
				s.reason = r
			}
		}
	}
	if stdio.Len() > 0 {
		if err := s.logs["stdio"].append(ctx, stdio.Bytes()); err != nil {
			s.lastErr = err
			return err
		}
	}
	for _, name := range order {
		l, err := s.log(ctx, name)
		if err == nil {
			err = l.append(ctx, named[name].Bytes())
		}
		if err != nil {
			s.lastErr = err
			return err
		}
	}
	return nil
}

func streamChar(key string) byte {
	switch key {
	case proto.UpdStderr:
		return 'e'
	case proto.UpdHeader:
		return 'h'
	}
	return 'o'
}

// prefixLines writes text's lines, each prefixed with c, as Buildbot's
// stdio logs store them. A missing final newline is added.
func prefixLines(buf *bytes.Buffer, c byte, text string) {
	for len(text) > 0 {
		i := strings.IndexByte(text, '\n')
		line := text
		if i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		buf.WriteByte(c)
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
}

func seconds(d time.Duration) any {
	if d <= 0 {
		return nil
	}
	return int64(math.Ceil(d.Seconds()))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// finishTransfer completes (or abandons, when the command failed) cmd's
// transfer, logs its summary, and folds its outcome into the step's.
func finishTransfer(ctx context.Context, stdio *logSink, cmd command, res result.Result, state string) (result.Result, string) {
	if cmd.transfer == nil {
		return res, state
	}
	summary, err := cmd.transfer.finish(res == result.Success)
	switch {
	case err != nil:
		stdio.header(ctx, err.Error())
		if res == result.Success {
			res, state = result.Failure, err.Error()
		}
	case summary != "":
		stdio.header(ctx, summary)
		if res == result.Success {
			state = summary
		}
	}
	return res, state
}
