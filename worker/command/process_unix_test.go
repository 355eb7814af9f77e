//go:build unix

package command

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestParseSignal(t *testing.T) {
	for name, want := range map[string]syscall.Signal{
		"TERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "kill": syscall.SIGKILL, "Usr1": syscall.SIGUSR1,
	} {
		got, err := parseSignal(name)
		if err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	for _, bad := range []string{"", "BOGUS", "SIG", "9"} {
		if _, err := parseSignal(bad); err == nil {
			t.Errorf("parseSignal(%q) accepted", bad)
		}
	}
	if signalNumber(syscall.SIGTERM) != 15 || signalNumber(sigKill) != 9 {
		t.Error("signal numbers")
	}
}

func TestLookPathIn(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"tool": 0o755, "data": 0o644} {
		if err := os.WriteFile(filepath.Join(bin, name), nil, mode); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := lookPathIn("tool", "/nonexistent:"+bin, dir); err != nil || got != filepath.Join(bin, "tool") {
		t.Errorf("tool: %q, %v", got, err)
	}
	if _, err := lookPathIn("data", bin, dir); err == nil {
		t.Error("found a file that is not executable")
	}
	// An empty entry is the working directory, as for execvp.
	if got, err := lookPathIn("tool", ":/nonexistent", bin); err != nil || got != filepath.Join(bin, "tool") {
		t.Errorf("empty PATH entry: %q, %v", got, err)
	}
	// Names with a slash are not searched.
	if got, err := lookPathIn("./x", bin, dir); err != nil || got != "./x" {
		t.Errorf("./x: %q, %v", got, err)
	}
	if _, err := lookPathIn("tool", "/nonexistent", dir); err == nil {
		t.Error("found tool outside PATH")
	}
}
