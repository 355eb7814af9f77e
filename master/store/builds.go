package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/starforge/starforge/master/result"
)

// NewBuild is what AddBuild needs.
type NewBuild struct {
	BuilderID  int64
	RequestID  int64     // 0: none (tests, or builds not started from the queue)
	WorkerID   int64     // 0: none
	StartedAt  time.Time // zero means now
	Properties map[string]Property
}

// AddBuild adds a running build. Its number is one more than the highest
// number of the builder's builds, so numbers per builder run 1, 2, 3, ...
// without gaps or repeats whatever the concurrency (the single writer
// serializes the MAX and the INSERT; builds_number would catch a second
// master).
func (s *Store) AddBuild(ctx context.Context, nb NewBuild) (Build, error) {
	props, err := encodeProps(nb.Properties)
	if err != nil {
		return Build{}, fmt.Errorf("store: add build for builder %d: %w", nb.BuilderID, err)
	}
	started := orNow(nb.StartedAt).UnixMicro()
	var b Build
	err = s.write(ctx, 0, func(tx *wtx) error {
		b = Build{BuilderID: nb.BuilderID, RequestID: nb.RequestID, WorkerID: nb.WorkerID,
			StartedAt: fromMicros(sql.NullInt64{Int64: started, Valid: true}), StateString: "starting", Results: result.None}
		if err := tx.queryRow(`SELECT name FROM builders WHERE id = ?`, nb.BuilderID).Scan(&b.BuilderName); err != nil {
			return fmt.Errorf("builder: %w", notFound(err))
		}
		var reqArg, workerArg any
		if nb.RequestID != 0 {
			reqArg = nb.RequestID
			if err := tx.queryRow(`SELECT buildsetid FROM buildrequests WHERE id = ?`, nb.RequestID).Scan(&b.BuildsetID); err != nil {
				return fmt.Errorf("request %d: %w", nb.RequestID, notFound(err))
			}
		}
		if nb.WorkerID != 0 {
			workerArg = nb.WorkerID
			if err := tx.queryRow(`SELECT name FROM workers WHERE id = ?`, nb.WorkerID).Scan(&b.WorkerName); err != nil {
				return fmt.Errorf("worker %d: %w", nb.WorkerID, notFound(err))
			}
		}
		if err := tx.queryRow(`SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE builderid = ?`, nb.BuilderID).Scan(&b.Number); err != nil {
			return err
		}
		if err := tx.queryRow(`INSERT INTO builds (number, builderid, buildrequestid, workerid, started_at, state_string)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			b.Number, nb.BuilderID, reqArg, workerArg, started, b.StateString).Scan(&b.ID); err != nil {
			return err
		}
		for _, p := range props {
			if _, err := tx.exec(`INSERT INTO build_properties (buildid, name, value, source) VALUES (?, ?, ?, ?)`,
				b.ID, p.name, p.value, p.source); err != nil {
				return fmt.Errorf("property %q: %w", p.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return Build{}, fmt.Errorf("store: add build for builder %d: %w", nb.BuilderID, err)
	}
	return b, nil
}

// SetBuildState sets the one-line description of what build id is doing.
func (s *Store) SetBuildState(ctx context.Context, id int64, state string) error {
	err := s.write(ctx, len(state), func(tx *wtx) error {
		n, err := tx.update(`UPDATE builds SET state_string = ? WHERE id = ?`, state, id)
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: set build %d state: %w", id, err)
	}
	return nil
}

// FinishBuild records build id's result and final state. It fails with
// ErrAlreadyFinished if the build is finished.
func (s *Store) FinishBuild(ctx context.Context, id int64, r result.Result, state string, at time.Time) error {
	if r == result.None {
		return fmt.Errorf("store: finish build %d: no result", id)
	}
	at = orNow(at)
	err := s.write(ctx, len(state), func(tx *wtx) error {
		n, err := tx.update(`UPDATE builds SET complete_at = ?, results = ?, state_string = ?
			WHERE id = ? AND complete_at IS NULL`, micros(at), resultArg(r), state, id)
		if err != nil || n == 1 {
			return err
		}
		return tx.missingOr(ErrAlreadyFinished, `SELECT 1 FROM builds WHERE id = ?`, id)
	})
	if err != nil {
		return fmt.Errorf("store: finish build %d: %w", id, err)
	}
	return nil
}

const buildCols = `b.id, b.number, b.builderid, bl.name, b.buildrequestid, br.buildsetid, b.workerid, w.name,
	b.started_at, b.complete_at, b.state_string, b.results
	FROM builds b
	JOIN builders bl ON bl.id = b.builderid
	LEFT JOIN buildrequests br ON br.id = b.buildrequestid
	LEFT JOIN workers w ON w.id = b.workerid`

func scanBuild(r rowScanner) (Build, error) {
	var b Build
	var reqID, bsID, workerID, started, completeAt, results sql.NullInt64
	var workerName sql.NullString
	if err := r.Scan(&b.ID, &b.Number, &b.BuilderID, &b.BuilderName, &reqID, &bsID, &workerID, &workerName,
		&started, &completeAt, &b.StateString, &results); err != nil {
		return Build{}, err
	}
	b.RequestID, b.BuildsetID, b.WorkerID, b.WorkerName = reqID.Int64, bsID.Int64, workerID.Int64, workerName.String
	b.StartedAt, b.CompleteAt, b.Results = fromMicros(started), fromMicros(completeAt), fromResult(results)
	return b, nil
}

// GetBuild returns the build with the given id.
func (s *Store) GetBuild(ctx context.Context, id int64) (Build, error) {
	b, err := scanBuild(s.queryRow(ctx, `SELECT `+buildCols+` WHERE b.id = ?`, id))
	if err != nil {
		return Build{}, fmt.Errorf("store: get build %d: %w", id, notFound(err))
	}
	return b, nil
}

// GetBuildByNumber returns build number of builder builderID.
func (s *Store) GetBuildByNumber(ctx context.Context, builderID int64, number int) (Build, error) {
	b, err := scanBuild(s.queryRow(ctx, `SELECT `+buildCols+` WHERE b.builderid = ? AND b.number = ?`, builderID, number))
	if err != nil {
		return Build{}, fmt.Errorf("store: get build %d of builder %d: %w", number, builderID, notFound(err))
	}
	return b, nil
}

// BuildFilter selects builds for ListBuilds. Zero fields do not filter.
type BuildFilter struct {
	BuilderID, WorkerID, RequestID int64
	RunningOnly                    bool  // only builds not finished
	Before                         int64 // keyset pagination: only ids < Before; 0: no bound
	Limit                          int   // 0: 100; at most 1000
}

// ListBuilds returns one page of builds, newest (highest id) first. To get
// the next page, set f.Before to the last id returned. Each filter has an
// index that yields builds in id order, so a page costs the same however
// deep it is and however long the history.
func (s *Store) ListBuilds(ctx context.Context, f BuildFilter) ([]Build, error) {
	q, args := listBuildsQuery(f)
	limit := pageLimit(f.Limit)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list builds: %w", err)
	}
	defer rows.Close()
	bs := make([]Build, 0, min(limit, 64))
	for rows.Next() {
		b, err := scanBuild(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list builds: %w", err)
		}
		bs = append(bs, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list builds: %w", err)
	}
	return bs, nil
}

// listBuildsQuery returns ListBuilds' query for f.
func listBuildsQuery(f BuildFilter) (string, []any) {
	q := `SELECT ` + buildCols + ` WHERE b.id < ?`
	args := []any{beforeArg(f.Before)}
	// With RunningOnly, the running builds (a few per worker at most) are
	// the set to walk: unary + keeps the planner from walking a builder's
	// or worker's whole history instead to find them. (+x is plain SQL:
	// PostgreSQL reads it the same way.) A request has only a few builds,
	// so its index stays usable.
	plus := ""
	if f.RunningOnly {
		plus = "+"
	}
	if f.BuilderID != 0 {
		q += ` AND ` + plus + `b.builderid = ?`
		args = append(args, f.BuilderID)
	}
	if f.WorkerID != 0 {
		q += ` AND ` + plus + `b.workerid = ?`
		args = append(args, f.WorkerID)
	}
	if f.RequestID != 0 {
		q += ` AND b.buildrequestid = ?`
		args = append(args, f.RequestID)
	}
	if f.RunningOnly {
		q += ` AND b.complete_at IS NULL`
	}
	q += ` ORDER BY b.id DESC LIMIT ?`
	return q, append(args, pageLimit(f.Limit))
}

// BuildProperties returns the properties of build id (empty, not an error,
// if the build does not exist).
func (s *Store) BuildProperties(ctx context.Context, id int64) (map[string]Property, error) {
	props, err := s.readProps(ctx, `SELECT name, value, source FROM build_properties WHERE buildid = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("store: build %d properties: %w", id, err)
	}
	return props, nil
}

// SetBuildProperty sets (adds or replaces) one property of build id.
func (s *Store) SetBuildProperty(ctx context.Context, id int64, name string, p Property) error {
	eps, err := encodeProps(map[string]Property{name: p})
	if err != nil {
		return fmt.Errorf("store: set build %d property: %w", id, err)
	}
	ep := eps[0]
	err = s.write(ctx, len(ep.value), func(tx *wtx) error {
		if ok, err := tx.exists(`SELECT 1 FROM builds WHERE id = ?`, id); err != nil || !ok {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
		_, err := tx.exec(`INSERT INTO build_properties (buildid, name, value, source) VALUES (?, ?, ?, ?)
			ON CONFLICT (buildid, name) DO UPDATE SET value = excluded.value, source = excluded.source`,
			id, ep.name, ep.value, ep.source)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: set build %d property %q: %w", id, name, err)
	}
	return nil
}
