package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/starforge/starforge/worker/proto"
)

// Output collects one command's update entries and sends them to the master
// as "update" requests, batching like Buildbot's worker
// (util/buffer_manager.py):
//
//   - an update goes out when adding an entry would exceed BufferSize bytes
//     (text length plus 8 bytes per newline index and per line time, as
//     Buildbot counts), or BufferTimeout after the first entry was
//     buffered;
//   - consecutive entries of the same stream (and, for "log", the same
//     logfile) are merged into one;
//   - a single entry larger than BufferSize travels alone.
//
// Text arrives as raw bytes (Write, Log). It is split into lines at "\n",
// at matches of the master's newline_re and at MaxLineLength, without
// losing a byte; only complete lines are buffered, each with the time its
// first byte arrived. Invalid UTF-8 is replaced by U+FFFD, since the
// protocol carries text as msgpack str.
//
// Entries reach the master in the order they were buffered: a line is
// buffered when it completes, a plain entry (Add) when it is added. Batches
// are sent by one goroutine at a time, each waiting for the master's
// response; when the master falls behind, Write, Log and Add block, so a
// chatty process is slowed down instead of filling the worker's memory.
//
// After the first failed send, Output drops everything else and reports
// that error from Flush and Close.
//
// All methods are safe for concurrent use. Close must be called, once the
// command is done, to release the timer and the sending goroutine.
type Output struct {
	s          Sender
	st         Settings
	logger     *slog.Logger
	newScanner func() newlineScanner
	maxQueued  int // estimated bytes waiting to be sent before writers block
	// throttled, if set (by tests), is called when a writer starts
	// waiting for the master.
	throttled func()

	// ctx bounds background sends; cancel aborts them (Close on timeout).
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	streams  map[outStreamID]*outStream
	order    []*outStream // creation order, so EndLines is deterministic
	buf      []*outEntry  // the batch being filled
	bufLen   int          // its estimated size
	timer    *time.Timer
	timerGen uint64 // invalidates a timer that fired while being stopped
	queue    []outBatch
	queued   int    // estimated bytes in queue
	enq      uint64 // batches queued so far
	sent     uint64 // batches whose send finished (successfully or not)
	sending  bool   // a sendLoop goroutine is running
	closed   bool
	err      error         // first send error
	changed  chan struct{} // closed and replaced whenever a send finishes
}

type outStreamID struct{ key, name string }

// outStream is one text stream's line state: stdout, stderr, header, or one
// logfile.
type outStream struct {
	id      outStreamID
	sc      newlineScanner
	asm     lineAssembler
	started bool    // the current line has begun (content or held bytes)
	start   float64 // when its first byte arrived
	now     float64 // time of the data being processed
}

// outEntry is one buffered [key, value] pair; text entries grow by merging.
type outEntry struct {
	id     outStreamID
	isText bool
	text   []byte
	idx    []int
	times  []float64
	value  any
}

type outBatch struct {
	updates []proto.Update
	size    int
}

// NewOutput returns an Output sending through s with the settings st. It
// fails when st.NewlineRE cannot be applied by this worker. A nil logger
// means slog.Default().
func NewOutput(s Sender, st Settings, logger *slog.Logger) (*Output, error) {
	return newOutput(context.Background(), s, st, logger)
}

// newOutput is NewOutput with background sends bound to ctx, so that a
// command whose context ends does not leave a send hanging.
func newOutput(ctx context.Context, s Sender, st Settings, logger *slog.Logger) (*Output, error) {
	factory, err := newScannerFactory(st.NewlineRE)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	if st.BufferSize <= 0 {
		st.BufferSize = proto.DefaultBufferSize
	}
	if st.MaxLineLength <= 0 {
		st.MaxLineLength = proto.DefaultMaxLineLength
	}
	if st.BufferTimeout < 0 {
		st.BufferTimeout = 0
	}
	o := &Output{
		s:          s,
		st:         st,
		logger:     logger,
		newScanner: factory,
		maxQueued:  max(4*st.BufferSize, 256<<10),
		streams:    make(map[outStreamID]*outStream),
		changed:    make(chan struct{}),
	}
	o.ctx, o.cancel = context.WithCancel(ctx)
	return o, nil
}

// Write adds raw output of stream ("stdout", "stderr" or "header"). A
// partial last line is held back until its end arrives or Close (or
// EndLines) ends it. p may be reused once Write returns.
func (o *Output) Write(stream string, p []byte) {
	o.write(outStreamID{key: stream}, p, true)
}

// Log adds raw bytes of the watched logfile name; they are sent as
// ["log", [name, chunk]] entries.
func (o *Output) Log(name string, p []byte) {
	o.write(outStreamID{key: proto.UpdLog, name: name}, p, true)
}

