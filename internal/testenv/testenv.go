// Package testenv lets tests that need programs from Debian packages skip
// cleanly on a developer's machine and fail in CI, where every such program
// is installed.
package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// NoSkipVar, when set to a non-empty value, turns every skip for a missing
// program into a failure. .ci/run sets it, so CI always runs everything.
const NoSkipVar = "STARFORGE_NO_SKIP"

// LookPath returns the path of program, or skips the test (fails it when
// NoSkipVar is set) with a message naming the Debian package to install.
func LookPath(t testing.TB, program, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err == nil {
		return p
	}
	msg := program + " not found: apt-get install " + debianPackage
	if os.Getenv(NoSkipVar) != "" {
		t.Fatalf("%s (%s is set, so this is a failure)", msg, NoSkipVar)
	}
	t.Skip(msg)
	return ""
}

// Buffer is a bytes.Buffer that several goroutines (a master's and a
// worker's loggers, say) may write to while a test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset discards everything written so far.
func (s *Buffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}
