package store

import (
	"context"
	"fmt"
	"strings"
)

// IntegrityCheck runs SQLite's integrity_check and foreign_key_check over
// the whole database and returns an error listing what they found, nil if
// the database is sound. It reads only, and may take a while on a large
// database.
func (s *Store) IntegrityCheck(ctx context.Context) error {
	var problems []string
	rows, err := s.rdb.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return fmt.Errorf("store: integrity check: %w", err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return fmt.Errorf("store: integrity check: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: integrity check: %w", err)
	}
	fk, err := s.rdb.QueryContext(ctx, `PRAGMA foreign_key_check`)
	if err != nil {
		return fmt.Errorf("store: foreign key check: %w", err)
	}
	defer fk.Close()
	for fk.Next() {
		var table, parent string
		var rowid, idx any
		if err := fk.Scan(&table, &rowid, &parent, &idx); err != nil {
			return fmt.Errorf("store: foreign key check: %w", err)
		}
		problems = append(problems, fmt.Sprintf("%s row %v refers to a missing %s row", table, rowid, parent))
	}
	if err := fk.Err(); err != nil {
		return fmt.Errorf("store: foreign key check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("store: %s is damaged: %s", s.path, strings.Join(problems, "; "))
	}
	return nil
}