// writeNow is Write without flow control, for a supervisor that must not
// wait for the master (to kill a process on time, say).
func (o *Output) writeNow(stream string, p []byte) {
	o.write(outStreamID{key: stream}, p, false)
}

func (o *Output) write(id outStreamID, p []byte, throttle bool) {
	if len(p) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.err != nil {
		return
	}
	o.feedLocked(o.streamLocked(id), p, false)
	if throttle {
		o.throttleLocked()
	}
}

// Add buffers a plain entry (rc, elapsed, failure_reason, files, stat ...)
// after every line completed so far.
func (o *Output) Add(key string, value any) {
	o.add(key, value, true)
}

// addNow is Add without flow control; see writeNow.
func (o *Output) addNow(key string, value any) {
	o.add(key, value, false)
}

func (o *Output) add(key string, value any, throttle bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.err != nil {
		return
	}
	size := updateSizeEstimate(value) + len(key)
	o.makeRoomLocked(size)
	o.buf = append(o.buf, &outEntry{id: outStreamID{key: key}, value: value})
	o.bufLen += size
	o.addedLocked()
	if throttle {
		o.throttleLocked()
	}
}

// EndLines ends every stream's partial last line with a synthetic "\n"
// (and resolves bytes held back to decide a line end), so that entries
// added afterwards, such as rc, follow all the text written so far.
func (o *Output) EndLines() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	o.endLinesLocked()
}

// Flush sends everything buffered (complete lines only) and waits until
// it has been sent. It returns the first send error, or ctx's error.
func (o *Output) Flush(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.enqueueLocked()
	target := o.enq
	if err := o.waitLocked(ctx, func() bool { return o.sent >= target || o.err != nil }); err != nil {
		return err
	}
	return o.err
}

// kick hands what is buffered to the sender without waiting, as Buildbot
// does on interrupt_command.
func (o *Output) kick() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.enqueueLocked()
}

// Close ends partial lines (see EndLines), sends everything and stops the
// timer. It returns the first send error; when ctx ends first it aborts the
// send in flight and returns ctx's error. Later Writes, Logs and Adds are
// dropped. Calling Close again waits for the same sends.
func (o *Output) Close(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.endLinesLocked()
		o.closed = true
		o.enqueueLocked()
		o.broadcastLocked() // writers waiting for the master may go
	}
	target := o.enq
	werr := o.waitLocked(ctx, func() bool { return (o.sent >= target || o.err != nil) && !o.sending })
	if werr != nil {
		// Abort the send in flight and wait for the sender to notice, so
		// no goroutine outlives Close.
		o.cancel()
		_ = o.waitLocked(context.Background(), func() bool { return !o.sending })
	}
	o.cancel()
	if o.err != nil {
		return o.err
	}
	if werr != nil {
		return fmt.Errorf("sending updates: %w", werr)
	}
	return nil
}

func (o *Output) streamLocked(id outStreamID) *outStream {
	st := o.streams[id]
	if st != nil {
		return st
	}
	st = &outStream{id: id, sc: o.newScanner()}
	st.asm.max = o.st.MaxLineLength
	st.asm.emit = func(line []byte) {
		t := st.start
		if !st.started {
			t = st.now // an empty line: it began when its end arrived
		}
		o.addLineLocked(st.id, line, t)
		// Whatever follows in the data being processed begins the next line.
		st.start, st.started = st.now, true
	}
	o.streams[id] = st
	o.order = append(o.order, st)
	return st
}

func (o *Output) feedLocked(st *outStream, p []byte, eof bool) {
	st.now = lineTimeNow()
	if !st.started && len(p) > 0 {
		st.start, st.started = st.now, true
	}
	st.sc.feed(p, eof, &st.asm)
	if len(st.asm.line) == 0 && !st.sc.holding() {
		st.started = false
	}
}

func (o *Output) endLinesLocked() {
	for _, st := range o.order {
		o.feedLocked(st, nil, true)
		if len(st.asm.line) > 0 {
			st.asm.newline()
		}
		st.started = false
	}
}

// addLineLocked buffers one complete line of a text stream.
func (o *Output) addLineLocked(id outStreamID, line []byte, t float64) {
	if !utf8.Valid(line) {
		line = []byte(strings.ToValidUTF8(string(line), "\uFFFD"))
	}
	// Buildbot's estimate: the text plus 8 bytes per index and per time.
	size := len(line) + 1 + 16
	o.makeRoomLocked(size)
	var e *outEntry
	if n := len(o.buf); n > 0 && o.buf[n-1].isText && o.buf[n-1].id == id {
		e = o.buf[n-1]
	} else {
		e = &outEntry{id: id, isText: true}
		o.buf = append(o.buf, e)
	}
	e.text = append(e.text, line...)
	e.idx = append(e.idx, len(e.text))
	e.text = append(e.text, '\n')
	e.times = append(e.times, t)
	o.bufLen += size
	o.addedLocked()
}

