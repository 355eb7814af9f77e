package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// The writer is the only goroutine that writes to the database. SQLite allows
// one writer at a time anyway; owning the write connection in one goroutine
// turns lock contention into a queue and lets us commit many small writes in
// one transaction, which is what makes ingest fast: with synchronous=NORMAL
// a WAL commit costs write(2)s of the dirty pages and no fsync (see
// checkpoint.go for where the fsyncs went), and batching pays it once for up
// to maxBatchOps writes, which often touch the same pages.

const (
	// maxBatchOps and maxBatchBytes bound one transaction, so that a flood
	// of writes still commits (and answers its callers) regularly.
	maxBatchOps   = 256
	maxBatchBytes = 8 << 20

	// opQueue is how many ops may wait for the writer before callers block.
	opQueue = 1024
)

// Transaction control is SQLite's own syntax: BEGIN IMMEDIATE takes the
// write lock up front, so a transaction never fails half-way on a lock
// upgrade. PostgreSQL would use plain BEGIN.
const (
	beginSQL    = "BEGIN IMMEDIATE"
	commitSQL   = "COMMIT"
	rollbackSQL = "ROLLBACK"
)

// An op is one write submitted to the writer.
type op struct {
	ctx  context.Context // the caller's; the op is skipped if it is done before the op runs
	fn   func(*wtx) error
	size int
	done chan error // buffered; receives the op's outcome once
}

type writer struct {
	db   *sql.DB
	conn *sql.Conn // the one write connection; used only by loop (and before it starts)
	ctx  context.Context

	// The checkpointer (checkpoint.go). dirty is owned by loop.
	ckptDB        *sql.DB
	kick          chan struct{} // cap 1; closed when loop stops
	ckptDone      chan struct{} // closed when checkpointLoop returns
	dirty         int
	restartFrames int // walRestartFrames; tests lower it

	// stmts caches prepared statements on conn. Only the goroutine running
	// ops touches it.
	stmts map[string]*sql.Stmt

	started bool         // loop was started; set before any op is sent
	mu      sync.RWMutex // held (R) while sending on ops, (W) to close it
	closed  bool
	ops     chan *op
	stopped chan struct{} // closed when loop returns

	// Counters, for tests and benchmarks.
	batches     atomic.Int64 // transactions committed or attempted with more than one op
	reruns      atomic.Int64 // batches that failed and were re-run op by op
	checkpoints atomic.Int64 // PASSIVE checkpoints done
	restarts    atomic.Int64 // RESTART checkpoints done
}

// newWriter takes over db (the write connection's pool) and ckptDB (the
// checkpointer's) and closes both on failure.
func newWriter(db, ckptDB *sql.DB) (*writer, error) {
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		ckptDB.Close()
		return nil, err
	}
	w := &writer{
		db:            db,
		conn:          conn,
		ctx:           ctx,
		ckptDB:        ckptDB,
		kick:          make(chan struct{}, 1),
		restartFrames: walRestartFrames,
		ckptDone:      make(chan struct{}),
		stmts:         make(map[string]*sql.Stmt),
		ops:           make(chan *op, opQueue),
		stopped:       make(chan struct{}),
	}
	for _, q := range ckptConnPragmas {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			w.closeConn()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	// The DSN asked for WAL, but SQLite silently keeps another mode where
	// WAL is impossible; concurrent readers depend on it, so check.
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		w.closeConn()
		return nil, err
	}
	if mode != "wal" {
		w.closeConn()
		return nil, fmt.Errorf("journal mode is %q, not WAL (is the file on a network file system?)", mode)
	}
	return w, nil
}

