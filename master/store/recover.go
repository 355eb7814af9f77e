package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/starforge/starforge/master/result"
)

// RecoverStats says what Recover found.
type RecoverStats struct {
	Builds   int // running builds finished as RETRY
	Requests int // claimed requests put back at the head of the queue
	Workers  int // workers marked disconnected
}

// InterruptedState is the state string of builds and steps that Recover
// finishes.
const InterruptedState = "interrupted by master restart"

// Recover cleans up after a master that stopped without finishing its work
// (a crash, a kill, a power cut). Call it once at master start, before
// anything else writes: it assumes that nothing recorded as running is
// still running.
//
// In one transaction, as of at, it
//   - finishes every running build with result RETRY and state
//     InterruptedState, and likewise every unfinished step;
//   - marks every unfinished log complete;
//   - puts every claimed but incomplete request back in the queue, at the
//     head of its priority (oldest first among them), so that the builds
//     are retried before anything submitted later and nothing a user
//     submitted is dropped; this includes requests claimed by a build that
//     never got recorded;
//   - marks every worker disconnected.
func (s *Store) Recover(ctx context.Context, at time.Time) (RecoverStats, error) {
	at = orNow(at)
	atArg := at.UnixMicro()
	retry := resultArg(result.Retry)
	var st RecoverStats
	err := s.write(ctx, 0, func(tx *wtx) error {
		st = RecoverStats{}
		if _, err := tx.exec(`UPDATE logs SET complete = 1 WHERE complete = 0`); err != nil {
			return fmt.Errorf("logs: %w", err)
		}
		if _, err := tx.exec(`UPDATE steps SET complete_at = ?, results = ?, state_string = ?
			WHERE complete_at IS NULL`, atArg, retry, InterruptedState); err != nil {
			return fmt.Errorf("steps: %w", err)
		}
		n, err := tx.update(`UPDATE builds SET complete_at = ?, results = ?, state_string = ?
			WHERE complete_at IS NULL`, atArg, retry, InterruptedState)
		if err != nil {
			return fmt.Errorf("builds: %w", err)
		}
		st.Builds = int(n)

		// A build that ended (not RETRY) before the stop, whose request the
		// master had no time to complete, settles that request: building
		// it again would build it twice.
		done, err := tx.query(`SELECT br.id, b.results FROM buildrequests br
			JOIN builds b ON b.id = (SELECT MAX(id) FROM builds WHERE buildrequestid = br.id)
			WHERE br.complete = 0 AND br.claimed_at IS NOT NULL AND b.results IS NOT NULL AND b.results != ?`, retry)
		if err != nil {
			return fmt.Errorf("requests: %w", err)
		}
		type settled struct {
			id  int64
			res sql.NullInt64
		}
		var finished []settled
		for done.Next() {
			var f settled
			if err := done.Scan(&f.id, &f.res); err != nil {
				done.Close()
				return fmt.Errorf("requests: %w", err)
			}
			finished = append(finished, f)
		}
		if err := done.Close(); err != nil {
			return fmt.Errorf("requests: %w", err)
		}
		for _, f := range finished {
			if _, err := completeRequestTx(tx, f.id, fromResult(f.res), at); err != nil {
				return fmt.Errorf("request %d: %w", f.id, err)
			}
		}

		// All requeued requests get ranks above every pending one; the
		// oldest gets the highest, so among themselves they keep their age
		// order.
		var top int64
		if err := tx.queryRow(`SELECT COALESCE(MAX(head_rank), 0) FROM buildrequests
			WHERE complete = 0 AND claimed_at IS NULL`).Scan(&top); err != nil {
			return fmt.Errorf("requests: %w", err)
		}
		rows, err := tx.query(`SELECT id FROM buildrequests WHERE complete = 0 AND claimed_at IS NOT NULL
			ORDER BY submitted_at DESC, id DESC`)
		if err != nil {
			return fmt.Errorf("requests: %w", err)
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("requests: %w", err)
			}
			ids = append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("requests: %w", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("requests: %w", err)
		}
		rank := max(atArg, top+1)
		for _, id := range ids {
			if _, err := tx.exec(`UPDATE buildrequests SET claimed_at = NULL, head_rank = ? WHERE id = ?`, rank, id); err != nil {
				return fmt.Errorf("request %d: %w", id, err)
			}
			rank++
		}
		st.Requests = len(ids)

		if n, err = tx.update(`UPDATE workers SET connected = 0, last_disconnected = ? WHERE connected = 1`, atArg); err != nil {
			return fmt.Errorf("workers: %w", err)
		}
		st.Workers = int(n)
		return nil
	})
	if err != nil {
		return RecoverStats{}, fmt.Errorf("store: recover: %w", err)
	}
	return st, nil
}
