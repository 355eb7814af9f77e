package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/starforge/starforge/worker/proto"
)

// cmdTestSender is a fake master for command tests. Every update goes
// through the real wire encoding and back (proto.Encode, proto.Decode,
// proto.DecodeUpdates), so tests see what a master would. It can hold
// sends back (gate) and fail them (failAt).
type cmdTestSender struct {
	t *testing.T

	// gate, if set, makes each Send wait for a value (or the gate's close)
	// before it is answered, like a slow master.
	gate chan struct{}
	// failAt makes the failAt-th send (1-based) fail with errSendFailed.
	failAt int
	// entered, if set, receives a value each time a Send starts waiting
	// at the gate.
	entered chan struct{}

	mu      sync.Mutex
	sends   int
	msgs    [][]proto.Update
	changed chan struct{}
}

var errSendFailed = errors.New("fake master went away")

func newTestSender(t *testing.T) *cmdTestSender {
	return &cmdTestSender{t: t, changed: make(chan struct{})}
}

func (s *cmdTestSender) Send(ctx context.Context, op string, fields map[string]any) (any, error) {
	if op != proto.OpUpdate {
		s.t.Errorf("Send op = %q, want %q", op, proto.OpUpdate)
	}
	for k := range fields {
		if k != "args" {
			s.t.Errorf("Send field %q: commands must leave everything but args to the caller", k)
		}
	}
	s.mu.Lock()
	s.sends++
	n := s.sends
	s.mu.Unlock()
	// The agent adds op, seq_number and command_id; do the same and take
	// the frame through the codec.
	frame, err := proto.Encode(proto.Message{"op": op, "seq_number": n, "command_id": "c1", "args": fields["args"]})
	if err != nil {
		s.t.Errorf("encode update: %v", err)
		return nil, err
	}
	msg, err := proto.Decode(frame)
	if err != nil {
		s.t.Errorf("decode update: %v", err)
		return nil, err
	}
	us, err := proto.DecodeUpdates(msg["args"])
	if err != nil {
		s.t.Errorf("decode update args: %v", err)
		return nil, err
	}
	checkWireShape(s.t, us)
	if s.gate != nil {
		if s.entered != nil {
			s.entered <- struct{}{}
		}
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if n == s.failAt {
		return nil, errSendFailed
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, us)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil, nil
}

// messages returns the updates received so far, one slice per message.
func (s *cmdTestSender) messages() [][]proto.Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]proto.Update(nil), s.msgs...)
}

// updates returns every entry received so far, in order.
func (s *cmdTestSender) updates() []proto.Update {
	var all []proto.Update
	for _, m := range s.messages() {
		all = append(all, m...)
	}
	return all
}

// waitFor waits until cond holds for the updates received so far.
func (s *cmdTestSender) waitFor(t *testing.T, what string, cond func([]proto.Update) bool) []proto.Update {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if us := s.updates(); cond(us) {
			return us
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; got %s", what, dumpUpdates(s.updates()))
		}
	}
}

// checkWireShape asserts the protocol's rules for text entries: whole
// lines, one index and one time per line, valid UTF-8.
func checkWireShape(t *testing.T, us []proto.Update) {
	t.Helper()
	for _, u := range us {
		var c proto.LogChunk
		switch v := u.Value.(type) {
		case proto.LogChunk:
			c = v
		case proto.NamedLogChunk:
			c = v.Chunk
		default:
			continue
		}
		if !strings.HasSuffix(c.Text, "\n") {
			t.Errorf("%s chunk %q does not end in a newline", u.Key, c.Text)
		}
		if !utf8.ValidString(c.Text) {
			t.Errorf("%s chunk %q is not valid UTF-8", u.Key, c.Text)
		}
		var want []int
		for i := 0; i < len(c.Text); i++ {
			if c.Text[i] == '\n' {
				want = append(want, i)
			}
		}
		if fmt.Sprint(c.Indexes) != fmt.Sprint(want) {
			t.Errorf("%s chunk %q: indexes %v, want %v", u.Key, c.Text, c.Indexes, want)
		}
		if len(c.Times) != len(want) {
			t.Errorf("%s chunk %q: %d times for %d lines", u.Key, c.Text, len(c.Times), len(want))
		}
		for i := 1; i < len(c.Times); i++ {
			if c.Times[i] < c.Times[i-1] {
				t.Errorf("%s chunk %q: line times go backwards: %v", u.Key, c.Text, c.Times)
			}
		}
	}
}

