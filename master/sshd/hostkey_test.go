package sshd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

func TestHostKeyCreatedOnceAndKept(t *testing.T) {
	file := filepath.Join(t.TempDir(), HostKeyFile)
	s1, created, err := loadHostKey(file)
	if err != nil || !created {
		t.Fatalf("first load: created=%v err=%v", created, err)
	}
	if s1.PublicKey().Type() != gossh.KeyAlgoED25519 {
		t.Errorf("key type %s, want ed25519", s1.PublicKey().Type())
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	pub, err := os.ReadFile(file + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub, gossh.MarshalAuthorizedKey(s1.PublicKey())) {
		t.Errorf(".pub file %q does not hold the key", pub)
	}

	s2, created, err := loadHostKey(file)
	if err != nil || created {
		t.Fatalf("second load: created=%v err=%v", created, err)
	}
	if !bytes.Equal(s1.PublicKey().Marshal(), s2.PublicKey().Marshal()) {
		t.Error("the second load gave another key")
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*tmp*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestHostKeyBadFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), HostKeyFile)
	if err := os.WriteFile(file, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := loadHostKey(file)
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("err = %v", err)
	}
	// Nothing was overwritten.
	if b, _ := os.ReadFile(file); string(b) != "not a key\n" {
		t.Errorf("the file was changed: %q", b)
	}
}
