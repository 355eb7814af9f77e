package store

import (
	"context"
	"fmt"
)

// ArtifactQuery selects artifacts of every build, a keyset page at a time
// in id order (newest first unless Page.Ascending). Zero fields do not
// filter.
type ArtifactQuery struct {
	BuilderID int64
	BuildID   int64
	SHA256    string
	Page
}

// BuildArtifact is an artifact with the build that made it.
type BuildArtifact struct {
	Artifact
	BuilderID   int64
	BuildNumber int
}

// QueryArtifacts returns one page of the artifacts q selects.
func (s *Store) QueryArtifacts(ctx context.Context, q ArtifactQuery) ([]BuildArtifact, error) {
	where, args := q.Page.bounds("a.id")
	if q.BuilderID != 0 {
		where += " AND b.builderid = ?"
		args = append(args, q.BuilderID)
	}
	if q.BuildID != 0 {
		where += " AND a.buildid = ?"
		args = append(args, q.BuildID)
	}
	if q.SHA256 != "" {
		where += " AND a.sha256 = ?"
		args = append(args, q.SHA256)
	}
	order, limit := q.Page.orderLimit("a.id")
	rows, err := s.query(ctx, `SELECT a.id, a.buildid, a.stepid, a.name, a.path, a.sha256, a.size, a.mtime, a.created_at,
		b.builderid, b.number FROM artifacts a JOIN builds b ON b.id = a.buildid WHERE `+where+order, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: list artifacts: %w", err)
	}
	defer rows.Close()
	var out []BuildArtifact
	for rows.Next() {
		var ba BuildArtifact
		a, err := scanArtifact(scanTail{rows, []any{&ba.BuilderID, &ba.BuildNumber}})
		if err != nil {
			return nil, fmt.Errorf("store: list artifacts: %w", err)
		}
		ba.Artifact = a
		out = append(out, ba)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list artifacts: %w", err)
	}
	return out, nil
}

// scanTail scans a row into what scanArtifact asks for, then into tail.
type scanTail struct {
	r    rowScanner
	tail []any
}

func (s scanTail) Scan(dest ...any) error { return s.r.Scan(append(dest, s.tail...)...) }
