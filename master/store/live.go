package store

import (
	"context"
	"fmt"
)

// PendingCounts returns how many requests wait in the queue (neither
// claimed nor complete) for each builder id that has any. It reads the
// partial pending index only, however long the history.
func (s *Store) PendingCounts(ctx context.Context) (map[int64]int, error) {
	rows, err := s.query(ctx, `SELECT builderid, COUNT(*) FROM buildrequests
		WHERE complete = 0 AND claimed_at IS NULL GROUP BY builderid`)
	if err != nil {
		return nil, fmt.Errorf("store: count pending requests: %w", err)
	}
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var id int64
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("store: count pending requests: %w", err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count pending requests: %w", err)
	}
	return out, nil
}
