package worker

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/starforge/starforge/worker/command"
	"github.com/starforge/starforge/worker/proto"
)

func TestGetWorkerInfo(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta := startAgent(t, m, func(a *Agent) {
		info := filepath.Join(a.Basedir, "info")
		os.MkdirAll(filepath.Join(info, "subdir"), 0o755)
		os.WriteFile(filepath.Join(info, "admin"), []byte("Your Name Here <admin@youraddress.invalid>\n"), 0o644)
		os.WriteFile(filepath.Join(info, "host"), []byte("Please put a description of this build host here\n"), 0o644)
		os.WriteFile(filepath.Join(info, "access_uri"), []byte("ssh://w1\xff\n"), 0o644) // not UTF-8
	})
	mc := m.accept(t)

	res, err := mc.call(t, proto.OpGetWorkerInfo, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, ok := res.(map[string]any)
	if !ok {
		t.Fatalf("info is %T", res)
	}
	basedir, _ := filepath.Abs(ta.Basedir)
	want := map[string]any{
		"admin":      "Your Name Here <admin@youraddress.invalid>\n",
		"host":       "Please put a description of this build host here\n",
		"access_uri": "ssh://w1\uFFFD\n",
		"basedir":    basedir,
		"system":     map[bool]string{true: "nt", false: "posix"}[runtime.GOOS == "windows"],
		"version":    "starforge-worker test",
	}
	for k, v := range want {
		if info[k] != v {
			t.Errorf("info[%q] = %#v, want %#v", k, info[k], v)
		}
	}
	if _, ok := info["subdir"]; ok {
		t.Error("a directory in info/ was reported")
	}
	if n, ok := proto.AsInt(info["numcpus"]); !ok || n != int64(runtime.NumCPU()) {
		t.Errorf("numcpus = %#v", info["numcpus"])
	}
	if n, ok := proto.AsInt(info["delete_leftover_dirs"]); !ok || n != 0 {
		t.Errorf("delete_leftover_dirs = %#v", info["delete_leftover_dirs"])
	}
	if id, _ := info["os_id"].(string); id == "" {
		t.Errorf("os_id = %#v", info["os_id"])
	}
	env, ok := info["environ"].(map[string]any)
	if !ok || env["PATH"] != os.Getenv("PATH") {
		t.Errorf("environ lacks PATH: %T", info["environ"])
	}
	cmds, ok := info["worker_commands"].(map[string]any)
	if !ok {
		t.Fatalf("worker_commands is %T", info["worker_commands"])
	}
	for _, name := range []string{"mkdir", "rmfile", "stat", "glob", "listdir", "upload_file", "uploadFile", "upload_directory", "uploadDirectory", "download_file", "downloadFile"} {
		if cmds[name] != "3.1" {
			t.Errorf("worker_commands[%q] = %#v, want \"3.1\"", name, cmds[name])
		}
	}

	m.mu.Lock()
	path, hdr := m.paths[0], m.headers[0]
	m.mu.Unlock()
	if path != "/" {
		t.Errorf("upgrade path %q, want /", path)
	}
	if ua := hdr.Get("User-Agent"); ua != "starforge-worker/test" {
		t.Errorf("User-Agent %q", ua)
	}
}

func TestSetWorkerSettings(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta := startAgent(t, m, nil)
	mc := m.accept(t)
	valid := func() map[string]any {
		return map[string]any{"newline_re": proto.DefaultNewlineRE, "max_line_length": 4096, "buffer_timeout": 0.5, "buffer_size": 65536}
	}
	without := func(k string) map[string]any { s := valid(); delete(s, k); return s }
	with := func(k string, v any) map[string]any { s := valid(); s[k] = v; return s }
	tests := []struct {
		name    string
		fields  map[string]any
		wantErr string // substring of the exception; "" for success
	}{
		{"valid", map[string]any{"args": valid()}, ""},
		{"no args", map[string]any{}, `obligatory "args" key`},
		{"no buffer_size", map[string]any{"args": without("buffer_size")}, `obligatory "buffer_size" key`},
		{"no buffer_timeout", map[string]any{"args": without("buffer_timeout")}, `obligatory "buffer_timeout" key`},
		{"no newline_re", map[string]any{"args": without("newline_re")}, `obligatory "newline_re" key`},
		{"no max_line_length", map[string]any{"args": without("max_line_length")}, `obligatory "max_line_length" key`},
		{"nil max_line_length", map[string]any{"args": with("max_line_length", nil)}, `obligatory "max_line_length" key`},
		{"bad newline_re", map[string]any{"args": with("newline_re", "(")}, "newline_re"},
		{"bad buffer_size", map[string]any{"args": with("buffer_size", 0)}, "buffer_size"},
		{"string max_line_length", map[string]any{"args": with("max_line_length", "big")}, "max_line_length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := mc.call(t, proto.OpSetWorkerSettings, tt.fields)
			if tt.wantErr == "" {
				if err != nil || res != nil {
					t.Fatalf("= %v, %v; want nil", res, err)
				}
				return
			}
			var re *proto.RemoteError
			if !errors.As(err, &re) || !strings.Contains(re.Msg, tt.wantErr) {
				t.Fatalf("error = %v, want an exception containing %q", err, tt.wantErr)
			}
		})
	}
	// The valid settings stayed in force through the refused ones.
	if got := ta.currentSettings(); got.BufferTimeout != 500*time.Millisecond || got.MaxLineLength != 4096 || got.BufferSize != 65536 {
		t.Errorf("settings = %+v", got)
	}
}

