package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestArtifactRetention checks the policies artifact_retention() declares
// and which one a builder follows: the first that covers it.
func TestArtifactRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.star")
	src := `
worker("w", "pw")
for n in ["app", "lib", "pkg-debian-12-amd64"]:
    builder(n, ["w"], [shell("make")])
artifact_retention(keep_builds = 5, builders = ["app"])
artifact_retention(keep_days = 30, builders = ["pkg-*", "app"], interval = "10m")
artifact_retention(keep_builds = 2, keep_days = 7)
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.ArtifactRetention) != 3 {
		t.Fatalf("%d policies, want 3", len(cfg.ArtifactRetention))
	}
	for _, tc := range []struct {
		builder     string
		keep, days  int
		interval    time.Duration
		allBuilders bool
	}{
		{"app", 5, 0, time.Hour, false},
		{"pkg-debian-12-amd64", 0, 30, 10 * time.Minute, false},
		{"lib", 2, 7, time.Hour, true},
		{"gone", 2, 7, time.Hour, true},
	} {
		p := cfg.ArtifactPolicy(tc.builder)
		if p == nil || p.KeepBuilds != tc.keep || p.KeepDays != tc.days || p.Interval != tc.interval || (p.Builders == nil) != tc.allBuilders {
			t.Errorf("policy of %s: %+v, want keep %d days %d interval %v", tc.builder, p, tc.keep, tc.days, tc.interval)
		}
	}
	cfg.ArtifactRetention = cfg.ArtifactRetention[:1]
	if p := cfg.ArtifactPolicy("lib"); p != nil {
		t.Errorf("lib without a covering policy: %+v", p)
	}
}
