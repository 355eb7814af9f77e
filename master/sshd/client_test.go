package sshd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starforge/starforge/internal/testenv"
	gossh "golang.org/x/crypto/ssh"
)

// This file drives the real OpenSSH client against the server; its
// exported names serve the external tests (package sshd_test) too.

// TestKey is an ed25519 key pair: the private key in an OpenSSH file,
// the public key as an authorized_keys line.
type TestKey struct {
	File string
	Pub  string
}

// NewTestKey makes a key and writes its private half to dir/name (0600).
func NewTestKey(t testing.TB, dir, name string) TestKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return TestKey{File: file, Pub: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(sp))) + " " + name + "@test"}
}

// TestClient runs the OpenSSH client against one server.
type TestClient struct {
	t          testing.TB
	bin        string
	host, port string
	// KnownHosts is the client's known_hosts file; Strict is its
	// StrictHostKeyChecking ("no" unless set). The host key is checked
	// under the name "starforge-test" whatever the port, so that a
	// restarted server on another port is the same host.
	KnownHosts string
	Strict     string
}

// NewTestClient returns a client for the server at addr (host:port), or
// skips the test without an ssh program.
func NewTestClient(t testing.TB, addr string) *TestClient {
	t.Helper()
	bin := testenv.LookPath(t, "ssh", "openssh-client")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return &TestClient{t: t, bin: bin, host: host, port: port, KnownHosts: filepath.Join(t.TempDir(), "known_hosts"), Strict: "no"}
}

// Command returns the ssh command that runs args as user with key.
func (c *TestClient) Command(user string, key TestKey, args ...string) *exec.Cmd {
	argv := []string{"-F", "/dev/null", "-p", c.port, "-i", key.File,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=" + c.Strict, "-o", "UserKnownHostsFile=" + c.KnownHosts,
		"-o", "HostKeyAlias=starforge-test", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=60",
		user + "@" + c.host}
	for _, a := range args {
		argv = append(argv, shellQuote(a))
	}
	cmd := exec.Command(c.bin, argv...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	return cmd
}

// Run runs args as user with key, with stdin, and returns what the
// command wrote and its exit code (255: ssh itself failed).
func (c *TestClient) Run(user string, key TestKey, stdin string, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := c.Command(user, key, args...)
	var out, errOut bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		c.t.Fatalf("run ssh: %v", err)
	}
	return out.String(), errOut.String(), code
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=./:,@+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