// textOf concatenates the text of every entry with key (stdout, stderr,
// header) or, for "log:NAME", of logfile NAME.
func textOf(us []proto.Update, key string) string {
	var b strings.Builder
	for _, u := range us {
		switch v := u.Value.(type) {
		case proto.LogChunk:
			if u.Key == key {
				b.WriteString(v.Text)
			}
		case proto.NamedLogChunk:
			if "log:"+v.Name == key {
				b.WriteString(v.Chunk.Text)
			}
		}
	}
	return b.String()
}

// valueOf returns the value of the last entry with key.
func valueOf(us []proto.Update, key string) (any, bool) {
	for i := len(us) - 1; i >= 0; i-- {
		if us[i].Key == key {
			return us[i].Value, true
		}
	}
	return nil, false
}

func rcOf(t *testing.T, us []proto.Update) int64 {
	t.Helper()
	v, ok := valueOf(us, proto.UpdRC)
	if !ok {
		t.Fatalf("no rc in %s", dumpUpdates(us))
	}
	n, ok := proto.AsInt(v)
	if !ok {
		t.Fatalf("rc is %T", v)
	}
	return n
}

func keysOf(us []proto.Update) []string {
	ks := make([]string, len(us))
	for i, u := range us {
		ks[i] = u.Key
	}
	return ks
}

func dumpUpdates(us []proto.Update) string {
	var b strings.Builder
	for _, u := range us {
		switch v := u.Value.(type) {
		case proto.LogChunk:
			fmt.Fprintf(&b, "\n  %s %q", u.Key, v.Text)
		case proto.NamedLogChunk:
			fmt.Fprintf(&b, "\n  log[%s] %q", v.Name, v.Chunk.Text)
		default:
			fmt.Fprintf(&b, "\n  %s %v", u.Key, v)
		}
	}
	return b.String()
}

func testSettings() Settings {
	st := DefaultSettings()
	st.BufferTimeout = 10 * time.Millisecond
	return st
}

func TestOutputOrderAndMerge(t *testing.T) {
	s := newTestSender(t)
	st := DefaultSettings() // 5 s timeout: everything goes out at Close
	o, err := NewOutput(s, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := lineTimeNow()
	o.Write("stdout", []byte("a\nb"))
	o.Write("stdout", []byte("c\n"))
	o.Write("stderr", []byte("e1\ne2\n"))
	o.Write("stdout", []byte("d\npartial"))
	o.Add("rc", 3)
	o.Write("header", []byte("h\n"))
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := lineTimeNow()
	msgs := s.messages()
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1 (all fits one buffer)", len(msgs))
	}
	us := msgs[0]
	got := keysOf(us)
	// The partial line is ended by Close, after rc: EndLines is for
	// callers that want rc after it.
	want := []string{"stdout", "stderr", "stdout", "rc", "header", "stdout"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("keys = %v, want %v%s", got, want, dumpUpdates(us))
	}
	if c := us[0].Value.(proto.LogChunk); c.Text != "a\nbc\n" || fmt.Sprint(c.Indexes) != "[1 4]" {
		t.Errorf("first stdout chunk = %+v", c)
	}
	if c := us[1].Value.(proto.LogChunk); c.Text != "e1\ne2\n" {
		t.Errorf("stderr chunk = %+v", c)
	}
	if c := us[5].Value.(proto.LogChunk); c.Text != "partial\n" {
		t.Errorf("last chunk = %+v", c)
	}
	for _, u := range us {
		if c, ok := u.Value.(proto.LogChunk); ok {
			for _, tm := range c.Times {
				if tm < before || tm > after {
					t.Errorf("line time %f outside [%f, %f]", tm, before, after)
				}
			}
		}
	}
}

