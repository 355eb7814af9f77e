package store

import (
	"context"
	"database/sql"
	"fmt"
)

// SetRequestPriority sets the priority of pending request id (higher
// goes first), for Buildbot's set_priority. A request a build has
// claimed fails with ErrAlreadyClaimed, a complete one with
// ErrAlreadyFinished, an unknown one with ErrNotFound.
func (s *Store) SetRequestPriority(ctx context.Context, id int64, priority int) error {
	err := s.write(ctx, 0, func(tx *wtx) error {
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
		_, err = tx.exec(`UPDATE buildrequests SET priority = ? WHERE id = ?`, priority, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: set priority of request %d: %w", id, err)
	}
	return nil
}
