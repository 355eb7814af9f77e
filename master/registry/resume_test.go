package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/worker"
	"github.com/starforge/starforge/worker/proto"
)

// resumeRegistry is a registry whose holds run on clk, behind a proxy the
// test can cut.
func resumeRegistry(t *testing.T, clk clock.Clock) (*Registry, *testenv.Proxy, events) {
	t.Helper()
	ev := events{attached: make(chan *Session, 10), detached: make(chan *Session, 10)}
	r := New(Options{
		Credentials: func(name string) (string, bool) { return "secret", name == "w1" },
		Hooks: Hooks{
			Attached: func(s *Session) { ev.attached <- s },
			Detached: func(s *Session, _ error) { ev.detached <- s },
		},
		Clock: clk,
	})
	srv := httptest.NewServer(r)
	p := testenv.NewProxy(t, strings.TrimPrefix(srv.URL, "http://"))
	t.Cleanup(func() { r.Close(); srv.Close() })
	return r, p, ev
}

// runAgent runs a real worker agent against addr until the test ends.
func runAgent(t *testing.T, addr string, grace time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.Buffer{}
	a := &worker.Agent{
		Master: addr, Name: "w1", Password: "secret", Basedir: t.TempDir(),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		ResumeGrace: grace,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("worker logs:\n%s", logs)
		}
	})
}

// textRecorder is a CommandHandler that keeps a command's stdout and rc.
type textRecorder struct {
	mu      sync.Mutex
	text    strings.Builder
	code    int64
	changed chan struct{}
}

func newTextRecorder() *textRecorder { return &textRecorder{changed: make(chan struct{})} }

func (r *textRecorder) HandleCommand(op string, msg proto.Message) (any, error) {
	if op != proto.OpUpdate {
		return nil, nil
	}
	ups, err := proto.DecodeUpdates(msg["args"])
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range ups {
		switch v := u.Value.(type) {
		case proto.LogChunk:
			if u.Key == proto.UpdStdout {
				r.text.WriteString(v.Text)
			}
		default:
			if u.Key == proto.UpdRC {
				r.code, _ = proto.AsInt(v)
			}
		}
	}
	close(r.changed)
	r.changed = make(chan struct{})
	return nil, nil
}

func (r *textRecorder) stdout() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.text.String()
}

// waitFor waits until the stdout received so far is want.
func (r *textRecorder) waitFor(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		got, ch := r.text.String(), r.changed
		r.mu.Unlock()
		if got == want {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("stdout = %q, want %q", got, want)
		}
	}
}

// fifo makes a named pipe: a step blocks on it until the test acts.
func fifo(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return p
}

// writeFifo writes s to a named pipe once a reader opened it.
func writeFifo(t *testing.T, path, s string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- os.WriteFile(path, []byte(s), 0o600) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("nobody read %s", path)
	}
}

// readFifo waits for a writer of a named pipe and returns what it wrote.
func readFifo(t *testing.T, path string) string {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	done := make(chan res, 1)
	go func() { b, err := os.ReadFile(path); done <- res{b, err} }()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return string(r.b)
	case <-time.After(20 * time.Second):
		t.Fatalf("nobody wrote %s", path)
		return ""
	}
}

func wait(t *testing.T, rc *RemoteCommand) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := rc.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("the command did not end")
	}
	return err
}

func shell(s *Session, script string) map[string]any {
	return map[string]any{"workdir": s.Join(s.Basedir(), "b1"), "command": script}
}

