package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/starforge/starforge/internal/testenv"
)

// The browser harness: Debian's headless Chromium driven through the
// Chrome DevTools Protocol with chromedp, one tab per test, with the few
// things the tests do as a user would: navigate, evaluate JavaScript, wait
// for the page to show something, click, type, answer dialogs and take
// screenshots.

// cdpTimeout bounds one action; waits done inside the page (waitFor) bound
// themselves and get this much on top.
const cdpTimeout = 90 * time.Second

// browser is a headless Chromium with one tab open. Its methods are for
// the test's goroutine.
type browser struct {
	ctx context.Context // chromedp's context of the tab

	// Filled from chromedp's reader goroutine: the tab's load events and
	// the JavaScript dialogs it opened since the last drainEvents.
	loads   chan struct{}
	dialogs chan *page.EventJavascriptDialogOpening
}

// startBrowser starts headless Chromium with a fresh profile, opens a blank
// tab and returns it. The test skips when chromium is not installed (fails
// in CI). Chromium and everything it started is gone when the test ends.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	path := testenv.LookPath(t, "chromium", "chromium")
	out := new(lockedBuffer)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// No UserDataDir: chromedp makes a fresh profile directory for
		// each browser, and after the browser exits kills helpers still
		// using it before removing it.
		chromedp.WindowSize(1280, 1000),
		// Scroll bars as users see them, in screenshots too.
		chromedp.Flag("hide-scrollbars", false),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.CombinedOutput(out),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run its sandbox as root (as in containers).
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()      // stops the browser: this context started it
		cancelAlloc() // waits until it has exited and its profile is gone
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

	// The first action starts the browser and ties it to ctx, which must
	// have no deadline of its own: a watchdog stops a start that hangs.
	watchdog := time.AfterFunc(60*time.Second, cancel)
	err := chromedp.Do(ctx)
	if !watchdog.Stop() {
		t.Fatal("chromium did not start within 60s")
	}
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}

	b := &browser{ctx: ctx, loads: make(chan struct{}, 64), dialogs: make(chan *page.EventJavascriptDialogOpening, 64)}
	// The listener runs on chromedp's reader goroutine, before the reply
	// to a command that follows the event: it must not block.
	err = chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *page.EventLoadEventFired:
			select {
			case b.loads <- struct{}{}:
			default:
			}
		case *page.EventJavascriptDialogOpening:
			select {
			case b.dialogs <- ev:
			default:
			}
		}
	})
	if err != nil {
		t.Fatalf("listen to chromium's events: %v", err)
	}
	return b
}

// do runs chromedp actions in the tab, failing the test (saying what was
// done) on error or when they take longer than cdpTimeout.
func (b *browser) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, cdpTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// call sends one protocol command to the tab and returns its result,
// failing the test on error.
func call[P, R any](t *testing.T, b *browser, cmd cdp.Command[P, R], params P) R {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, cdpTimeout)
	defer cancel()
	r, err := chromedp.Call(ctx, cmd, params)
	if err != nil {
		t.Fatalf("DevTools %s: %v", cmd.Method, err)
	}
	return r
}

// waitLoad waits for the page's load event (after a navigation that
// started after the last drainEvents).
func (b *browser) waitLoad(t *testing.T) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	select {
	case <-b.loads:
	case <-b.ctx.Done():
		t.Fatal("chromium went away")
	case <-deadline.C:
		t.Fatal("the page did not load within 30s")
	}
}

// drainEvents forgets the load events and dialogs seen so far.
func (b *browser) drainEvents() {
	for {
		select {
		case <-b.loads:
		case <-b.dialogs:
		default:
			return
		}
	}
}

// navigate opens url in the page and waits until it has loaded.
func (b *browser) navigate(t *testing.T, url string) {
	t.Helper()
	b.do(t, "navigate to "+url, chromedp.Navigate(url))
	b.drainEvents()
}

// eval evaluates a JavaScript expression in the page, awaiting it if it is
// a promise, and decodes its (JSON-serialisable) value into out.
func (b *browser) eval(t *testing.T, expr string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, cdpTimeout)
	defer cancel()
	r, err := chromedp.Run(ctx, chromedp.Evaluate[*runtime.RemoteObject](expr, chromedp.EvalAsValue, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("in the page: %s", pageError(err))
	}
	if out != nil {
		if len(r.Value) == 0 {
			t.Fatalf("in the page: %s returned %s, not a value", expr, r.Type)
		}
		if err := json.Unmarshal(r.Value, out); err != nil {
			t.Fatalf("in the page: decode %s: %v", r.Value, err)
		}
	}
}

