package poller

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/starforge/starforge/config"
)

// TestHTTPToken polls a repository served by git http-backend behind HTTP
// Basic auth, with the token read from a secret at each poll.
func TestHTTPToken(t *testing.T) {
	r := newRepo(t)
	r.fileCommit("base")
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(r.dir), "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, pw, ok := req.BasicAuth()
		if !ok || user != "x-access-token" || pw != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, req)
	}))
	defer srv.Close()

	e := newEnv(t)
	token := "wrong"
	o := e.options()
	o.Secret = func(name string) (string, error) {
		if name != "gh" {
			return "", fmt.Errorf("secret %s not found", name)
		}
		return token, nil
	}
	cfg := pollerCfg("p", srv.URL+"/"+filepath.Base(r.dir))
	cfg.Auth = config.GitAuth{TokenSecret: "gh", Username: config.DefaultTokenUser}
	p := NewPoller(cfg, o)
	if _, err := p.Poll(context.Background()); err == nil || !strings.Contains(err.Error(), "authentica") {
		t.Fatalf("wrong token: err = %v, want an authentication error", err)
	}
	token = "s3cret" // rotated: used at the next poll
	if _, err := p.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := r.fileCommit("c")
	res, err := p.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := revisions(res.Changes); !slices.Equal(got, []string{"main:" + c}) {
		t.Errorf("got %v, want c", got)
	}
}

// TestSSHAuth checks the ssh authentication built from a declaration: the
// key from a file or a secret, the user from the address, and host keys
// from the known_hosts file given.
func TestSSHAuth(t *testing.T) {
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(block)
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	hostPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	knownHosts := filepath.Join(dir, "known_hosts")
	line := "git.example.org " + string(ssh.MarshalAuthorizedKey(sshPub))
	if err := os.WriteFile(knownHosts, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"deploy": string(keyPEM)}
	tests := []struct {
		name, repo string
		auth       config.GitAuth
		user, err  string
	}{
		{"file", "git@git.example.org:proj.git", config.GitAuth{SSHKey: keyFile, KnownHosts: knownHosts}, "git", ""},
		{"secret", "ssh://ci@git.example.org/proj.git", config.GitAuth{SSHKeySecret: "deploy", KnownHosts: knownHosts}, "ci", ""},
		{"missing key", "git@git.example.org:proj.git", config.GitAuth{SSHKey: filepath.Join(dir, "nope"), KnownHosts: knownHosts}, "", "ssh key " + filepath.Join(dir, "nope")},
		{"bad key", "git@git.example.org:proj.git", config.GitAuth{SSHKey: knownHosts, KnownHosts: knownHosts}, "", "ssh key"},
		{"missing secret", "git@git.example.org:proj.git", config.GitAuth{SSHKeySecret: "other", KnownHosts: knownHosts}, "", "secret other not found"},
		{"missing known_hosts", "git@git.example.org:proj.git", config.GitAuth{SSHKey: keyFile, KnownHosts: filepath.Join(dir, "kh")}, "", "known_hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			o := e.options()
			o.Secret = func(name string) (string, error) {
				if v, ok := secrets[name]; ok {
					return v, nil
				}
				return "", fmt.Errorf("secret %s not found", name)
			}
			cfg := pollerCfg("p", tt.repo)
			cfg.Auth = tt.auth
			a, err := NewPoller(cfg, o).auth()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cc, err := a.(gitssh.AuthMethod).ClientConfig()
			if err != nil {
				t.Fatal(err)
			}
			if cc.User != tt.user || cc.Timeout != sshDialTimeout {
				t.Errorf("user %q timeout %v, want %q %v", cc.User, cc.Timeout, tt.user, sshDialTimeout)
			}
			if !slices.Contains(cc.HostKeyAlgorithms, ssh.KeyAlgoED25519) {
				t.Errorf("host key algorithms %v, want the known host's ed25519", cc.HostKeyAlgorithms)
			}
			addr := &fakeAddr{"10.0.0.1:22"}
			if err := cc.HostKeyCallback("git.example.org:22", addr, sshPub); err != nil {
				t.Errorf("known host key refused: %v", err)
			}
			otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
			other, _ := ssh.NewPublicKey(otherPub)
			if err := cc.HostKeyCallback("git.example.org:22", addr, other); err == nil {
				t.Errorf("another host key accepted")
			}
		})
	}
}

type fakeAddr struct{ s string }

func (a *fakeAddr) Network() string { return "tcp" }
func (a *fakeAddr) String() string  { return a.s }
