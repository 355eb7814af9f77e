package store

import (
	"context"
	"fmt"
	"math"
	"time"
)

// ArtifactRetention selects the finished builds of one builder whose
// artifacts expire: those older than its newest KeepBuilds finished builds
// (by build number), and those completed before CompletedBefore. Either
// limit may be left out (zero); a build beyond either one expires. Builds
// still running never do.
type ArtifactRetention struct {
	BuilderID       int64
	KeepBuilds      int       // 0: no limit on the count
	CompletedBefore time.Time // zero: no limit on the age
}

// ExpireArtifacts deletes, in one transaction, the artifact rows of the
// builds r selects and returns the rows it deleted. Their blobs stay: the
// caller removes those no row references any more (see
// ArtifactReferenced).
func (s *Store) ExpireArtifacts(ctx context.Context, r ArtifactRetention) ([]Artifact, error) {
	if r.KeepBuilds < 0 {
		return nil, fmt.Errorf("store: expire artifacts of builder %d: keep %d builds", r.BuilderID, r.KeepBuilds)
	}
	var out []Artifact
	err := s.write(ctx, 64, func(tx *wtx) error {
		out = nil
		// Builds numbered below the cutoff expire; 0 expires none (build
		// numbers start at 1).
		var cutoff int64
		if r.KeepBuilds > 0 {
			err := tx.queryRow(`SELECT number FROM builds WHERE builderid = ? AND complete_at IS NOT NULL
				ORDER BY number DESC LIMIT 1 OFFSET ?`, r.BuilderID, r.KeepBuilds-1).Scan(&cutoff)
			if err != nil && notFound(err) != ErrNotFound {
				return err
			}
		}
		before := int64(math.MinInt64)
		if !r.CompletedBefore.IsZero() {
			before = r.CompletedBefore.UnixMicro()
		}
		rows, err := tx.query(`SELECT `+artifactCols+` WHERE buildid IN (SELECT id FROM builds
			WHERE builderid = ? AND complete_at IS NOT NULL AND (number < ? OR complete_at < ?)) ORDER BY id`,
			r.BuilderID, cutoff, before)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			a, err := scanArtifact(rows)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		for _, a := range out {
			if _, err := tx.exec(`DELETE FROM artifacts WHERE id = ?`, a.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: expire artifacts of builder %d: %w", r.BuilderID, err)
	}
	return out, nil
}

// ArtifactReferenced reports whether any artifact row has content sum.
func (s *Store) ArtifactReferenced(ctx context.Context, sum string) (bool, error) {
	var one int
	err := s.queryRow(ctx, `SELECT 1 FROM artifacts WHERE sha256 = ? LIMIT 1`, sum).Scan(&one)
	switch notFound(err) {
	case nil:
		return true, nil
	case ErrNotFound:
		return false, nil
	}
	return false, fmt.Errorf("store: artifacts with sha256 %s: %w", sum, err)
}
