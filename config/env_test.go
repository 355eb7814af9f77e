package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnv(t *testing.T) {
	env := map[string]string{"SF_WORKERS": "3", "SF_EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		name, src, want, err string
	}{
		{"set", `n = int(env("SF_WORKERS"))`, "3 workers", ""},
		{"default", `n = int(env("SF_MISSING", "2"))`, "2 workers", ""},
		{"unset is None", `n = 1 if env("SF_MISSING") == None else 9`, "1 worker", ""},
		{"empty is set", `n = 1 if env("SF_EMPTY") == "" else 9`, "1 worker", ""},
		{"bad default", `n = env("SF_MISSING", 5)`, "", `env: default: want string or None, got int`},
		{"no name", `n = env("")`, "", `env: name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src + "\n[worker(\"w%d\" % i, \"pw\") for i in range(n if type(n) == \"int\" else 1)]\n"
			path := filepath.Join(t.TempDir(), "master.star")
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadWith(path, Options{LookupEnv: lookup})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Summary(); !strings.HasPrefix(got, tt.want) {
				t.Fatalf("summary = %q, want %q…", got, tt.want)
			}
		})
	}
}
