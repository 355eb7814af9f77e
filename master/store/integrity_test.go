package store

import (
	"context"
	"database/sql"
	"strings"
	"testing"
)

func TestIntegrityCheck(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	addBuilders(t, s, "b")
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Fatalf("a fresh store: %v", err)
	}
	// A request whose buildset does not exist, written behind the store's
	// back with foreign keys off.
	db, err := sql.Open("sqlite3", s.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO buildrequests (buildsetid, builderid, submitted_at) VALUES (999, 1, 0)`); err != nil {
		t.Fatal(err)
	}
	err = s.IntegrityCheck(ctx)
	if err == nil || !strings.Contains(err.Error(), "buildrequests row") || !strings.Contains(err.Error(), "missing buildsets row") {
		t.Errorf("IntegrityCheck = %v, want the dangling request named", err)
	}
}
