package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// Log types, as Buildbot names them.
const (
	LogStdio = "s" // each line starts with its stream: 'o' stdout, 'e' stderr, 'h' header
	LogText  = "t"
	LogHTML  = "h"
)

// MaxChunk is the most bytes of lines stored in one logchunks row; AppendLog
// splits at line boundaries to stay under it. A single longer line is
// stored as a chunk of its own.
const MaxChunk = 64 << 10

// slugify lower-cases name and replaces every character outside [a-z0-9]
// with '_'.
func slugify(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range strings.ToLower(name) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// AddLog adds an empty log named name to step stepID. typ is LogStdio,
// LogText or LogHTML. The log's slug (for URLs) is slugify(name), made
// unique within the step by a "_2", "_3", ... suffix.
func (s *Store) AddLog(ctx context.Context, stepID int64, name, typ string) (Log, error) {
	switch {
	case name == "":
		return Log{}, fmt.Errorf("store: add log to step %d: empty name", stepID)
	case typ != LogStdio && typ != LogText && typ != LogHTML:
		return Log{}, fmt.Errorf("store: add log %q to step %d: bad type %q", name, stepID, typ)
	}
	slug := slugify(name)
	var l Log
	err := s.write(ctx, 0, func(tx *wtx) error {
		l = Log{StepID: stepID, Name: name, Type: typ}
		if ok, err := tx.exists(`SELECT 1 FROM steps WHERE id = ?`, stepID); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("step: %w", ErrNotFound)
			}
			return err
		}
		var err error
		if l.Slug, err = tx.unique(`SELECT 1 FROM logs WHERE stepid = ? AND slug = ?`, stepID, slug); err != nil {
			return err
		}
		return tx.queryRow(`INSERT INTO logs (name, slug, stepid, type) VALUES (?, ?, ?, ?) RETURNING id`,
			name, l.Slug, stepID, typ).Scan(&l.ID)
	})
	if err != nil {
		return Log{}, fmt.Errorf("store: add log %q to step %d: %w", name, stepID, err)
	}
	return l, nil
}

// chunk is a run of whole lines stored as one logchunks row.
type chunk struct {
	data  []byte
	lines int
}

// splitChunks cuts lines (which end in '\n') into chunks of at most
// MaxChunk bytes at line boundaries, except that a longer line is a chunk of
// its own. The chunks alias lines.
func splitChunks(lines []byte, buf []chunk) []chunk {
	out := buf[:0]
	for len(lines) > 0 {
		n := len(lines)
		if n > MaxChunk {
			if i := bytes.LastIndexByte(lines[:MaxChunk], '\n'); i >= 0 {
				n = i + 1
			} else {
				n = MaxChunk + bytes.IndexByte(lines[MaxChunk:], '\n') + 1
			}
		}
		out = append(out, chunk{lines[:n], bytes.Count(lines[:n], []byte{'\n'})})
		lines = lines[n:]
	}
	return out
}