func TestResumeCarriesARunningCommandAcrossADisconnect(t *testing.T) {
	clk := clock.NewFake(time.Now())
	r, p, ev := resumeRegistry(t, clk)
	runAgent(t, p.Addr(), 0)
	s1 := waitSession(t, ev.attached)
	if !s1.HasExtension(proto.ExtResume) {
		t.Fatalf("extensions %v", s1.Extensions())
	}
	in, out := fifo(t, "in"), fifo(t, "out")
	h := newTextRecorder()
	rc, err := s1.Start(context.Background(), "b1", proto.CmdShell,
		shell(s1, "echo one; read x < "+in+"; echo two $x; echo printed > "+out+"; read y < "+in+"; echo three $y"), h)
	if err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "one\n")

	p.Cut()
	if got := waitSession(t, ev.detached); got != s1 {
		t.Fatal("another session detached")
	}
	if r.Get("w1") != nil {
		t.Fatal("a held session is still offered for new builds")
	}
	// The command runs on while the worker is away; its output waits.
	writeFifo(t, in, "x\n")
	if got := readFifo(t, out); got != "printed\n" {
		t.Fatalf("out = %q", got)
	}
	select {
	case <-rc.Done():
		t.Fatalf("the command ended while its worker was away: %v", rc.Wait(context.Background()))
	default:
	}
	if got := h.stdout(); got != "one\n" {
		t.Fatalf("stdout while away = %q", got)
	}

	p.Restore()
	s2 := waitSession(t, ev.attached)
	if s2 == s1 {
		t.Fatal("the reconnect reused the old session")
	}
	h.waitFor(t, "one\ntwo x\n")
	writeFifo(t, in, "y\n")
	if err := wait(t, rc); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	if got := h.stdout(); got != "one\ntwo x\nthree y\n" {
		t.Fatalf("stdout = %q: every line exactly once, in order", got)
	}
	if rc.owner() != s2 {
		t.Fatal("the command was not moved to the new session")
	}
	// A build holding the old session goes on with the new one.
	rc2, err := s1.Start(context.Background(), "b1", proto.CmdMkdir, map[string]any{"paths": []any{s1.Join(s1.Basedir(), "b1", "next")}}, &recorder{})
	if err != nil {
		t.Fatalf("Start through the old session: %v", err)
	}
	if rc2.owner() != s2 || wait(t, rc2) != nil {
		t.Fatal("the next step did not run on the new connection")
	}
	if rc2.ID == rc.ID {
		t.Fatalf("command id %s reused after the reconnect", rc.ID)
	}
}

func TestResumeHoldExpires(t *testing.T) {
	clk := clock.NewFake(time.Now())
	_, p, ev := resumeRegistry(t, clk)
	runAgent(t, p.Addr(), 0)
	s1 := waitSession(t, ev.attached)
	pidfile := filepath.Join(t.TempDir(), "pid")
	rc, err := s1.Start(context.Background(), "b1", proto.CmdShell, shell(s1, "echo $$ > "+pidfile+"; echo started; exec sleep 600"), newTextRecorder())
	if err != nil {
		t.Fatal(err)
	}
	pid := waitPid(t, pidfile)
	p.Cut()
	waitSession(t, ev.detached)
	s1.mu.Lock()
	hold := s1.resume.hold
	s1.mu.Unlock()
	if want := worker.DefaultResumeGrace + DefaultResumeMargin; hold != want {
		t.Fatalf("hold = %v, want the worker's grace plus the margin, %v", hold, want)
	}
	clk.Advance(hold)
	err = wait(t, rc)
	if !errors.Is(err, ErrWorkerLost) || !strings.Contains(err.Error(), "did not reconnect within") {
		t.Fatalf("Wait = %v, want ErrWorkerLost after the hold", err)
	}
	if _, err := s1.Start(context.Background(), "b1", proto.CmdMkdir, map[string]any{"paths": []any{"/tmp/x"}}, &recorder{}); !errors.Is(err, ErrWorkerLost) {
		t.Fatalf("Start after the hold = %v", err)
	}
	// The worker comes back too late: the master no longer lists the
	// command, so the worker kills it.
	p.Restore()
	waitSession(t, ev.attached)
	waitGone(t, pid)
}

