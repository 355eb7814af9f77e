package store

import (
	"context"
	"database/sql"
	"fmt"
)

// In WAL mode every commit appends pages to the -wal file, and a checkpoint
// copies them back into the database file. SQLite by default checkpoints
// inside the commit that crosses 1,000 pages, and with synchronous=NORMAL
// that checkpoint is where both fsyncs happen: one commit in ~60 64 KiB log
// appends stalled for tens of milliseconds, which halved log ingest and
// would show up in the dispatcher's p99. So the writer's connection never
// checkpoints (wal_autocheckpoint=0); a checkpointer goroutine with its own
// connection runs PASSIVE checkpoints, which do not block the writer or the
// readers, whenever the writer has committed about ckptBytes.
//
// A PASSIVE checkpoint copies the frames that exist when it starts. SQLite
// rewinds the WAL to its beginning only when a write transaction starts
// with every frame already copied, which under sustained writing does not
// happen: the WAL would grow without bound. So once it passes
// walRestartFrames, the checkpointer follows up with a RESTART checkpoint,
// which holds the write lock while it copies the frames the PASSIVE one
// missed and waits for readers to leave the WAL, so that the next commit
// starts the WAL over; journal_size_limit then trims the file. The writer
// waits for that (its busy timeout covers it): when the disk cannot keep
// up with the writes, this is where writers slow down to its pace.

const (
	// ckptBytes is roughly how much the writer commits between checkpoints:
	// SQLite's own default of 1,000 pages.
	ckptBytes = 4 << 20

	// opBytes is what a write op is assumed to dirty besides its payload:
	// a table leaf and an index leaf or two.
	opBytes = 8 << 10

	// walRestartFrames is the WAL size, in pages, at which the
	// checkpointer makes the WAL start over (128 MiB with 4 KiB pages).
	walRestartFrames = 32 << 10

	// walSizeLimit is the size the -wal file is trimmed back to after it
	// starts over.
	walSizeLimit = 64 << 20
)

// ckptConnPragmas configure the write connection for the scheme above.
var ckptConnPragmas = []string{
	"PRAGMA wal_autocheckpoint = 0",
	fmt.Sprintf("PRAGMA journal_size_limit = %d", walSizeLimit),
}

// checkpointLoop is the checkpointer goroutine. It runs until w.kick is
// closed, which loop does when it stops.
func (w *writer) checkpointLoop() {
	defer close(w.ckptDone)
	ctx := context.Background()
	for range w.kick {
		var busy, frames, copied int
		err := w.ckptDB.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
		if err != nil {
			// Nothing is lost: the frames stay in the WAL, where readers
			// find them, and the next checkpoint copies them.
			continue
		}
		w.checkpoints.Add(1)
		if frames < w.restartFrames {
			continue
		}
		if err := w.ckptDB.QueryRowContext(ctx, "PRAGMA wal_checkpoint(RESTART)").Scan(&busy, &frames, &copied); err == nil && busy == 0 {
			w.restarts.Add(1)
		}
	}
}

// committed is called by the writer goroutine after each commit with the
// payload bytes and op count of the transaction; it wakes the checkpointer
// once about ckptBytes have been committed since the last time.
func (w *writer) committed(bytes, ops int) {
	w.dirty += bytes + ops*opBytes
	if w.dirty < ckptBytes {
		return
	}
	w.dirty = 0
	select {
	case w.kick <- struct{}{}:
	default: // a checkpoint is already pending; it will copy these frames too
	}
}

// openCheckpointer opens the checkpointer's connection with the same
// settings as the writer's.
func openCheckpointer(dsn string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}
