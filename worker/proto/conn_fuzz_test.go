package proto

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// FuzzConn sends arbitrary frames to a Conn serving a real websocket: the
// RPC layer (requests, responses to calls it never made, unknown ops, bad
// sequence numbers, garbage) must answer or close that connection with a
// reason, never panic or hang.
func FuzzConn(f *testing.F) {
	for _, m := range []Message{
		{"op": "print", "seq_number": 1, "message": "hi"},
		{"op": "response", "seq_number": 7, "result": nil},
		{"op": "response", "seq_number": -1, "result": "boom", "is_exception": true},
		{"op": "update", "seq_number": 2, "command_id": "nope", "args": []any{}},
		{"op": "keepalive"},
		{"seq_number": 3},
	} {
		b, _ := Encode(m)
		f.Add(b)
	}
	done := make(chan error, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := NewConn(ws, HandlerFunc(func(op string, msg Message) (any, error) {
			if op == "print" {
				return nil, nil
			}
			return nil, errors.New("unknown op " + op)
		}), Options{})
		done <- c.Serve()
	}))
	f.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	f.Fuzz(func(t *testing.T, data []byte) {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Up to three frames, split where the input says.
		for _, frame := range bytes.SplitN(data, []byte("\x00\xff\x00"), 3) {
			if err := ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
				break
			}
		}
		// A well-formed call after the noise: answered, or the connection
		// was closed because of the noise.
		call, _ := Encode(Message{"op": "print", "seq_number": 1 << 40, "message": "still there?"})
		_ = ws.WriteMessage(websocket.BinaryMessage, call)
		ws.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _, _ = ws.ReadMessage()
		ws.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the server's Conn did not end after its peer closed")
		}
	})
}
