package donate

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestOwnCgroup(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cgroup")
	os.WriteFile(p, []byte("12:memory:/old\n0::/user.slice/user-1000.slice/user@1000.service/app.slice/w.scope\n"), 0o644)
	if got, err := ownCgroup(p); err != nil || got != "/user.slice/user-1000.slice/user@1000.service/app.slice/w.scope" {
		t.Fatalf("ownCgroup = %q, %v", got, err)
	}
	os.WriteFile(p, []byte("4:memory:/x\n"), 0o644)
	if _, err := ownCgroup(p); err == nil {
		t.Fatal("a cgroup v1 only process has no v2 cgroup")
	}
}

// TestMemoryCap moves the test process into a sub-cgroup, so it runs only
// where asked (STARFORGE_TEST_CGROUP=1, in a delegated cgroup such as
// systemd-run --user -p Delegate=yes --scope go test ...).
func TestMemoryCap(t *testing.T) {
	if os.Getenv("STARFORGE_TEST_CGROUP") == "" {
		t.Skip("set STARFORGE_TEST_CGROUP=1 in a delegated cgroup v2 to test the memory cap")
	}
	cg, err := newBuildCgroup(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.close()
	if b, _ := os.ReadFile(filepath.Join(cg.dir, "memory.max")); strings.TrimSpace(string(b)) != strconv.Itoa(64<<20) {
		t.Fatalf("memory.max = %q", b)
	}
	cmd := exec.Command("cat", "/proc/self/cgroup")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	cg.procAttr(cmd.SysProcAttr)
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "/starforge-builds") {
		t.Fatalf("a command's cgroup: %s %v", out, err)
	}
}