func TestFSCommandsOverTheWire(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta := startAgent(t, m, nil)
	mc := m.accept(t)
	base, _ := filepath.Abs(ta.Basedir)

	r := mc.run(t, "c1", "listdir", map[string]any{"path": base})
	if !slices.Equal(r.keys(), []string{"files", "rc", "elapsed"}) || r.complete != nil {
		t.Fatalf("listdir: keys %v complete %v", r.keys(), r.complete)
	}

	r = mc.run(t, "c2", "mkdir", map[string]any{"paths": []any{filepath.Join(base, "b1", "build"), filepath.Join(base, "info")}})
	if !slices.Equal(r.keys(), []string{"rc", "elapsed"}) || r.rc() != 0 || r.complete != nil {
		t.Fatalf("mkdir: keys %v rc %d complete %v", r.keys(), r.rc(), r.complete)
	}
	if fi, err := os.Stat(filepath.Join(base, "b1", "build")); err != nil || !fi.IsDir() {
		t.Fatalf("mkdir did not create the directory: %v", err)
	}

	r = mc.run(t, "c3", "listdir", map[string]any{"path": base})
	files, _ := r.value("files").([]any)
	if !slices.Equal(files, []any{"b1", "info"}) {
		t.Fatalf("listdir files = %v", files)
	}

	file := filepath.Join(base, "b1", "build", "f.txt")
	os.WriteFile(file, []byte("out2\n"), 0o644)
	r = mc.run(t, "c4", "stat", map[string]any{"path": file})
	st, _ := r.value("stat").([]any)
	if len(st) != 10 || r.rc() != 0 {
		t.Fatalf("stat = %v rc %d", st, r.rc())
	}
	if mode, _ := proto.AsInt(st[0]); mode&0o170000 != 0o100000 {
		t.Errorf("stat mode %#o is not a regular file", mode)
	}

	r = mc.run(t, "c5", "glob", map[string]any{"path": filepath.Join(base, "b1", "build", "*.txt")})
	if files, _ := r.value("files").([]any); !slices.Equal(files, []any{file}) {
		t.Errorf("glob files = %v", files)
	}

	r = mc.run(t, "c6", "stat", map[string]any{"path": filepath.Join(base, "missing")})
	if r.rc() == 0 || r.complete != nil {
		t.Errorf("stat of a missing file: rc %d complete %v", r.rc(), r.complete)
	}
}

func TestTransfersOverTheWire(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	content := []byte("hello from master\nhello from master\nhello from master\n")
	served := false
	// Like a Buildbot 3.7 master: the bytes once, then nil.
	m.readFile = func(proto.Message) any {
		if served {
			return nil
		}
		served = true
		return content
	}
	ta := startAgent(t, m, nil)
	mc := m.accept(t)
	base, _ := filepath.Abs(ta.Basedir)
	file := filepath.Join(base, "f.txt")
	os.WriteFile(file, []byte("out2\n"), 0o644)

	r := mc.run(t, "c6", "upload_file", map[string]any{"path": file, "maxsize": nil, "blocksize": 16384, "keepstamp": true})
	want := []string{proto.OpUploadFileWrite, proto.OpUploadFileClose, proto.OpUploadFileUtime, proto.OpUpdate, proto.OpComplete}
	if !slices.Equal(r.ops, want) || r.rc() != 0 {
		t.Fatalf("upload ops %v rc %d, want %v", r.ops, r.rc(), want)
	}
	if data, _ := r.msgs[0]["args"].([]byte); string(data) != "out2\n" {
		t.Errorf("uploaded %#v, want bin \"out2\\n\"", r.msgs[0]["args"])
	}
	if _, ok := r.msgs[2]["modified_time"].(float64); !ok {
		t.Errorf("modified_time is %T", r.msgs[2]["modified_time"])
	}

	dest := filepath.Join(base, "b1", "dl.txt")
	r = mc.run(t, "c7", "download_file", map[string]any{"path": dest, "maxsize": nil, "blocksize": 16384, "mode": nil})
	if !slices.Equal(r.ops, []string{proto.OpReadFileClose, proto.OpUpdate, proto.OpComplete}) || r.rc() != 0 {
		t.Fatalf("download ops %v rc %d", r.ops, r.rc())
	}
	if got, _ := os.ReadFile(dest); string(got) != string(content) {
		t.Errorf("downloaded %q", got)
	}
}