// pageError describes err, the error of running JavaScript in the page,
// by the exception's description (message and stack) when there is one.
func pageError(err error) string {
	var ex *chromedp.ExceptionError
	if errors.As(err, &ex) && ex.Exception != nil && ex.Exception.Description != "" {
		return ex.Exception.Description
	}
	return err.Error()
}

// waitFor evaluates the JavaScript function fn (an expression such as
// "() => document.title") whenever the page's DOM changes, until it returns
// a truthy value, which is decoded into out. An exception thrown by fn
// counts as false (the page may not have built what fn reads yet). It fails
// the test, showing what the page says, if that takes longer than timeout.
//
// The wait runs in the page, as one awaited evaluation, and not as
// chromedp.Poll: Poll evaluates in the execution context chromedp last saw
// for the page, which lags behind a navigation that has just finished
// ("Cannot find context with specified id").
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
//
// The element is found and scrolled into sight in the page, and the mouse
// sent to where it is, rather than with chromedp.Click: that holds on to
// the DOM node it found, and fails ("Could not find node with given id")
// when the page redraws it meanwhile, as the log viewer does on scrolling.
func (b *browser) click(t *testing.T, selector string) {
	t.Helper()
	x, y := b.centre(t, selector)
	b.do(t, "click "+selector, chromedp.MouseEvent(chromedp.MouseMoved, x, y), chromedp.MouseClickXY(x, y))
}

// centre scrolls the first element matching selector into the middle of
// the window and returns the point in its middle.
func (b *browser) centre(t *testing.T, selector string) (x, y float64) {
	t.Helper()
	var pt struct{ X, Y float64 }
	b.eval(t, fmt.Sprintf(`(() => {
  const e = document.querySelector(%s);
  if (!e) throw new Error('nothing matches ' + %[1]s);
  e.scrollIntoView({ block: 'center' });
  const r = e.getBoundingClientRect();
  return { X: r.left + r.width / 2, Y: r.top + r.height / 2 };
})()`, jsString(selector)), &pt)
	return pt.X, pt.Y
}

// clickAnswering clicks selector, which opens a JavaScript dialog
// (prompt or confirm), and answers it as a user does: accept with text
// typed in, or dismiss. The click's mouse release returns only once the
// dialog is closed, so the click runs on another goroutine.
func (b *browser) clickAnswering(t *testing.T, selector string, accept bool, text string) {
	t.Helper()
	x, y := b.centre(t, selector)
	b.drainEvents()
	b.do(t, "move the mouse to "+selector, chromedp.MouseEvent(chromedp.MouseMoved, x, y))
	clicked := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(b.ctx, cdpTimeout)
		defer cancel()
		clicked <- chromedp.Do(ctx, chromedp.MouseClickXY(x, y))
	}()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for opened := false; !opened; {
		select {
		case d := <-b.dialogs:
			t.Logf("dialog (%s): %s", d.Type, d.Message)
			opened = true
		case err := <-clicked:
			if err != nil {
				t.Fatalf("click %s: %v", selector, err)
			}
			clicked = nil // the page may open the dialog later
		case <-deadline.C:
			t.Fatalf("clicking %s opened no dialog", selector)
		}
	}
	call(t, b, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: accept, PromptText: text})
	if clicked != nil {
		if err := <-clicked; err != nil {
			t.Fatalf("click %s: %v", selector, err)
		}
	}
}

// typeInto replaces the value of the input matching selector with text,
// typed key by key as a user does.
func (b *browser) typeInto(t *testing.T, selector, text string) {
	t.Helper()
	b.eval(t, fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = ''; e.focus(); return true; })()`, jsString(selector)), nil)
	b.do(t, "type into "+selector, chromedp.KeyEvent(text))
}

// screenshot saves a PNG of the whole page to each of dirs (skipping empty
// ones) and returns the first path.
func (b *browser) screenshot(t *testing.T, name string, dirs ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, cdpTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	return saveScreenshot(t, png, name, dirs...)
}

// saveScreenshot writes png to name in each of dirs (skipping empty ones)
// and returns the first path.
func saveScreenshot(t *testing.T, png []byte, name string, dirs ...string) string {
	t.Helper()
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

// lockedBuffer is a bytes.Buffer for one writer and other readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
