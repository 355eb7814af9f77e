package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// newStore opens a store in a fresh file that is closed when the test ends.
func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "master.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// must returns a func that fails the test on err and returns v:
// must(s.GetBuild(ctx, id))(t).
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// ok fails the test on err.
func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// t0 is a fixed time for tests; times round-trip at microsecond precision.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func TestMigrationsOrdered(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 {
			t.Errorf("migrations[%d].version = %d, want %d", i, m.version, i+1)
		}
	}
}

func schemaVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("SELECT MAX(version) FROM schema_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOpenFreshAndReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "master.db")
	s := must(Open(path))(t)
	id := must(s.EnsureBuilder(ctx, Builder{Name: "proj", Description: "the project", Tags: []string{"a", "b"}}))(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close checkpointed everything: the database is one file again.
	if _, err := os.Stat(path + "-wal"); !os.IsNotExist(err) {
		t.Errorf("-wal file left after Close: %v", err)
	}
	if got := schemaVersion(t, path); got != len(migrations) {
		t.Errorf("schema version = %d, want %d", got, len(migrations))
	}

	s = must(Open(path))(t) // no migration runs twice: it would fail on CREATE TABLE
	defer s.Close()
	b := must(s.GetBuilderByName(ctx, "proj"))(t)
	want := Builder{ID: id, Name: "proj", Description: "the project", Tags: []string{"a", "b"}}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("after reopen: %+v, want %+v", b, want)
	}
	if got := schemaVersion(t, path); got != len(migrations) {
		t.Errorf("schema version after reopen = %d, want %d", got, len(migrations))
	}
}

func TestOpenNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.db")
	s := must(Open(path))(t)
	s.Close()

	db := must(sql.Open("sqlite3", path))(t)
	newer := len(migrations) + 1
	if _, err := db.Exec("INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'future', 0)", newer); err != nil {
		t.Fatal(err)
	}
	db.Close()

	_, err := Open(path)
	if err == nil {
		t.Fatal("Open of a newer schema succeeded")
	}
	for _, want := range []string{"newer", "schema version"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestMigrateOlder runs the migration machinery on a database at version 1
// with a list that has a version 2, and checks that only the missing one
// runs, and that a failing migration leaves the database as it was.
func TestMigrateOlder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.db")
	s := must(Open(path))(t)
	ctx := t.Context()
	must(s.EnsureBuilder(ctx, Builder{Name: "kept"}))(t)
	s.Close()

	openWriter := func() *writer {
		dsn := path + "?_journal_mode=WAL&_foreign_keys=on"
		return must(newWriter(must(sql.Open("sqlite3", dsn))(t), must(openCheckpointer(dsn))(t)))(t)
	}
	bad := append(migrations[:len(migrations):len(migrations)], migration{len(migrations) + 1, "bad", func(tx *wtx) error {
		if _, err := tx.exec(`ALTER TABLE builders ADD COLUMN half_done TEXT`); err != nil {
			return err
		}
		return errors.New("boom")
	}})
	w := openWriter()
	if err := w.migrate(bad); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("bad migration: err = %v, want boom", err)
	}
	w.close()
	if got := schemaVersion(t, path); got != len(migrations) {
		t.Errorf("after failed migration: version %d, want %d", got, len(migrations))
	}

	good := append(migrations[:len(migrations):len(migrations)], migration{len(migrations) + 1, "add column", execAll([]string{
		`ALTER TABLE builders ADD COLUMN project TEXT NOT NULL DEFAULT ''`,
	})})
	w = openWriter()
	if err := w.migrate(good); err != nil {
		t.Fatal(err)
	}
	var project, name string
	if err := w.conn.QueryRowContext(ctx, `SELECT name, project FROM builders`).Scan(&name, &project); err != nil {
		t.Fatal(err)
	}
	if name != "kept" {
		t.Errorf("builder name = %q, want kept", name)
	}
	w.close()
	if got := schemaVersion(t, path); got != len(migrations)+1 {
		t.Errorf("version %d, want %d", got, len(migrations)+1)
	}
	// And the real code now refuses it.
	if _, err := Open(path); err == nil {
		t.Error("Open succeeded on a schema newer than the code")
	}
}

