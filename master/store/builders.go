package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// EnsureBuilder creates the builder named b.Name, or updates its description
// and tags if it exists, and returns its id. b.ID is ignored.
func (s *Store) EnsureBuilder(ctx context.Context, b Builder) (int64, error) {
	if b.Name == "" {
		return 0, fmt.Errorf("store: ensure builder: empty name")
	}
	tags, err := encodeJSON(b.Tags, "[]")
	if err != nil {
		return 0, fmt.Errorf("store: ensure builder %q: tags: %w", b.Name, err)
	}
	var id int64
	err = s.write(ctx, 0, func(tx *wtx) error {
		return tx.queryRow(`INSERT INTO builders (name, description, tags) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET description = excluded.description, tags = excluded.tags
			RETURNING id`, b.Name, b.Description, tags).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("store: ensure builder %q: %w", b.Name, err)
	}
	return id, nil
}

const builderCols = `id, name, description, tags`

func scanBuilder(r rowScanner) (Builder, error) {
	var b Builder
	var tags string
	if err := r.Scan(&b.ID, &b.Name, &b.Description, &tags); err != nil {
		return Builder{}, err
	}
	if err := json.Unmarshal([]byte(tags), &b.Tags); err != nil {
		return Builder{}, fmt.Errorf("builder %d tags: %w", b.ID, err)
	}
	if len(b.Tags) == 0 {
		b.Tags = nil
	}
	return b, nil
}

// ListBuilders returns all builders, ordered by name.
func (s *Store) ListBuilders(ctx context.Context) ([]Builder, error) {
	rows, err := s.query(ctx, `SELECT `+builderCols+` FROM builders ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: list builders: %w", err)
	}
	defer rows.Close()
	var bs []Builder
	for rows.Next() {
		b, err := scanBuilder(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list builders: %w", err)
		}
		bs = append(bs, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list builders: %w", err)
	}
	return bs, nil
}

// GetBuilder returns the builder with the given id.
func (s *Store) GetBuilder(ctx context.Context, id int64) (Builder, error) {
	b, err := scanBuilder(s.queryRow(ctx, `SELECT `+builderCols+` FROM builders WHERE id = ?`, id))
	if err != nil {
		return Builder{}, fmt.Errorf("store: get builder %d: %w", id, notFound(err))
	}
	return b, nil
}

// GetBuilderByName returns the builder with the given name.
func (s *Store) GetBuilderByName(ctx context.Context, name string) (Builder, error) {
	b, err := scanBuilder(s.queryRow(ctx, `SELECT `+builderCols+` FROM builders WHERE name = ?`, name))
	if err != nil {
		return Builder{}, fmt.Errorf("store: get builder %q: %w", name, notFound(err))
	}
	return b, nil
}

// EnsureWorker creates the worker named name if it does not exist, and
// returns its id.
func (s *Store) EnsureWorker(ctx context.Context, name string) (int64, error) {
	if name == "" {
		return 0, fmt.Errorf("store: ensure worker: empty name")
	}
	var id int64
	err := s.write(ctx, 0, func(tx *wtx) error {
		err := tx.queryRow(`SELECT id FROM workers WHERE name = ?`, name).Scan(&id)
		if err != sql.ErrNoRows {
			return err
		}
		return tx.queryRow(`INSERT INTO workers (name) VALUES (?) RETURNING id`, name).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("store: ensure worker %q: %w", name, err)
	}
	return id, nil
}

// SetWorkerConnected records that worker id connected (setting
// LastConnected to at) or disconnected (setting LastDisconnected). A non-nil
// info replaces the worker's info; nil keeps it.
func (s *Store) SetWorkerConnected(ctx context.Context, id int64, connected bool, info map[string]any, at time.Time) error {
	var infoArg any // NULL keeps the old info
	if info != nil {
		b, err := json.Marshal(info)
		if err != nil {
			return fmt.Errorf("store: set worker %d connected: info: %w", id, err)
		}
		infoArg = string(b)
	}
	at = orNow(at)
	q := `UPDATE workers SET connected = 1, last_connected = ?, info = COALESCE(?, info) WHERE id = ?`
	if !connected {
		q = `UPDATE workers SET connected = 0, last_disconnected = ?, info = COALESCE(?, info) WHERE id = ?`
	}
	err := s.write(ctx, 0, func(tx *wtx) error {
		n, err := tx.update(q, micros(at), infoArg, id)
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: set worker %d connected=%v: %w", id, connected, err)
	}
	return nil
}

// SetWorkerPaused records that worker id is paused (for reason) or resumed;
// a paused worker is not given new builds.
func (s *Store) SetWorkerPaused(ctx context.Context, id int64, paused bool, reason string) error {
	if !paused {
		reason = ""
	}
	err := s.write(ctx, 0, func(tx *wtx) error {
		n, err := tx.update(`UPDATE workers SET paused = ?, pause_reason = ? WHERE id = ?`, boolArg(paused), reason, id)
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: set worker %d paused=%v: %w", id, paused, err)
	}
	return nil
}

const workerCols = `id, name, info, connected, last_connected, last_disconnected, paused, pause_reason`

func scanWorker(r rowScanner) (Worker, error) {
	var w Worker
	var info string
	var lastConn, lastDisc sql.NullInt64
	if err := r.Scan(&w.ID, &w.Name, &info, &w.Connected, &lastConn, &lastDisc, &w.Paused, &w.PauseReason); err != nil {
		return Worker{}, err
	}
	v, err := decodeJSON(info)
	if err != nil {
		return Worker{}, fmt.Errorf("worker %d info: %w", w.ID, err)
	}
	w.Info, _ = v.(map[string]any)
	w.LastConnected = fromMicros(lastConn)
	w.LastDisconnected = fromMicros(lastDisc)
	return w, nil
}

// ListWorkers returns all workers, ordered by name.
func (s *Store) ListWorkers(ctx context.Context) ([]Worker, error) {
	rows, err := s.query(ctx, `SELECT `+workerCols+` FROM workers ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: list workers: %w", err)
	}
	defer rows.Close()
	var ws []Worker
	for rows.Next() {
		w, err := scanWorker(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list workers: %w", err)
		}
		ws = append(ws, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list workers: %w", err)
	}
	return ws, nil
}

// GetWorker returns the worker with the given id.
func (s *Store) GetWorker(ctx context.Context, id int64) (Worker, error) {
	w, err := scanWorker(s.queryRow(ctx, `SELECT `+workerCols+` FROM workers WHERE id = ?`, id))
	if err != nil {
		return Worker{}, fmt.Errorf("store: get worker %d: %w", id, notFound(err))
	}
	return w, nil
}

// GetWorkerByName returns the worker with the given name.
func (s *Store) GetWorkerByName(ctx context.Context, name string) (Worker, error) {
	w, err := scanWorker(s.queryRow(ctx, `SELECT `+workerCols+` FROM workers WHERE name = ?`, name))
	if err != nil {
		return Worker{}, fmt.Errorf("store: get worker %q: %w", name, notFound(err))
	}
	return w, nil
}
