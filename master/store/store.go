// Package store is the master's database: the only package that speaks SQL.
//
// The backend is SQLite (github.com/mattn/go-sqlite3) in WAL mode, in one file.
// All writes go through a single writer goroutine that owns the only write
// connection and groups whatever writes are queued into one transaction (see
// writer.go); reads use a separate pool of read-only connections and run in
// parallel with the writer. Every write method returns only after its data is
// committed, so a caller may announce an event as soon as the method returns,
// and any read issued after that sees the write. A write method that returns
// an error committed nothing. WAL checkpoints run in the background
// (checkpoint.go), so no write waits for an fsync.
//
// The schema follows Buildbot's data model (builders, workers, changes,
// sourcestamps, buildsets, buildrequests, builds, steps, logs, logchunks, ...).
// Times are stored as INTEGER unix microseconds, JSON values as TEXT, and the
// DML is kept portable so that a PostgreSQL backend can sit behind the same API
// later; the SQLite-specific parts are the connection setup (this file), the
// transaction statements (writer.go), the checkpoints (checkpoint.go) and the
// DDL (schema.go). Placeholders are '?'; PostgreSQL would need them rebound.
//
// A Store is safe for concurrent use by multiple goroutines.
package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/starforge/starforge/master/result"
)

var (
	// ErrNotFound is wrapped by every method that is given the id or name of
	// a row that does not exist.
	ErrNotFound = errors.New("not found")

	// ErrAlreadyClaimed is returned (wrapped) by ClaimRequest when the
	// request is already claimed or complete.
	ErrAlreadyClaimed = errors.New("build request already claimed")

	// ErrNotClaimed is returned (wrapped) by UnclaimRequest when the request
	// is not claimed or already complete.
	ErrNotClaimed = errors.New("build request not claimed")

	// ErrAlreadyFinished is returned (wrapped) when finishing something that
	// is already finished (FinishBuild, FinishStep, FinishLog,
	// CompleteRequest) and by AppendLog on a finished log.
	ErrAlreadyFinished = errors.New("already finished")

	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store: closed")
)

// Property is one build or buildset property: a JSON-encodable value and the
// name of what set it ("Scheduler", "Force Build Form", "Worker", ...).
//
// Values read back from the store are what encoding/json decodes, except that
// integral numbers come back as int64 rather than float64.
type Property struct {
	Value  any    `json:"value"`
	Source string `json:"source"`
}

// SourceStamp names the source code a build uses. Identical source stamps
// are stored once and shared between buildsets.
type SourceStamp struct {
	ID                                              int64
	Codebase, Repository, Branch, Revision, Project string
	Patch                                           *Patch // nil: none
}

// Builder is a configured builder. Builders are never deleted: a builder that
// disappears from master.star keeps its id and its history.
type Builder struct {
	ID                int64
	Name, Description string
	Tags              []string
}

// Worker is a worker known to the master.
type Worker struct {
	ID                              int64
	Name                            string
	Info                            map[string]any // what the worker reported when it last connected
	Connected                       bool
	LastConnected, LastDisconnected time.Time
	Paused                          bool
	PauseReason                     string
}

// Buildset is a set of build requests submitted together, one per builder.
type Buildset struct {
	ID           int64
	Reason       string
	SubmittedAt  time.Time
	Complete     bool
	CompleteAt   time.Time
	Results      result.Result
	Properties   map[string]Property
	SourceStamps []SourceStamp // ordered by codebase, then id
	// ParentBuildID is the build whose trigger step made the buildset, 0
	// for none; ParentRelationship names the link (the triggering step).
	ParentBuildID      int64
	ParentRelationship string
}

// BuildRequest asks for one build on one builder.
type BuildRequest struct {
	ID, BuildsetID, BuilderID int64
	BuilderName               string
	Priority                  int
	SubmittedAt               time.Time
	Claimed                   bool // completing a request does not unclaim it
	ClaimedAt                 time.Time
	CancelReason              string // why it was cancelled, if it was
	Complete                  bool
	CompleteAt                time.Time
	Results                   result.Result
}

// Build is one run of a builder on a worker for a build request.
type Build struct {
	ID                    int64
	Number                int // 1, 2, 3, ... per builder
	BuilderID             int64
	BuilderName           string
	RequestID, BuildsetID int64 // 0 if the build was added without a request
	WorkerID              int64 // 0 if the build was added without a worker
	WorkerName            string
	StartedAt, CompleteAt time.Time
	StateString           string
	Results               result.Result
}

