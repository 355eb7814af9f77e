package master

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/sshd"
	"github.com/starforge/starforge/master/store"
	"github.com/starforge/starforge/webui"
	gossh "golang.org/x/crypto/ssh"
)

// sshState is the SSH interface of a running master.
type sshState struct {
	mu   sync.Mutex
	addr string // "" when it does not listen
}

// SSHAddr returns the SSH server's address once Run listens, "" if
// master(ssh_addr=...) is not set.
func (m *Master) SSHAddr() string {
	m.ssh.mu.Lock()
	defer m.ssh.mu.Unlock()
	return m.ssh.addr
}

// startOps prepares what Run needs beyond its own listeners: the paused
// workers are told to the dispatcher (before any worker can attach), and
// the SSH server listens if ssh_addr is set. stop stops the SSH server,
// ending its sessions cleanly; it may be called more than once.
func (m *Master) startOps(ctx context.Context, cfg *config.Config) (stop func(), err error) {
	if err := m.restorePauses(ctx); err != nil {
		return nil, err
	}
	if cfg.Master.SSHAddr == "" {
		return func() {}, nil
	}
	srv, err := sshd.New(sshd.Options{
		Backend:     sshBackend{m},
		HostKeyFile: filepath.Join(m.opts.Basedir, sshd.HostKeyFile),
		Logger:      m.log,
	})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", cfg.Master.SSHAddr)
	if err != nil {
		return nil, fmt.Errorf("ssh port: %w", err)
	}
	addr := l.Addr().String()
	m.ssh.mu.Lock()
	m.ssh.addr = addr
	m.ssh.mu.Unlock()
	if err := os.WriteFile(filepath.Join(m.opts.Basedir, "run", "ssh.addr"), []byte(addr+"\n"), 0o644); err != nil {
		m.log.Warn("write run files", "err", err)
	}
	if len(cfg.Users) == 0 {
		m.log.Warn("ssh: no user() is declared: nobody can log in", "ssh_addr", addr)
	}
	m.log.Info("ssh interface listening", "ssh_addr", addr, "host_key", gossh.FingerprintSHA256(srv.HostKey()))
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(l); err != nil {
			m.log.Error("ssh server stopped", "err", err)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				m.log.Warn("ssh: sessions still open at shutdown were closed", "err", err)
			}
			<-served
			m.ssh.mu.Lock()
			m.ssh.addr = ""
			m.ssh.mu.Unlock()
			os.Remove(filepath.Join(m.opts.Basedir, "run", "ssh.addr"))
		})
	}, nil
}

// sshBackend gives the SSH server the master's operations.
type sshBackend struct{ m *Master }

func (b sshBackend) Config() *config.Config               { return b.m.Config() }
func (b sshBackend) Store() *store.Store                  { return b.m.store }
func (b sshBackend) QueueReasons() map[int64]string       { return b.m.QueueReasons() }
func (b sshBackend) Subscribe() (<-chan struct{}, func()) { return b.m.hub.Subscribe() }

func (b sshBackend) Force(ctx context.Context, r sshd.ForceRequest) (store.Buildset, []store.BuildRequest, error) {
	return b.m.Force(ctx, webui.ForceRequest{
		Scheduler: r.Scheduler, Builders: []string{r.Builder}, Reason: r.Reason, Owner: r.Owner, Properties: r.Properties,
	})
}

func (b sshBackend) Try(ctx context.Context, r sshd.TryRequest) (store.Buildset, []store.BuildRequest, error) {
	return b.m.Try(ctx, TryRequest(r))
}

func (b sshBackend) Rebuild(ctx context.Context, id int64, owner string) (store.Buildset, []store.BuildRequest, error) {
	return b.m.Rebuild(ctx, id, owner)
}

func (b sshBackend) CancelRequest(ctx context.Context, id int64, reason string) error {
	return b.m.CancelRequest(ctx, id, reason)
}

func (b sshBackend) StopBuild(ctx context.Context, id int64, reason string) error {
	return b.m.StopBuild(ctx, id, reason)
}

func (b sshBackend) PauseWorker(ctx context.Context, name, reason string) error {
	return b.m.PauseWorker(ctx, name, reason)
}

func (b sshBackend) UnpauseWorker(ctx context.Context, name, reason string) error {
	return b.m.UnpauseWorker(ctx, name, reason)
}

func (b sshBackend) Reconfig(ctx context.Context) (sshd.ReconfigResult, error) {
	r, err := b.m.Reconfig(ctx)
	return sshd.ReconfigResult(r), err
}
