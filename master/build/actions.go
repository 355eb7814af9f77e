package build

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/worker/proto"
)

// This file runs the step kinds of config/steps_more.go: those that send
// several remote commands, look at a command's output, or run on the master.

// updateHook sees every update of a step's current command, in the step's
// writer goroutine; what it gathers may be read once the command has ended.
type updateHook interface {
	update(u proto.Update)
}

// stepAction runs a rendered step of one of these kinds.
type stepAction func(ctx context.Context, stdio *logSink, sc *config.Step) (result.Result, string)

// action returns how to run sc when it is one of the kinds of this file,
// or nil.
func (s *stepRun) action(sc *config.Step) stepAction {
	if act := s.jobAction(sc); act != nil {
		return act // jobsteps.go
	}
	switch sc.Action.(type) {
	case *config.CompileAction, *config.TestAction, *config.ShellSequenceAction,
		*config.SetPropertiesAction, *config.SetPropertyFromCommandAction,
		*config.FileExistsAction, *config.CpdirAction, *config.DownloadStringAction,
		*config.UploadDirAction, *config.UploadManyAction, *config.MasterShellAction,
		*config.HTTPRequestAction, *config.GitAction, *config.TriggerAction:
		return s.runAction
	}
	return nil
}

func (s *stepRun) runAction(ctx context.Context, stdio *logSink, sc *config.Step) (result.Result, string) {
	env := s.b.env
	env.Print = func(msg string) { stdio.header(ctx, msg) }
	a, err := config.RenderAction(sc.Action, env)
	env.Print = nil
	if err != nil {
		writeError(ctx, stdio, err)
		return result.Exception, "render error: " + firstLine(err.Error())
	}
	switch a := a.(type) {
	case *config.CompileAction:
		return s.compile(ctx, sc, a)
	case *config.TestAction:
		return s.test(ctx, sc, a)
	case *config.ShellSequenceAction:
		return s.shellSequence(ctx, stdio, sc, a)
	case *config.SetPropertiesAction:
		return s.setProperties(ctx, stdio, a.Properties)
	case *config.SetPropertyFromCommandAction:
		return s.setPropertyFromCommand(ctx, stdio, sc, a)
	case *config.FileExistsAction:
		return s.fileExists(ctx, sc, a)
	case *config.CpdirAction:
		b := s.b
		return s.runCommand(ctx, command{name: proto.CmdCpdir, args: map[string]any{
			"from_path":  b.sess.Join(b.builddir, a.Src),
			"to_path":    b.sess.Join(b.builddir, a.Dest),
			"logEnviron": sc.LogEnviron,
			"timeout":    seconds(sc.Timeout),
			"maxTime":    seconds(sc.MaxTime),
		}}, nil)
	case *config.DownloadStringAction:
		var mode any
		if a.Mode >= 0 {
			mode = a.Mode
		}
		return s.runCommand(ctx, command{name: proto.CmdDownloadFile, transfer: newStringDownload(a.S), args: map[string]any{
			"path":      s.b.sess.Join(s.workdir(sc), a.WorkerDest),
			"blocksize": transferBlockSize,
			"maxsize":   nil,
			"mode":      mode,
		}}, nil)
	case *config.UploadDirAction:
		t, err := newUploadDir(s.b.runner.masterPath(a.MasterDest), a.Compress, s.b.cfg.Master.UploadMaxSize)
		if err != nil {
			stdio.header(ctx, err.Error())
			return result.Failure, err.Error()
		}
		var compress any
		if a.Compress != "" {
			compress = a.Compress
		}
		return s.runCommand(ctx, command{name: proto.CmdUploadDirectory, transfer: t, args: map[string]any{
			"path":      s.b.sess.Join(s.workdir(sc), a.WorkerSrc),
			"blocksize": transferBlockSize,
			"maxsize":   nil,
			"compress":  compress,
		}}, nil)
	case *config.UploadManyAction:
		return s.uploadMany(ctx, stdio, sc, a)
	case *config.MasterShellAction:
		return s.masterShell(ctx, stdio, sc, a)
	case *config.HTTPRequestAction:
		return s.httpRequest(ctx, stdio, sc, a)
	case *config.GitAction:
		return s.git(ctx, stdio, sc, a) // git.go
	case *config.TriggerAction:
		return s.trigger(ctx, stdio, a) // trigger.go
	}
	return result.Exception, fmt.Sprintf("unsupported step kind %q", sc.Action.Kind())
}