// Step is one step of a build.
type Step struct {
	ID, BuildID           int64
	Number                int
	Name                  string // unique within the build
	StartedAt, CompleteAt time.Time
	StateString           string
	Results               result.Result
	Hidden                bool
}

// Log is one log of a step. Its lines live in the logchunks table and are
// read with ReadLog.
type Log struct {
	ID, StepID       int64
	Name, Slug, Type string
	NumLines         int
	Size             int64 // bytes, newlines included
	Complete         bool
}

// Store is the master's database. It is safe for concurrent use by multiple
// goroutines.
//
// Zero time.Time values in the types above mean "not yet", and Results is
// result.None while something is unfinished. Times are kept to the
// microsecond and read back in UTC. A zero time passed to a method (at,
// SubmittedAt, StartedAt) means now.
//
// Write methods wait for their commit even if their context is canceled
// after the write was queued, so that their error is always the truth; a
// write whose context is done before it runs is skipped.
type Store struct {
	path string
	w    *writer
	rdb  *sql.DB // read-only pool

	rmu    sync.Mutex
	rstmts map[string]*sql.Stmt // prepared statements on rdb, by query

	bsHook func(id int64, results result.Result) // OnBuildsetComplete

	reserve *reserve // ballast for a full disk; see diskfull.go
}

// readConns is the size of the read pool. SQLite readers in WAL mode do not
// block each other or the writer; a handful covers the web UI and the
// dispatcher on a small machine without holding many page caches.
const readConns = 8