// do submits fn and waits for its outcome. Once fn is queued, do waits for
// it even if ctx is done meanwhile, so that its answer is the truth: nil
// means committed, an error means nothing of fn was committed.
func (w *writer) do(ctx context.Context, size int, fn func(*wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{ctx: ctx, fn: fn, size: size, done: make(chan error, 1)}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return ErrClosed
	}
	select {
	case w.ops <- o:
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	w.mu.RUnlock()
	return <-o.done
}

// start starts the writer and checkpointer goroutines.
func (w *writer) start() {
	w.started = true
	go w.loop()
	go w.checkpointLoop()
}

// loop is the writer goroutine: it takes the next op, adds whatever else is
// already queued (within the batch bounds) and runs them in one transaction.
func (w *writer) loop() {
	defer close(w.stopped)
	defer close(w.kick) // stops the checkpointer
	batch := make([]*op, 0, maxBatchOps)
	for o := range w.ops {
		batch = append(batch[:0], o)
		size := o.size
	fill:
		for len(batch) < maxBatchOps && size < maxBatchBytes {
			select {
			case o, ok := <-w.ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
				size += o.size
			default:
				break fill
			}
		}
		w.run(batch, size)
		clear(batch) // let finished ops be collected while we wait
	}
}

// run runs a batch of ops, carrying size bytes, in one transaction. If any
// op fails, the whole transaction is rolled back and every op is run again
// in a transaction of its own, so that one bad op fails alone and its
// neighbours commit.
func (w *writer) run(batch []*op, size int) {
	live := batch[:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.done <- err // the caller gave up before its op ran
			continue
		}
		live = append(live, o)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		err := w.tx(live[0].fn)
		if err == nil {
			w.committed(live[0].size, 1)
		}
		live[0].done <- err
		return
	}
	w.batches.Add(1)
	opFailed := false
	err := w.tx(func(t *wtx) error {
		for _, o := range live {
			if err := o.fn(t); err != nil {
				opFailed = true
				return err
			}
		}
		return nil
	})
	if err == nil {
		w.committed(size, len(live))
	}
	if !opFailed {
		// Committed, or BEGIN or COMMIT failed: that is the database's
		// trouble (I/O, disk full, a lock held too long), not an op's, and
		// running the ops one by one would only meet it again n times.
		for _, o := range live {
			o.done <- err
		}
		return
	}
	w.reruns.Add(1)
	for _, o := range live {
		err := w.tx(o.fn)
		if err == nil {
			w.committed(o.size, 1)
		}
		o.done <- err
	}
}

// tx runs fn in a transaction on the write connection.
func (w *writer) tx(fn func(*wtx) error) error {
	t := &wtx{w}
	if _, err := t.exec(beginSQL); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(t); err != nil {
		w.rollback(t)
		return err
	}
	if _, err := t.exec(commitSQL); err != nil {
		w.rollback(t)
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (w *writer) rollback(t *wtx) {
	// The error is dropped on purpose: SQLite rolls back by itself on some
	// errors (SQLITE_FULL, SQLITE_IOERR, ...), after which ROLLBACK fails with
	// "no transaction is active", and any real trouble with the connection
	// shows up again at the next BEGIN.
	t.exec(rollbackSQL)
}

// close stops accepting ops, waits for the queued ones to commit and closes
// the write connection. It is safe to call more than once, and before loop
// has started (when Open fails half-way).
func (w *writer) close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.ops)
	w.mu.Unlock()
	if w.started {
		<-w.stopped // loop drains the queued ops, then returns
		<-w.ckptDone
	}
	return w.closeConn()
}

func (w *writer) closeConn() error {
	for _, st := range w.stmts {
		st.Close()
	}
	w.stmts = nil
	return errors.Join(w.conn.Close(), w.db.Close(), w.ckptDB.Close())
}

// wtx is a write transaction in progress, handed to write ops. Its methods
// use prepared statements cached for the life of the write connection.
type wtx struct{ w *writer }

func (t *wtx) stmt(query string) (*sql.Stmt, error) {
	if st, ok := t.w.stmts[query]; ok {
		return st, nil
	}
	st, err := t.w.conn.PrepareContext(t.w.ctx, query)
	if err != nil {
		return nil, err
	}
	t.w.stmts[query] = st
	return st, nil
}

func (t *wtx) exec(query string, args ...any) (sql.Result, error) {
	st, err := t.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(t.w.ctx, args...)
}

func (t *wtx) queryRow(query string, args ...any) rowScanner {
	st, err := t.stmt(query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(t.w.ctx, args...)
}

func (t *wtx) query(query string, args ...any) (*sql.Rows, error) {
	st, err := t.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(t.w.ctx, args...)
}

// update runs an UPDATE or DELETE and reports how many rows it changed.
func (t *wtx) update(query string, args ...any) (int64, error) {
	res, err := t.exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// exists reports whether query (SELECT 1 ... ) returns a row.
func (t *wtx) exists(query string, args ...any) (bool, error) {
	var one int
	err := t.queryRow(query, args...).Scan(&one)
	if err == sql.ErrNoRows {
		return false, nil
	}
	return err == nil, err
}