func TestOutputEndLinesBeforeRC(t *testing.T) {
	s := newTestSender(t)
	o, err := NewOutput(s, DefaultSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Write("stdout", []byte("no newline"))
	o.Write("stderr", []byte("tail\r")) // a held "\r" resolves as a line end
	o.EndLines()
	o.Add("rc", 0)
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	us := s.updates()
	if got := fmt.Sprint(keysOf(us)); got != "[stdout stderr rc]" {
		t.Fatalf("keys = %s%s", got, dumpUpdates(us))
	}
	if textOf(us, "stdout") != "no newline\n" || textOf(us, "stderr") != "tail\n" {
		t.Errorf("text:%s", dumpUpdates(us))
	}
}

func TestOutputLineTimeIsFirstByte(t *testing.T) {
	s := newTestSender(t)
	o, err := NewOutput(s, DefaultSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Write("stdout", []byte("beg"))
	mid := lineTimeNow()
	// Make sure the clock moves between the writes.
	for lineTimeNow() == mid {
	}
	o.Write("stdout", []byte("un\nnext\n"))
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := s.updates()[0].Value.(proto.LogChunk)
	if c.Text != "begun\nnext\n" {
		t.Fatalf("text %q", c.Text)
	}
	if c.Times[0] > mid || c.Times[1] <= mid {
		t.Errorf("times %v: first line must carry its first byte's time (< %f), second a later one", c.Times, mid)
	}
}

func TestOutputBufferSize(t *testing.T) {
	s := newTestSender(t)
	st := DefaultSettings()
	st.BufferSize = 100
	st.BufferTimeout = time.Hour
	o, err := NewOutput(s, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 29) + "\n" // 30 + 16 = 46 bytes by Buildbot's count
	for i := 0; i < 10; i++ {
		o.Write("stdout", []byte(line))
	}
	// Two lines fill a buffer (92); the third overflows it and sends it.
	s.waitFor(t, "4 full batches", func(us []proto.Update) bool { return len(us) >= 4 })
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := s.messages()
	if len(msgs) != 5 {
		t.Fatalf("got %d messages, want 5", len(msgs))
	}
	for i, m := range msgs {
		c := m[0].Value.(proto.LogChunk)
		if size := len(c.Text) + 8*(len(c.Indexes)+len(c.Times)); size > st.BufferSize {
			t.Errorf("message %d has %d bytes by Buildbot's count, over the %d limit", i, size, st.BufferSize)
		}
	}
	if got := textOf(s.updates(), "stdout"); got != strings.Repeat(line, 10) {
		t.Errorf("text differs: %q", got)
	}
}

func TestOutputOversizeItemTravelsAlone(t *testing.T) {
	s := newTestSender(t)
	st := DefaultSettings()
	st.BufferSize = 64
	o, err := NewOutput(s, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Write("stdout", []byte("small\n"))
	big := strings.Repeat("y", 200) + "\n"
	o.Write("stdout", []byte(big))
	o.Write("stdout", []byte("after\n"))
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := s.messages()
	var texts []string
	for _, m := range msgs {
		texts = append(texts, textOf(m, "stdout"))
	}
	want := []string{"small\n", big, "after\n"}
	if fmt.Sprint(texts) != fmt.Sprint(want) {
		t.Errorf("messages = %q, want %q", texts, want)
	}
}

func TestOutputBufferTimeout(t *testing.T) {
	s := newTestSender(t)
	st := DefaultSettings()
	st.BufferTimeout = 50 * time.Millisecond
	o, err := NewOutput(s, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	start := time.Now()
	o.Write("stdout", []byte("live\n"))
	o.Write("stdout", []byte("held back")) // partial lines wait
	us := s.waitFor(t, "the timer's update", func(us []proto.Update) bool { return len(us) > 0 })
	if el := time.Since(start); el < st.BufferTimeout {
		t.Errorf("update sent after %v, before the %v buffer timeout", el, st.BufferTimeout)
	}
	if got := textOf(us, "stdout"); got != "live\n" {
		t.Errorf("stdout %q", got)
	}
	// A second batch gets its own timer.
	o.Write("stdout", []byte(" line\n"))
	us = s.waitFor(t, "the second update", func(us []proto.Update) bool { return len(us) > 1 })
	if got := textOf(us, "stdout"); got != "live\nheld back line\n" {
		t.Errorf("stdout %q", got)
	}
}

func TestOutputFlush(t *testing.T) {
	s := newTestSender(t)
	o, err := NewOutput(s, DefaultSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Write("stdout", []byte("one\ntwo"))
	o.Add("files", []any{"a", "b"})
	if err := o.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	us := s.updates() // Flush waited for the master's answer
	if got := fmt.Sprint(keysOf(us)); got != "[stdout files]" || textOf(us, "stdout") != "one\n" {
		t.Fatalf("after Flush:%s", dumpUpdates(us))
	}
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := textOf(s.updates(), "stdout"); got != "one\ntwo\n" {
		t.Errorf("stdout %q", got)
	}
}

func TestOutputLogEntries(t *testing.T) {
	s := newTestSender(t)
	o, err := NewOutput(s, DefaultSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Log("a", []byte("a1\n"))
	o.Log("a", []byte("a2\n"))
	o.Log("b", []byte("b1\n"))
	o.Log("a", []byte("a3"))
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	us := s.updates()
	var got []string
	for _, u := range us {
		nc := u.Value.(proto.NamedLogChunk)
		got = append(got, u.Key+":"+nc.Name+":"+nc.Chunk.Text)
	}
	want := []string{"log:a:a1\na2\n", "log:b:b1\n", "log:a:a3\n"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestOutputInvalidUTF8(t *testing.T) {
	s := newTestSender(t)
	o, err := NewOutput(s, DefaultSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Write("stdout", []byte("ok \xff\xfe end\n"))
	o.Write("stdout", []byte("split \xc3")) // é arriving in two reads is fine
	o.Write("stdout", []byte("\xa9\n"))
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := textOf(s.updates(), "stdout"); got != "ok \uFFFD end\nsplit é\n" { // one U+FFFD per invalid run
		t.Errorf("stdout %q", got)
	}
}

func TestOutputSendError(t *testing.T) {
	s := newTestSender(t)
	s.failAt = 1
	o, err := NewOutput(s, DefaultSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Write("stdout", []byte("lost\n"))
	if err := o.Flush(context.Background()); !errors.Is(err, errSendFailed) {
		t.Fatalf("Flush = %v, want %v", err, errSendFailed)
	}
	o.Write("stdout", []byte("dropped\n"))
	o.Add("rc", 0)
	if err := o.Close(context.Background()); !errors.Is(err, errSendFailed) {
		t.Fatalf("Close = %v, want %v", err, errSendFailed)
	}
	if us := s.updates(); len(us) != 0 {
		t.Errorf("updates after a failed send:%s", dumpUpdates(us))
	}
}

// TestOutputFlowControl: a master that does not answer stops the writer
// instead of letting output pile up in the worker.
func TestOutputFlowControl(t *testing.T) {
	s := newTestSender(t)
	s.gate = make(chan struct{})
	st := DefaultSettings()
	st.BufferSize = 1 << 10
	o, err := NewOutput(s, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan struct{}, 1)
	o.throttled = func() {
		select {
		case blocked <- struct{}{}:
		default:
		}
	}
	line := bytes.Repeat([]byte("z"), 99)
	line = append(line, '\n')
	const lines = 20000 // 2 MB, far beyond what may queue
	var written atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < lines; i++ {
			o.Write("stdout", line)
			written.Add(1)
		}
	}()
	<-blocked
	o.mu.Lock()
	queued, limit := o.queued, o.maxQueued
	o.mu.Unlock()
	if n := written.Load(); n == lines {
		t.Fatalf("writer finished while the master answered nothing")
	}
	if queued > limit+st.BufferSize {
		t.Errorf("%d bytes queued, limit %d", queued, limit)
	}
	close(s.gate) // the master catches up
	<-done
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := textOf(s.updates(), "stdout"); got != strings.Repeat(string(line), lines) {
		t.Errorf("text differs after flow control (%d bytes, want %d)", len(got), lines*len(line))
	}
}

// TestOutputCloseAbandonsStuckSend: Close with an ending context aborts a
// send the master never answers, and leaves no goroutine behind.
func TestOutputCloseAbandonsStuckSend(t *testing.T) {
	s := newTestSender(t)
	s.gate = make(chan struct{}) // never opened
	s.entered = make(chan struct{}, 1)
	o, err := NewOutput(s, DefaultSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Write("stdout", []byte("x\n"))
	o.kick()
	<-s.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := o.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	o.mu.Lock()
	sending := o.sending
	o.mu.Unlock()
	if sending {
		t.Error("sender goroutine still running after Close")
	}
}

func TestOutputRejectsBadNewlineRE(t *testing.T) {
	st := DefaultSettings()
	st.NewlineRE = `(?<=x)\n`
	if _, err := NewOutput(newTestSender(t), st, nil); err == nil {
		t.Fatal("NewOutput accepted a lookbehind")
	}
}
