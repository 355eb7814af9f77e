package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
)

// masterShell runs master_shell's command on the master, in a process
// group of its own that is killed on timeout, max_time or a stop. Its
// output goes to the stdio log as a worker's would.
func (s *stepRun) masterShell(ctx context.Context, stdio *logSink, sc *config.Step, a *config.MasterShellAction) (result.Result, string) {
	b := s.b
	if reason, res := s.stopped(); reason != "" {
		return res, "not started: " + reason
	}
	dir := b.runner.masterPath(orDefault(sc.Workdir, "build"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		stdio.header(ctx, err.Error())
		return result.Failure, "cannot create workdir: " + err.Error()
	}
	var cmd *exec.Cmd
	var shown string
	if a.Command.Argv != nil {
		cmd = exec.Command(a.Command.Argv[0], a.Command.Argv[1:]...)
		shown = fmt.Sprintf("%q", a.Command.Argv)
	} else {
		cmd = exec.Command("/bin/sh", "-c", a.Command.Script)
		shown = "/bin/sh -c " + fmt.Sprintf("%q", a.Command.Script)
	}
	cmd.Dir = dir
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for k, v := range b.bcfg.Env {
		env[k] = v
	}
	for k, v := range sc.Env {
		env[k] = v
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	var hdr strings.Builder
	fmt.Fprintf(&hdr, "%s\n in dir %s (on the master)", shown, dir)
	if sc.Timeout > 0 {
		fmt.Fprintf(&hdr, " (timeout %s)", sc.Timeout)
	}
	if sc.LogEnviron {
		for _, k := range keys {
			if _, own := sc.Env[k]; own {
				fmt.Fprintf(&hdr, "\n %s=%s", k, env[k])
			} else if _, bld := b.bcfg.Env[k]; bld {
				fmt.Fprintf(&hdr, "\n %s=%s", k, env[k])
			}
		}
	}
	stdio.header(ctx, hdr.String())

	stdout, err := cmd.StdoutPipe()
	if err == nil {
		var stderr io.ReadCloser
		stderr, err = cmd.StderrPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err == nil {
			return s.waitMasterProcess(ctx, stdio, sc, cmd, stdout, stderr)
		}
	}
	stdio.header(ctx, "cannot start: "+err.Error())
	return result.Failure, "cannot start: " + firstLine(err.Error())
}

func (s *stepRun) waitMasterProcess(ctx context.Context, stdio *logSink, sc *config.Step, cmd *exec.Cmd, stdout, stderr io.Reader) (result.Result, string) {
	start := time.Now()
	var mu sync.Mutex // orders appends of the two streams
	activity := make(chan struct{}, 1)
	var wg sync.WaitGroup
	pump := func(r io.Reader, c byte) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		var partial []byte
		for {
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case activity <- struct{}{}:
				default:
				}
				data := append(partial, buf[:n]...)
				i := bytes.LastIndexByte(data, '\n')
				if i >= 0 {
					var out bytes.Buffer
					prefixLines(&out, c, string(data[:i+1]))
					mu.Lock()
					_ = stdio.append(ctx, out.Bytes())
					mu.Unlock()
					partial = append([]byte(nil), data[i+1:]...)
				} else {
					partial = data
				}
			}
			if err != nil {
				if len(partial) > 0 {
					var out bytes.Buffer
					prefixLines(&out, c, string(partial))
					mu.Lock()
					_ = stdio.append(ctx, out.Bytes())
					mu.Unlock()
				}
				return
			}
		}
	}
	wg.Add(2)
	go pump(stdout, 'o')
	go pump(stderr, 'e')
	done := make(chan error, 1)
	go func() {
		wg.Wait() // read all output before Wait closes the pipes
		done <- cmd.Wait()
	}()

	kill := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var idle <-chan time.Time
	var idleTimer *time.Timer
	if sc.Timeout > 0 {
		idleTimer = time.NewTimer(sc.Timeout)
		defer idleTimer.Stop()
		idle = idleTimer.C
	}
	var total <-chan time.Time
	if sc.MaxTime > 0 {
		t := time.NewTimer(sc.MaxTime)
		defer t.Stop()
		total = t.C
	}
	stopCh := s.stopSignal()
	if s.afterStop {
		stopCh = nil
	}
	why := ""
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-activity:
			if idleTimer != nil {
				idleTimer.Reset(sc.Timeout)
			}
		case <-idle:
			why = fmt.Sprintf("command timed out: %s without output, killing it", sc.Timeout)
			kill()
		case <-total:
			why = fmt.Sprintf("command timed out: ran longer than %s, killing it", sc.MaxTime)
			kill()
		case <-stopCh:
			reason, _ := s.stopped()
			why = "command interrupted (" + reason + "), killing it"
			kill()
			stopCh = nil
		case <-ctx.Done():
			kill()
			err = <-done
			break wait
		}
		if why != "" {
			stdio.header(ctx, why)
			idle, total = nil, nil
		}
	}
	// A child that kept the group alive after the shell exited dies too.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	code := 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		stdio.header(ctx, err.Error())
		return result.Exception, firstLine(err.Error())
	}
	stdio.header(ctx, fmt.Sprintf("program finished with exit code %d\nelapsedTime=%.6f", code, time.Since(start).Seconds()))
	if reason, res := s.stopped(); reason != "" && !s.afterStop {
		return res, "interrupted: " + reason
	}
	switch {
	case why != "":
		return result.Failure, "timed out"
	case code == 0:
		return result.Success, "exit 0"
	case code < 0:
		return result.Failure, "killed"
	}
	return result.Failure, fmt.Sprintf("failed (exit %d)", code)
}

