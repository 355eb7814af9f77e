//go:build unix

package worker

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/worker/proto"
)

// resumeHandshake answers the worker as a Starforge master does with the
// resume extension: agree, then ask it to resume the listed commands, and
// return its answer.
func resumeHandshake(t *testing.T, mc *masterConn, agree bool, held []proto.ResumeCommand) []proto.ResumeCommand {
	t.Helper()
	res, err := mc.call(t, proto.OpGetWorkerInfo, nil)
	if err != nil {
		t.Fatal(err)
	}
	info := res.(map[string]any)
	if got := proto.Extensions(info[proto.KeyExtensions]); !slices.Equal(got, []string{proto.ExtResume}) {
		t.Fatalf("the worker announces %v, want [resume]", got)
	}
	settings := map[string]any{"newline_re": proto.DefaultNewlineRE, "max_line_length": 4096, "buffer_timeout": 0.02, "buffer_size": 65536}
	if agree {
		settings[proto.KeyExtensions] = []any{proto.ExtResume}
	}
	if _, err := mc.call(t, proto.OpSetWorkerSettings, map[string]any{"args": settings}); err != nil {
		t.Fatal(err)
	}
	if !agree {
		return nil
	}
	res, err = mc.call(t, proto.OpResume, proto.ResumeFields(proto.ResumeReceived, held))
	if err != nil {
		t.Fatal(err)
	}
	got, err := proto.DecodeResume(res, proto.ResumeSent)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// drop ends the connection as a network failure would: no close frame.
func (mc *masterConn) drop(t *testing.T) {
	t.Helper()
	mc.ws.UnderlyingConn().Close()
	mc.waitClosed(t)
}

func mkfifo(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return p
}

// fifoIO writes to (or reads from) a named pipe once the other side opened it.
func fifoIO(t *testing.T, path, write string) string {
	t.Helper()
	done := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		if write != "" {
			errc <- os.WriteFile(path, []byte(write), 0o600)
			done <- ""
			return
		}
		b, err := os.ReadFile(path)
		errc <- err
		done <- string(b)
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
		return <-done
	case <-time.After(waitTimeout):
		t.Fatalf("nobody opened %s", path)
		return ""
	}
}

// numbered checks a numbered message of a resumed command and returns its
// number.
func numbered(t *testing.T, msg proto.Message) int64 {
	t.Helper()
	n, ok := proto.AsInt(msg[proto.KeySeq])
	if !ok || n < 1 {
		t.Fatalf("%s without a %s: %v", msg.Op(), proto.KeySeq, msg)
	}
	return n
}

