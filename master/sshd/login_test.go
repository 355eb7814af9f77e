package sshd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/clock"
)

// LogBuf collects a log and lets a test await a line (the server, say,
// logs a failed login after the client has gone).
type LogBuf struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{}
}

func NewLogBuf() *LogBuf { return &LogBuf{changed: make(chan struct{})} }

func (l *LogBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *LogBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Wait waits until the log holds every one of subs.
func (l *LogBuf) Wait(t *testing.T, subs ...string) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		s, ch := l.b.String(), l.changed
		l.mu.Unlock()
		missing := ""
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				missing = sub
				break
			}
		}
		if missing == "" {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("the log lacks %q after 30s", missing)
		}
	}
}

// startServer serves f on a free 127.0.0.1 port until the test ends and
// returns its address and log.
func startServer(t *testing.T, f *fakeBackend, o Options) (string, *LogBuf) {
	t.Helper()
	logs := NewLogBuf()
	o.Backend = f
	o.HostKeyFile = filepath.Join(t.TempDir(), HostKeyFile)
	o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return l.Addr().String(), logs
}

// TestLogin: keys from user(keys=) and from an authorized_keys file read
// at login; refused keys and users; a reconfig applies at the next
// login; failed logins are logged.
func TestLogin(t *testing.T) {
	dir := t.TempDir()
	alice, bob, carl, mallory := NewTestKey(t, dir, "alice"), NewTestKey(t, dir, "bob"), NewTestKey(t, dir, "carl"), NewTestKey(t, dir, "mallory")
	bobFile := filepath.Join(dir, "bob.keys")
	// An option line is ignored: the server cannot honour from=.
	if err := os.WriteFile(bobFile, []byte("# bob's keys\nfrom=\"10.0.0.1\" "+bob.Pub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
worker("w1", "pw")
builder("proj", workers = ["w1"], steps = [shell("true")])
user("alice", keys = [%q], roles = ["viewer"])
user("bob", authorized_keys = %q, roles = ["developer"])
`, alice.Pub, bobFile)
	f := newFake(t, src)
	addr, logs := startServer(t, f, Options{})
	c := NewTestClient(t, addr)

	out, errOut, code := c.Run("alice", alice, "", "whoami")
	if code != 0 || !strings.Contains(out, "user: alice\nroles: viewer\npermissions: view\n") {
		t.Fatalf("alice whoami: %d %q %q", code, out, errOut)
	}
	for _, tt := range []struct{ user, key, reason string }{
		{"alice", "mallory", "the key is not one of the user's keys"},
		{"mallory", "mallory", "no such user in the configuration"},
		{"bob", "bob", "the key is not one of the user's keys"},
	} {
		key := map[string]TestKey{"mallory": mallory, "bob": bob}[tt.key]
		_, errOut, code := c.Run(tt.user, key, "", "whoami")
		if code != 255 || !strings.Contains(errOut, "Permission denied (publickey)") {
			t.Errorf("%s with %s's key: exit %d, stderr %q; want refused", tt.user, tt.key, code, errOut)
		}
		logs.Wait(t, `msg="ssh: failed login" user=`+tt.user, `reason="`+tt.reason)
	}
	logs.Wait(t, "key options (from=") // the ignored line

	// bob's file is read at each login: adding his key needs no reconfig.
	if err := os.WriteFile(bobFile, []byte(bob.Pub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := c.Run("bob", bob, "", "whoami"); code != 0 || !strings.Contains(out, "user: bob") {
		t.Errorf("bob after his file changed: %d %q %q", code, out, errOut)
	}

	// A new configuration applies at the next login.
	f.setConfig(loadConfig(t, t.TempDir(), src+fmt.Sprintf("user(%q, keys = [%q], roles = [\"admin\"])\n", "carl", carl.Pub)))
	if out, errOut, code := c.Run("carl", carl, "", "whoami"); code != 0 || !strings.Contains(out, "roles: admin") {
		t.Errorf("carl after the reconfig: %d %q %q", code, out, errOut)
	}
}

// TestLoginRateLimit: after LoginBurst failed logins an IP is refused at
// once, even with a good key, until a token comes back; other IPs are not
// affected.
func TestLoginRateLimit(t *testing.T) {
	dir := t.TempDir()
	alice, mallory := NewTestKey(t, dir, "alice"), NewTestKey(t, dir, "mallory")
	f := newFake(t, fmt.Sprintf(`
worker("w1", "pw")
builder("proj", workers = ["w1"], steps = [shell("true")])
user("alice", keys = [%q], roles = ["viewer"])
`, alice.Pub))
	clk := clock.NewFake(time.Unix(1e9, 0))
	addr, logs := startServer(t, f, Options{Clock: clk, LoginBurst: 2, LoginEvery: time.Minute})
	c := NewTestClient(t, addr)

	for i := range 2 {
		if _, errOut, code := c.Run("alice", mallory, "", "whoami"); code != 255 || !strings.Contains(errOut, "Permission denied") {
			t.Fatalf("failure %d: %d %q", i, code, errOut)
		}
	}
	logs.Wait(t, "attempts_left=0") // counted after the client has gone
	_, errOut, code := c.Run("alice", alice, "", "whoami")
	if code != 255 || strings.Contains(errOut, "Permission denied") {
		t.Fatalf("third attempt with the good key: %d %q; want the connection closed before login", code, errOut)
	}
	logs.Wait(t, "too many failed logins")

	// Another address of this machine is another IP (all of 127/8 is
	// loopback on Linux).
	if runtime.GOOS == "linux" {
		other := c.Command("alice", alice, "whoami")
		other.Args = append(other.Args[:1], append([]string{"-o", "BindAddress=127.0.0.2"}, other.Args[1:]...)...)
		if out, err := other.CombinedOutput(); err != nil || !strings.Contains(string(out), "user: alice") {
			t.Errorf("from 127.0.0.2: %v: %s", err, out)
		}
	}

	clk.Advance(time.Minute)
	if out, errOut, code := c.Run("alice", alice, "", "whoami"); code != 0 || !strings.Contains(out, "user: alice") {
		t.Errorf("a minute later: %d %q %q", code, out, errOut)
	}
}

// TestHandshakeTimeout: a connection that does not log in is closed.
func TestHandshakeTimeout(t *testing.T) {
	f := newFake(t, authzConfig)
	clk := clock.NewFake(time.Unix(1e9, 0))
	addr, _ := startServer(t, f, Options{Clock: clk, HandshakeTimeout: 30 * time.Second})
	armed := clk.Added()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	<-armed
	clk.Advance(30 * time.Second)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.Copy(io.Discard, conn) // the banner, then EOF
	if err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
}
