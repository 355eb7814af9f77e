package store

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdWriter occupies the writer goroutine until the returned func is
// called, so that ops submitted meanwhile queue up and run as one batch.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	go s.write(t.Context(), 0, func(*wtx) error {
		close(entered)
		<-gate
		return nil
	})
	<-entered
	return sync.OnceFunc(func() { close(gate) })
}

// waitQueued waits until n ops are queued for the writer.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.w.ops) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d ops queued, want %d", len(s.w.ops), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// One failing op in a batch fails alone; the others commit.
func TestBatchFailureIsolated(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	release := holdWriter(t, s)
	defer release()

	const n = 10
	const bad = 4
	errBad := errors.New("bad op")
	errs := make([]error, n)
	var runs [n]atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.write(ctx, 0, func(tx *wtx) error {
				runs[i].Add(1)
				if _, err := tx.exec(`INSERT INTO workers (name) VALUES (?)`, fmt.Sprint("w", i)); err != nil {
					return err
				}
				if i == bad {
					return errBad // after writing: the write must be undone
				}
				return nil
			})
		})
	}
	waitQueued(t, s, n)
	batches, reruns := s.w.batches.Load(), s.w.reruns.Load()
	release()
	wg.Wait()

	if got := s.w.batches.Load() - batches; got != 1 {
		t.Errorf("%d batches, want the %d ops in 1", got, n)
	}
	if got := s.w.reruns.Load() - reruns; got != 1 {
		t.Errorf("%d reruns, want 1", got)
	}
	for i, err := range errs {
		_, gerr := s.GetWorkerByName(ctx, fmt.Sprint("w", i))
		if i == bad {
			if !errors.Is(err, errBad) || !errors.Is(gerr, ErrNotFound) {
				t.Errorf("bad op: err %v, worker lookup %v", err, gerr)
			}
			continue
		}
		if err != nil || gerr != nil {
			t.Errorf("op %d: err %v, worker lookup %v", i, err, gerr)
		}
		if r := runs[i].Load(); r > 2 {
			t.Errorf("op %d ran %d times", i, r)
		}
	}
}

// Write ops in one batch see each other's writes, in order.
func TestBatchOrder(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	l := newLog(t, s, LogText)
	release := holdWriter(t, s)
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, _, err := s.AppendLog(ctx, l.ID, fmt.Appendf(nil, "line %d\n", i)); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, s, n)
	release()
	wg.Wait()
	var buf bytes.Buffer
	if got := must(s.ReadLog(ctx, l.ID, 0, -1, &buf))(t); got != n {
		t.Errorf("%d lines, want %d", got, n)
	}
	if g := must(s.GetLog(ctx, l.ID))(t); g.NumLines != n || g.Size != int64(buf.Len()) {
		t.Errorf("log = %+v, %d bytes read", g, buf.Len())
	}
}

// Readers run while the writer is busy and see only committed, consistent
// states.
func TestConcurrentReaders(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	bid := addBuilders(t, s, "b")[0]
	l := newLog(t, s, LogText)
	line := bytes.Repeat([]byte("x"), 99)
	line = append(line, '\n')
	batch := bytes.Repeat(line, 100)

	stop := make(chan struct{})
	var writers, readers sync.WaitGroup
	var added atomic.Int64
	for range 4 {
		writers.Go(func() {
			for range 50 {
				if _, err := s.AddBuild(ctx, NewBuild{BuilderID: bid}); err != nil {
					t.Error(err)
					return
				}
				added.Add(1)
				if _, _, err := s.AppendLog(ctx, l.ID, batch); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 6 {
		readers.Go(func() {
			last := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				before := added.Load()
				bs, err := s.ListBuilds(ctx, BuildFilter{Limit: 1})
				if err != nil {
					t.Error(err)
					return
				}
				// Every AddBuild that returned is visible.
				if before > 0 && (len(bs) == 0 || int64(bs[0].Number) < before) {
					t.Errorf("read saw build %v after %d were committed", bs, before)
					return
				}
				lg, err := s.GetLog(ctx, l.ID)
				if err != nil {
					t.Error(err)
					return
				}
				if lg.NumLines < last || lg.Size != int64(lg.NumLines)*int64(len(line)) {
					t.Errorf("log went from %d lines to %+v", last, lg)
					return
				}
				last = lg.NumLines
				var buf bytes.Buffer
				n, err := s.ReadLog(ctx, l.ID, max(0, last-150), -1, &buf)
				if err != nil || n < min(150, last) || buf.Len() != n*len(line) {
					t.Errorf("ReadLog: %d lines %d bytes, %v", n, buf.Len(), err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	if g := must(s.GetLog(ctx, l.ID))(t); g.NumLines != 4*50*100 {
		t.Errorf("log has %d lines, want %d", g.NumLines, 4*50*100)
	}
}

// Close commits everything queued before it; writes that lose the race with
// Close fail with ErrClosed and leave nothing behind.
func TestCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.db")
	s := must(Open(path))(t)
	ctx := t.Context()
	const n = 200
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.EnsureWorker(ctx, fmt.Sprint("w", i))
		})
	}
	time.Sleep(time.Millisecond)
	ok(t, s.Close())
	wg.Wait()

	s = must(Open(path))(t)
	defer s.Close()
	committed := 0
	for i, err := range errs {
		_, gerr := s.GetWorkerByName(ctx, fmt.Sprint("w", i))
		switch {
		case err == nil && gerr == nil:
			committed++
		case errors.Is(err, ErrClosed) && errors.Is(gerr, ErrNotFound):
		default:
			t.Errorf("write %d: %v; after reopen: %v", i, err, gerr)
		}
	}
	t.Logf("%d of %d writes committed before Close", committed, n)
}

// The checkpointer copies the WAL into the database as writes come in, and
// makes a WAL that keeps growing start over.
func TestCheckpointer(t *testing.T) {
	s := must(Open(filepath.Join(t.TempDir(), "master.db")))(t)
	ctx := t.Context()
	s.w.restartFrames = 2000 // 8 MiB; set before any write wakes the checkpointer
	l := newLog(t, s, LogText)
	batch := logBatch(MaxChunk)
	var wg sync.WaitGroup
	for range 4 { // concurrent appends, so the writer never pauses
		wg.Go(func() {
			for range 200 {
				if _, _, err := s.AppendLog(ctx, l.ID, batch); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var buf bytes.Buffer
	if n := must(s.ReadLog(ctx, l.ID, 0, -1, &buf))(t); buf.Len() != 800*len(batch) {
		t.Errorf("read %d lines, %d bytes; want %d bytes", n, buf.Len(), 800*len(batch))
	}
	ok(t, s.Close()) // waits for the checkpointer
	if s.w.checkpoints.Load() == 0 {
		t.Error("no checkpoint after 50 MiB of writes")
	}
	if s.w.restarts.Load() == 0 {
		t.Error("WAL never restarted")
	}
	t.Logf("%d checkpoints, %d restarts", s.w.checkpoints.Load(), s.w.restarts.Load())
}
