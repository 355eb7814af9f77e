package worker

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/worker/proto"
)

// waitTimeout bounds every wait in these tests; events normally arrive in
// milliseconds, so hitting it means a bug, not a slow machine.
const waitTimeout = 10 * time.Second

// testMaster is an in-process master: it checks HTTP Basic auth (401
// otherwise), upgrades, and hands each connection to the test, which
// drives the worker through it.
type testMaster struct {
	t              *testing.T
	srv            *httptest.Server
	name, password string
	// readFile answers update_read_file; nil answers nil (end of file), as
	// a Buildbot 3.7 master does. Set before the worker connects.
	readFile func(msg proto.Message) any

	conns   chan *masterConn
	refused chan time.Time // one per 401

	mu      sync.Mutex
	paths   []string // request paths of accepted upgrades
	headers []http.Header
}

// masterConn is one accepted worker connection.
type masterConn struct {
	t    *testing.T
	ws   *websocket.Conn
	conn *proto.Conn
	// reqs receives the worker's requests (update, complete, transfers),
	// after they were answered; update_read_file goes to reading instead.
	reqs    chan proto.Message
	reading chan struct{} // signalled (not queued) on each update_read_file
}

func newTestMaster(t *testing.T, name, password string) *testMaster {
	m := &testMaster{
		t: t, name: name, password: password,
		conns:   make(chan *masterConn, 16),
		refused: make(chan time.Time, 1024),
	}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serveHTTP))
	t.Cleanup(m.srv.Close)
	return m
}

// addr is the master's host:port, as a worker is configured with it.
func (m *testMaster) addr() string { return strings.TrimPrefix(m.srv.URL, "http://") }

func (m *testMaster) serveHTTP(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || user != m.name || pass != m.password {
		select {
		case m.refused <- time.Now():
		default:
		}
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	m.mu.Lock()
	m.paths = append(m.paths, r.URL.Path)
	m.headers = append(m.headers, r.Header.Clone())
	m.mu.Unlock()
	mc := &masterConn{t: m.t, ws: ws, reqs: make(chan proto.Message, 4096), reading: make(chan struct{}, 1)}
	mc.conn = proto.NewConn(ws, proto.HandlerFunc(func(op string, msg proto.Message) (any, error) {
		if op == proto.OpReadFile {
			select {
			case mc.reading <- struct{}{}:
			default:
			}
			if m.readFile != nil {
				return m.readFile(msg), nil
			}
			return nil, nil
		}
		mc.reqs <- msg
		return nil, nil
	}), proto.Options{Logger: slog.New(slog.DiscardHandler)})
	m.conns <- mc
	mc.conn.Serve()
}

// accept waits for the worker's next connection.
func (m *testMaster) accept(t *testing.T) *masterConn {
	t.Helper()
	select {
	case mc := <-m.conns:
		t.Cleanup(func() { mc.conn.Close(nil) })
		return mc
	case <-time.After(waitTimeout):
		t.Fatal("the worker did not connect")
		return nil
	}
}

// call sends a request to the worker and returns its answer.
func (mc *masterConn) call(t *testing.T, op string, fields map[string]any) (any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return mc.conn.Call(ctx, op, fields)
}

// next returns the worker's next request.
func (mc *masterConn) next(t *testing.T) proto.Message {
	t.Helper()
	select {
	case msg := <-mc.reqs:
		return msg
	case <-time.After(waitTimeout):
		t.Fatal("no request from the worker")
		return nil
	}
}

// commandResult is what the master saw of one command.
type commandResult struct {
	ops      []string // every op the command sent, in order
	updates  []proto.Update
	complete any // complete's args
	msgs     []proto.Message
}

func (r commandResult) value(key string) any {
	for i := len(r.updates) - 1; i >= 0; i-- {
		if r.updates[i].Key == key {
			return r.updates[i].Value
		}
	}
	return nil
}

func (r commandResult) rc() int64 {
	n, _ := proto.AsInt(r.value(proto.UpdRC))
	return n
}

func (r commandResult) keys() []string {
	var out []string
	for _, u := range r.updates {
		out = append(out, u.Key)
	}
	return out
}

// collect gathers the worker's requests for command id until its complete.
func (mc *masterConn) collect(t *testing.T, id string) commandResult {
	t.Helper()
	var r commandResult
	for {
		msg := mc.next(t)
		if got, _ := msg["command_id"].(string); got != id {
			t.Fatalf("request %s for command %v, want %s", msg.Op(), msg["command_id"], id)
		}
		r.ops = append(r.ops, msg.Op())
		r.msgs = append(r.msgs, msg)
		switch msg.Op() {
		case proto.OpUpdate:
			us, err := proto.DecodeUpdates(msg["args"])
			if err != nil {
				t.Fatalf("bad update: %v", err)
			}
			r.updates = append(r.updates, us...)
		case proto.OpComplete:
			r.complete = msg["args"]
			return r
		}
	}
}

// start sends start_command and checks that the worker accepted it.
func (mc *masterConn) start(t *testing.T, id, name string, args map[string]any) {
	t.Helper()
	res, err := mc.call(t, proto.OpStartCommand, map[string]any{
		"command_id": id, "command_name": name, "args": args, "builder_name": "b1",
	})
	if err != nil || res != nil {
		t.Fatalf("start_command %s %s = %v, %v; want nil", id, name, res, err)
	}
}

// run starts a command and returns what the master saw of it.
func (mc *masterConn) run(t *testing.T, id, name string, args map[string]any) commandResult {
	t.Helper()
	mc.start(t, id, name, args)
	return mc.collect(t, id)
}

// testAgent is a running Agent.
type testAgent struct {
	*Agent
	logs   *testenv.Buffer
	cancel context.CancelFunc
	done   chan error // Run's result
}

// startAgent runs an Agent for m with fast backoffs; configure may adjust
// it before it starts. The agent is stopped when the test ends.
func startAgent(t *testing.T, m *testMaster, configure func(*Agent)) *testAgent {
	t.Helper()
	logs := &testenv.Buffer{}
	a := &Agent{
		Master:      m.addr(),
		Name:        m.name,
		Password:    m.password,
		Basedir:     t.TempDir(),
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  50 * time.Millisecond,
		StopTimeout: 5 * time.Second,
		Version:     "test",
	}
	if configure != nil {
		configure(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { ta.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ta.done:
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return after cancellation; logs:\n%s", logs)
		}
	})
	return ta
}

// wait waits for Run to return and returns its error.
func (ta *testAgent) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-ta.done:
		ta.done <- err // for the cleanup
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("Run did not return; logs:\n%s", ta.logs)
		return nil
	}
}

// waitClosed waits until the connection is closed.
func (mc *masterConn) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-mc.conn.Done():
	case <-time.After(waitTimeout):
		t.Fatal("connection not closed")
	}
}
