package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starforge/starforge/internal/testenv"
)

// A minimal client of the Chrome DevTools Protocol, enough to drive Debian's
// headless Chromium through the web UI: navigate, evaluate JavaScript, click
// and take screenshots. One websocket to the browser, one page target
// attached in flat mode (its session id goes with every command).

// cdpTimeout bounds one protocol command; waits done inside the page
// (awaitPromise) bound themselves and must be shorter.
const cdpTimeout = 90 * time.Second

// browser is a headless Chromium with one page open.
type browser struct {
	conn    *websocket.Conn
	wmu     sync.Mutex // serialises writes
	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpMessage
	events  chan cdpMessage // events of the page session
	readErr error
	gone    chan struct{} // closed when the reader stops
	session string
}

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    string `json:"data"`
	} `json:"error,omitempty"`
}

// startBrowser starts headless Chromium with a fresh profile, opens a blank
// page and returns it. The test skips when chromium is not installed (fails
// in CI). Everything Chromium started is killed when the test ends.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	path := testenv.LookPath(t, "chromium", "chromium")
	profile := t.TempDir()
	cmd := exec.Command(path,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--window-size=1280,1000", "--user-data-dir="+profile, "--remote-debugging-port=0", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	out := newLines()
	go out.feed(pr, nil) // not teed: Chromium is chatty about D-Bus
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(exited)
	}()
	b := &browser{pending: map[int64]chan cdpMessage{}, events: make(chan cdpMessage, 4096), gone: make(chan struct{})}
	t.Cleanup(func() {
		if b.conn != nil {
			// Ask politely, then make sure: the wrapper script, the browser
			// and its helpers all share the process group.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = b.callCtx(ctx, "", "Browser.close", nil, nil)
			cancel()
			b.conn.Close()
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			var keep []string
			for _, l := range strings.Split(out.String(), "\n") {
				if !strings.Contains(l, "dbus") {
					keep = append(keep, l)
				}
			}
			t.Logf("chromium output (D-Bus complaints left out):\n%s", strings.Join(keep, "\n"))
		}
	})

	line := out.wait(t, `DevTools listening on ws://`, 60*time.Second)
	wsURL := regexp.MustCompile(`ws://\S+`).FindString(line)
	conn, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatalf("connect to chromium's DevTools at %s: %v", wsURL, err)
	}
	b.conn = conn
	go b.read()

	var target struct {
		TargetID string `json:"targetId"`
	}
	b.call(t, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	b.call(t, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	b.mu.Lock()
	b.session = attached.SessionID
	b.mu.Unlock()
	b.call(t, b.session, "Page.enable", nil, nil)
	return b
}

// read dispatches the browser's messages: answers to their callers, events
// of the page to b.events (dropped if nobody reads them for a while).
func (b *browser) read() {
	defer close(b.gone)
	for {
		var msg cdpMessage
		if err := b.conn.ReadJSON(&msg); err != nil {
			b.mu.Lock()
			b.readErr = err
			b.mu.Unlock()
			return
		}
		if msg.ID != 0 {
			b.mu.Lock()
			ch := b.pending[msg.ID]
			delete(b.pending, msg.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- msg
			}
			continue
		}
		if msg.SessionID == b.sessionID() {
			select {
			case b.events <- msg:
			default:
			}
		}
	}
}

func (b *browser) sessionID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.session
}

// call sends a command (to the page when session is set, else to the
// browser) and decodes its result into result, failing the test on error.
func (b *browser) call(t *testing.T, session, method string, params, result any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cdpTimeout)
	defer cancel()
	if err := b.callCtx(ctx, session, method, params, result); err != nil {
		t.Fatal(err)
	}
}

func (b *browser) callCtx(ctx context.Context, session, method string, params, result any) error {
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	if params == nil {
		raw = []byte("{}")
	}
	ch := make(chan cdpMessage, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
	}()
	b.wmu.Lock()
	err = b.conn.WriteJSON(cdpMessage{ID: id, Method: method, Params: raw, SessionID: session})
	b.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("DevTools %s: %w", method, err)
	}
	select {
	case msg := <-ch:
		if msg.Error != nil {
			return fmt.Errorf("DevTools %s: %s %s", method, msg.Error.Message, msg.Error.Data)
		}
		if result != nil {
			return json.Unmarshal(msg.Result, result)
		}
		return nil
	case <-b.gone:
		b.mu.Lock()
		defer b.mu.Unlock()
		return fmt.Errorf("DevTools %s: connection lost: %v", method, b.readErr)
	case <-ctx.Done():
		return fmt.Errorf("DevTools %s: no answer: %w", method, ctx.Err())
	}
}

