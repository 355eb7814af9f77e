package webui

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starforge/starforge/master/event"
	"github.com/starforge/starforge/master/store"
)

// busMaster is the fake master with an event bus, as the real master has.
type busMaster struct {
	*fakeMaster
	bus *event.Bus
}

func (m busMaster) Events() *event.Bus { return m.bus }

// liveFixture is the fixture's store served by a server whose master
// publishes on bus.
type liveFixture struct {
	*fixture
	bus *event.Bus
	web *Server
}

func newLiveFixture(t testing.TB) *liveFixture {
	t.Helper()
	f := newFixture(t)
	lf := &liveFixture{fixture: f, bus: event.New()}
	lf.web = New(busMaster{f.m, lf.bus}, Options{})
	f.srv.Close()
	f.srv = httptest.NewServer(lf.web.Handler())
	t.Cleanup(f.srv.Close)
	return lf
}

// wsClient is a websocket client of /ws.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
	id   int
}

func (lf *liveFixture) dial(t testing.TB) *wsClient {
	t.Helper()
	url := "ws" + strings.TrimPrefix(lf.srv.URL, "http") + "/ws"
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", url, err, resp)
	}
	t.Cleanup(func() { conn.Close() })
	return &wsClient{t: t, conn: conn}
}

// frame is anything the server sends.
type frame struct {
	ID    json.RawMessage `json:"_id"`
	Code  int             `json:"code"`
	Msg   string          `json:"msg"`
	Error string          `json:"error"`
	K     string          `json:"k"`
	M     json.RawMessage `json:"m"`
}

func (c *wsClient) next() frame {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	typ, b, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if typ != websocket.TextMessage {
		c.t.Fatalf("frame of type %d, want text", typ)
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		c.t.Fatalf("frame %s: %v", b, err)
	}
	return f
}

// command sends {"cmd": cmd, "path": path, "_id": n} and returns the
// reply, which must come before any event (the test publishes none
// meanwhile).
func (c *wsClient) command(cmd, path string) frame {
	c.t.Helper()
	c.id++
	if err := c.conn.WriteJSON(map[string]any{"cmd": cmd, "path": path, "_id": c.id}); err != nil {
		c.t.Fatal(err)
	}
	f := c.next()
	if string(f.ID) != strings.TrimSpace(mustJSON(c.t, c.id)) {
		c.t.Fatalf("%s %s: reply %+v for another _id", cmd, path, f)
	}
	return f
}

