package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// This file holds the keyset-paged queries behind the REST API's list
// conventions: pages in either direction between two ids.

// Page selects one keyset page of a list ordered by id: the rows with ids
// strictly between After and Before (0: no bound), lowest id first if
// Ascending, else highest first, at most Limit of them.
type Page struct {
	Before, After int64
	Ascending     bool
	Limit         int // 0: 100; at most 1000
}

// bounds returns the page's id conditions on column col (there is always
// at least one) and their arguments.
func (p Page) bounds(col string) (string, []any) {
	q := col + " < ?"
	args := []any{beforeArg(p.Before)}
	if p.After > 0 {
		q += " AND " + col + " > ?"
		args = append(args, p.After)
	}
	return q, args
}

// orderLimit returns the page's ORDER BY and LIMIT on column col.
func (p Page) orderLimit(col string) (string, any) {
	dir := " DESC"
	if p.Ascending {
		dir = ""
	}
	return " ORDER BY " + col + dir + " LIMIT ?", pageLimit(p.Limit)
}

// BuildQuery selects builds for QueryBuilds. Zero fields do not filter.
type BuildQuery struct {
	BuilderID, WorkerID, RequestID int64
	RunningOnly                    bool // only builds not finished
	Page
}

// QueryBuilds returns one page of builds. Like ListBuilds, every filter
// has an index that yields builds in id order, so a page costs the same
// however deep it is.
func (s *Store) QueryBuilds(ctx context.Context, f BuildQuery) ([]Build, error) {
	q := `SELECT ` + buildCols + ` WHERE `
	cond, args := f.bounds("b.id")
	q += cond
	plus := "" // see listBuildsQuery
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
	ol, limit := f.orderLimit("b.id")
	rows, err := s.query(ctx, q+ol, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: query builds: %w", err)
	}
	defer rows.Close()
	var bs []Build
	for rows.Next() {
		b, err := scanBuild(rows)
		if err != nil {
			return nil, fmt.Errorf("store: query builds: %w", err)
		}
		bs = append(bs, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: query builds: %w", err)
	}
	return bs, nil
}

// RequestQuery selects build requests for QueryRequests. Zero fields do
// not filter.
type RequestQuery struct {
	BuilderID, BuildsetID int64
	PendingOnly           bool // only requests neither claimed nor complete
	Page
}

// QueryRequests returns one page of build requests.
func (s *Store) QueryRequests(ctx context.Context, f RequestQuery) ([]BuildRequest, error) {
	q := `SELECT ` + requestCols + ` WHERE `
	cond, args := f.bounds("br.id")
	q += cond
	if f.BuilderID != 0 {
		if f.PendingOnly {
			q += ` AND +br.builderid = ?` // see listRequestsQuery
		} else {
			q += ` AND br.builderid = ?`
		}
		args = append(args, f.BuilderID)
	}
	if f.BuildsetID != 0 {
		q += ` AND br.buildsetid = ?`
		args = append(args, f.BuildsetID)
	}
	if f.PendingOnly {
		q += ` AND br.complete = 0 AND br.claimed_at IS NULL`
	}
	ol, limit := f.orderLimit("br.id")
	brs, err := s.listRequests(ctx, q+ol, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: query requests: %w", err)
	}
	return brs, nil
}

// QueryChanges returns one page of changes.
func (s *Store) QueryChanges(ctx context.Context, p Page) ([]Change, error) {
	cond, args := p.bounds("id")
	ol, limit := p.orderLimit("id")
	cs, err := s.listChanges(ctx, `SELECT `+changeCols+` WHERE `+cond+ol, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: query changes: %w", err)
	}
	return cs, nil
}

// BuildsetQuery selects buildsets for QueryBuildsets.
type BuildsetQuery struct {
	ParentBuildID int64 // 0: any
	Page
}

// QueryBuildsets returns one page of buildsets, each as GetBuildset
// returns it.
func (s *Store) QueryBuildsets(ctx context.Context, f BuildsetQuery) ([]Buildset, error) {
	cond, args := f.bounds("id")
	q := `SELECT id FROM buildsets WHERE ` + cond
	if f.ParentBuildID != 0 {
		q += ` AND parent_buildid = ?`
		args = append(args, f.ParentBuildID)
	}
	ol, limit := f.orderLimit("id")
	return s.buildsets(ctx, q+ol, append(args, limit)...)
}

// StoredSourceStamp is a source stamp with the time it was first stored.
type StoredSourceStamp struct {
	SourceStamp
	CreatedAt time.Time
}

const sourceStampCols = `ss.id, ss.codebase, ss.repository, ss.branch, ss.revision, ss.project, ss.created_at,
	p.id, p.patchlevel, p.patch, p.author, p.comment, p.subdir
	FROM sourcestamps ss LEFT JOIN patches p ON p.id = ss.patchid`

func scanSourceStamp(r rowScanner) (StoredSourceStamp, error) {
	var ss StoredSourceStamp
	var created int64
	var pid, plevel sql.NullInt64
	var pbody []byte
	var pauthor, pcomment, psubdir sql.NullString
	if err := r.Scan(&ss.ID, &ss.Codebase, &ss.Repository, &ss.Branch, &ss.Revision, &ss.Project, &created,
		&pid, &plevel, &pbody, &pauthor, &pcomment, &psubdir); err != nil {
		return StoredSourceStamp{}, err
	}
	ss.CreatedAt = time.UnixMicro(created).UTC()
	if pid.Valid {
		ss.Patch = &Patch{ID: pid.Int64, Level: int(plevel.Int64), Body: pbody,
			Author: pauthor.String, Comment: pcomment.String, Subdir: psubdir.String}
	}
	return ss, nil
}

// GetSourceStamp returns the source stamp with the given id.
func (s *Store) GetSourceStamp(ctx context.Context, id int64) (StoredSourceStamp, error) {
	ss, err := scanSourceStamp(s.queryRow(ctx, `SELECT `+sourceStampCols+` WHERE ss.id = ?`, id))
	if err != nil {
		return StoredSourceStamp{}, fmt.Errorf("store: get source stamp %d: %w", id, notFound(err))
	}
	return ss, nil
}

// QuerySourceStamps returns one page of source stamps.
func (s *Store) QuerySourceStamps(ctx context.Context, p Page) ([]StoredSourceStamp, error) {
	cond, args := p.bounds("ss.id")
	ol, limit := p.orderLimit("ss.id")
	rows, err := s.query(ctx, `SELECT `+sourceStampCols+` WHERE `+cond+ol, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: query source stamps: %w", err)
	}
	defer rows.Close()
	var out []StoredSourceStamp
	for rows.Next() {
		ss, err := scanSourceStamp(rows)
		if err != nil {
			return nil, fmt.Errorf("store: query source stamps: %w", err)
		}
		out = append(out, ss)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: query source stamps: %w", err)
	}
	return out, nil
}