func (s *stepRun) workdir(sc *config.Step) string {
	return s.b.sess.Join(s.b.builddir, orDefault(sc.Workdir, "build"))
}

// runCommand runs one remote command of a step that may send several,
// with hook (if any) seeing its updates, and finishes its transfer as run
// does. s.rc holds its exit code afterwards.
func (s *stepRun) runCommand(ctx context.Context, cmd command, hook updateHook) (result.Result, string) {
	s.rc, s.reason, s.lastErr = nil, "", nil
	s.transfer, s.hook = cmd.transfer, hook
	res, state := s.remote(ctx, cmd)
	s.hook = nil
	res, state = finishTransfer(ctx, s.logs["stdio"], cmd, res, state)
	s.recordArtifacts(ctx, cmd, res)
	s.transfer = nil
	if s.lastErr != nil && res == result.Success {
		return s.storeFailure(ctx)
	}
	return res, state
}

// shellCommand is the remote shell command for sh with sc's options.
func (s *stepRun) shellCommand(sc *config.Step, sh config.ShellAction) (command, error) {
	c := *sc
	c.Action = &sh
	return s.command(&c)
}

// lineHook passes each line of a shell command's stdout ('o') and stderr
// ('e') to fn, and keeps the last value of each other update key.
type lineHook struct {
	fn     func(stream byte, line string)
	values map[string]any
}

func (h *lineHook) update(u proto.Update) {
	if c, ok := u.Value.(proto.LogChunk); ok {
		if h.fn == nil || (u.Key != proto.UpdStdout && u.Key != proto.UpdStderr) {
			return
		}
		stream := streamChar(u.Key)
		for _, line := range splitLines(c.Text) {
			h.fn(stream, strings.TrimSuffix(line, "\r"))
		}
		return
	}
	if _, named := u.Value.(proto.NamedLogChunk); named {
		return
	}
	if h.values == nil {
		h.values = map[string]any{}
	}
	h.values[u.Key] = u.Value
}

// runShell runs sh on the worker as part of sc, passing its output lines
// to fn (which may be nil).
func (s *stepRun) runShell(ctx context.Context, sc *config.Step, sh config.ShellAction, fn func(stream byte, line string)) (result.Result, string) {
	cmd, err := s.shellCommand(sc, sh)
	if err != nil {
		s.logs["stdio"].header(ctx, err.Error())
		return result.Failure, err.Error()
	}
	return s.runCommand(ctx, cmd, &lineHook{fn: fn})
}

// ran reports whether a command ran to its end on the worker with an exit
// code: its output then means something.
func (s *stepRun) ran(res result.Result) bool {
	return (res == result.Success || res == result.Failure) && s.rc != nil
}

// setProperty sets a build property while the build runs: in the store,
// and for the build-time functions and renderables of later steps.
func (s *stepRun) setProperty(ctx context.Context, name string, v any, source string) error {
	b := s.b
	p := store.Property{Value: v, Source: source}
	if err := b.runner.Store.SetBuildProperty(ctx, b.build.ID, name, p); err != nil {
		return fmt.Errorf("set property %s: %w", name, err)
	}
	b.props[name] = p
	b.env.SetProperty(name, v)
	return nil
}

func (s *stepRun) propertySource() string { return "Step " + s.step.Name }

// --- compile ---

// maxWarningLines bounds the lines kept for the "warnings" log; the count
// goes on.
const maxWarningLines = 10000