func (c *wsClient) consume(path string) {
	c.t.Helper()
	if f := c.command("startConsuming", path); f.Code != 200 || f.Msg != "OK" {
		c.t.Fatalf("startConsuming %s: %+v", path, f)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWSCommands: every command and every mistake gets the answer
// Buildbot's protocol gives, with the _id echoed as sent.
func TestWSCommands(t *testing.T) {
	lf := newLiveFixture(t)
	c := lf.dial(t)
	for _, tc := range []struct {
		name  string
		send  string
		frame int // websocket.TextMessage unless set
		want  frame
	}{
		{"start", `{"cmd":"startConsuming","path":"builds/*/*","_id":1}`, 0, frame{ID: json.RawMessage(`1`), Code: 200, Msg: "OK"}},
		{"start again", `{"cmd":"startConsuming","path":"builds/*/*","_id":2}`, 0, frame{ID: json.RawMessage(`2`), Code: 200, Msg: "OK"}},
		{"string id", `{"cmd":"ping","_id":"abc"}`, 0, frame{ID: json.RawMessage(`"abc"`), Code: 200, Msg: "pong"}},
		{"stop", `{"cmd":"stopConsuming","path":"builds/*/*","_id":3}`, 0, frame{ID: json.RawMessage(`3`), Code: 200, Msg: "OK"}},
		{"stop twice", `{"cmd":"stopConsuming","path":"builds/*/*","_id":4}`, 0,
			frame{ID: json.RawMessage(`4`), Code: 400, Error: "path was not consumed 'builds/*/*'"}},
		{"no id", `{"cmd":"ping"}`, 0, frame{ID: json.RawMessage(`null`), Code: 400, Error: "no '_id' in websocket frame"}},
		{"no cmd", `{"_id":5}`, 0, frame{ID: json.RawMessage(`5`), Code: 400, Error: "no 'cmd' in websocket frame"}},
		{"unknown cmd", `{"cmd":"subscribe","_id":6}`, 0,
			frame{ID: json.RawMessage(`6`), Code: 404, Error: "no such command 'subscribe' (the commands are startConsuming, stopConsuming and ping)"}},
		{"path not a string", `{"cmd":"startConsuming","path":["builds"],"_id":7}`, 0,
			frame{ID: json.RawMessage(`7`), Code: 400, Error: `invalid path format '["builds"]': want a string such as "builds/*/*"`}},
		{"no path", `{"cmd":"startConsuming","_id":8}`, 0,
			frame{ID: json.RawMessage(`8`), Code: 400, Error: `invalid path format '': want a string such as "builds/*/*"`}},
		{"empty element", `{"cmd":"startConsuming","path":"builds//new","_id":9}`, 0,
			frame{ID: json.RawMessage(`9`), Code: 400, Error: `invalid path format: path "builds//new": element 2 is empty`}},
		{"bad JSON", `{"cmd":`, 0, frame{ID: json.RawMessage(`null`), Code: 400, Error: "invalid JSON in websocket frame: unexpected EOF"}},
		{"binary", `{"cmd":"ping","_id":10}`, websocket.BinaryMessage,
			frame{ID: json.RawMessage(`null`), Code: 400, Error: "commands are JSON text frames, not binary"}},
	} {
		typ := tc.frame
		if typ == 0 {
			typ = websocket.TextMessage
		}
		if err := c.conn.WriteMessage(typ, []byte(tc.send)); err != nil {
			t.Fatal(err)
		}
		got := c.next()
		if string(got.ID) != string(tc.want.ID) || got.Code != tc.want.Code || got.Msg != tc.want.Msg || got.Error != tc.want.Error {
			t.Errorf("%s: %s\ngot  %+v (_id %s)\nwant %+v (_id %s)", tc.name, tc.send, got, got.ID, tc.want, tc.want.ID)
		}
	}
}

func TestWSTooManyPaths(t *testing.T) {
	lf := newLiveFixture(t)
	c := lf.dial(t)
	for i := range wsMaxPaths {
		c.consume("builds/" + itoa(i) + "/*")
	}
	if f := c.command("startConsuming", "builds/x/*"); f.Code != 400 || !strings.Contains(f.Error, "too many paths") {
		t.Errorf("path %d: %+v, want a 400 saying too many", wsMaxPaths+1, f)
	}
	c.consume("builds/0/*") // one already there is not another
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestWSEvents: events arrive as {"k", "m"} with the message in the
// REST API's shape, only for the paths consumed, in order.
func TestWSEvents(t *testing.T) {
	lf := newLiveFixture(t)
	c := lf.dial(t)
	c.consume("builds/*/*")
	c.consume("logs/" + itoa(int(lf.growLog.ID)) + "/append")
	c.consume("buildrequests/*/*")

	b := lf.running
	lf.bus.Publish(b, event.BuildKeys(b, "new")...)
	f := c.next()
	if f.K != "builds/"+itoa(int(b.ID))+"/new" {
		t.Fatalf("first event %+v, want builds/%d/new", f, b.ID)
	}
	var bj map[string]any
	if err := json.Unmarshal(f.M, &bj); err != nil {
		t.Fatal(err)
	}
	var api struct{ Builds []map[string]any }
	lf.getJSON(t, "/api/v2/builds/"+itoa(int(b.ID)), &api)
	if mustJSON(t, bj) != mustJSON(t, api.Builds[0]) {
		t.Errorf("event message\n%s\nthe API's build\n%s", mustJSON(t, bj), mustJSON(t, api.Builds[0]))
	}

	// The lines of an append come with it; a log nobody consumes is not
	// sent, and neither is an event after stopConsuming.
	ctx := context.Background()
	lines := []byte("osecond \x1b[31mred\x1b[0m <b>\noé third\n")
	first, last, err := lf.st.AppendLog(ctx, lf.growLog.ID, lines)
	if err != nil {
		t.Fatal(err)
	}
	lf.bus.Publish(event.NewLogLines(lf.doneLog, 9, 9, []byte("ox\n")), event.LogKeys(lf.doneLog, "append")...)
	ll := event.NewLogLines(lf.growLog, first, last, lines)
	lf.bus.Publish(ll, event.LogKeys(ll.Log, "append")...)
	f = c.next()
	var lj struct {
		LogID     int64   `json:"logid"`
		NumLines  int     `json:"num_lines"`
		FirstLine int     `json:"firstline"`
		LastLine  int     `json:"lastline"`
		Content   *string `json:"content"`
		Complete  bool    `json:"complete"`
	}
	if err := json.Unmarshal(f.M, &lj); err != nil {
		t.Fatal(err)
	}
	if f.K != "logs/"+itoa(int(lf.growLog.ID))+"/append" || lj.LogID != lf.growLog.ID || lj.FirstLine != 1 || lj.LastLine != 2 ||
		lj.NumLines != 3 || lj.Content == nil || *lj.Content != string(lines) || lj.Complete {
		t.Errorf("append event %s: %s, want lines 1..2 of log %d with their content", f.K, f.M, lf.growLog.ID)
	}

	// A request event carries the request as the store has it now.
	r := store.BuildRequest{ID: lf.pending.ID, BuildsetID: lf.pending.BuildsetID, BuilderID: lf.pending.BuilderID}
	lf.bus.Publish(r, event.RequestKeys(r, "new")...)
	f = c.next()
	var rj map[string]any
	if err := json.Unmarshal(f.M, &rj); err != nil {
		t.Fatal(err)
	}
	if f.K != "buildrequests/"+itoa(int(r.ID))+"/new" || rj["submitted_at"] == nil || rj["claimed"] != false {
		t.Errorf("request event %s: %s, want the stored request", f.K, f.M)
	}

	if g := c.command("stopConsuming", "builds/*/*"); g.Code != 200 {
		t.Fatal(g)
	}
	lf.bus.Publish(b, event.BuildKeys(b, "finished")...)
	lf.bus.Publish(r, event.RequestKeys(r, "canceled")...)
	if f := c.next(); f.K != "buildrequests/"+itoa(int(r.ID))+"/canceled" {
		t.Errorf("after stopConsuming builds/*/* the next frame is %+v, want the request's", f)
	}
}

// TestWSSlowClient: a client that does not read is disconnected with
// 1013 once its queue is full, while publishing never waits for it.
func TestWSSlowClient(t *testing.T) {
	lf := newLiveFixture(t)
	lf.web.live.wsBuffer = 8
	c := lf.dial(t)
	c.consume("logs/*/append")
	big := []byte(strings.Repeat("o"+strings.Repeat("x", 1000)+"\n", 60)) // 60 KB per event
	ll := event.NewLogLines(lf.growLog, 1, 60, big)
	keys := event.LogKeys(ll.Log, "append")
	for range 2000 { // 120 MB: more than any socket buffers
		lf.bus.Publish(ll, keys...)
	}
	if _, dropped := lf.bus.Stats(); dropped != 1 {
		t.Fatalf("%d subscribers dropped, want the client's", dropped)
	}
	n := 0
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _, err := c.conn.ReadMessage()
		if err == nil {
			n++
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater {
			t.Fatalf("after %d frames: %v, want close 1013", n, err)
		}
		if !strings.Contains(ce.Text, "too far behind") {
			t.Errorf("close reason %q", ce.Text)
		}
		break
	}
	if n >= 2000 {
		t.Errorf("the client got all %d events", n)
	}
	t.Logf("the slow client got %d of 2000 events before it was dropped", n)
}

// TestWSMasterStops: closing the bus ends every stream with 1001.
func TestWSMasterStops(t *testing.T) {
	lf := newLiveFixture(t)
	c := lf.dial(t)
	c.consume("builds/*/*")
	lf.bus.Close()
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, _, err := c.conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("after the bus closed: %v, want close 1001", err)
	}
}

// TestWSRefusals: no bus, no upgrade, or another site's page.
func TestWSRefusals(t *testing.T) {
	f := newFixture(t) // its master has no bus
	st, _, body := f.get(t, "/ws")
	if st != http.StatusNotFound || !strings.Contains(string(body), `"error":"this master publishes no live events"`) {
		t.Errorf("GET /ws without a bus: %d %s", st, body)
	}
	lf := newLiveFixture(t)
	resp, err := http.Get(lf.srv.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /ws without Upgrade: %d, want 400", resp.StatusCode)
	}
	url := "ws" + strings.TrimPrefix(lf.srv.URL, "http") + "/ws"
	_, resp, err = websocket.DefaultDialer.Dial(url, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a page of another site connected: %v, %v", err, resp)
	}
	conn, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {lf.srv.URL}})
	if err != nil {
		t.Errorf("a page of this server could not connect: %v", err)
	} else {
		conn.Close()
	}
}
