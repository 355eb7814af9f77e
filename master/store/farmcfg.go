package store

import (
	"context"
	"fmt"
)

// JobDirs returns the Dir of every job, as a set: what a master starting
// up compares with the directories under BASEDIR/jobs to find the jobs it
// accepted but did not store before it stopped.
func (s *Store) JobDirs(ctx context.Context) (map[string]bool, error) {
	rows, err := s.query(ctx, `SELECT dir FROM jobs`)
	if err != nil {
		return nil, fmt.Errorf("store: job dirs: %w", err)
	}
	defer rows.Close()
	dirs := make(map[string]bool)
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("store: job dirs: %w", err)
		}
		dirs[d] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: job dirs: %w", err)
	}
	return dirs, nil
}
