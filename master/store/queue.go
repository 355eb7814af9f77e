package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/starforge/starforge/master/result"
)

// NewBuildset is what AddBuildset needs: one build request is made for each
// of BuilderIDs, with the given priority (higher goes first).
type NewBuildset struct {
	Reason       string
	Properties   map[string]Property
	SourceStamps []SourceStamp // IDs are ignored
	BuilderIDs   []int64
	Priority     int
	SubmittedAt  time.Time // zero means now

	// ChangeIDs are the changes the buildset builds, for its builds'
	// changes and blamelists.
	ChangeIDs []int64
	// Scheduler, if set, consumes ChangeIDs from that scheduler's
	// classified changes (SchedulerChanges) in the same transaction, so a
	// change is built once even if the master dies right after.
	Scheduler string
	// State is stored in the same transaction (a scheduler's timers, the
	// last nightly run).
	State []StateValue
	// ParentBuildID and ParentRelationship link a triggered buildset to
	// the build that triggered it.
	ParentBuildID      int64
	ParentRelationship string
	// Job, if set, links the buildset to a package job (see JobLink).
	Job *JobLink
}

// ssHash identifies a source stamp's content, so identical stamps share a
// row (Buildbot's ss_hash). Fields are length-prefixed so that no two
// different stamps hash alike.
func ssHash(ss SourceStamp) string {
	h := sha256.New()
	for _, f := range []string{ss.Codebase, ss.Repository, ss.Branch, ss.Revision, ss.Project} {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	if ss.Patch != nil {
		// Every patch is a row of its own, so stamps with patches are never
		// shared.
		fmt.Fprintf(h, "patch:%d;", ss.Patch.ID)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// AddBuildset adds a buildset with its source stamps and properties, and one
// build request per builder, in one transaction. It returns the buildset and
// its requests as GetBuildset and GetRequest would.
func (s *Store) AddBuildset(ctx context.Context, nb NewBuildset) (Buildset, []BuildRequest, error) {
	if len(nb.BuilderIDs) == 0 {
		return Buildset{}, nil, fmt.Errorf("store: add buildset: no builders")
	}
	seen := make(map[int64]bool, len(nb.BuilderIDs))
	for _, id := range nb.BuilderIDs {
		if seen[id] {
			return Buildset{}, nil, fmt.Errorf("store: add buildset: builder %d listed twice", id)
		}
		seen[id] = true
	}
	props, err := encodeProps(nb.Properties)
	if err != nil {
		return Buildset{}, nil, fmt.Errorf("store: add buildset: %w", err)
	}
	decoded, err := decodeProps(props) // what a read returns, computed here rather than in the writer
	if err != nil {
		return Buildset{}, nil, fmt.Errorf("store: add buildset: %w", err)
	}
	state, err := encodeState(nb.State)
	if err != nil {
		return Buildset{}, nil, fmt.Errorf("store: add buildset: %w", err)
	}
	at := orNow(nb.SubmittedAt)
	atArg := at.UnixMicro()
	var parent any
	if nb.ParentBuildID != 0 {
		parent = nb.ParentBuildID
	}

	var bs Buildset
	var reqs []BuildRequest
	err = s.write(ctx, 0, func(tx *wtx) error {
		bs = Buildset{Reason: nb.Reason, SubmittedAt: fromMicros(sql.NullInt64{Int64: atArg, Valid: true}),
			Results: result.None, Properties: decoded,
			ParentBuildID: nb.ParentBuildID, ParentRelationship: nb.ParentRelationship}
		reqs = make([]BuildRequest, 0, len(nb.BuilderIDs))
		if err := tx.queryRow(`INSERT INTO buildsets (reason, submitted_at, parent_buildid, parent_relationship)
			VALUES (?, ?, ?, ?) RETURNING id`, nb.Reason, atArg, parent, nb.ParentRelationship).Scan(&bs.ID); err != nil {
			return err
		}
		for i, ss := range nb.SourceStamps {
			if ss.Patch != nil {
				p := *ss.Patch
				if err := tx.queryRow(`INSERT INTO patches (patchlevel, patch, author, comment, subdir)
					VALUES (?, ?, ?, ?, ?) RETURNING id`, p.Level, p.Body, p.Author, p.Comment, p.Subdir).Scan(&p.ID); err != nil {
					return fmt.Errorf("source stamp %d: patch: %w", i, err)
				}
				ss.Patch = &p
			}
			var err error
			ss.ID, err = tx.sourceStamp(ssHash(ss), ss, atArg)
			if err != nil {
				return fmt.Errorf("source stamp %d: %w", i, err)
			}
			if _, err := tx.exec(`INSERT INTO buildset_sourcestamps (buildsetid, sourcestampid) VALUES (?, ?)
				ON CONFLICT DO NOTHING`, bs.ID, ss.ID); err != nil {
				return fmt.Errorf("source stamp %d: %w", i, err)
			}
			bs.SourceStamps = append(bs.SourceStamps, ss)
		}
		for _, id := range nb.ChangeIDs {
			if _, err := tx.exec(`INSERT INTO buildset_changes (buildsetid, changeid) VALUES (?, ?)
				ON CONFLICT DO NOTHING`, bs.ID, id); err != nil {
				return fmt.Errorf("change %d: %w", id, err)
			}
		}
		if nb.Scheduler != "" {
			if err := tx.forgetSchedulerChanges(nb.Scheduler, nb.ChangeIDs); err != nil {
				return fmt.Errorf("consume changes of %s: %w", nb.Scheduler, err)
			}
		}
		if err := tx.setState(state); err != nil {
			return err
		}
		if nb.Job != nil {
			if err := tx.linkJob(nb.Job, bs.ID); err != nil {
				return err
			}
		}
		for _, p := range props {
			if _, err := tx.exec(`INSERT INTO buildset_properties (buildsetid, property_name, property_value, source)
				VALUES (?, ?, ?, ?)`, bs.ID, p.name, p.value, p.source); err != nil {
				return fmt.Errorf("property %q: %w", p.name, err)
			}
		}
		for _, bid := range nb.BuilderIDs {
			br := BuildRequest{BuildsetID: bs.ID, BuilderID: bid, Priority: nb.Priority,
				SubmittedAt: bs.SubmittedAt, Results: result.None}
			if err := tx.queryRow(`SELECT name FROM builders WHERE id = ?`, bid).Scan(&br.BuilderName); err != nil {
				return fmt.Errorf("builder %d: %w", bid, notFound(err))
			}
			if err := tx.queryRow(`INSERT INTO buildrequests (buildsetid, builderid, priority, submitted_at)
				VALUES (?, ?, ?, ?) RETURNING id`, bs.ID, bid, nb.Priority, atArg).Scan(&br.ID); err != nil {
				return fmt.Errorf("request for builder %d: %w", bid, err)
			}
			reqs = append(reqs, br)
		}
		return nil
	})
	if err != nil {
		return Buildset{}, nil, fmt.Errorf("store: add buildset: %w", err)
	}
	bs.SourceStamps = sortSourceStamps(bs.SourceStamps)
	return bs, reqs, nil
}

// sortSourceStamps puts stamps in the order GetBuildset returns them and
// drops repeats (the same stamp given twice is stored once).
func sortSourceStamps(sss []SourceStamp) []SourceStamp {
	slices.SortFunc(sss, func(a, b SourceStamp) int {
		return cmp.Or(strings.Compare(a.Codebase, b.Codebase), cmp.Compare(a.ID, b.ID))
	})
	return slices.CompactFunc(sss, func(a, b SourceStamp) bool { return a.ID == b.ID })
}

// GetBuildset returns the buildset with the given id, with its properties
// and source stamps.
func (s *Store) GetBuildset(ctx context.Context, id int64) (Buildset, error) {
	bs := Buildset{ID: id}
	var submitted, completeAt, results sql.NullInt64
	var parent sql.NullInt64
	err := s.queryRow(ctx, `SELECT reason, submitted_at, complete, complete_at, results, parent_buildid, parent_relationship
		FROM buildsets WHERE id = ?`, id).
		Scan(&bs.Reason, &submitted, &bs.Complete, &completeAt, &results, &parent, &bs.ParentRelationship)
	bs.ParentBuildID = parent.Int64
	if err != nil {
		return Buildset{}, fmt.Errorf("store: get buildset %d: %w", id, notFound(err))
	}
	bs.SubmittedAt, bs.CompleteAt, bs.Results = fromMicros(submitted), fromMicros(completeAt), fromResult(results)

	rows, err := s.query(ctx, `SELECT ss.id, ss.codebase, ss.repository, ss.branch, ss.revision, ss.project,
		p.id, p.patchlevel, p.patch, p.author, p.comment, p.subdir
		FROM buildset_sourcestamps bss JOIN sourcestamps ss ON ss.id = bss.sourcestampid
		LEFT JOIN patches p ON p.id = ss.patchid
		WHERE bss.buildsetid = ? ORDER BY ss.codebase, ss.id`, id)
	if err != nil {
		return Buildset{}, fmt.Errorf("store: get buildset %d: source stamps: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var ss SourceStamp
		var pid, plevel sql.NullInt64
		var pbody []byte
		var pauthor, pcomment, psubdir sql.NullString
		if err := rows.Scan(&ss.ID, &ss.Codebase, &ss.Repository, &ss.Branch, &ss.Revision, &ss.Project,
			&pid, &plevel, &pbody, &pauthor, &pcomment, &psubdir); err != nil {
			return Buildset{}, fmt.Errorf("store: get buildset %d: source stamps: %w", id, err)
		}
		if pid.Valid {
			ss.Patch = &Patch{ID: pid.Int64, Level: int(plevel.Int64), Body: pbody,
				Author: pauthor.String, Comment: pcomment.String, Subdir: psubdir.String}
		}
		bs.SourceStamps = append(bs.SourceStamps, ss)
	}
	if err := rows.Err(); err != nil {
		return Buildset{}, fmt.Errorf("store: get buildset %d: source stamps: %w", id, err)
	}
	if bs.Properties, err = s.BuildsetProperties(ctx, id); err != nil {
		return Buildset{}, err
	}
	return bs, nil
}

// BuildsetProperties returns the properties of buildset bsid (empty, not an
// error, if the buildset does not exist).
func (s *Store) BuildsetProperties(ctx context.Context, bsid int64) (map[string]Property, error) {
	props, err := s.readProps(ctx, `SELECT property_name, property_value, source FROM buildset_properties
		WHERE buildsetid = ?`, bsid)
	if err != nil {
		return nil, fmt.Errorf("store: buildset %d properties: %w", bsid, err)
	}
	return props, nil
}

const requestCols = `br.id, br.buildsetid, br.builderid, b.name, br.priority, br.submitted_at,
	br.claimed_at, br.complete, br.complete_at, br.results, br.cancel_reason
	FROM buildrequests br JOIN builders b ON b.id = br.builderid`

func scanRequest(r rowScanner) (BuildRequest, error) {
	var br BuildRequest
	var submitted, claimed, completeAt, results sql.NullInt64
	var reason sql.NullString
	if err := r.Scan(&br.ID, &br.BuildsetID, &br.BuilderID, &br.BuilderName, &br.Priority, &submitted,
		&claimed, &br.Complete, &completeAt, &results, &reason); err != nil {
		return BuildRequest{}, err
	}
	br.CancelReason = reason.String
	br.SubmittedAt, br.ClaimedAt, br.CompleteAt = fromMicros(submitted), fromMicros(claimed), fromMicros(completeAt)
	br.Claimed = claimed.Valid
	br.Results = fromResult(results)
	return br, nil
}

func (s *Store) listRequests(ctx context.Context, query string, args ...any) ([]BuildRequest, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var brs []BuildRequest
	for rows.Next() {
		br, err := scanRequest(rows)
		if err != nil {
			return nil, err
		}
		brs = append(brs, br)
	}
	return brs, rows.Err()
}

// PendingRequests returns every request that is neither claimed nor
// complete, in queue order: higher priority first; within a priority,
// requests put back at the head of the queue first (the most recently put
// back first), then the others oldest first.
func (s *Store) PendingRequests(ctx context.Context) ([]BuildRequest, error) {
	brs, err := s.listRequests(ctx, `SELECT `+requestCols+`
		WHERE br.complete = 0 AND br.claimed_at IS NULL
		ORDER BY br.priority DESC, br.head_rank DESC, br.submitted_at, br.id`)
	if err != nil {
		return nil, fmt.Errorf("store: pending requests: %w", err)
	}
	return brs, nil
}

// GetRequest returns the build request with the given id.
func (s *Store) GetRequest(ctx context.Context, id int64) (BuildRequest, error) {
	br, err := scanRequest(s.queryRow(ctx, `SELECT `+requestCols+` WHERE br.id = ?`, id))
	if err != nil {
		return BuildRequest{}, fmt.Errorf("store: get request %d: %w", id, notFound(err))
	}
	return br, nil
}

// BuildsetRequests returns the requests of buildset bsid, in id order.
func (s *Store) BuildsetRequests(ctx context.Context, bsid int64) ([]BuildRequest, error) {
	brs, err := s.listRequests(ctx, `SELECT `+requestCols+` WHERE br.buildsetid = ? ORDER BY br.id`, bsid)
	if err != nil {
		return nil, fmt.Errorf("store: requests of buildset %d: %w", bsid, err)
	}
	return brs, nil
}

// RequestFilter selects requests for ListRequests.
type RequestFilter struct {
	BuilderID   int64 // 0: all builders
	PendingOnly bool  // only requests neither claimed nor complete
	Before      int64 // keyset pagination: only ids < Before; 0: no bound
	Limit       int   // 0: 100; at most 1000
}

// maxLimit bounds one page of a list.
const maxLimit = 1000

func pageLimit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > maxLimit:
		return maxLimit
	}
	return n
}

func beforeArg(id int64) int64 {
	if id <= 0 {
		return math.MaxInt64
	}
	return id
}

// ListRequests returns one page of requests, newest (highest id) first. To
// get the next page, set f.Before to the last id returned.
func (s *Store) ListRequests(ctx context.Context, f RequestFilter) ([]BuildRequest, error) {
	q, args := listRequestsQuery(f)
	brs, err := s.listRequests(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list requests: %w", err)
	}
	return brs, nil
}

// listRequestsQuery returns ListRequests' query for f.
func listRequestsQuery(f RequestFilter) (string, []any) {
	q := `SELECT ` + requestCols + ` WHERE br.id < ?`
	args := []any{beforeArg(f.Before)}
	if f.BuilderID != 0 {
		if f.PendingOnly {
			// Unary + keeps the planner off buildrequests_builderid, which
			// would walk the builder's whole history to find a few pending
			// requests; the pending set is small, so filter it instead.
			// (+x is plain SQL: PostgreSQL reads it the same way.)
			q += ` AND +br.builderid = ?`
		} else {
			q += ` AND br.builderid = ?`
		}
		args = append(args, f.BuilderID)
	}
	if f.PendingOnly {
		q += ` AND br.complete = 0 AND br.claimed_at IS NULL`
	}
	q += ` ORDER BY br.id DESC LIMIT ?`
	return q, append(args, pageLimit(f.Limit))
}

// ClaimRequest claims request id for a build, taking it out of the queue.
// It fails with ErrAlreadyClaimed if the request is claimed or complete:
// of several dispatchers racing for a request, exactly one wins.
func (s *Store) ClaimRequest(ctx context.Context, id int64, at time.Time) error {
	at = orNow(at)
	err := s.write(ctx, 0, func(tx *wtx) error {
		n, err := tx.update(`UPDATE buildrequests SET claimed_at = ?
			WHERE id = ? AND complete = 0 AND claimed_at IS NULL`, micros(at), id)
		if err != nil || n == 1 {
			return err
		}
		return tx.missingOr(ErrAlreadyClaimed, `SELECT 1 FROM buildrequests WHERE id = ?`, id)
	})
	if err != nil {
		return fmt.Errorf("store: claim request %d: %w", id, err)
	}
	return nil
}

// missingOr returns ErrNotFound if query finds no row, and otherwise err.
// Write ops use it to explain an UPDATE that changed nothing.
func (t *wtx) missingOr(err error, query string, args ...any) error {
	ok, qerr := t.exists(query, args...)
	switch {
	case qerr != nil:
		return qerr
	case !ok:
		return ErrNotFound
	}
	return err
}

// UnclaimRequest puts claimed request id back into the queue, for instance
// when its build could not start or its worker was lost. With toHead, it
// goes before every pending request of the same priority, including those
// put back at the head earlier; otherwise it takes its place by age again.
// at is the time of the requeue.
func (s *Store) UnclaimRequest(ctx context.Context, id int64, toHead bool, at time.Time) error {
	at = orNow(at)
	err := s.write(ctx, 0, func(tx *wtx) error {
		var prio int64
		err := tx.queryRow(`SELECT priority FROM buildrequests WHERE id = ? AND complete = 0 AND claimed_at IS NOT NULL`, id).Scan(&prio)
		if err == sql.ErrNoRows {
			return tx.missingOr(ErrNotClaimed, `SELECT 1 FROM buildrequests WHERE id = ?`, id)
		}
		if err != nil {
			return err
		}
		var rank int64
		if toHead {
			if rank, err = tx.headRank(prio, at); err != nil {
				return err
			}
		}
		_, err = tx.exec(`UPDATE buildrequests SET claimed_at = NULL, head_rank = ? WHERE id = ?`, rank, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: unclaim request %d: %w", id, err)
	}
	return nil
}

// headRank returns a head_rank that puts a request before every pending
// request of priority prio. Ranks are the requeue time in microseconds where
// that is enough, so they read as times, but always above the current
// highest, so the latest requeue wins even on a coarse or backward clock.
func (t *wtx) headRank(prio int64, at time.Time) (int64, error) {
	var top int64
	err := t.queryRow(`SELECT COALESCE(MAX(head_rank), 0) FROM buildrequests
		WHERE complete = 0 AND claimed_at IS NULL AND priority = ?`, prio).Scan(&top)
	if err != nil {
		return 0, err
	}
	return max(at.UnixMicro(), top+1), nil
}

// CancelRequest completes a pending (unclaimed) request as CANCELLED and
// records why, for users to see. It fails with ErrAlreadyClaimed for a
// request a build has claimed (stop that build instead) and with
// ErrAlreadyFinished for a complete one. bsComplete is as for
// CompleteRequest.
func (s *Store) CancelRequest(ctx context.Context, id int64, reason string, at time.Time) (bsComplete bool, err error) {
	bsComplete, err = s.endPending(ctx, id, result.Cancelled, reason, at)
	if err != nil {
		return false, fmt.Errorf("store: cancel request %d: %w", id, err)
	}
	return bsComplete, nil
}

// CollapseRequest completes a pending (unclaimed) request as SKIPPED
// because a build of another request covers it (collapse_requests), and
// records why. It fails as CancelRequest does.
func (s *Store) CollapseRequest(ctx context.Context, id int64, reason string, at time.Time) (bsComplete bool, err error) {
	bsComplete, err = s.endPending(ctx, id, result.Skipped, reason, at)
	if err != nil {
		return false, fmt.Errorf("store: collapse request %d: %w", id, err)
	}
	return bsComplete, nil
}

// endPending completes a pending request with res and reason.
func (s *Store) endPending(ctx context.Context, id int64, res result.Result, reason string, at time.Time) (bsComplete bool, err error) {
	at = orNow(at)
	var done bsDone
	err = s.write(ctx, 0, func(tx *wtx) error {
		var complete bool
		var claimed sql.NullInt64
		err := tx.queryRow(`SELECT complete, claimed_at FROM buildrequests WHERE id = ?`, id).Scan(&complete, &claimed)
		switch {
		case err == sql.ErrNoRows:
			return ErrNotFound
		case err != nil:
			return err
		case complete:
			return ErrAlreadyFinished
		case claimed.Valid:
			return ErrAlreadyClaimed
		}
		if _, err := tx.exec(`UPDATE buildrequests SET cancel_reason = ? WHERE id = ?`, reason, id); err != nil {
			return err
		}
		done, err = completeRequestTx(tx, id, res, at)
		return err
	})
	if err != nil {
		return false, err
	}
	s.buildsetDone(done)
	return done.complete, nil
}

// CompleteRequest records request id's result. When it is the last
// incomplete request of its buildset, the buildset completes too, with the
// worst result of its requests (result.Worst), and bsComplete is true. A
// request need not be claimed to complete (one canceled while pending). It
// fails with ErrAlreadyFinished if the request is complete.
func (s *Store) CompleteRequest(ctx context.Context, id int64, r result.Result, at time.Time) (bsComplete bool, err error) {
	if r == result.None {
		return false, fmt.Errorf("store: complete request %d: no result", id)
	}
	at = orNow(at)
	var done bsDone
	err = s.write(ctx, 0, func(tx *wtx) error {
		var err error
		done, err = completeRequestTx(tx, id, r, at)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: complete request %d: %w", id, err)
	}
	s.buildsetDone(done)
	return done.complete, nil
}

// bsDone says whether completing a request completed its buildset.
type bsDone struct {
	complete bool
	id       int64
	results  result.Result
}

// completeRequestTx is CompleteRequest inside a write transaction.
func completeRequestTx(tx *wtx, id int64, r result.Result, at time.Time) (bsDone, error) {
	var bsid int64
	err := tx.queryRow(`SELECT buildsetid FROM buildrequests WHERE id = ? AND complete = 0`, id).Scan(&bsid)
	if err == sql.ErrNoRows {
		return bsDone{}, tx.missingOr(ErrAlreadyFinished, `SELECT 1 FROM buildrequests WHERE id = ?`, id)
	}
	if err != nil {
		return bsDone{}, err
	}
	if _, err := tx.exec(`UPDATE buildrequests SET complete = 1, complete_at = ?, results = ? WHERE id = ?`,
		micros(at), resultArg(r), id); err != nil {
		return bsDone{}, err
	}
	rows, err := tx.query(`SELECT complete, results FROM buildrequests WHERE buildsetid = ?`, bsid)
	if err != nil {
		return bsDone{}, err
	}
	defer rows.Close()
	worst := result.None
	for rows.Next() {
		var complete bool
		var res sql.NullInt64
		if err := rows.Scan(&complete, &res); err != nil {
			return bsDone{}, err
		}
		if !complete {
			return bsDone{}, rows.Close() // the buildset is still running
		}
		worst = result.Worst(worst, fromResult(res))
	}
	if err := rows.Err(); err != nil {
		return bsDone{}, err
	}
	rows.Close()
	if _, err := tx.exec(`UPDATE buildsets SET complete = 1, complete_at = ?, results = ? WHERE id = ?`,
		micros(at), resultArg(worst), bsid); err != nil {
		return bsDone{}, err
	}
	return bsDone{complete: true, id: bsid, results: worst}, nil
}
