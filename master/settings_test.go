package master

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDBPath(t *testing.T) {
	tests := []struct{ db, want string }{
		{"", "/base/state.sqlite"},
		{"state.sqlite", "/base/state.sqlite"},
		{"data/ci.db", "/base/data/ci.db"},
		{"/var/lib/starforge/ci.db", "/var/lib/starforge/ci.db"},
		{"sqlite:///var/lib/starforge/ci.db", "/var/lib/starforge/ci.db"},
	}
	for _, tt := range tests {
		if got := dbPath("/base", tt.db); got != tt.want {
			t.Errorf("dbPath(%q) = %q, want %q", tt.db, got, tt.want)
		}
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "master.star"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDBSettingUsed: master(db=...) names the database file.
func TestDBSettingUsed(t *testing.T) {
	dir := writeConfig(t, `master(http_addr = "127.0.0.1:0", worker_addr = "127.0.0.1:0", db = "data.sqlite")
worker("w1", password = "pw")
`)
	m, err := New(Options{Basedir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer m.unlock()
	defer m.store.Close()
	if _, err := os.Stat(filepath.Join(dir, "data.sqlite")); err != nil {
		t.Fatalf("the database is not where db= says: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err == nil {
		t.Fatal("the default database file was created too")
	}
}
