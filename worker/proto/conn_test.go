package proto

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// pair connects two Conns over a real WebSocket on 127.0.0.1.
func pair(t *testing.T, serverH, clientH Handler, opts Options) (server, client *Conn) {
	t.Helper()
	ch := make(chan *Conn, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		c := NewConn(ws, serverH, opts)
		ch <- c
		c.Serve()
	}))
	t.Cleanup(srv.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	client = NewConn(ws, clientH, opts)
	go client.Serve()
	server = <-ch
	t.Cleanup(func() { client.Close(nil); server.Close(nil) })
	return server, client
}

func TestCallBothWays(t *testing.T) {
	var mu sync.Mutex
	var order []string
	clientH := HandlerFunc(func(op string, m Message) (any, error) {
		mu.Lock()
		order = append(order, op)
		mu.Unlock()
		switch op {
		case "fast":
			return "f", nil
		case "fail":
			return nil, errors.New("it broke")
		}
		return nil, errors.New("Command " + op + " does not exist.")
	})
	serverH := HandlerFunc(func(op string, m Message) (any, error) { return "from-server:" + op, nil })
	server, client := pair(t, serverH, clientH, Options{})
	ctx := context.Background()

	var wg sync.WaitGroup
	results := make([]any, 2)
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); results[0], errs[0] = server.Call(ctx, "fast", nil) }()
	go func() { defer wg.Done(); results[1], errs[1] = client.Call(ctx, "hello", map[string]any{"x": 1}) }()
	wg.Wait()
	if results[0] != "f" || errs[0] != nil {
		t.Errorf("server→client fast = %v, %v", results[0], errs[0])
	}
	if results[1] != "from-server:hello" || errs[1] != nil {
		t.Errorf("client→server = %v, %v", results[1], errs[1])
	}
	_, err := server.Call(ctx, "fail", nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "it broke" || re.Op != "fail" {
		t.Errorf("exception response: %v", err)
	}
	_, err = server.Call(ctx, "nosuch", nil)
	if err == nil || !strings.Contains(err.Error(), "Command nosuch does not exist.") {
		t.Errorf("unknown op: %v", err)
	}
}

func TestCloseFailsPendingCalls(t *testing.T) {
	clientH := HandlerFunc(func(op string, m Message) (any, error) {
		return nil, nil
	})
	server, client := pair(t, HandlerFunc(func(string, Message) (any, error) { return nil, nil }), clientH, Options{})
	// Make a call the peer never answers: close the client's side first.
	client.Close(errors.New("test closes"))
	<-server.Done()
	_, err := server.Call(context.Background(), "print", nil)
	if !errors.Is(err, ErrConnClosed) {
		t.Fatalf("call on closed conn: %v", err)
	}
}

func TestMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	up := websocket.Upgrader{}
	closed := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := NewConn(ws, HandlerFunc(func(string, Message) (any, error) { return nil, nil }), Options{})
		closed <- c.Serve()
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	bad, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.WriteMessage(websocket.BinaryMessage, []byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	reason := <-closed
	if reason == nil || !strings.Contains(reason.Error(), "malformed frame") {
		t.Fatalf("close reason = %v", reason)
	}
	// The server still serves others.
	good, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("second connection: %v", err)
	}
	c := NewConn(good, HandlerFunc(func(string, Message) (any, error) { return nil, nil }), Options{})
	go c.Serve()
	defer c.Close(nil)
	if _, err := c.Call(context.Background(), "print", map[string]any{"message": "hi"}); err != nil {
		t.Fatalf("call on a healthy connection: %v", err)
	}
}

func TestOversizedFrameCloses(t *testing.T) {
	server, client := pair(t, HandlerFunc(func(string, Message) (any, error) { return nil, nil }),
		HandlerFunc(func(string, Message) (any, error) { return nil, nil }), Options{MaxFrameSize: 1024})
	_, err := client.Call(context.Background(), "update", map[string]any{"args": make([]byte, 4096)})
	if err == nil {
		t.Fatal("oversized call succeeded")
	}
	<-server.Done()
	if !strings.Contains(server.Err().Error(), "larger than the limit") {
		t.Fatalf("server close reason = %v", server.Err())
	}
}

func TestSilentPeerDetectedByPingDeadline(t *testing.T) {
	up := websocket.Upgrader{}
	closed := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := NewConn(ws, HandlerFunc(func(string, Message) (any, error) { return nil, nil }),
			Options{PingInterval: 50 * time.Millisecond, PongTimeout: 100 * time.Millisecond})
		closed <- c.Serve()
	}))
	defer srv.Close()
	// A raw client that never reads, so it never answers pings.
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	select {
	case reason := <-closed:
		if !strings.Contains(reason.Error(), "ping deadline") {
			t.Fatalf("close reason = %v", reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("silent peer not detected")
	}
}

// TestResponsesOutOfOrder: a raw peer answers two requests in reverse
// order; each Call gets its own result.
func TestResponsesOutOfOrder(t *testing.T) {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var reqs []Message
		for len(reqs) < 2 {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			m, err := Decode(b)
			if err != nil {
				return
			}
			reqs = append(reqs, m)
		}
		for i := len(reqs) - 1; i >= 0; i-- {
			seq, _ := reqs[i].Seq()
			b, _ := Encode(Message{"op": OpResponse, "seq_number": seq, "result": reqs[i]["message"]})
			ws.WriteMessage(websocket.BinaryMessage, b)
		}
		ws.ReadMessage() // wait for the client to go
	}))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(ws, HandlerFunc(func(string, Message) (any, error) { return nil, nil }), Options{})
	go c.Serve()
	defer c.Close(nil)
	var wg sync.WaitGroup
	got := make([]any, 2)
	for i, msg := range []string{"first", "second"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = c.Call(context.Background(), "print", map[string]any{"message": msg})
		}()
	}
	wg.Wait()
	if got[0] != "first" || got[1] != "second" {
		t.Fatalf("results = %v, want [first second]", got)
	}
}