func TestStartCommandExceptions(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	startAgent(t, m, nil)
	mc := m.accept(t)
	tests := []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{"unknown command", map[string]any{"command_id": "c14", "command_name": "nosuch", "args": map[string]any{}}, "unrecognized WorkerCommand 'nosuch'"},
		{"missing args", map[string]any{"command_id": "c15", "command_name": "mkdir", "args": map[string]any{}}, "mkdir is missing args: paths"},
		{"no command_id", map[string]any{"command_name": "mkdir", "args": map[string]any{"paths": []any{}}}, "command_id"},
	}
	for _, tt := range tests {
		_, err := mc.call(t, proto.OpStartCommand, tt.fields)
		var re *proto.RemoteError
		if !errors.As(err, &re) || re.Msg != tt.want && !strings.Contains(re.Msg, tt.want) {
			t.Errorf("%s: error %v, want exception %q", tt.name, err, tt.want)
		}
	}
	// Nothing was started: the next request the master sees is this one's.
	r := mc.run(t, "c16", "mkdir", map[string]any{"paths": []any{}})
	if r.rc() != 0 {
		t.Fatalf("rc %d", r.rc())
	}
}

func TestUnknownOp(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	startAgent(t, m, nil)
	mc := m.accept(t)
	_, err := mc.call(t, "bogus_op", nil)
	var re *proto.RemoteError
	if !errors.As(err, &re) || re.Msg != "Command bogus_op does not exist." {
		t.Fatalf("error %v, want exception %q", err, "Command bogus_op does not exist.")
	}
	for _, op := range []string{proto.OpKeepalive, proto.OpPrint} {
		if res, err := mc.call(t, op, map[string]any{"message": "attached"}); res != nil || err != nil {
			t.Errorf("%s = %v, %v; want nil", op, res, err)
		}
	}
}

// endlessDownload makes m serve update_read_file forever, one byte at a
// time, so that a download_file stays running until it is stopped.
func endlessDownload(m *testMaster) {
	m.readFile = func(proto.Message) any { return []byte("x") }
}

// startEndless starts an endless download as command id and waits until
// it is running.
func startEndless(t *testing.T, mc *masterConn, dir, id string) {
	t.Helper()
	mc.start(t, id, "download_file", map[string]any{"path": filepath.Join(dir, id), "maxsize": nil, "blocksize": 1, "mode": nil})
	select {
	case <-mc.reading:
	case <-time.After(waitTimeout):
		t.Fatal("download not running")
	}
}

func TestDuplicateAndInterruptedCommands(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	endlessDownload(m)
	ta := startAgent(t, m, nil)
	mc := m.accept(t)
	startEndless(t, mc, ta.Basedir, "d1")

	_, err := mc.call(t, proto.OpStartCommand, map[string]any{"command_id": "d1", "command_name": "mkdir", "args": map[string]any{"paths": []any{}}})
	var re *proto.RemoteError
	if !errors.As(err, &re) || !strings.HasPrefix(re.Msg, "duplicate command_id") {
		t.Fatalf("duplicate start: %v", err)
	}
	if res, err := mc.call(t, proto.OpInterruptCommand, map[string]any{"command_id": "nosuch", "why": "x"}); res != nil || err != nil {
		t.Fatalf("interrupt of an unknown command = %v, %v; want nil", res, err)
	}
	if res, err := mc.call(t, proto.OpInterruptCommand, map[string]any{"command_id": "d1", "why": "test interrupt"}); res != nil || err != nil {
		t.Fatalf("interrupt = %v, %v", res, err)
	}
	r := mc.collect(t, "d1")
	if r.rc() != 1 || r.complete != nil {
		t.Fatalf("interrupted download: rc %d complete %v", r.rc(), r.complete)
	}
	if !slices.Contains(r.ops, proto.OpReadFileClose) {
		t.Errorf("reader not closed: %v", r.ops)
	}
	// The id is free again once the command completed.
	if r := mc.run(t, "d1", "mkdir", map[string]any{"paths": []any{}}); r.rc() != 0 {
		t.Fatalf("reused id: rc %d", r.rc())
	}
}

