package proto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Handler answers the requests a peer sends.
type Handler interface {
	// HandleRequest is called from the connection's read loop, one request
	// at a time, in arrival order, so a command's updates are seen in the
	// order the peer sent them. It must return promptly and must not call
	// Conn.Call on the same connection (the response could never be read);
	// long work belongs in a goroutine. A non-nil error is sent to the peer
	// as an exception response carrying err.Error().
	HandleRequest(op string, msg Message) (result any, err error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(op string, msg Message) (any, error)

// HandleRequest calls f.
func (f HandlerFunc) HandleRequest(op string, msg Message) (any, error) { return f(op, msg) }

// RemoteError is the error a Call returns when the peer answered with an
// exception response.
type RemoteError struct {
	Op  string
	Msg string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("peer failed %s: %s", e.Op, e.Msg) }

// ErrConnClosed is returned by Call on a closed connection (wrapped with the
// reason the connection closed).
var ErrConnClosed = errors.New("connection lost")

// Options tune a connection. Zero values select the defaults.
type Options struct {
	// MaxFrameSize is the largest frame accepted; a larger one closes the
	// connection. Default 16 MiB.
	MaxFrameSize int64
	// PingInterval is how often a WebSocket ping is sent; the connection is
	// closed when nothing (a frame or a pong) arrives for PingInterval +
	// PongTimeout. Default 10 s; negative disables pings and read deadlines.
	PingInterval time.Duration
	// PongTimeout: see PingInterval. Default 20 s.
	PongTimeout time.Duration
	// WriteTimeout bounds one frame's write, so a peer that stopped reading
	// cannot block senders forever. Default 30 s.
	WriteTimeout time.Duration
	// Logger receives the reason a connection closed and dropped frames.
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.MaxFrameSize == 0 {
		o.MaxFrameSize = 16 << 20
	}
	if o.PingInterval == 0 {
		o.PingInterval = 10 * time.Second
	}
	if o.PongTimeout == 0 {
		o.PongTimeout = 20 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

type response struct {
	result any
	err    error
}

// Conn is one protocol connection over a WebSocket. All methods are safe for
// concurrent use.
type Conn struct {
	ws   *websocket.Conn
	h    Handler
	opts Options

	wmu sync.Mutex // serialises frame writes

	mu      sync.Mutex
	seq     int64
	pending map[int64]chan response
	err     error // why the connection closed; set once
	done    chan struct{}
}

// NewConn wraps ws. Call Serve to start reading.
func NewConn(ws *websocket.Conn, h Handler, opts Options) *Conn {
	opts.defaults()
	return &Conn{
		ws:      ws,
		h:       h,
		opts:    opts,
		pending: make(map[int64]chan response),
		done:    make(chan struct{}),
	}
}

// Done is closed when the connection has closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection closed, or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection for reason; outstanding calls fail with
// ErrConnClosed. Closing twice keeps the first reason.
func (c *Conn) Close(reason error) {
	if reason == nil {
		reason = errors.New("closed")
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = reason
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()

	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, truncate(reason.Error(), 120))
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	_ = c.ws.Close()
	for _, ch := range pending {
		ch <- response{err: fmt.Errorf("%w: %v", ErrConnClosed, reason)}
	}
	close(c.done)
}

// Serve reads frames until the connection closes and returns why it closed.
// Requests go to the Handler; responses complete pending Calls.
func (c *Conn) Serve() error {
	c.ws.SetReadLimit(c.opts.MaxFrameSize)
	deadline := c.opts.PingInterval + c.opts.PongTimeout
	if c.opts.PingInterval > 0 {
		c.ws.SetPongHandler(func(string) error {
			return c.ws.SetReadDeadline(time.Now().Add(deadline))
		})
		stop := c.startPinging()
		defer stop()
	}
	// One buffer per connection, reused while large frames keep coming (a
	// fresh one per frame costs a zeroed megabyte for each log update);
	// dropped when a small frame follows a large one, so a worker gone idle
	// after a build does not keep its largest frame.
	var buf bytes.Buffer
	for {
		if c.opts.PingInterval > 0 {
			// Counted from when this side is ready to read again, so time
			// spent handling the last frame (a slow store) is not blamed
			// on the peer.
			_ = c.ws.SetReadDeadline(time.Now().Add(deadline))
		}
		typ, r, err := c.ws.NextReader()
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			c.Close(readError(err))
			return c.Err()
		}
		data := buf.Bytes()
		if buf.Cap() > 64<<10 && len(data) < 16<<10 {
			// Decode copies what it keeps, so data stays valid below.
			buf = bytes.Buffer{}
		}
		if typ != websocket.BinaryMessage {
			c.opts.Logger.Warn("ignoring non-binary frame", "type", typ, "len", len(data))
			continue
		}
		msg, err := Decode(data)
		if err != nil {
			c.Close(fmt.Errorf("malformed frame (%d bytes): %w", len(data), err))
			return c.Err()
		}
		if err := c.dispatch(msg); err != nil {
			c.Close(err)
			return c.Err()
		}
	}
}

func readError(err error) error {
	if errors.Is(err, websocket.ErrReadLimit) {
		return fmt.Errorf("frame larger than the limit: %w", err)
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("peer silent past the ping deadline: %w", err)
	}
	return fmt.Errorf("read: %w", err)
}

// startPinging sends a ping every PingInterval until stop is called or
// the connection closes. A timer that re-arms itself holds no goroutine
// between pings, which matters with thousands of idle workers.
func (c *Conn) startPinging() (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	ping := func() {
		select {
		case <-c.done:
			return
		default:
		}
		if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.opts.WriteTimeout)); err != nil {
			c.Close(fmt.Errorf("ping: %w", err))
			return
		}
		mu.Lock()
		if !stopped {
			t.Reset(c.opts.PingInterval)
		}
		mu.Unlock()
	}
	mu.Lock()
	t = time.AfterFunc(c.opts.PingInterval, ping)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

func (c *Conn) dispatch(msg Message) error {
	op := msg.Op()
	seq, ok := msg.Seq()
	if op == "" || !ok {
		// Buildbot logs and drops these rather than closing.
		c.opts.Logger.Warn("dropping frame without op or seq_number", "keys", Args(msg).Keys())
		return nil
	}
	if op == OpResponse {
		c.mu.Lock()
		ch := c.pending[seq]
		delete(c.pending, seq)
		c.mu.Unlock()
		if ch == nil {
			c.opts.Logger.Warn("dropping response to unknown request", "seq_number", seq)
			return nil
		}
		r := response{result: msg["result"]}
		if exc, _ := Args(msg).Bool("is_exception", false); exc {
			text := fmt.Sprint(msg["result"])
			if s, ok := msg["result"].(string); ok {
				text = s
			}
			r = response{err: &RemoteError{Msg: text}}
		}
		ch <- r
		return nil
	}
	result, herr := c.h.HandleRequest(op, msg)
	resp := Message{"op": OpResponse, "seq_number": seq, "result": result}
	if herr != nil {
		resp["result"] = herr.Error()
		resp["is_exception"] = true
	}
	return c.write(resp)
}

// Call sends a request with op and fields and waits for its response, the
// connection's end, or ctx's end. fields must not contain "op" or
// "seq_number". An exception response is returned as *RemoteError.
func (c *Conn) Call(ctx context.Context, op string, fields map[string]any) (any, error) {
	ch := make(chan response, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("%s: %w: %v", op, ErrConnClosed, err)
	}
	seq := c.seq
	c.seq++
	c.pending[seq] = ch
	c.mu.Unlock()

	msg := make(Message, len(fields)+2)
	for k, v := range fields {
		msg[k] = v
	}
	msg["op"] = op
	msg["seq_number"] = seq
	if err := c.write(msg); err != nil {
		c.forget(seq)
		c.Close(err)
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			var re *RemoteError
			if errors.As(r.err, &re) {
				re.Op = op
			}
			return nil, r.err
		}
		return r.result, nil
	case <-ctx.Done():
		c.forget(seq)
		return nil, fmt.Errorf("%s: %w", op, ctx.Err())
	}
}

// Send is Call without waiting for the peer's work to matter: it still
// waits for the response, so the peer's order and flow control hold, but it
// discards the result.
func (c *Conn) Send(ctx context.Context, op string, fields map[string]any) error {
	_, err := c.Call(ctx, op, fields)
	return err
}

func (c *Conn) forget(seq int64) {
	c.mu.Lock()
	if c.pending != nil {
		delete(c.pending, seq)
	}
	c.mu.Unlock()
}

func (c *Conn) write(msg Message) error {
	b, err := Encode(msg)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
	if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		return fmt.Errorf("write %s: %w", msg.Op(), err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
