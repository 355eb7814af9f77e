package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starforge/starforge/master/event"
)

// This file serves /ws, the live-event websocket, with Buildbot's
// protocol. The client sends commands as JSON text frames:
//
//	{"cmd": "startConsuming", "path": "builds/*/*", "_id": 1}
//	{"cmd": "stopConsuming", "path": "builds/*/*", "_id": 2}
//	{"cmd": "ping", "_id": 3}
//
// and gets one reply per command, {"_id": 1, "code": 200, "msg": "OK"}
// (or "pong"), or {"_id": 1, "code": 400, "error": "..."}. Each event a
// consumed path selects arrives as {"k": "builds/12/new", "m": {...}},
// the message being the resource as the REST API shows it. A path is
// split at "/" and each element matches the routing key's element at the
// same place, "*" matching any; the key must have as many elements.
//
// Events are sent in the order the master published them. A client that
// falls too far behind is disconnected (close code 1013) rather than
// allowed to hold up the master; it should reconnect and read what it
// shows again.

// liveState is what the live parts of the server share.
type liveState struct {
	bus       *event.Bus // nil: the master publishes no events
	metrics   *metrics
	wsClients atomic.Int64
	wsBuffer  int // events queued for one client before it is dropped
}

// eventSource is a Master that publishes live events; the master does
// (master.Master.Events).
type eventSource interface {
	Events() *event.Bus
}

// startLive finds the master's event bus and starts counting metrics.
func (s *Server) startLive() {
	if es, ok := s.m.(eventSource); ok {
		s.live.bus = es.Events()
	}
	s.live.metrics = newMetrics(s.live.bus)
	s.live.wsBuffer = wsBuffer
}

const (
	wsBuffer     = 4096             // default liveState.wsBuffer
	wsMaxPaths   = 200              // paths one client may consume
	wsReadLimit  = 16 << 10         // bytes in one command frame
	wsWriteWait  = 10 * time.Second // to write one frame
	wsPingPeriod = 30 * time.Second
	wsPongWait   = wsPingPeriod + 30*time.Second // silence before the client is deemed gone
)

// The default origin check, which allows a browser to connect only from
// a page of this server (same host), stops other sites' pages from
// following the master with their visitors' credentials.
var upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 16 << 10}

// GET /ws
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.live.bus == nil {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "this master publishes no live events"})
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "/ws is a websocket: connect with a websocket client (Upgrade: websocket)"})
		return
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered with the error
	}
	s.live.wsClients.Add(1)
	defer s.live.wsClients.Add(-1)
	c := &wsConn{s: s, conn: conn, sub: s.live.bus.Subscribe(s.live.wsBuffer), replies: make(chan wsReply, 16),
		done: make(chan struct{}), quit: make(chan struct{})}
	c.serve()
}

// wsConn is one client. The reader goroutine handles commands; serve's
// goroutine is the only writer.
type wsConn struct {
	s       *Server
	conn    *websocket.Conn
	sub     *event.Subscription
	replies chan wsReply
	done    chan struct{} // closed when the reader stops
	quit    chan struct{} // closed when the writer stops
}

// wsReply answers one command.
type wsReply struct {
	ID    json.RawMessage `json:"_id"`
	Code  int             `json:"code"`
	Msg   string          `json:"msg,omitempty"`
	Error string          `json:"error,omitempty"`
}

// wsCommand is a command as the client sends it. Path and ID are kept raw
// so that a path of the wrong type gets a clear answer and the id is
// echoed exactly.
type wsCommand struct {
	Cmd  *string         `json:"cmd"`
	Path json.RawMessage `json:"path"`
	ID   json.RawMessage `json:"_id"`
}

func (c *wsConn) serve() {
	defer func() {
		close(c.quit)
		c.sub.Close()
		c.conn.Close()
		<-c.done
	}()
	go c.read()
	ping := time.NewTicker(wsPingPeriod)
	defer ping.Stop()
	for {
		select {
		case m, ok := <-c.sub.C():
			if !ok {
				c.closeWith(c.sub.Err())
				return
			}
			frame, err := c.s.eventFrame(m)
			if err != nil {
				c.s.log.Error("webui: encode a live event", "key", m.Key.String(), "err", err)
				continue
			}
			if c.write(websocket.TextMessage, frame) != nil {
				return
			}
		case rep := <-c.replies:
			b, _ := json.Marshal(rep) // cannot fail: strings, an int and valid raw JSON
			if c.write(websocket.TextMessage, b) != nil {
				return
			}
		case <-ping.C:
			if c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteWait)) != nil {
				return
			}
		case <-c.done:
			return
		}
	}
}