func TestPlainWorkerLosesItsCommandsAtOnce(t *testing.T) {
	clk := clock.NewFake(time.Now())
	_, p, ev := resumeRegistry(t, clk)
	runAgent(t, p.Addr(), -1) // the extension off, as a Buildbot worker
	s1 := waitSession(t, ev.attached)
	if s1.HasExtension(proto.ExtResume) {
		t.Fatal("resume agreed with a worker that did not offer it")
	}
	rc, err := s1.Start(context.Background(), "b1", proto.CmdShell, shell(s1, "echo started; exec sleep 600"), newTextRecorder())
	if err != nil {
		t.Fatal(err)
	}
	p.Cut()
	if err := wait(t, rc); !errors.Is(err, ErrWorkerLost) {
		t.Fatalf("Wait = %v, want ErrWorkerLost at once", err)
	}
}

func TestInterruptWhileAwayEndsTheCommand(t *testing.T) {
	clk := clock.NewFake(time.Now())
	_, p, ev := resumeRegistry(t, clk)
	runAgent(t, p.Addr(), 0)
	s1 := waitSession(t, ev.attached)
	pidfile := filepath.Join(t.TempDir(), "pid")
	rc, err := s1.Start(context.Background(), "b1", proto.CmdShell, shell(s1, "echo $$ > "+pidfile+"; exec sleep 600"), newTextRecorder())
	if err != nil {
		t.Fatal(err)
	}
	pid := waitPid(t, pidfile)
	p.Cut()
	waitSession(t, ev.detached)
	if err := rc.Interrupt(context.Background(), "stopped by a person"); err != nil {
		t.Fatal(err)
	}
	err = wait(t, rc)
	if err == nil || errors.Is(err, ErrWorkerLost) || !strings.Contains(err.Error(), "while the worker was disconnected") {
		t.Fatalf("Wait = %v, want the interrupt's failure", err)
	}
	p.Restore()
	waitSession(t, ev.attached)
	waitGone(t, pid)
}

func TestStartWhileAwayWaitsForTheReconnect(t *testing.T) {
	clk := clock.NewFake(time.Now())
	_, p, ev := resumeRegistry(t, clk)
	runAgent(t, p.Addr(), 0)
	s1 := waitSession(t, ev.attached)
	p.Cut()
	waitSession(t, ev.detached)
	type started struct {
		rc  *RemoteCommand
		err error
	}
	done := make(chan started, 1)
	go func() {
		rc, err := s1.Start(context.Background(), "b1", proto.CmdMkdir, map[string]any{"paths": []any{s1.Join(s1.Basedir(), "b1", "x")}}, &recorder{})
		done <- started{rc, err}
	}()
	pinged := make(chan error, 1)
	go func() { pinged <- s1.Ping(context.Background()) }()
	p.Restore()
	s2 := waitSession(t, ev.attached)
	st := <-done
	if st.err != nil {
		t.Fatal(st.err)
	}
	if err := wait(t, st.rc); err != nil || st.rc.owner() != s2 {
		t.Fatalf("Wait = %v; on the new session: %v", err, st.rc.owner() == s2)
	}
	if err := <-pinged; err != nil {
		t.Fatalf("Ping across the reconnect: %v", err)
	}
}