// maxHTTPBody is how much of a response body http_request logs.
const maxHTTPBody = 64 << 10

// httpRequest makes http_request's request from the master.
func (s *stepRun) httpRequest(ctx context.Context, stdio *logSink, sc *config.Step, a *config.HTTPRequestAction) (result.Result, string) {
	if reason, res := s.stopped(); reason != "" {
		return res, "not started: " + reason
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if sc.Timeout > 0 {
		rctx, cancel = context.WithTimeout(rctx, sc.Timeout)
		defer cancel()
	}
	if sc.MaxTime > 0 {
		rctx, cancel = context.WithTimeout(rctx, sc.MaxTime)
		defer cancel()
	}
	if !s.afterStop {
		stop := s.stopSignal()
		go func() {
			select {
			case <-stop:
				cancel()
			case <-rctx.Done():
			}
		}()
	}
	var body io.Reader
	if a.HasBody {
		body = strings.NewReader(a.Body)
	}
	req, err := http.NewRequestWithContext(rctx, a.Method, a.URL, body)
	if err != nil {
		stdio.header(ctx, err.Error())
		return result.Failure, firstLine(err.Error())
	}
	keys := make([]string, 0, len(a.Headers))
	for k := range a.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var hdr strings.Builder
	fmt.Fprintf(&hdr, "%s %s", a.Method, a.URL)
	for _, k := range keys {
		req.Header.Set(k, a.Headers[k])
		fmt.Fprintf(&hdr, "\n %s: %s", k, a.Headers[k])
	}
	if a.HasBody {
		fmt.Fprintf(&hdr, "\n (%d bytes of body)", len(a.Body))
	}
	stdio.header(ctx, hdr.String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if reason, res := s.stopped(); reason != "" && !s.afterStop {
			return res, "interrupted: " + reason
		}
		stdio.header(ctx, err.Error())
		if errors.Is(err, context.DeadlineExceeded) {
			return result.Failure, "timed out"
		}
		return result.Failure, "request failed: " + firstLine(err.Error())
	}
	defer resp.Body.Close()
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	stdio.header(ctx, fmt.Sprintf("%s %s", resp.Proto, resp.Status))
	if len(data) > 0 {
		shown := data
		if len(shown) > maxHTTPBody {
			shown = shown[:maxHTTPBody]
		}
		var out bytes.Buffer
		prefixLines(&out, 'o', string(shown))
		_ = stdio.append(ctx, out.Bytes())
		if len(data) > maxHTTPBody {
			stdio.header(ctx, fmt.Sprintf("(body cut at %d bytes)", maxHTTPBody))
		}
	}
	if rerr != nil {
		stdio.header(ctx, "reading the body: "+rerr.Error())
	}
	state := "HTTP " + resp.Status
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if a.ExpectStatus != 0 {
		ok = resp.StatusCode == a.ExpectStatus
		if !ok {
			state = fmt.Sprintf("HTTP %s, want %d", resp.Status, a.ExpectStatus)
		}
	}
	if !ok {
		return result.Failure, state
	}
	return result.Success, state
}