func (c *wsConn) write(typ int, b []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
	return c.conn.WriteMessage(typ, b)
}

// closeWith tells the client why its stream ended: the master stops
// (1001, going away) or it fell behind (1013, try again later).
func (c *wsConn) closeWith(err error) {
	code, why := websocket.CloseNormalClosure, "bye"
	switch {
	case errors.Is(err, event.ErrClosed):
		code, why = websocket.CloseGoingAway, "the master is stopping"
	case errors.Is(err, event.ErrSlow):
		code, why = websocket.CloseTryAgainLater, "too far behind: reconnect and reload"
	}
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, why), time.Now().Add(wsWriteWait))
}

// read handles the client's commands until the connection fails.
func (c *wsConn) read() {
	defer close(c.done)
	c.conn.SetReadLimit(wsReadLimit)
	_ = c.conn.SetReadDeadline(time.Now().Add(wsPongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(wsPongWait))
	})
	for {
		typ, b, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(wsPongWait))
		rep := c.command(typ, b)
		select {
		case c.replies <- rep:
		case <-c.quit: // the writer stopped
			return
		}
	}
}

var null = json.RawMessage("null")

// command runs one command frame and returns its reply.
func (c *wsConn) command(typ int, b []byte) wsReply {
	bad := func(id json.RawMessage, code int, format string, args ...any) wsReply {
		if id == nil {
			id = null
		}
		return wsReply{ID: id, Code: code, Error: fmt.Sprintf(format, args...)}
	}
	if typ != websocket.TextMessage {
		return bad(nil, http.StatusBadRequest, "commands are JSON text frames, not binary")
	}
	var cmd wsCommand
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&cmd); err != nil {
		return bad(nil, http.StatusBadRequest, "invalid JSON in websocket frame: %v", err)
	}
	if cmd.ID == nil || bytes.Equal(cmd.ID, null) {
		return bad(nil, http.StatusBadRequest, "no '_id' in websocket frame")
	}
	if cmd.Cmd == nil {
		return bad(cmd.ID, http.StatusBadRequest, "no 'cmd' in websocket frame")
	}
	ok := wsReply{ID: cmd.ID, Code: http.StatusOK, Msg: "OK"}
	switch *cmd.Cmd {
	case "ping":
		ok.Msg = "pong"
		return ok
	case "startConsuming", "stopConsuming":
	default:
		return bad(cmd.ID, http.StatusNotFound, "no such command '%s' (the commands are startConsuming, stopConsuming and ping)", *cmd.Cmd)
	}
	var path string
	if err := json.Unmarshal(cmd.Path, &path); err != nil {
		return bad(cmd.ID, http.StatusBadRequest, "invalid path format '%s': want a string such as \"builds/*/*\"", cmd.Path)
	}
	f, err := event.ParseFilter(path)
	if err != nil {
		return bad(cmd.ID, http.StatusBadRequest, "invalid path format: %v", err)
	}
	if *cmd.Cmd == "stopConsuming" {
		if !c.sub.Remove(f) {
			return bad(cmd.ID, http.StatusBadRequest, "path was not consumed '%s'", path)
		}
		return ok
	}
	have := c.sub.Filters()
	for _, g := range have {
		if g.String() == path {
			return ok // consuming a path twice is not an error
		}
	}
	if len(have) >= wsMaxPaths {
		return bad(cmd.ID, http.StatusBadRequest, "too many paths consumed: at most %d per connection", wsMaxPaths)
	}
	c.sub.Add(f)
	return ok
}

// eventFrame encodes m as the client receives it.
func (s *Server) eventFrame(m event.Message) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return json.Marshal(struct {
		K string `json:"k"`
		M any    `json:"m"`
	}{m.Key.String(), s.eventJSON(ctx, m.Value)})
}
