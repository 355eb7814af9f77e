package store

import (
	"context"
	"fmt"
	"strings"
)

// WorkerBuildSeconds returns, for each of the workers ids, the total time
// its finished builds took, in seconds (what a donated desktop has given).
// Workers without finished builds are left out.
func (s *Store) WorkerBuildSeconds(ctx context.Context, ids []int64) (map[int64]float64, error) {
	out := map[int64]float64{}
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := `SELECT workerid, SUM(complete_at - started_at) FROM builds
		WHERE workerid IN (?` + strings.Repeat(", ?", len(ids)-1) + `) AND complete_at IS NOT NULL GROUP BY workerid`
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: worker build time: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, micros int64
		if err := rows.Scan(&id, &micros); err != nil {
			return nil, fmt.Errorf("store: worker build time: %w", err)
		}
		out[id] = float64(micros) / 1e6
	}
	return out, rows.Err()
}