// stdoutOf returns the stdout text of an update message.
func stdoutOf(t *testing.T, msg proto.Message) string {
	t.Helper()
	if msg.Op() != proto.OpUpdate {
		return ""
	}
	us, err := proto.DecodeUpdates(msg["args"])
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, u := range us {
		if c, ok := u.Value.(proto.LogChunk); ok && u.Key == proto.UpdStdout {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

func TestResumeCarriesACommandAcrossADisconnect(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta := startAgent(t, m, func(a *Agent) { a.Clock = clock.NewFake(time.Now()) })
	base, _ := filepath.Abs(ta.Basedir)
	in, out := mkfifo(t, base, "in"), mkfifo(t, base, "out")
	mc := m.accept(t)
	if got := resumeHandshake(t, mc, true, nil); len(got) != 0 {
		t.Fatalf("a fresh worker resumes %v", got)
	}
	mc.start(t, "1", "shell", map[string]any{"workdir": base, "logEnviron": false,
		"command": "echo one; read x < " + in + "; echo two $x; echo printed > " + out + "; read y < " + in + "; echo three $y"})
	// What the master handled, by number, as a resuming master keeps it.
	handled := map[int64]proto.Message{}
	keep := func(msg proto.Message) {
		n := numbered(t, msg)
		if old, ok := handled[n]; ok {
			if stdoutOf(t, old) != stdoutOf(t, msg) || old.Op() != msg.Op() {
				t.Fatalf("message %d repeated with other content: %v then %v", n, old, msg)
			}
			return
		}
		if n != int64(len(handled))+1 {
			t.Fatalf("message %d after %d: a gap", n, len(handled))
		}
		handled[n] = msg
	}
	for {
		msg := mc.next(t)
		keep(msg)
		if strings.Contains(stdoutOf(t, msg), "one\n") {
			break
		}
	}

	mc.drop(t)
	fifoIO(t, in, "x\n")
	if got := fifoIO(t, out, ""); got != "printed\n" {
		t.Fatalf("out = %q", got)
	}
	mc2 := m.accept(t)
	report := resumeHandshake(t, mc2, true, []proto.ResumeCommand{{ID: "1", Count: int64(len(handled))}})
	if len(report) != 1 || report[0].ID != "1" || report[0].Count < int64(len(handled)) || report[0].Count > int64(len(handled))+1 {
		t.Fatalf("the worker reports %v; the master handled %d messages", report, len(handled))
	}
	fifoIO(t, in, "y\n")
	for {
		msg := mc2.next(t)
		if msg.Op() != proto.OpUpdate && msg.Op() != proto.OpComplete {
			t.Fatalf("unexpected %s", msg.Op())
		}
		keep(msg)
		if msg.Op() == proto.OpComplete {
			break
		}
	}
	var text strings.Builder
	for n := int64(1); n <= int64(len(handled)); n++ {
		text.WriteString(stdoutOf(t, handled[n]))
	}
	if got := text.String(); got != "one\ntwo x\nthree y\n" {
		t.Fatalf("stdout = %q: every line exactly once, in order", got)
	}
	if !strings.Contains(ta.logs.String(), "keeping the running commands") {
		t.Errorf("logs do not say the commands were kept:\n%s", ta.logs)
	}
}

func TestResumeGracePasses(t *testing.T) {
	clk := clock.NewFake(time.Now())
	m := newTestMaster(t, "w1", "pw1")
	ta := startAgent(t, m, func(a *Agent) { a.Clock = clk; a.ResumeGrace = 5 * time.Second })
	base, _ := filepath.Abs(ta.Basedir)
	mc := m.accept(t)
	resumeHandshake(t, mc, true, nil)
	added := clk.Added()
	pid := startSleeper(t, mc, base, "1")
	mc.drop(t)
	// The worker reconnects; this master does not answer yet, and the
	// command waits for it until the grace passes.
	mc2 := m.accept(t)
	select {
	case <-added:
	case <-time.After(waitTimeout):
		t.Fatal("the worker armed no grace timer")
	}
	if !alive(pid) {
		t.Fatal("the command died while the worker waited for the master")
	}
	clk.Advance(5 * time.Second)
	waitDead(t, pid)
	if got := resumeHandshake(t, mc2, true, []proto.ResumeCommand{{ID: "1", Count: 1}}); len(got) != 0 {
		t.Fatalf("the worker resumes %v after its grace", got)
	}
}

func TestResumeEndsWhenTheMasterForgetsOrRefuses(t *testing.T) {
	for _, tt := range []struct {
		name  string
		agree bool // the next connection agrees to the extension
	}{
		{"master forgot the command", true},
		{"master without the extension", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMaster(t, "w1", "pw1")
			ta := startAgent(t, m, func(a *Agent) { a.Clock = clock.NewFake(time.Now()) })
			base, _ := filepath.Abs(ta.Basedir)
			mc := m.accept(t)
			resumeHandshake(t, mc, true, nil)
			pid := startSleeper(t, mc, base, "1")
			mc.drop(t)
			mc2 := m.accept(t)
			if got := resumeHandshake(t, mc2, tt.agree, nil); len(got) != 0 {
				t.Fatalf("resumed %v", got)
			}
			waitDead(t, pid)
			// The new connection works.
			if r := mc2.run(t, "2", "mkdir", map[string]any{"paths": []any{filepath.Join(base, "d")}}); r.rc() != 0 {
				t.Fatalf("mkdir rc %d", r.rc())
			}
		})
	}
}

func TestResumeNotForAClosedConnection(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta := startAgent(t, m, func(a *Agent) { a.Clock = clock.NewFake(time.Now()) })
	base, _ := filepath.Abs(ta.Basedir)
	mc := m.accept(t)
	resumeHandshake(t, mc, true, nil)
	pid := startSleeper(t, mc, base, "1")
	// A close frame: the master shut down on purpose. Nothing is kept.
	mc.conn.Close(errors.New("master shutting down"))
	waitDead(t, pid)
	if ta.keeping() {
		t.Fatal("commands kept after a deliberate close")
	}
}

func TestStoppingWorkerKillsKeptCommands(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta := startAgent(t, m, func(a *Agent) { a.Clock = clock.NewFake(time.Now()) })
	base, _ := filepath.Abs(ta.Basedir)
	mc := m.accept(t)
	resumeHandshake(t, mc, true, nil)
	pid := startSleeper(t, mc, base, "1")
	mc.drop(t)
	m.accept(t) // reconnected, waiting for the handshake
	ta.cancel()
	ta.wait(t)
	if alive(pid) {
		t.Fatal("a stopped worker left its kept command running")
	}
}

func TestResumeGraceAnnounced(t *testing.T) {
	for _, tt := range []struct {
		grace time.Duration
		want  any
	}{
		{0, DefaultResumeGrace.Seconds()},
		{3 * time.Second, 3.0},
		{-1, nil},
	} {
		a := &Agent{Master: "h:1", Name: "w", Basedir: t.TempDir(), ResumeGrace: tt.grace}
		if err := a.init(); err != nil {
			t.Fatal(err)
		}
		info := a.workerInfo()
		if got := info[proto.KeyResumeGrace]; got != tt.want {
			t.Errorf("grace %v: announced %v, want %v", tt.grace, got, tt.want)
		}
		if has := slices.Contains(proto.Extensions(info[proto.KeyExtensions]), proto.ExtResume); has != (tt.want != nil) {
			t.Errorf("grace %v: extensions %v", tt.grace, info[proto.KeyExtensions])
		}
	}
}

// startSleeper starts a command that sleeps and returns its pid, once the
// master saw its first update.
func startSleeper(t *testing.T, mc *masterConn, base, id string) int {
	t.Helper()
	pidfile := filepath.Join(base, "pid"+id)
	mc.start(t, id, "shell", map[string]any{"workdir": base, "logEnviron": false,
		"command": "echo $$ > " + pidfile + "; echo started; exec sleep 600"})
	for {
		if strings.Contains(stdoutOf(t, mc.next(t)), "started") {
			break
		}
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// waitDead waits for process pid to end; the worker reaps it.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond) // a process's end is not an event we can await here
	}
}
