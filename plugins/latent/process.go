package latent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/starforge/starforge/master/latent"
)

func init() { Register("process", newProcessDriver) }

// WorkerBinary is the file name of the worker program.
const WorkerBinary = "starforge-worker"

// processStopGrace is how long a stopped worker has to exit after SIGTERM
// before it is killed.
const processStopGrace = 10 * time.Second

// Process runs each instance as a starforge-worker child process of the
// master, in a fresh directory of its own under Dir that Stop removes.
// The directory holds the process id, so that instances a crashed master
// left running are found (List) and stopped by the next one. It
// implements latent.Driver, Checker, Lister and Watcher; its methods are
// safe for concurrent use.
type Process struct {
	worker string // the worker binary
	dir    string
	log    *slog.Logger

	mu    sync.Mutex
	procs map[string]*child // started by this driver and not stopped yet
}

type child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once Wait returned
	err    error         // Wait's, once exited
}

func newProcessDriver(env Env) (latent.Driver, error) {
	path, err := findWorker(env.Worker.Driver.WorkerPath, env.ConfigDir)
	if err != nil {
		return nil, err
	}
	return NewProcess(path, filepath.Join(env.Basedir, "latent", "process"), env.Logger), nil
}

// findWorker resolves process_driver(worker_path=): a path (relative to
// configDir), or by default the starforge-worker next to the running
// binary, else the one on PATH.
func findWorker(path, configDir string) (string, error) {
	if path != "" {
		if !filepath.IsAbs(path) && strings.ContainsRune(path, filepath.Separator) {
			path = filepath.Join(configDir, path)
		}
		p, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("worker_path: %w", err)
		}
		return filepath.Abs(p)
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), WorkerBinary)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(WorkerBinary)
	if err != nil {
		return "", fmt.Errorf("no %s next to the master's binary nor on PATH; install it or give process_driver(worker_path = ...)", WorkerBinary)
	}
	return filepath.Abs(p)
}

// NewProcess returns a driver that runs the worker binary worker, keeping
// each instance's directory under dir.
func NewProcess(worker, dir string, log *slog.Logger) *Process {
	if log == nil {
		log = slog.Default()
	}
	return &Process{worker: worker, dir: dir, log: log, procs: map[string]*child{}}
}

func (p *Process) instanceDir(name string) (string, error) {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("bad instance name %q", name)
	}
	return filepath.Join(p.dir, name), nil
}

// Start implements latent.Driver: it starts the worker process and returns.
// The process's output goes to worker.log in its directory.
func (p *Process) Start(ctx context.Context, inst latent.Instance) error {
	dir, err := p.instanceDir(inst.Name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", p.dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create the instance's directory: %w", err)
	}
	started := false
	defer func() {
		if !started {
			os.RemoveAll(dir)
		}
	}()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(inst.Password+"\n"), 0o600); err != nil {
		return fmt.Errorf("write the instance's password: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "worker.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create the worker's log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(p.worker,
		"--master", inst.MasterAddr,
		"--name", inst.WorkerName,
		"--password-file", pwFile,
		"--basedir", filepath.Join(dir, "basedir"))
	cmd.Dir = dir
	cmd.Env = append(workerEnv(os.Environ()), "STARFORGE_INSTANCE="+inst.Name)
	cmd.Stdout, cmd.Stderr = logf, logf
	newGroup(cmd)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", p.worker, err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	if err := writeFileAtomic(filepath.Join(dir, "pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n")); err != nil {
		killGroup(cmd.Process.Pid, syscall.SIGKILL)
		<-c.exited
		return fmt.Errorf("record the worker's process id: %w", err)
	}
	p.mu.Lock()
	p.procs[inst.Name] = c
	p.mu.Unlock()
	started = true
	p.log.Info("latent process started", "instance", inst.Name, "pid", cmd.Process.Pid, "dir", dir)
	return nil
}

// Stop implements latent.Driver: SIGTERM to the worker's process group,
// SIGKILL after a grace period, then what still runs in its directory is
// killed and the directory removed. It works for processes a previous run
// of the master started too.
func (p *Process) Stop(ctx context.Context, name string) error {
	dir, err := p.instanceDir(name)
	if err != nil {
		return err
	}
	p.mu.Lock()
	c := p.procs[name]
	p.mu.Unlock()
	if c != nil {
		select {
		case <-c.exited:
			p.log.Warn("latent process had exited by itself", "instance", name, "status", c.err, "last_output", tail(filepath.Join(dir, "worker.log"), 2048))
		default:
			stopChild(ctx, c)
		}
	} else if pid, ok := p.leftoverPid(dir); ok {
		stopLeftover(ctx, pid)
	}
	// Build commands run in process groups of their own: whatever of
	// them survived the worker still works in the directory.
	killUnder(dir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove the instance's directory: %w", err)
	}
	p.mu.Lock()
	delete(p.procs, name)
	p.mu.Unlock()
	return nil
}

// stopChild sends SIGTERM to c's process group, and SIGKILL if it has not
// exited after processStopGrace or when ctx ends.
func stopChild(ctx context.Context, c *child) {
	pid := c.cmd.Process.Pid
	killGroup(pid, syscall.SIGTERM)
	t := time.NewTimer(processStopGrace)
	defer t.Stop()
	select {
	case <-c.exited:
		return
	case <-t.C:
	case <-ctx.Done():
	}
	killGroup(pid, syscall.SIGKILL)
	<-c.exited
}

// stopLeftover is stopChild for a process that is not the master's child,
// whose exit can only be polled for.
func stopLeftover(ctx context.Context, pid int) {
	killGroup(pid, syscall.SIGTERM)
	deadline := time.Now().Add(processStopGrace)
	for alive(pid) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	killGroup(pid, syscall.SIGKILL)
	for i := 0; alive(pid) && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

// leftoverPid returns the recorded process id of the instance in dir if
// that process still runs the instance's worker (the id may have been
// reused by another program since).
func (p *Process) leftoverPid(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || !alive(pid) {
		return 0, false
	}
	cl, err := cmdline(pid)
	if err != nil || !strings.Contains(cl, filepath.Join(dir, "basedir")) {
		return 0, false
	}
	return pid, true
}

// Check implements latent.Checker.
func (p *Process) Check(ctx context.Context, name string) error {
	dir, err := p.instanceDir(name)
	if err != nil {
		return err
	}
	p.mu.Lock()
	c := p.procs[name]
	p.mu.Unlock()
	if c != nil {
		select {
		case <-c.exited:
			return fmt.Errorf("worker process exited (%v): %w", c.err, latent.ErrGone)
		default:
			return nil
		}
	}
	if _, ok := p.leftoverPid(dir); ok {
		return nil
	}
	return fmt.Errorf("no worker process for %s: %w", name, latent.ErrGone)
}

// Exited implements latent.Watcher.
func (p *Process) Exited(name string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.procs[name]; c != nil {
		return c.exited
	}
	return nil
}

// List implements latent.Lister: the instance directories under the
// driver's directory whose names start with prefix.
func (p *Process) List(ctx context.Context, prefix string) ([]string, error) {
	ents, err := os.ReadDir(p.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p.dir, err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// workerEnv drops the worker settings of the master's own environment,
// which would otherwise stand in for flags the driver does not pass.
func workerEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if strings.HasPrefix(kv, "STARFORGE_WORKER_") || strings.HasPrefix(kv, "STARFORGE_MASTER=") || strings.HasPrefix(kv, "STARFORGE_INSTANCE=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// tail returns up to the last n bytes of the file at path, for logs.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-n, 0)
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}