// makeRoomLocked sends the current batch if an entry of size would not fit.
func (o *Output) makeRoomLocked(size int) {
	if len(o.buf) > 0 && o.bufLen+size > o.st.BufferSize {
		o.enqueueLocked()
	}
}

// addedLocked sends a full batch at once, or starts the buffer timer.
func (o *Output) addedLocked() {
	if o.bufLen >= o.st.BufferSize {
		o.enqueueLocked()
		return
	}
	if o.timer == nil {
		gen := o.timerGen
		o.timer = time.AfterFunc(o.st.BufferTimeout, func() { o.onTimer(gen) })
	}
}

func (o *Output) onTimer(gen uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if gen != o.timerGen {
		return // stopped after it had already fired
	}
	o.enqueueLocked()
}

// enqueueLocked moves the current batch to the send queue and makes sure
// a sender runs.
func (o *Output) enqueueLocked() {
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
		o.timerGen++
	}
	if len(o.buf) == 0 {
		return
	}
	b := outBatch{updates: make([]proto.Update, len(o.buf)), size: o.bufLen}
	for i, e := range o.buf {
		b.updates[i] = e.update()
	}
	o.buf, o.bufLen = nil, 0
	if o.err != nil {
		return
	}
	o.queue = append(o.queue, b)
	o.queued += b.size
	o.enq++
	if !o.sending {
		o.sending = true
		go o.sendLoop()
	}
}

// sendLoop sends queued batches in order, one at a time, and exits when
// the queue is empty; enqueueLocked starts a new one when needed.
func (o *Output) sendLoop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.queue) > 0 && o.err == nil {
		b := o.queue[0]
		o.queue[0] = outBatch{}
		o.queue = o.queue[1:]
		o.mu.Unlock()
		_, err := o.s.Send(o.ctx, proto.OpUpdate, map[string]any{"args": proto.EncodeUpdates(b.updates)})
		o.mu.Lock()
		o.queued -= b.size
		o.sent++
		if err != nil && o.err == nil {
			o.err = fmt.Errorf("send update: %w", err)
			if !errors.Is(err, context.Canceled) {
				o.logger.Warn("sending command output failed; dropping the rest", "err", err)
			}
		}
		o.broadcastLocked()
	}
	o.queue, o.queued = nil, 0
	o.sending = false
	o.broadcastLocked()
}

func (o *Output) broadcastLocked() {
	close(o.changed)
	o.changed = make(chan struct{})
}

// throttleLocked blocks the writer while too much is waiting to be sent:
// the master's responses are the flow control.
func (o *Output) throttleLocked() {
	if o.throttled != nil && o.queued > o.maxQueued {
		o.throttled()
	}
	_ = o.waitLocked(o.ctx, func() bool { return o.queued <= o.maxQueued || o.err != nil || o.closed })
}

// waitLocked waits, with o.mu released, until cond holds or ctx ends.
func (o *Output) waitLocked(ctx context.Context, cond func() bool) error {
	for !cond() {
		ch := o.changed
		o.mu.Unlock()
		select {
		case <-ch:
			o.mu.Lock()
		case <-ctx.Done():
			o.mu.Lock()
			return ctx.Err()
		}
	}
	return nil
}

func (e *outEntry) update() proto.Update {
	if !e.isText {
		return proto.Update{Key: e.id.key, Value: e.value}
	}
	c := proto.LogChunk{Text: string(e.text), Indexes: e.idx, Times: e.times}
	if e.id.key == proto.UpdLog {
		return proto.Update{Key: e.id.key, Value: proto.NamedLogChunk{Name: e.id.name, Chunk: c}}
	}
	return proto.Update{Key: e.id.key, Value: c}
}

// updateSizeEstimate approximates the msgpack size of a plain value, for the
// buffer limit (Buildbot counts 20 bytes for any non-text entry, which
// underestimates file lists badly).
func updateSizeEstimate(v any) int {
	switch t := v.(type) {
	case string:
		return len(t) + 5
	case []byte:
		return len(t) + 5
	case []string:
		n := 5
		for _, s := range t {
			n += len(s) + 5
		}
		return n
	case []any:
		n := 5
		for _, e := range t {
			n += updateSizeEstimate(e)
		}
		return n
	case map[string]any:
		n := 5
		for k, e := range t {
			n += len(k) + 5 + updateSizeEstimate(e)
		}
		return n
	}
	return 9
}

// lineTimeNow is the current time as float seconds since the epoch, the form
// of the protocol's line times.
func lineTimeNow() float64 {
	return float64(time.Now().UnixNano()) / 1e9
}
