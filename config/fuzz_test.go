package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad loads arbitrary master.star text: loading must end (the
// execution step limit), never panic, and either succeed with a complete
// configuration or fail with errors that say where.
func FuzzLoad(f *testing.F) {
	for _, pattern := range []string{"testdata/valid/*.star", "testdata/errors/*.star"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(string(b))
		}
	}
	f.Fuzz(func(t *testing.T, src string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "master.star")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path)
		if err != nil {
			if !strings.Contains(err.Error(), "master.star") {
				t.Fatalf("error does not say where: %v", err)
			}
			return
		}
		if cfg == nil || cfg.Path == "" {
			t.Fatalf("Load succeeded with %+v", cfg)
		}
	})
}