// waitLoad waits for the page's load event (after a navigation that
// started after the last drainEvents).
func (b *browser) waitLoad(t *testing.T) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case ev := <-b.events:
			if ev.Method == "Page.loadEventFired" {
				return
			}
		case <-b.gone:
			t.Fatal("chromium closed the DevTools connection")
		case <-deadline.C:
			t.Fatal("the page did not load within 30s")
		}
	}
}

func (b *browser) drainEvents() {
	for {
		select {
		case <-b.events:
		default:
			return
		}
	}
}

// navigate opens url in the page and waits until it has loaded.
func (b *browser) navigate(t *testing.T, url string) {
	t.Helper()
	b.drainEvents()
	var r struct {
		ErrorText string `json:"errorText"`
	}
	b.call(t, b.session, "Page.navigate", map[string]any{"url": url}, &r)
	if r.ErrorText != "" {
		t.Fatalf("navigate to %s: %s", url, r.ErrorText)
	}
	b.waitLoad(t)
}

// eval evaluates a JavaScript expression in the page, awaiting it if it is
// a promise, and decodes its (JSON-serialisable) value into out.
func (b *browser) eval(t *testing.T, expr string, out any) {
	t.Helper()
	var r struct {
		Result struct {
			Type  string          `json:"type"`
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	b.call(t, b.session, "Runtime.evaluate", map[string]any{
		"expression": expr, "returnByValue": true, "awaitPromise": true,
	}, &r)
	if e := r.ExceptionDetails; e != nil {
		msg := e.Exception.Description
		if msg == "" {
			msg = e.Text
		}
		t.Fatalf("in the page: %s", msg)
	}
	if out != nil {
		if len(r.Result.Value) == 0 {
			t.Fatalf("in the page: %s returned %s, not a value", expr, r.Result.Type)
		}
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			t.Fatalf("in the page: decode %s: %v", r.Result.Value, err)
		}
	}
}

// waitFor evaluates the JavaScript function fn (an expression such as
// "() => document.title") whenever the page's DOM changes, until it returns
// a truthy value, which is decoded into out. It fails the test, showing
// what the page says, if that takes longer than timeout.
func (b *browser) waitFor(t *testing.T, what, fn string, timeout time.Duration, out any) {
	t.Helper()
	b.eval(t, fmt.Sprintf(`new Promise((resolve, reject) => {
  const fn = %s;
  let obs = null, timer = 0;
  const stop = () => { if (obs) obs.disconnect(); clearTimeout(timer); };
  const check = () => {
    let v;
    try { v = fn(); } catch (e) { return false; }
    if (!v) return false;
    stop();
    resolve(v);
    return true;
  };
  if (check()) return;
  obs = new MutationObserver(check);
  obs.observe(document, { childList: true, subtree: true, characterData: true, attributes: true });
  timer = setTimeout(() => {
    stop();
    reject(new Error('timed out after %s waiting for ' + %s + '; the page shows:\n' + document.body.innerText.slice(0, 3000)));
  }, %d);
})`, fn, timeout, jsString(what), timeout.Milliseconds()), out)
}

// click clicks the middle of the first element matching the CSS selector
// with the mouse, as a user does.
func (b *browser) click(t *testing.T, selector string) {
	t.Helper()
	var pt struct{ X, Y float64 }
	b.eval(t, fmt.Sprintf(`(() => {
  const e = document.querySelector(%s);
  if (!e) throw new Error('nothing matches ' + %[1]s);
  e.scrollIntoView({ block: 'center' });
  const r = e.getBoundingClientRect();
  return { X: r.left + r.width / 2, Y: r.top + r.height / 2 };
})()`, jsString(selector)), &pt)
	for _, typ := range []string{"mouseMoved", "mousePressed", "mouseReleased"} {
		b.call(t, b.session, "Input.dispatchMouseEvent", map[string]any{
			"type": typ, "x": pt.X, "y": pt.Y, "button": "left", "clickCount": 1,
		}, nil)
	}
}

// screenshot saves a PNG of the page to each of dirs (skipping empty ones)
// and returns the first path.
func (b *browser) screenshot(t *testing.T, name string, dirs ...string) string {
	t.Helper()
	var r struct {
		Data string `json:"data"`
	}
	b.call(t, b.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	first := ""
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if err := writeFile(p, png); err != nil {
			t.Errorf("save screenshot: %v", err)
			continue
		}
		if first == "" {
			first = p
		}
	}
	return first
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
