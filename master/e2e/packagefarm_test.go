package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starforge/starforge/internal/testenv"
)

// TestPackageFarmExample runs examples/package-farm as its README says: two
// workers of different platforms build the example's Debian source package
// with dpkg-buildpackage, and both .debs are published.
func TestPackageFarmExample(t *testing.T) {
	testenv.LookPath(t, "dpkg-buildpackage", "dpkg-dev")
	testenv.LookPath(t, "cc", "gcc")
	dpkgDeb := testenv.LookPath(t, "dpkg-deb", "dpkg")

	example, err := filepath.Abs("../../examples/package-farm")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(example, "master.star"))
	if err != nil {
		t.Fatal(err)
	}
	// The example's fixed ports would clash with other tests.
	star := strings.NewReplacer(`"127.0.0.1:8010"`, `"127.0.0.1:0"`, `"127.0.0.1:9989"`, `"127.0.0.1:0"`).Replace(string(cfg))
	dir := t.TempDir()
	basedir := filepath.Join(dir, "master")
	if err := os.MkdirAll(basedir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(basedir, "master.star"), []byte(star), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMaster(t, basedir, "")
	m.startWorker(t, "bookworm", "bookworm-secret", filepath.Join(dir, "bookworm"))
	m.startWorker(t, "trixie", "trixie-secret", filepath.Join(dir, "trixie"))

	id, out, code := m.submit(t, filepath.Join(example, "job"), "--wait")
	if code != 0 || id == 0 {
		t.Fatalf("starforge submit --wait examples/package-farm/job: exit %d:\n%s", code, out)
	}
	for _, plat := range []string{"debian-12-amd64", "debian-13-amd64"} {
		debs, _ := filepath.Glob(filepath.Join(basedir, "repo", plat, "hello-starforge_1.0_*.deb"))
		if len(debs) != 1 {
			t.Fatalf("repo/%s holds %q, want one hello-starforge .deb", plat, debs)
		}
		info, err := exec.Command(dpkgDeb, "--field", debs[0], "Package", "Version").CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg-deb --field %s: %v\n%s", debs[0], err, info)
		}
		if got := string(info); !strings.Contains(got, "Package: hello-starforge") || !strings.Contains(got, "Version: 1.0") {
			t.Errorf("%s: %s", debs[0], got)
		}
	}
}