// Open opens the database file at path, creating it if needed, and brings
// its schema up to date. It fails if the file's schema is newer than this
// code knows. One Store, in one process, should have a file open at a time:
// the single writer and Recover rely on it.
func Open(path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.ContainsAny(path, "?#") {
		// A WAL database needs a real file that both pools share, and the
		// driver splits its DSN at '?'.
		return nil, fmt.Errorf("store: open %q: need a plain file path", path)
	}
	// The writer's connection sets the database-wide settings: WAL is
	// persistent in the file, foreign keys and synchronous are per
	// connection. The checkpointer uses the same settings. The long busy
	// timeout is for the rare RESTART checkpoint (checkpoint.go) on a slow
	// disk: a write that waits is better than a write that fails.
	wdsn := path + "?" + url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"NORMAL"},
		"_foreign_keys": {"on"},
		"_busy_timeout": {"60000"},
		"_cache_size":   {"-32768"}, // KiB: keeps the hot indexes in memory
	}.Encode()
	wdb, err := sql.Open("sqlite3", wdsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	ckptDB, err := openCheckpointer(wdsn)
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	w, err := newWriter(wdb, ckptDB)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := w.migrate(migrations); err != nil {
		w.close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}

	// Readers cannot write (query_only), which keeps the one-writer rule
	// true by construction.
	rdsn := path + "?" + url.Values{
		"_foreign_keys": {"on"},
		"_busy_timeout": {"10000"},
		"_query_only":   {"true"},
	}.Encode()
	rdb, err := sql.Open("sqlite3", rdsn)
	if err != nil {
		w.close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(readConns)
	rdb.SetMaxIdleConns(readConns)
	rdb.SetConnMaxLifetime(0)
	rdb.SetConnMaxIdleTime(0)

	s := &Store{path: path, w: w, rdb: rdb, rstmts: make(map[string]*sql.Stmt), reserve: newReserve(path)}
	w.start()
	return s, nil
}

// Close waits for queued writes to commit, stops the writer and closes the
// database. Methods called after Close return ErrClosed.
func (s *Store) Close() error {
	werr := s.w.close()
	s.rmu.Lock()
	for _, st := range s.rstmts {
		st.Close()
	}
	s.rstmts = nil
	s.rmu.Unlock()
	rerr := s.rdb.Close()
	if err := errors.Join(werr, rerr); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// write runs fn in the writer goroutine inside a transaction and returns once
// that transaction has committed (nil) or fn's effects were rolled back
// (error). size is the number of bytes the op carries, for the writer's
// batch budget.
//
// fn may run more than once (see writer.run) and only its last run counts:
// it must assign its outputs, never accumulate into them.
func (s *Store) write(ctx context.Context, size int, fn func(tx *wtx) error) error {
	err := s.w.do(ctx, size, fn)
	if err != nil && s.reserve != nil && isDiskFull(err) && s.reserve.release() {
		// The ballast is gone: there is room for this write now.
		err = s.w.do(ctx, size, fn)
	}
	return err
}

// writeBulk is write for bulk data (log lines): while the disk is full it
// fails at once with ErrDiskFull, leaving what room is left to the writes
// that record the end of steps and builds.
func (s *Store) writeBulk(ctx context.Context, size int, fn func(tx *wtx) error) error {
	if s.reserve != nil && s.reserve.isFull() {
		return ErrDiskFull
	}
	err := s.w.do(ctx, size, fn)
	if err != nil && s.reserve != nil && isDiskFull(err) {
		s.reserve.release()
		return fmt.Errorf("%w (%v)", ErrDiskFull, err)
	}
	return err
}

// stmt returns a prepared statement for query on the read pool. The set of
// queries is fixed by the code, so the cache stays small.
func (s *Store) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.rstmts == nil {
		return nil, ErrClosed
	}
	if st, ok := s.rstmts[query]; ok {
		return st, nil
	}
	st, err := s.rdb.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.rstmts[query] = st
	return st, nil
}

// rowScanner is what *sql.Row and *sql.Rows have in common.
type rowScanner interface{ Scan(dest ...any) error }

// errRow is a rowScanner that fails; it stands in for a row whose query could
// not even be prepared.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// queryRow runs a single-row read query on the read pool.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) rowScanner {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// query runs a read query on the read pool.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// notFound turns sql.ErrNoRows into ErrNotFound and leaves other errors be.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// Times are unix microseconds; NULL (nil) is the zero time.

func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

// orNow returns t, or the current time if t is zero. Methods that take a
// time use it so that a zero time never turns into a NULL that means "not
// yet" (an unclaimed request, a running build).
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// Results are NULL while unfinished.

func resultArg(r result.Result) any {
	if r == result.None {
		return nil
	}
	return int64(r)
}

func fromResult(v sql.NullInt64) result.Result {
	if !v.Valid {
		return result.None
	}
	return result.Result(v.Int64)
}

func boolArg(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// encodedProp is a property ready for its table: the value as JSON text.
type encodedProp struct{ name, value, source string }

// encodeProps encodes props in name order, outside the writer goroutine so
// the writer does only SQL.
func encodeProps(props map[string]Property) ([]encodedProp, error) {
	out := make([]encodedProp, 0, len(props))
	for name, p := range props {
		v, err := json.Marshal(p.Value)
		if err != nil {
			return nil, fmt.Errorf("property %q: %w", name, err)
		}
		out = append(out, encodedProp{name, string(v), p.Source})
	}
	return out, nil
}

// decodeProps is the inverse of encodeProps.
func decodeProps(eps []encodedProp) (map[string]Property, error) {
	m := make(map[string]Property, len(eps))
	for _, ep := range eps {
		v, err := decodeJSON(ep.value)
		if err != nil {
			return nil, fmt.Errorf("property %q: %w", ep.name, err)
		}
		m[ep.name] = Property{Value: v, Source: ep.source}
	}
	return m, nil
}

// readProps reads a name, value, source property table.
func (s *Store) readProps(ctx context.Context, query string, id int64) (map[string]Property, error) {
	rows, err := s.query(ctx, query, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var eps []encodedProp
	for rows.Next() {
		var ep encodedProp
		if err := rows.Scan(&ep.name, &ep.value, &ep.source); err != nil {
			return nil, err
		}
		eps = append(eps, ep)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return decodeProps(eps)
}

// decodeJSON decodes a JSON value, turning integral numbers into int64 (and
// other numbers into float64) so that an int property such as buildnumber
// reads back as an int.
func decodeJSON(s string) (any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return fixNumbers(v), nil
}

func fixNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = fixNumbers(v[i])
		}
	case map[string]any:
		for k, x := range v {
			v[k] = fixNumbers(x)
		}
	}
	return v
}

// encodeJSON is json.Marshal to a string, with nil as fallback text.
func encodeJSON(v any, ifNil string) (string, error) {
	if v == nil {
		return ifNil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	if bytes.Equal(b, []byte("null")) {
		return ifNil, nil
	}
	return string(b), nil
}