func TestOpenBadPath(t *testing.T) {
	for _, p := range []string{"", ":memory:", "a?b"} {
		if s, err := Open(p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestClosed(t *testing.T) {
	s := must(Open(filepath.Join(t.TempDir(), "master.db")))(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsureWorker(t.Context(), "w"); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close: %v, want ErrClosed", err)
	}
	if _, err := s.ListBuilders(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("read after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestBuilders(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	id1 := must(s.EnsureBuilder(ctx, Builder{Name: "zeta", Description: "old"}))(t)
	id2 := must(s.EnsureBuilder(ctx, Builder{Name: "alpha", Tags: []string{"x"}}))(t)
	if id := must(s.EnsureBuilder(ctx, Builder{Name: "zeta", Description: "new", Tags: []string{"t"}}))(t); id != id1 {
		t.Errorf("EnsureBuilder again: id %d, want %d", id, id1)
	}
	got := must(s.ListBuilders(ctx))(t)
	want := []Builder{
		{ID: id2, Name: "alpha", Tags: []string{"x"}},
		{ID: id1, Name: "zeta", Description: "new", Tags: []string{"t"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListBuilders = %+v, want %+v", got, want)
	}
	if b := must(s.GetBuilder(ctx, id1))(t); !reflect.DeepEqual(b, want[1]) {
		t.Errorf("GetBuilder = %+v", b)
	}
	if _, err := s.GetBuilder(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetBuilder(999): %v, want ErrNotFound", err)
	}
	if _, err := s.GetBuilderByName(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetBuilderByName(nope): %v, want ErrNotFound", err)
	}
}

func TestWorkers(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	id := must(s.EnsureWorker(ctx, "w1"))(t)
	if id2 := must(s.EnsureWorker(ctx, "w1"))(t); id2 != id {
		t.Errorf("EnsureWorker again: %d, want %d", id2, id)
	}
	info := map[string]any{"os": "linux", "cpus": 4}
	if err := s.SetWorkerConnected(ctx, id, true, info, at(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetWorkerConnected(ctx, id, false, nil, at(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetWorkerPaused(ctx, id, true, "owner is back"); err != nil {
		t.Fatal(err)
	}
	w := must(s.GetWorkerByName(ctx, "w1"))(t)
	want := Worker{ID: id, Name: "w1", Info: map[string]any{"os": "linux", "cpus": int64(4)},
		LastConnected: at(1), LastDisconnected: at(2), Paused: true, PauseReason: "owner is back"}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("worker = %+v\nwant %+v", w, want)
	}
	if err := s.SetWorkerConnected(ctx, id, true, map[string]any{"os": "bsd"}, at(3)); err != nil {
		t.Fatal(err)
	}
	ws := must(s.ListWorkers(ctx))(t)
	if len(ws) != 1 || !ws[0].Connected || ws[0].Info["os"] != "bsd" || !ws[0].LastConnected.Equal(at(3)) {
		t.Errorf("ListWorkers = %+v", ws)
	}
	ok(t, s.SetWorkerPaused(ctx, id, false, "ignored"))
	if w := must(s.GetWorker(ctx, id))(t); w.Paused || w.PauseReason != "" || w.Name != "w1" {
		t.Errorf("resumed worker = %+v", w)
	}
	if err := s.SetWorkerPaused(ctx, 999, true, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetWorkerPaused(999): %v, want ErrNotFound", err)
	}
	if _, err := s.GetWorker(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetWorker(999): %v, want ErrNotFound", err)
	}
	if err := s.SetWorkerConnected(ctx, 999, true, nil, at(1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetWorkerConnected(999): %v, want ErrNotFound", err)
	}
	if _, err := s.GetWorkerByName(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetWorkerByName(nope): %v, want ErrNotFound", err)
	}
}

func TestDecodeJSONNumbers(t *testing.T) {
	v, err := decodeJSON(`{"i": 3, "f": 1.5, "l": [1, 2.5, {"n": -7}], "big": 12345678901234}`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"i": int64(3), "f": 1.5, "l": []any{int64(1), 2.5, map[string]any{"n": int64(-7)}}, "big": int64(12345678901234)}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("decodeJSON = %#v", v)
	}
}

// Context cancellation: an op whose context is done never runs.
func TestCanceledContext(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.EnsureWorker(ctx, "w"); !errors.Is(err, context.Canceled) {
		t.Errorf("EnsureWorker with canceled ctx: %v", err)
	}
	if _, err := s.GetWorkerByName(t.Context(), "w"); !errors.Is(err, ErrNotFound) {
		t.Errorf("worker was written despite canceled ctx: %v", err)
	}
}