func TestShutdown(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	endlessDownload(m)
	ta := startAgent(t, m, nil)
	mc := m.accept(t)
	startEndless(t, mc, ta.Basedir, "d1")

	if res, err := mc.call(t, proto.OpShutdown, nil); res != nil || err != nil {
		t.Fatalf("shutdown = %v, %v; want nil", res, err)
	}
	// The running command is interrupted and reports before the worker goes.
	if r := mc.collect(t, "d1"); r.rc() != 1 {
		t.Errorf("command stopped by shutdown: rc %d", r.rc())
	}
	if err := ta.wait(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	mc.waitClosed(t)
	select {
	case <-m.conns:
		t.Fatal("the worker reconnected after shutdown")
	default:
	}
}

func TestCancelStopsTheAgent(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	endlessDownload(m)
	ta := startAgent(t, m, nil)
	mc := m.accept(t)
	startEndless(t, mc, ta.Basedir, "d1")
	// A stopping worker closes the connection before it kills its
	// commands, so the master sees a lost worker (and retries the build)
	// rather than a command that completed with a failure.
	ta.cancel()
	if err := ta.wait(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	mc.waitClosed(t)
	if !strings.Contains(mc.conn.Err().Error(), "worker stopping") {
		t.Errorf("close reason %v", mc.conn.Err())
	}
}

func TestWrongPasswordIsRetriedWithBackoff(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta := startAgent(t, m, func(a *Agent) {
		a.Password = "wrong"
		a.MinBackoff = 20 * time.Millisecond
		a.MaxBackoff = 200 * time.Millisecond
	})
	const window = 600 * time.Millisecond
	var attempts []time.Time
	deadline := time.After(window)
collect:
	for {
		select {
		case at := <-m.refused:
			attempts = append(attempts, at)
		case <-deadline:
			break collect
		}
	}
	ta.cancel()
	// Delays of at least 10, 20, 40, 80, 100, 100... ms allow at most 8
	// attempts in the window; a tight loop would make thousands.
	if n := len(attempts); n < 3 || n > 9 {
		t.Fatalf("%d attempts in %v, want 3..9", n, window)
	}
	first, last := attempts[1].Sub(attempts[0]), attempts[len(attempts)-1].Sub(attempts[len(attempts)-2])
	if last < first {
		t.Errorf("delays shrank: first %v, last %v", first, last)
	}
	if err := ta.wait(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ta.logs.String(), "master refused worker w1: wrong name or password (401)") {
		t.Errorf("logs lack the refusal:\n%s", ta.logs)
	}
}

func TestReconnectAfterTheMasterDropsTheConnection(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	endlessDownload(m)
	ta := startAgent(t, m, nil)
	mc := m.accept(t)
	startEndless(t, mc, ta.Basedir, "d1")
	mc.conn.Close(errors.New("master restarting"))

	// The lost connection's command ends (the agent waits for it before
	// reconnecting; collect fails on a message about another command), and
	// the new connection works.
	mc2 := m.accept(t)
	if r := mc2.run(t, "c1", "mkdir", map[string]any{"paths": []any{}}); r.rc() != 0 {
		t.Fatalf("rc %d on the new connection", r.rc())
	}
	if _, err := os.Stat(filepath.Join(ta.Basedir, "d1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cancelled download left its file: %v", err)
	}
}

func TestMalformedFrameClosesAndReconnects(t *testing.T) {
	m := newTestMaster(t, "w1", "pw1")
	ta := startAgent(t, m, nil)
	mc := m.accept(t)
	if res, err := mc.call(t, proto.OpKeepalive, nil); res != nil || err != nil {
		t.Fatalf("keepalive = %v, %v", res, err)
	}
	// 0xc1 is never valid msgpack. The connection is idle, so this write
	// cannot race the proto.Conn's own writes.
	if err := mc.ws.WriteMessage(websocket.BinaryMessage, []byte{0xc1}); err != nil {
		t.Fatal(err)
	}
	mc.waitClosed(t)
	mc2 := m.accept(t)
	if res, err := mc2.call(t, proto.OpKeepalive, nil); res != nil || err != nil {
		t.Fatalf("keepalive on the new connection = %v, %v", res, err)
	}
	if !strings.Contains(ta.logs.String(), "malformed frame") {
		t.Errorf("logs lack the reason:\n%s", ta.logs)
	}
}

func TestRunRejectsBadConfiguration(t *testing.T) {
	tests := []struct {
		name string
		a    *Agent
	}{
		{"no master", &Agent{Name: "w", Basedir: "/tmp"}},
		{"no name", &Agent{Master: "h:1", Basedir: "/tmp"}},
		{"colon in name", &Agent{Master: "h:1", Name: "a:b", Basedir: "/tmp"}},
		{"no basedir", &Agent{Master: "h:1", Name: "w"}},
		{"bad master", &Agent{Master: "tcp:host=h:port=1", Name: "w", Basedir: "/tmp"}},
	}
	for _, tt := range tests {
		if err := tt.a.Run(t.Context()); err == nil {
			t.Errorf("%s: Run succeeded", tt.name)
		}
	}
}

func TestMasterURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"127.0.0.1:9989", "ws://127.0.0.1:9989/"},
		{"[::1]:9989", "ws://[::1]:9989/"},
		{"master.example:9989", "ws://master.example:9989/"},
		{"ws://m:1", "ws://m:1/"},
		{"wss://m:1/ws", "wss://m:1/ws"},
		{"http://m:1", "ws://m:1/"},
		{"https://m", "wss://m/"},
		{"m", ""},
		{"ftp://m:1", ""},
		{"ws://", ""},
	}
	for _, tt := range tests {
		got, err := masterURL(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("masterURL(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("masterURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestCommandsSeeTheSettings(t *testing.T) {
	// command.New is what the agent calls; its Env carries the settings.
	// This checks the plumbing without depending on a particular command.
	a := &Agent{Master: "h:1", Name: "w", Basedir: t.TempDir()}
	if err := a.init(); err != nil {
		t.Fatal(err)
	}
	if got := a.currentSettings(); got != command.DefaultSettings() {
		t.Fatalf("initial settings %+v", got)
	}
	err := a.setSettings(proto.Message{"args": map[string]any{"newline_re": "\n", "max_line_length": 80, "buffer_timeout": 1, "buffer_size": 10}})
	if err != nil {
		t.Fatal(err)
	}
	want := command.Settings{NewlineRE: "\n", MaxLineLength: 80, BufferSize: 10, BufferTimeout: time.Second}
	if got := a.currentSettings(); got != want {
		t.Fatalf("settings %+v, want %+v", got, want)
	}
}

func TestShellOverTheWire(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses sh and sleep")
	}
	m := newTestMaster(t, "w1", "pw1")
	ta := startAgent(t, m, nil)
	mc := m.accept(t)
	base, _ := filepath.Abs(ta.Basedir)
	settings := map[string]any{"newline_re": proto.DefaultNewlineRE, "max_line_length": 4096, "buffer_timeout": 0.1, "buffer_size": 65536}
	if _, err := mc.call(t, proto.OpSetWorkerSettings, map[string]any{"args": settings}); err != nil {
		t.Fatal(err)
	}
	r := mc.run(t, "c3", "shell", map[string]any{"workdir": base, "command": []any{"sh", "-c", "echo out1; exit 3"}, "logEnviron": false})
	if r.rc() != 3 || r.complete != nil {
		t.Fatalf("rc %d complete %v", r.rc(), r.complete)
	}
	if c, _ := r.value("stdout").(proto.LogChunk); c.Text != "out1\n" {
		t.Errorf("stdout %q", c.Text)
	}

	mc.start(t, "c13", "shell", map[string]any{"workdir": base, "command": []any{"sleep", "30"}, "logEnviron": false})
	// The header update shows the process was started.
	if msg := mc.next(t); msg.Op() != proto.OpUpdate {
		t.Fatalf("first message %s, want update", msg.Op())
	}
	if _, err := mc.call(t, proto.OpInterruptCommand, map[string]any{"command_id": "c13", "why": "test interrupt"}); err != nil {
		t.Fatal(err)
	}
	if r := mc.collect(t, "c13"); r.rc() != -1 {
		t.Fatalf("interrupted shell: rc %d", r.rc())
	}
}