func (s *stepRun) compile(ctx context.Context, sc *config.Step, a *config.CompileAction) (result.Result, string) {
	count := 0
	var lines []string
	res, state := s.runShell(ctx, sc, a.Command, func(_ byte, line string) {
		if !a.WarningRE.MatchString(line) {
			return
		}
		for _, re := range a.Suppress {
			if re.MatchString(line) {
				return
			}
		}
		count++
		if len(lines) < maxWarningLines {
			lines = append(lines, line)
		}
	})
	if !s.ran(res) {
		return res, state
	}
	if count > 0 {
		if l, err := s.log(ctx, "warnings"); err == nil {
			var buf strings.Builder
			for _, line := range lines {
				buf.WriteByte('o')
				buf.WriteString(line)
				buf.WriteByte('\n')
			}
			if count > len(lines) {
				fmt.Fprintf(&buf, "h... and %d more\n", count-len(lines))
			}
			_ = l.append(ctx, []byte(buf.String()))
		}
	}
	warn := plural(count, "warning")
	switch {
	case res != result.Success:
		return res, state + ", " + warn
	case a.MaxWarnings >= 0 && count > a.MaxWarnings:
		return result.Failure, fmt.Sprintf("%s (more than %d)", warn, a.MaxWarnings)
	case count > 0:
		return result.Warnings, warn
	}
	return result.Success, warn
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// --- test ---

// testCounter recognises counts of tests in a test runner's output.
type testCounter struct {
	passed, failed, skipped int
	seen                    bool

	// go test: per-test lines when -v, else per-package lines.
	goPass, goFail, goPkgOK, goPkgFail int
	// Python unittest: "Ran N tests" waits for "OK" or "FAILED (...)".
	ranPending int
}

var (
	rePytest    = regexp.MustCompile(`^=+ (.*\d+ (?:passed|failed|error|errors|skipped).*?) in [0-9.]+s.*=+$`)
	reCount     = regexp.MustCompile(`(\d+) (passed|failed|failures?|errors?|skipped|tests?|runs?)\b`)
	reRan       = regexp.MustCompile(`^Ran (\d+) tests? in `)
	reUnitFail  = regexp.MustCompile(`^FAILED \((.*)\)`)
	reUnitCount = regexp.MustCompile(`(failures|errors|skipped|expected failures|unexpected successes)=(\d+)`)
	reJUnit     = regexp.MustCompile(`Tests run: (\d+), Failures: (\d+)(?:, Errors: (\d+))?(?:, Skipped: (\d+))?`)
	rePassFail  = regexp.MustCompile(`(\d+) passed\b.*?(\d+) failed\b|(\d+) failed\b.*?(\d+) passed\b`)
	reTestsFail = regexp.MustCompile(`(\d+) (?:tests|runs), (?:.*?, )?(\d+) failures?(?:, (\d+) errors?)?`)
	reGoTest    = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): `)
	reGoPkg     = regexp.MustCompile(`^(ok|FAIL)\s+\S+\s+(?:[0-9.]+s|\(cached\)|\[)`)
)

func (t *testCounter) line(line string) {
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	if m := rePytest.FindStringSubmatch(line); m != nil {
		for _, c := range reCount.FindAllStringSubmatch(m[1], -1) {
			switch c[2] {
			case "passed":
				t.passed += atoi(c[1])
			case "failed", "error", "errors":
				t.failed += atoi(c[1])
			case "skipped":
				t.skipped += atoi(c[1])
			}
		}
		t.seen = true
		return
	}
	if m := reRan.FindStringSubmatch(line); m != nil {
		t.flushRan()
		t.ranPending = atoi(m[1])
		t.seen = true
		return
	}
	if t.ranPending > 0 {
		if strings.HasPrefix(line, "OK") {
			skipped := 0
			for _, c := range reUnitCount.FindAllStringSubmatch(line, -1) {
				if c[1] == "skipped" {
					skipped = atoi(c[2])
				}
			}
			t.passed += t.ranPending - skipped
			t.skipped += skipped
			t.ranPending = 0
			return
		}
		if m := reUnitFail.FindStringSubmatch(line); m != nil {
			failed, skipped := 0, 0
			for _, c := range reUnitCount.FindAllStringSubmatch(m[1], -1) {
				switch c[1] {
				case "failures", "errors", "unexpected successes":
					failed += atoi(c[2])
				case "skipped":
					skipped = atoi(c[2])
				}
			}
			t.failed += failed
			t.skipped += skipped
			t.passed += max(t.ranPending-failed-skipped, 0)
			t.ranPending = 0
			return
		}
	}
	if m := reGoTest.FindStringSubmatch(line); m != nil {
		switch m[1] {
		case "PASS":
			t.goPass++
		case "FAIL":
			t.goFail++
		}
		t.seen = true
		return
	}
	if m := reGoPkg.FindStringSubmatch(line); m != nil {
		if m[1] == "ok" {
			t.goPkgOK++
		} else {
			t.goPkgFail++
		}
		t.seen = true
		return
	}
	if m := reJUnit.FindStringSubmatch(line); m != nil {
		total, failed := atoi(m[1]), atoi(m[2])+atoi(m[3])
		skipped := atoi(m[4])
		t.failed += failed
		t.skipped += skipped
		t.passed += max(total-failed-skipped, 0)
		t.seen = true
		return
	}
	if m := rePassFail.FindStringSubmatch(line); m != nil {
		if m[1] != "" {
			t.passed += atoi(m[1])
			t.failed += atoi(m[2])
		} else {
			t.failed += atoi(m[3])
			t.passed += atoi(m[4])
		}
		t.seen = true
		return
	}
	if m := reTestsFail.FindStringSubmatch(line); m != nil {
		total, failed := atoi(m[1]), atoi(m[2])+atoi(m[3])
		t.failed += failed
		t.passed += max(total-failed, 0)
		t.seen = true
		return
	}
}

func (t *testCounter) flushRan() {
	// "Ran N tests" without a verdict line: count them as passed.
	t.passed += t.ranPending
	t.ranPending = 0
}

// counts returns what was recognised.
func (t *testCounter) counts() (passed, failed, skipped int, ok bool) {
	t.flushRan()
	passed, failed, skipped = t.passed, t.failed, t.skipped
	if t.goPass+t.goFail > 0 {
		passed += t.goPass
		failed += t.goFail
	} else if t.goPkgOK+t.goPkgFail > 0 {
		// Without -v go test names only packages.
		passed += t.goPkgOK
		failed += t.goPkgFail
	}
	return passed, failed, skipped, t.seen
}

func (s *stepRun) test(ctx context.Context, sc *config.Step, a *config.TestAction) (result.Result, string) {
	var tc testCounter
	res, state := s.runShell(ctx, sc, a.Command, func(_ byte, line string) { tc.line(line) })
	if !s.ran(res) {
		return res, state
	}
	passed, failed, skipped, ok := tc.counts()
	if !ok {
		return res, state
	}
	counts := fmt.Sprintf("%d passed, %d failed", passed, failed)
	if skipped > 0 {
		counts += fmt.Sprintf(", %d skipped", skipped)
	}
	for _, p := range []struct {
		name string
		n    int
	}{{"tests_passed", passed}, {"tests_failed", failed}} {
		if err := s.setProperty(ctx, p.name, int64(p.n), s.propertySource()); err != nil {
			s.logs["stdio"].header(ctx, err.Error())
			return result.Exception, err.Error()
		}
	}
	if res != result.Success {
		return res, counts + " (" + state + ")"
	}
	return res, counts
}

// --- shell_sequence ---

func (s *stepRun) shellSequence(ctx context.Context, stdio *logSink, sc *config.Step, a *config.ShellSequenceAction) (result.Result, string) {
	for i, sh := range a.Commands {
		stdio.header(ctx, fmt.Sprintf("--- command %d of %d", i+1, len(a.Commands)))
		res, state := s.runShell(ctx, sc, sh, nil)
		if res != result.Success {
			return res, fmt.Sprintf("command %d of %d: %s", i+1, len(a.Commands), state)
		}
	}
	return result.Success, plural(len(a.Commands), "command")
}

// --- set_property, set_properties, set_property_from_command ---

func (s *stepRun) setProperties(ctx context.Context, stdio *logSink, props map[string]any) (result.Result, string) {
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if err := s.setProperty(ctx, k, props[k], s.propertySource()); err != nil {
			stdio.header(ctx, err.Error())
			return result.Exception, err.Error()
		}
		stdio.header(ctx, fmt.Sprintf("%s = %s", k, showValue(props[k])))
	}
	if len(names) == 1 {
		return result.Success, "set property " + names[0]
	}
	return result.Success, "set properties " + strings.Join(names, ", ")
}

// showValue formats a property value for a log line.
func showValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// maxCapture bounds the output set_property_from_command keeps per stream.
const maxCapture = 4 << 20

func (s *stepRun) setPropertyFromCommand(ctx context.Context, stdio *logSink, sc *config.Step, a *config.SetPropertyFromCommandAction) (result.Result, string) {
	var out, errOut strings.Builder
	truncated := false
	res, state := s.runShell(ctx, sc, a.Command, func(stream byte, line string) {
		b := &out
		if stream == 'e' {
			b = &errOut
		}
		if b.Len()+len(line)+1 > maxCapture {
			truncated = true
			return
		}
		b.WriteString(line)
		b.WriteByte('\n')
	})
	if !s.ran(res) {
		return res, state
	}
	if truncated {
		stdio.header(ctx, fmt.Sprintf("output longer than %d bytes: only the beginning was kept", maxCapture))
	}
	stdout := out.String()
	if a.Strip {
		stdout = strings.TrimSpace(stdout)
	}
	var props map[string]any
	if a.ExtractFn == nil {
		if res != result.Success {
			return res, state
		}
		props = map[string]any{a.Property: stdout}
	} else {
		stderr := errOut.String()
		if a.Strip {
			stderr = strings.TrimSpace(stderr)
		}
		env := s.b.env
		env.Print = func(msg string) { stdio.header(ctx, msg) }
		p, err := a.ExtractProperties(env, *s.rc, stdout, stderr)
		env.Print = nil
		if err != nil {
			writeError(ctx, stdio, err)
			return result.Exception, "extract_fn error: " + firstLine(err.Error())
		}
		props = p
	}
	pres, pstate := s.setProperties(ctx, stdio, props)
	if pres != result.Success || res != result.Success {
		return result.Worst(pres, res), state
	}
	if len(props) == 0 {
		return res, "no properties set"
	}
	return pres, pstate
}

// --- file_exists ---

func (s *stepRun) fileExists(ctx context.Context, sc *config.Step, a *config.FileExistsAction) (result.Result, string) {
	h := &lineHook{}
	res, state := s.runCommand(ctx, command{name: proto.CmdStat, args: map[string]any{
		"path": s.b.sess.Join(s.workdir(sc), a.File),
	}}, h)
	if !s.ran(res) {
		return res, state
	}
	if res != result.Success {
		return result.Failure, fmt.Sprintf("file %s does not exist", a.File)
	}
	st, _ := h.values[proto.UpdStat].([]any)
	if len(st) == 0 {
		return result.Exception, "the worker sent no stat result"
	}
	mode, _ := proto.AsInt(st[0])
	if mode&0o170000 != 0o100000 {
		return result.Failure, fmt.Sprintf("%s is not a regular file", a.File)
	}
	return result.Success, fmt.Sprintf("file %s exists", a.File)
}

// --- upload_many ---

func (s *stepRun) uploadMany(ctx context.Context, stdio *logSink, sc *config.Step, a *config.UploadManyAction) (result.Result, string) {
	b := s.b
	h := &lineHook{}
	res, state := s.runCommand(ctx, command{name: proto.CmdGlob, args: map[string]any{
		"path": b.sess.Join(s.workdir(sc), a.Glob),
	}}, h)
	if res != result.Success {
		return res, state
	}
	raw, _ := h.values[proto.UpdFiles].([]any)
	files := make([]string, 0, len(raw))
	for _, f := range raw {
		if p, ok := f.(string); ok {
			files = append(files, p)
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		stdio.header(ctx, "no file matches "+a.Glob)
		return result.Skipped, "no files matched"
	}
	destDir := b.runner.masterPath(a.MasterDestDir)
	seen := map[string]string{}
	bases := make([]string, len(files))
	for i, f := range files {
		base := f
		sep := "/"
		if b.sess.Windows() {
			sep = `/\`
		}
		if i := strings.LastIndexAny(f, sep); i >= 0 {
			base = f[i+1:]
		}
		if base == "" || base == "." || base == ".." {
			msg := fmt.Sprintf("cannot upload %s: no file name", f)
			stdio.header(ctx, msg)
			return result.Failure, msg
		}
		if other, dup := seen[base]; dup {
			msg := fmt.Sprintf("%s and %s have the same name", other, f)
			stdio.header(ctx, msg)
			return result.Failure, msg
		}
		seen[base] = f
		bases[i] = base
	}
	for i, f := range files {
		t, err := newUpload(filepath.Join(destDir, bases[i]), -1, s.b.cfg.Master.UploadMaxSize)
		if err != nil {
			stdio.header(ctx, err.Error())
			return result.Failure, err.Error()
		}
		res, state := s.runCommand(ctx, command{name: proto.CmdUploadFile, transfer: t, args: map[string]any{
			"path":      f,
			"blocksize": transferBlockSize,
			"maxsize":   nil,
			"keepstamp": false,
		}}, nil)
		if res != result.Success {
			return res, fmt.Sprintf("file %d of %d: %s", i+1, len(files), state)
		}
	}
	return result.Success, fmt.Sprintf("uploaded %s", plural(len(files), "file"))
}
