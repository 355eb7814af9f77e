package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func loadText(t *testing.T, src string) *Config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "master.star")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestAllowed checks the rule the SSH server and the web UI share: a
// permission comes from a role, "admin" implies all, and nobody unknown
// gets anything.
func TestAllowed(t *testing.T) {
	cfg := loadText(t, `
role("releaser", can = ["view", "rebuild"])
role("boss", can = ["admin"])
user("ann", roles = ["admin"])
user("dev", roles = ["developer"])
user("vic", roles = ["viewer"])
user("rel", roles = ["releaser", "viewer"])
user("bos", roles = ["boss"])
user("nobody")
`)
	tests := []struct {
		user, perm string
		want       bool
	}{
		{"ann", "reconfig", true},
		{"ann", "pause", true},
		{"dev", "force", true},
		{"dev", "cancel", true},
		{"dev", "pause", false},
		{"dev", "reconfig", false},
		{"vic", "view", true},
		{"vic", "force", false},
		{"rel", "rebuild", true},
		{"rel", "force", false},
		{"bos", "stop", true}, // a declared role granting "admin"
		{"nobody", "view", false},
		{"ghost", "view", false},
		{"ann", "fly", false}, // unknown permission
		{"ann", "", false},
	}
	for _, tt := range tests {
		if got := cfg.Allowed(tt.user, tt.perm); got != tt.want {
			t.Errorf("Allowed(%q, %q) = %v, want %v", tt.user, tt.perm, got, tt.want)
		}
	}
	if got, want := cfg.Permissions("rel"), []string{"rebuild", "view"}; !slices.Equal(got, want) {
		t.Errorf("Permissions(rel) = %v, want %v", got, want)
	}
	if got := cfg.Permissions("nobody"); got != nil {
		t.Errorf("Permissions(nobody) = %v, want nil", got)
	}
	if cfg.User("dev") == nil || cfg.User("ghost") != nil {
		t.Error("User lookups wrong")
	}
}

func TestTrySchedulerFor(t *testing.T) {
	cfg := loadText(t, `
worker("w", "pw")
builder("a", workers = ["w"], steps = [shell("true")])
builder("b", workers = ["w"], steps = [shell("true")])
builder("c", workers = ["w"], steps = [shell("true")])
force_scheduler("force", builders = ["a", "b", "c"])
try_scheduler("try-a", builders = ["a"])
try_scheduler("try-ab", ["a", "b"])
`)
	tests := []struct {
		builders []string
		want     string // "" for nil
	}{
		{[]string{"a"}, "try-a"},
		{[]string{"b"}, "try-ab"},
		{[]string{"a", "b"}, "try-ab"},
		{[]string{"c"}, ""},
		{[]string{"a", "c"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		got := ""
		if s := cfg.TrySchedulerFor(tt.builders...); s != nil {
			got = s.Name
		}
		if got != tt.want {
			t.Errorf("TrySchedulerFor(%v) = %q, want %q", tt.builders, got, tt.want)
		}
	}
}
