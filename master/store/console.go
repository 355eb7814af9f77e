package store

import (
	"context"
	"database/sql"
	"fmt"
)

// ChangeBuild is a build request of a buildset that builds a change, with
// the request's latest build: one entry of the console's grid.
type ChangeBuild struct {
	ChangeID int64
	Request  BuildRequest
	Build    *Build // the request's latest build (after retries); nil while none started
}

// ChangeBuilds returns, for the changes with ids from first to last, the
// build requests of every buildset that builds them, each with its latest
// build: changes newest first, then requests in id order. It is one query,
// whatever the number of changes, and each change costs a few index
// lookups however long the history.
func (s *Store) ChangeBuilds(ctx context.Context, first, last int64) ([]ChangeBuild, error) {
	rows, err := s.query(ctx, `SELECT bc.changeid,
		br.id, br.buildsetid, br.builderid, bl.name, br.priority, br.submitted_at,
		br.claimed_at, br.complete, br.complete_at, br.results, br.cancel_reason,
		bd.id, bd.number, bd.workerid, w.name, bd.started_at, bd.complete_at, bd.state_string, bd.results
		FROM buildset_changes bc
		JOIN buildrequests br ON br.buildsetid = bc.buildsetid
		JOIN builders bl ON bl.id = br.builderid
		LEFT JOIN builds bd ON bd.id = (SELECT MAX(id) FROM builds WHERE buildrequestid = br.id)
		LEFT JOIN workers w ON w.id = bd.workerid
		WHERE bc.changeid BETWEEN ? AND ?
		ORDER BY bc.changeid DESC, br.id`,
		first, last)
	if err != nil {
		return nil, fmt.Errorf("store: builds of changes %d to %d: %w", first, last, err)
	}
	defer rows.Close()
	var out []ChangeBuild
	for rows.Next() {
		cb, err := scanChangeBuild(rows)
		if err != nil {
			return nil, fmt.Errorf("store: builds of changes %d to %d: %w", first, last, err)
		}
		out = append(out, cb)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: builds of changes %d to %d: %w", first, last, err)
	}
	return out, nil
}

func scanChangeBuild(r rowScanner) (ChangeBuild, error) {
	var cb ChangeBuild
	br := &cb.Request
	var submitted, claimed, completeAt, results sql.NullInt64
	var reason sql.NullString
	var bid, bnum, bworker, bstarted, bcomplete, bresults sql.NullInt64
	var bworkerName, bstate sql.NullString
	if err := r.Scan(&cb.ChangeID,
		&br.ID, &br.BuildsetID, &br.BuilderID, &br.BuilderName, &br.Priority, &submitted,
		&claimed, &br.Complete, &completeAt, &results, &reason,
		&bid, &bnum, &bworker, &bworkerName, &bstarted, &bcomplete, &bstate, &bresults); err != nil {
		return ChangeBuild{}, err
	}
	br.CancelReason = reason.String
	br.SubmittedAt, br.ClaimedAt, br.CompleteAt = fromMicros(submitted), fromMicros(claimed), fromMicros(completeAt)
	br.Claimed = claimed.Valid
	br.Results = fromResult(results)
	if bid.Valid {
		cb.Build = &Build{ID: bid.Int64, Number: int(bnum.Int64), BuilderID: br.BuilderID, BuilderName: br.BuilderName,
			RequestID: br.ID, BuildsetID: br.BuildsetID, WorkerID: bworker.Int64, WorkerName: bworkerName.String,
			StartedAt: fromMicros(bstarted), CompleteAt: fromMicros(bcomplete), StateString: bstate.String,
			Results: fromResult(bresults)}
	}
	return cb, nil
}