// TestResumeProtocol plays the worker's side by hand: numbered messages,
// a repeat answered from memory, counts checked at the reconnect.
func TestResumeProtocol(t *testing.T) {
	clk := clock.NewFake(time.Now())
	_, p, ev := resumeRegistry(t, clk)
	var readMu sync.Mutex
	reads := 0
	readCount := func() int { readMu.Lock(); defer readMu.Unlock(); return reads }
	reader := handlerFunc(func(op string, msg proto.Message) (any, error) {
		if op != proto.OpReadFile {
			return nil, nil
		}
		readMu.Lock()
		defer readMu.Unlock()
		reads++
		return []byte("chunk" + strconv.Itoa(reads)), nil
	})

	w := &rawResumer{t: t, addr: p.Addr()}
	w.connect()
	s1 := waitSession(t, ev.attached)
	h1, h2, h3 := newTextRecorder(), newTextRecorder(), newTextRecorder()
	ctx := context.Background()
	var rcs []*RemoteCommand
	for _, h := range []CommandHandler{h1, h2, h3, reader} {
		rc, err := s1.Start(ctx, "b1", proto.CmdShell, map[string]any{}, h)
		if err != nil {
			t.Fatal(err)
		}
		rcs = append(rcs, rc)
	}
	w.update("1", 1, "a\n")
	w.update("2", 1, "x\n")
	if _, err := w.send(proto.OpUpdate, "2", 3, nil); err == nil || !strings.Contains(err.Error(), "never arrived") {
		t.Fatalf("a gap in the numbers: %v", err)
	}
	if err := wait(t, rcs[1]); !errors.Is(err, ErrWorkerLost) {
		t.Fatalf("command with a gap: %v", err)
	}
	if got, _ := w.send(proto.OpReadFile, "4", 1, nil); string(got.([]byte)) != "chunk1" {
		t.Fatalf("read = %q", got)
	}

	w.drop()
	waitSession(t, ev.detached)
	w.setReport([]proto.ResumeCommand{{ID: "1", Count: 2}, {ID: "4", Count: 1}}) // 3 not reported
	w.connect()
	s2 := waitSession(t, ev.attached)
	if want := []proto.ResumeCommand{{ID: "1", Count: 1}, {ID: "3", Count: 0}, {ID: "4", Count: 1}}; fmt.Sprint(w.lastAsked()) != fmt.Sprint(want) {
		t.Fatalf("starforge_resume listed %v, want %v", w.lastAsked(), want)
	}
	if err := wait(t, rcs[2]); !errors.Is(err, ErrWorkerLost) || !errors.Is(err, errNotReported) {
		t.Fatalf("unreported command: %v", err)
	}
	// The read answered before the drop is asked again: the same bytes,
	// without reading twice.
	if got, _ := w.send(proto.OpReadFile, "4", 1, nil); string(got.([]byte)) != "chunk1" || readCount() != 1 {
		t.Fatalf("repeated read = %q after %d reads", got, readCount())
	}
	if got, _ := w.send(proto.OpReadFile, "4", 2, nil); string(got.([]byte)) != "chunk2" {
		t.Fatalf("next read = %q", got)
	}
	w.update("1", 1, "a\n") // a repeat of what the master had
	w.update("1", 2, "b\n")
	if _, err := w.send(proto.OpComplete, "1", 3, nil); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, rcs[0]); err != nil {
		t.Fatal(err)
	}
	if got := h1.stdout(); got != "a\nb\n" {
		t.Fatalf("stdout = %q", got)
	}
	if rcs[0].owner() != s2 {
		t.Fatal("command 1 not on the new session")
	}

	// Counts that cannot be right fail the command.
	w.drop()
	waitSession(t, ev.detached)
	w.setReport([]proto.ResumeCommand{{ID: "4", Count: 9}})
	w.connect()
	waitSession(t, ev.attached)
	if err := wait(t, rcs[3]); !errors.Is(err, ErrWorkerLost) || !strings.Contains(err.Error(), "numbered 9 messages") {
		t.Fatalf("inconsistent counts: %v", err)
	}
}

// TestSilentConnectionReplacedIsResumed: the worker reconnects while the
// master still has its old connection, which no longer answers; the old
// session is replaced, held, and taken up by the new connection.
func TestSilentConnectionReplacedIsResumed(t *testing.T) {
	clk := clock.NewFake(time.Now())
	r, p, ev := resumeRegistry(t, clk)
	old := &rawResumer{t: t, addr: p.Addr(), silent: make(chan struct{})}
	t.Cleanup(func() { close(old.silent) })
	old.connect()
	s1 := waitSession(t, ev.attached)
	h := newTextRecorder()
	rc, err := s1.Start(context.Background(), "b1", proto.CmdShell, map[string]any{}, h)
	if err != nil {
		t.Fatal(err)
	}
	old.update("1", 1, "before\n")

	w := &rawResumer{t: t, addr: p.Addr()}
	w.setReport([]proto.ResumeCommand{{ID: "1", Count: 2}})
	w.connect() // the master asks the old connection, which stays silent for 5 s
	if got := waitSession(t, ev.detached); got != s1 {
		t.Fatal("another session detached")
	}
	s2 := waitSession(t, ev.attached)
	if r.Get("w1") != s2 {
		t.Fatal("the new connection does not have the name")
	}
	w.update("1", 2, "after\n")
	if _, err := w.send(proto.OpComplete, "1", 3, nil); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, rc); err != nil {
		t.Fatal(err)
	}
	if got := h.stdout(); got != "before\nafter\n" {
		t.Fatalf("stdout = %q", got)
	}
}

