package store

import (
	"context"
	"fmt"
)

// SchedulerStatePrefix starts the object name of a scheduler's state:
// "scheduler:<name>".
const SchedulerStatePrefix = "scheduler:"

// StoredSchedulers returns, sorted, the names of the schedulers that have
// state (an object named SchedulerStatePrefix + name) or kept changes, so
// that the master can drop those of schedulers no longer configured.
func (s *Store) StoredSchedulers(ctx context.Context) ([]string, error) {
	rows, err := s.query(ctx, `SELECT substr(object, ?) AS name FROM object_state WHERE substr(object, 1, ?) = ?
		UNION SELECT scheduler FROM scheduler_changes ORDER BY name`,
		len(SchedulerStatePrefix)+1, len(SchedulerStatePrefix), SchedulerStatePrefix)
	if err != nil {
		return nil, fmt.Errorf("store: stored schedulers: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("store: stored schedulers: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: stored schedulers: %w", err)
	}
	return names, nil
}
