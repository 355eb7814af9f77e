package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUploadMaxSize: an upload that grows past upload_max_size is refused
// at the write that crosses it, and nothing is left at its destination.
func TestUploadMaxSize(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "out", "big.bin")
	u, err := newUpload(dest, -1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.write([]byte("123456")); err != nil {
		t.Fatalf("a write within the cap: %v", err)
	}
	err = u.write([]byte("789012"))
	if err == nil || !strings.Contains(err.Error(), "upload_max_size 10 bytes") {
		t.Fatalf("the write past the cap: %v, want it refused naming upload_max_size", err)
	}
	if _, err := u.finish(false); err != nil {
		t.Logf("finish: %v", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("the refused upload left %s: %v", dest, err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
