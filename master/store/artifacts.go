package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Artifact is a file a build uploaded to the master (with upload,
// upload_many or upload_dir), as the build page lists it for download.
type Artifact struct {
	ID, BuildID int64
	StepID      int64  // the step that uploaded it; 0 if unknown
	Name        string // for people: the file's name, or its path in an uploaded directory
	// Path is where the master keeps the file: relative to the master's
	// base directory, or absolute when it is outside it (such a file is
	// listed but not served).
	Path   string
	SHA256 string // hex
	Size   int64
	// ModTime is the file's modification time when it was recorded; with
	// Size it tells whether the file was replaced since.
	ModTime   time.Time
	CreatedAt time.Time // when it was recorded; zero on input means now
}

// AddArtifacts records as, in one transaction, and returns them with their
// ids. Every artifact must name an existing build.
func (s *Store) AddArtifacts(ctx context.Context, as []Artifact) ([]Artifact, error) {
	out := make([]Artifact, len(as))
	now := time.Now()
	for i, a := range as {
		if a.Name == "" || a.Path == "" {
			return nil, fmt.Errorf("store: add artifacts: artifact %d has no name or path", i)
		}
		if a.CreatedAt.IsZero() {
			a.CreatedAt = now
		}
		a.CreatedAt = time.UnixMicro(a.CreatedAt.UnixMicro()).UTC()
		if !a.ModTime.IsZero() {
			a.ModTime = time.UnixMicro(a.ModTime.UnixMicro()).UTC()
		}
		out[i] = a
	}
	err := s.write(ctx, len(as)*128, func(tx *wtx) error {
		for i := range out {
			a := &out[i]
			var step any
			if a.StepID != 0 {
				step = a.StepID
			}
			if err := tx.queryRow(`INSERT INTO artifacts (buildid, stepid, name, path, sha256, size, mtime, created_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
				a.BuildID, step, a.Name, a.Path, a.SHA256, a.Size, micros(a.ModTime), a.CreatedAt.UnixMicro()).Scan(&a.ID); err != nil {
				return fmt.Errorf("artifact %q of build %d: %w", a.Name, a.BuildID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: add artifacts: %w", err)
	}
	return out, nil
}

const artifactCols = `id, buildid, stepid, name, path, sha256, size, mtime, created_at FROM artifacts`

func scanArtifact(r rowScanner) (Artifact, error) {
	var a Artifact
	var step, mtime sql.NullInt64
	var created int64
	if err := r.Scan(&a.ID, &a.BuildID, &step, &a.Name, &a.Path, &a.SHA256, &a.Size, &mtime, &created); err != nil {
		return Artifact{}, err
	}
	a.StepID, a.ModTime = step.Int64, fromMicros(mtime)
	a.CreatedAt = time.UnixMicro(created).UTC()
	return a, nil
}

// GetArtifact returns the artifact with the given id.
func (s *Store) GetArtifact(ctx context.Context, id int64) (Artifact, error) {
	a, err := scanArtifact(s.queryRow(ctx, `SELECT `+artifactCols+` WHERE id = ?`, id))
	if err != nil {
		return Artifact{}, fmt.Errorf("store: get artifact %d: %w", id, notFound(err))
	}
	return a, nil
}

// ListArtifacts returns the artifacts of build id by name, then id (empty,
// not an error, if the build does not exist).
func (s *Store) ListArtifacts(ctx context.Context, buildID int64) ([]Artifact, error) {
	rows, err := s.query(ctx, `SELECT `+artifactCols+` WHERE buildid = ? ORDER BY name, id`, buildID)
	if err != nil {
		return nil, fmt.Errorf("store: artifacts of build %d: %w", buildID, err)
	}
	defer rows.Close()
	var out []Artifact
	for rows.Next() {
		a, err := scanArtifact(rows)
		if err != nil {
			return nil, fmt.Errorf("store: artifacts of build %d: %w", buildID, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: artifacts of build %d: %w", buildID, err)
	}
	return out, nil
}