type handlerFunc func(op string, msg proto.Message) (any, error)

func (f handlerFunc) HandleCommand(op string, msg proto.Message) (any, error) { return f(op, msg) }

// rawResumer is a worker speaking the resume extension by hand.
type rawResumer struct {
	t      *testing.T
	addr   string
	ws     *websocket.Conn
	conn   *proto.Conn
	mu     sync.Mutex
	report []proto.ResumeCommand // the answer to the next starforge_resume
	asked  []proto.ResumeCommand // what the last one listed
	// silent, if set, is waited for before answering the master's
	// duplicate check: a connection that went silent.
	silent chan struct{}
}

func (w *rawResumer) setReport(r []proto.ResumeCommand) { w.mu.Lock(); w.report = r; w.mu.Unlock() }

func (w *rawResumer) lastAsked() []proto.ResumeCommand {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.asked
}

func (w *rawResumer) connect() {
	t := w.t
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("w1:secret")))
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+w.addr+"/", h)
	if err != nil {
		t.Fatal(err)
	}
	w.ws = ws
	w.conn = proto.NewConn(ws, proto.HandlerFunc(func(op string, msg proto.Message) (any, error) {
		switch op {
		case proto.OpGetWorkerInfo:
			return map[string]any{
				"basedir": "/w", "system": "posix",
				proto.KeyExtensions:  []any{proto.ExtResume},
				proto.KeyResumeGrace: 3.0,
			}, nil
		case proto.OpPrint:
			if m, _ := msg["message"].(string); m == "master got a duplicate connection" && w.silent != nil {
				<-w.silent
			}
		case proto.OpResume:
			asked, err := proto.DecodeResume(msg, proto.ResumeReceived)
			if err != nil {
				t.Errorf("starforge_resume: %v", err)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			w.asked = asked
			return proto.ResumeFields(proto.ResumeSent, w.report), nil
		}
		return nil, nil
	}), proto.Options{Logger: slog.New(slog.DiscardHandler)})
	go w.conn.Serve()
	t.Cleanup(func() { w.conn.Close(nil) })
}

// drop ends the TCP connection without a close frame.
func (w *rawResumer) drop() {
	w.ws.UnderlyingConn().Close()
	<-w.conn.Done()
}

func (w *rawResumer) send(op, id string, seq int64, fields map[string]any) (any, error) {
	m := map[string]any{"command_id": id, proto.KeySeq: seq}
	for k, v := range fields {
		m[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.conn.Call(ctx, op, m)
}

func (w *rawResumer) update(id string, seq int64, text string) {
	w.t.Helper()
	args := proto.EncodeUpdates([]proto.Update{{Key: proto.UpdStdout, Value: proto.NewLogChunk(text, 0)}})
	if _, err := w.send(proto.OpUpdate, id, seq, map[string]any{"args": args}); err != nil {
		w.t.Fatal(err)
	}
}

func waitPid(t *testing.T, pidfile string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(pidfile)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatal("the step did not write its pid")
		}
		time.Sleep(10 * time.Millisecond) // the step's file is not an event we can await
	}
}

// waitGone waits for process pid to end (the worker reaps it).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still runs: the worker did not kill it", pid)
		}
		time.Sleep(10 * time.Millisecond) // process exit is not an event we can await
	}
}