// AppendLog appends lines, which must be one or more whole lines each ending
// in "\n", to log logID, and returns the 0-based numbers of the first and
// last line added. It fails with ErrAlreadyFinished if the log is finished.
//
// Each call stores at least one row, so callers should append in batches
// (what arrives from a worker in one update, or what accumulates over a few
// hundred milliseconds), not line by line. lines is not retained after
// AppendLog returns.
func (s *Store) AppendLog(ctx context.Context, logID int64, lines []byte) (first, last int, err error) {
	if len(lines) == 0 || lines[len(lines)-1] != '\n' {
		return 0, 0, fmt.Errorf("store: append to log %d: lines must end with a newline", logID)
	}
	// Split outside the writer goroutine, which should only run SQL.
	var buf [1]chunk
	chunks := splitChunks(lines, buf[:])
	err = s.writeBulk(ctx, len(lines), func(tx *wtx) error {
		var num int
		var size int64
		var complete bool
		if err := tx.queryRow(`SELECT num_lines, size, complete FROM logs WHERE id = ?`, logID).
			Scan(&num, &size, &complete); err != nil {
			return notFound(err)
		}
		if complete {
			return ErrAlreadyFinished
		}
		line := num
		for _, c := range chunks {
			if _, err := tx.exec(`INSERT INTO logchunks (logid, first_line, last_line, content) VALUES (?, ?, ?, ?)`,
				logID, line, line+c.lines-1, c.data); err != nil {
				return err
			}
			line += c.lines
		}
		if _, err := tx.exec(`UPDATE logs SET num_lines = ?, size = ? WHERE id = ?`,
			line, size+int64(len(lines)), logID); err != nil {
			return err
		}
		first, last = num, line-1
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("store: append to log %d: %w", logID, err)
	}
	return first, last, nil
}

// FinishLog marks log logID complete; no more lines can be appended. It
// fails with ErrAlreadyFinished if the log is finished.
func (s *Store) FinishLog(ctx context.Context, logID int64) error {
	err := s.write(ctx, 0, func(tx *wtx) error {
		n, err := tx.update(`UPDATE logs SET complete = 1 WHERE id = ? AND complete = 0`, logID)
		if err != nil || n == 1 {
			return err
		}
		return tx.missingOr(ErrAlreadyFinished, `SELECT 1 FROM logs WHERE id = ?`, logID)
	})
	if err != nil {
		return fmt.Errorf("store: finish log %d: %w", logID, err)
	}
	return nil
}

const logCols = `id, stepid, name, slug, type, num_lines, size, complete FROM logs`

func scanLog(r rowScanner) (Log, error) {
	var l Log
	err := r.Scan(&l.ID, &l.StepID, &l.Name, &l.Slug, &l.Type, &l.NumLines, &l.Size, &l.Complete)
	return l, err
}

// GetLog returns the log with the given id.
func (s *Store) GetLog(ctx context.Context, id int64) (Log, error) {
	l, err := scanLog(s.queryRow(ctx, `SELECT `+logCols+` WHERE id = ?`, id))
	if err != nil {
		return Log{}, fmt.Errorf("store: get log %d: %w", id, notFound(err))
	}
	return l, nil
}

// GetLogBySlug returns the log of step stepID with the given slug.
func (s *Store) GetLogBySlug(ctx context.Context, stepID int64, slug string) (Log, error) {
	l, err := scanLog(s.queryRow(ctx, `SELECT `+logCols+` WHERE stepid = ? AND slug = ?`, stepID, slug))
	if err != nil {
		return Log{}, fmt.Errorf("store: get log %q of step %d: %w", slug, stepID, notFound(err))
	}
	return l, nil
}

// ListLogs returns the logs of step stepID, in the order they were added.
func (s *Store) ListLogs(ctx context.Context, stepID int64) ([]Log, error) {
	rows, err := s.query(ctx, `SELECT `+logCols+` WHERE stepid = ? ORDER BY id`, stepID)
	if err != nil {
		return nil, fmt.Errorf("store: list logs of step %d: %w", stepID, err)
	}
	defer rows.Close()
	var ls []Log
	for rows.Next() {
		l, err := scanLog(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list logs of step %d: %w", stepID, err)
		}
		ls = append(ls, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list logs of step %d: %w", stepID, err)
	}
	return ls, nil
}

// readPage is how many chunks ReadLog fetches per query. It copies them out
// and closes the query before writing to w, so a slow w never holds a read
// transaction open (which would stop WAL checkpoints), while memory stays
// bounded by readPage chunks (about 1 MiB, more only for lines longer than
// MaxChunk).
const readPage = 16

// ReadLog writes lines first..last (0-based, inclusive; last < 0 means to
// the end) of log logID to w, chunk by chunk, and returns how many lines it
// wrote. Lines past the end of the log are not an error: fewer lines are
// written. Lines appended while ReadLog runs may or may not be included.
func (s *Store) ReadLog(ctx context.Context, logID int64, first, last int, w io.Writer) (n int, err error) {
	n, err = s.readLog(ctx, logID, first, last, w)
	if err != nil {
		return n, fmt.Errorf("store: read log %d lines %d..%d: %w", logID, first, last, err)
	}
	return n, nil
}

func (s *Store) readLog(ctx context.Context, logID int64, first, last int, w io.Writer) (int, error) {
	if first < 0 {
		return 0, errors.New("negative first line")
	}
	if last < 0 {
		last = math.MaxInt
	}
	if last < first {
		return 0, nil
	}
	if err := s.queryRow(ctx, `SELECT 1 FROM logs WHERE id = ?`, logID).Scan(new(int)); err != nil {
		return 0, notFound(err)
	}
	// The chunk holding line first is the last one starting at or before it.
	var start sql.NullInt64
	if err := s.queryRow(ctx, `SELECT MAX(first_line) FROM logchunks WHERE logid = ? AND first_line <= ?`,
		logID, first).Scan(&start); err != nil {
		return 0, err
	}
	if !start.Valid {
		return 0, nil // no lines yet
	}

	type span struct {
		first, last int // line numbers in the chunk
		off, end    int // its bytes in buf
	}
	var (
		buf   []byte
		spans []span
		n     int
		next  = int(start.Int64) // first_line of the next chunk to fetch
	)
	for next <= last {
		buf, spans = buf[:0], spans[:0]
		rows, err := s.query(ctx, `SELECT first_line, last_line, content FROM logchunks
			WHERE logid = ? AND first_line >= ? AND first_line <= ? ORDER BY first_line LIMIT ?`,
			logID, next, last, readPage)
		if err != nil {
			return n, err
		}
		for rows.Next() {
			var sp span
			var content sql.RawBytes
			if err := rows.Scan(&sp.first, &sp.last, &content); err != nil {
				rows.Close()
				return n, err
			}
			sp.off = len(buf)
			buf = append(buf, content...)
			sp.end = len(buf)
			spans = append(spans, sp)
		}
		if err := rows.Close(); err != nil {
			return n, err
		}
		if err := rows.Err(); err != nil {
			return n, err
		}
		for _, sp := range spans {
			if sp.last < first {
				continue // first is past the end of the log
			}
			b := buf[sp.off:sp.end]
			lo, hi := sp.first, sp.last
			if lo < first { // drop lines before first
				b = b[nthLineStart(b, first-lo):]
				lo = first
			}
			if hi > last { // drop lines after last
				b = b[:nthLineStart(b, last-lo+1)]
				hi = last
			}
			if _, err := w.Write(b); err != nil {
				return n, err
			}
			n += hi - lo + 1
		}
		if len(spans) < readPage {
			break
		}
		next = spans[len(spans)-1].last + 1
	}
	return n, nil
}

// nthLineStart returns the offset in b of the start of line k (0-based);
// b holds whole lines.
func nthLineStart(b []byte, k int) int {
	off := 0
	for ; k > 0; k-- {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return len(b)
		}
		off += i + 1
	}
	return off
}
