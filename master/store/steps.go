package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/starforge/starforge/master/result"
)

// maxDedup bounds the search for a free "name_N" among a step's or log's
// siblings; beyond it something is generating names in a loop.
const maxDedup = 1000

// unique returns name, or name_2, name_3, ... whichever is the first that
// taken (a query for SELECT 1 ... WHERE parent = ? AND name = ?) says is free.
func (t *wtx) unique(taken string, parent int64, name string) (string, error) {
	cand := name
	for i := 2; i <= maxDedup+1; i++ {
		ok, err := t.exists(taken, parent, cand)
		if err != nil || !ok {
			return cand, err
		}
		cand = name + "_" + strconv.Itoa(i)
	}
	return "", fmt.Errorf("more than %d siblings named %q", maxDedup, name)
}

// AddStep adds step number (unique within the build) to build buildID. Like
// Buildbot, if the build already has a step of that name, the new step is
// named name_2 (or name_3, ...); the returned Step has the name it got.
// The step is pending until StartStep.
func (s *Store) AddStep(ctx context.Context, buildID int64, number int, name string) (Step, error) {
	if name == "" {
		return Step{}, fmt.Errorf("store: add step %d to build %d: empty name", number, buildID)
	}
	var st Step
	err := s.write(ctx, 0, func(tx *wtx) error {
		st = Step{BuildID: buildID, Number: number, StateString: "pending", Results: result.None}
		if ok, err := tx.exists(`SELECT 1 FROM builds WHERE id = ?`, buildID); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("build: %w", ErrNotFound)
			}
			return err
		}
		var err error
		if st.Name, err = tx.unique(`SELECT 1 FROM steps WHERE buildid = ? AND name = ?`, buildID, name); err != nil {
			return err
		}
		return tx.queryRow(`INSERT INTO steps (number, name, buildid, state_string) VALUES (?, ?, ?, ?) RETURNING id`,
			number, st.Name, buildID, st.StateString).Scan(&st.ID)
	})
	if err != nil {
		return Step{}, fmt.Errorf("store: add step %d %q to build %d: %w", number, name, buildID, err)
	}
	return st, nil
}

// StartStep records that step id started at at.
func (s *Store) StartStep(ctx context.Context, id int64, at time.Time) error {
	at = orNow(at)
	err := s.write(ctx, 0, func(tx *wtx) error {
		n, err := tx.update(`UPDATE steps SET started_at = ? WHERE id = ?`, micros(at), id)
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: start step %d: %w", id, err)
	}
	return nil
}

// SetStepState sets the one-line description of what step id is doing.
func (s *Store) SetStepState(ctx context.Context, id int64, state string) error {
	err := s.write(ctx, len(state), func(tx *wtx) error {
		n, err := tx.update(`UPDATE steps SET state_string = ? WHERE id = ?`, state, id)
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: set step %d state: %w", id, err)
	}
	return nil
}

// SetStepHidden sets whether step id is hidden in the UI (Buildbot's
// hideStepIf, decided when the step finishes).
func (s *Store) SetStepHidden(ctx context.Context, id int64, hidden bool) error {
	err := s.write(ctx, 0, func(tx *wtx) error {
		n, err := tx.update(`UPDATE steps SET hidden = ? WHERE id = ?`, boolArg(hidden), id)
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: set step %d hidden: %w", id, err)
	}
	return nil
}

// FinishStep records step id's result and final state. It fails with
// ErrAlreadyFinished if the step is finished. It does not finish the step's
// logs; the caller finishes those first.
func (s *Store) FinishStep(ctx context.Context, id int64, r result.Result, state string, at time.Time) error {
	if r == result.None {
		return fmt.Errorf("store: finish step %d: no result", id)
	}
	at = orNow(at)
	err := s.write(ctx, len(state), func(tx *wtx) error {
		n, err := tx.update(`UPDATE steps SET complete_at = ?, results = ?, state_string = ?
			WHERE id = ? AND complete_at IS NULL`, micros(at), resultArg(r), state, id)
		if err != nil || n == 1 {
			return err
		}
		return tx.missingOr(ErrAlreadyFinished, `SELECT 1 FROM steps WHERE id = ?`, id)
	})
	if err != nil {
		return fmt.Errorf("store: finish step %d: %w", id, err)
	}
	return nil
}

const stepCols = `id, buildid, number, name, started_at, complete_at, state_string, results, hidden FROM steps`

func scanStep(r rowScanner) (Step, error) {
	var st Step
	var started, completeAt, results sql.NullInt64
	if err := r.Scan(&st.ID, &st.BuildID, &st.Number, &st.Name, &started, &completeAt, &st.StateString,
		&results, &st.Hidden); err != nil {
		return Step{}, err
	}
	st.StartedAt, st.CompleteAt, st.Results = fromMicros(started), fromMicros(completeAt), fromResult(results)
	return st, nil
}

// ListSteps returns the steps of build buildID, by number.
func (s *Store) ListSteps(ctx context.Context, buildID int64) ([]Step, error) {
	rows, err := s.query(ctx, `SELECT `+stepCols+` WHERE buildid = ? ORDER BY number`, buildID)
	if err != nil {
		return nil, fmt.Errorf("store: list steps of build %d: %w", buildID, err)
	}
	defer rows.Close()
	var sts []Step
	for rows.Next() {
		st, err := scanStep(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list steps of build %d: %w", buildID, err)
		}
		sts = append(sts, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list steps of build %d: %w", buildID, err)
	}
	return sts, nil
}

// GetStep returns the step with the given id.
func (s *Store) GetStep(ctx context.Context, id int64) (Step, error) {
	st, err := scanStep(s.queryRow(ctx, `SELECT `+stepCols+` WHERE id = ?`, id))
	if err != nil {
		return Step{}, fmt.Errorf("store: get step %d: %w", id, notFound(err))
	}
	return st, nil
}
