package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogCap: a step printing past master(log_max_size=...) keeps its
// result; its log stops at the cap with a note saying so and how much was
// dropped.
func TestLogCap(t *testing.T) {
	dir := t.TempDir()
	basedir := filepath.Join(dir, "master")
	if err := os.MkdirAll(basedir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := `master(http_addr="127.0.0.1:0", worker_addr="127.0.0.1:0", log_max_size=4000)
worker("w1", password="pw1")
builder("chatty", workers=["w1"], steps=[shell("seq 1 100000", log_environ=False)])
force_scheduler("force", builders=["chatty"])
`
	if err := os.WriteFile(filepath.Join(basedir, "master.star"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMaster(t, basedir, "")
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
	if out, code := m.force(t, "chatty"); code != 0 {
		t.Fatalf("a capped log failed the build: exit %d\n%s", code, out)
	}
	b := m.builds(t, "chatty")[0]
	log := m.stepLog(t, m.steps(t, b.ID)[0].ID)
	if len(log) > 4000+300 {
		t.Errorf("log is %d bytes, want about 4000", len(log))
	}
	if !strings.Contains(log, "log truncated: it reached its limit of 4000 bytes") ||
		!strings.Contains(log, "bytes of output were dropped after the limit") {
		t.Errorf("log lacks the truncation notes; its end:\n%s", log[max(0, len(log)-400):])
	}
	if strings.Contains(log, "\n100000\n") {
		t.Error("output past the cap was stored")
	}
}
