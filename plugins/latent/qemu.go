// Package latent holds the drivers that start and stop latent workers'
// instances: local qemu VMs and cloud instances (ec2, openstack). Each
// implements latent.Driver, latent.Checker and latent.Lister of package
// master/latent.
package latent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/latent"
)

// QEMU starts each instance as a qemu VM that boots Kernel and Initrd
// with a fresh copy-on-write overlay of Image as its disk. The overlay
// lives in the instance's run directory, RunDir/NAME, which Stop deletes:
// every instance starts from the same clean image, which qemu only reads.
//
// The guest learns the master's address, its worker name and its
// one-time password from the kernel command line:
// starforge.master=HOST:PORT starforge.name=NAME starforge.password=PASS.
// It is on qemu's user-mode network, where the host's loopback is
// 10.0.2.2; a MasterAddr on the loopback is given to the guest as
// 10.0.2.2:PORT. examples/latent-qemu builds a kernel, initramfs and
// image that follow this contract.
//
// A QEMU's fields must not change once it is in use; its methods are safe
// for concurrent use.
type QEMU struct {
	Kernel string // kernel image for -kernel (an uncompressed ELF boots fastest)
	Initrd string // initramfs for -initrd; may be empty
	Image  string // base disk image, qcow2; never written
	Memory string // guest memory as for -m ("512M"); default 512M
	CPUs   int    // virtual CPUs; default 1
	// Accel is "kvm", "tcg" or "auto" (the default): KVM only where it
	// really works, /dev/kvm read-write and vmx or svm in /proc/cpuinfo;
	// with a /dev/kvm but no such flag, -accel kvm hangs.
	Accel string
	// RunDir holds one directory per instance, named by the instance;
	// List reads it, so it must be used by this driver only.
	RunDir string
	Append string // more kernel command line, appended
	// QEMU and QEMUImg are the programs to run; default
	// qemu-system-x86_64 and qemu-img, looked up in $PATH.
	QEMU, QEMUImg string

	mu  sync.Mutex
	vms map[string]*vm // started by this driver value, by name
}

// NewQEMU returns the driver a qemu_driver(...) declares; relative paths
// in it are resolved against basedir, the master's base directory.
func NewQEMU(c *config.QEMUDriver, basedir string) *QEMU {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(basedir, p)
	}
	return &QEMU{
		Kernel: abs(c.Kernel), Initrd: abs(c.Initrd), Image: abs(c.Image),
		Memory: c.Memory, CPUs: c.CPUs, Accel: c.Accel, RunDir: abs(c.RunDir), Append: c.Append,
	}
}

// vm is a qemu process this driver value started.
type vm struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when qemu has exited
	err  error         // qemu's exit status, set before done is closed
}

// Files inside an instance's run directory.
const (
	qemuOverlay = "overlay.qcow2"
	qemuQMP     = "qmp.sock"
	qemuConsole = "console.log"
	qemuLog     = "qemu.log"
	qemuPID     = "pid"
)

// Start creates the instance's run directory and overlay and launches
// qemu; it returns once qemu is up (its QMP socket answers), not once the
// guest has booted. On error nothing is left running or on disk.
func (q *QEMU) Start(ctx context.Context, inst latent.Instance) (err error) {
	if err := checkInstanceName(inst.Name); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	for _, kv := range [][2]string{{"worker name", inst.WorkerName}, {"password", inst.Password}} {
		if kv[1] == "" || strings.ContainsAny(kv[1], " \t\n\"'\\") {
			return fmt.Errorf("qemu: instance %s: %s %q cannot go on a kernel command line (empty, or has a space, quote or backslash)", inst.Name, kv[0], kv[1])
		}
	}
	master, err := guestAddr(inst.MasterAddr)
	if err != nil {
		return fmt.Errorf("qemu: instance %s: %w", inst.Name, err)
	}
	image, err := filepath.Abs(q.Image)
	if err != nil {
		return fmt.Errorf("qemu: image: %w", err)
	}
	if _, err := os.Stat(image); err != nil {
		return fmt.Errorf("qemu: base image: %w", err)
	}
	accel, err := q.accel()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(q.RunDir, 0o755); err != nil {
		return fmt.Errorf("qemu: run dir: %w", err)
	}
	dir := filepath.Join(q.RunDir, inst.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("qemu: instance %s: %w", inst.Name, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	img := exec.CommandContext(ctx, or(q.QEMUImg, "qemu-img"), "create", "-q", "-f", "qcow2", "-b", image, "-F", "qcow2", filepath.Join(dir, qemuOverlay))
	if out, err := img.CombinedOutput(); err != nil {
		return fmt.Errorf("qemu: instance %s: qemu-img create: %v: %s", inst.Name, err, bytes.TrimSpace(out))
	}
	cmdline := fmt.Sprintf("console=ttyS0 quiet panic=-1 starforge.master=%s starforge.name=%s starforge.password=%s", master, inst.WorkerName, inst.Password)
	if q.Append != "" {
		cmdline += " " + q.Append
	}
	args := []string{
		"-name", inst.Name,
		"-accel", accel,
		"-m", or(q.Memory, "512M"),
		"-smp", strconv.Itoa(max(q.CPUs, 1)),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "file:" + filepath.Join(dir, qemuConsole),
		"-kernel", q.Kernel,
		"-append", cmdline,
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
		"-drive", "file=" + filepath.Join(dir, qemuOverlay) + ",if=virtio,format=qcow2,cache=unsafe",
		"-qmp", "unix:" + filepath.Join(dir, qemuQMP) + ",server=on,wait=off",
	}
	if q.Initrd != "" {
		args = append(args, "-initrd", q.Initrd)
	}
	logf, err := os.Create(filepath.Join(dir, qemuLog))
	if err != nil {
		return fmt.Errorf("qemu: instance %s: %w", inst.Name, err)
	}
	defer logf.Close()
	// Not CommandContext: the VM outlives this call. Its own process
	// group keeps a ^C meant for the master away from it.
	cmd := exec.Command(or(q.QEMU, "qemu-system-x86_64"), args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu: instance %s: %w", inst.Name, err)
	}
	v := &vm{cmd: cmd, done: make(chan struct{})}
	go func() {
		v.err = cmd.Wait()
		close(v.done)
	}()
	defer func() {
		if err != nil {
			_ = cmd.Process.Kill()
			<-v.done
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, qemuPID), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("qemu: instance %s: %w", inst.Name, err)
	}
	if err := awaitQMP(ctx, filepath.Join(dir, qemuQMP), v.done); err != nil {
		return fmt.Errorf("qemu: instance %s: %w%s", inst.Name, err, logTail(dir, qemuLog))
	}
	q.mu.Lock()
	if q.vms == nil {
		q.vms = make(map[string]*vm)
	}
	q.vms[inst.Name] = v
	q.mu.Unlock()
	return nil
}

// Stop quits the instance's VM through QMP (killing it if it does not
// quit in time) and deletes its run directory, overlay included. It also
// stops instances a previous master process started, found by their run
// directory and pid file.
func (q *QEMU) Stop(ctx context.Context, name string) error {
	if err := checkInstanceName(name); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	dir := filepath.Join(q.RunDir, name)
	q.mu.Lock()
	v := q.vms[name]
	delete(q.vms, name)
	q.mu.Unlock()
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) && v == nil {
		return nil
	}
	pid, alive := 0, false
	if v != nil {
		select {
		case <-v.done:
		default:
			pid, alive = v.cmd.Process.Pid, true
		}
	} else {
		pid, alive = q.leftoverPID(dir)
	}
	if alive {
		// A quit that fails (socket gone, VM wedged) is not an error yet:
		// the kill below still stops it.
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		qerr := qmpQuit(qctx, filepath.Join(dir, qemuQMP))
		cancel()
		if err := awaitExit(ctx, v, pid, qerr == nil); err != nil {
			return fmt.Errorf("qemu: stop %s: %w", name, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("qemu: stop %s: %w", name, err)
	}
	return nil
}

// awaitExit waits for the VM to exit after a quit: up to 10 s if the quit
// was accepted, then it kills it. v is nil for a VM another process
// started, whose exit is polled by pid.
func awaitExit(ctx context.Context, v *vm, pid int, quitOK bool) error {
	grace := 10 * time.Second
	if !quitOK {
		grace = 0
	}
	exited := func(d time.Duration) bool {
		if v != nil {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-v.done:
				return true
			case <-t.C:
				return false
			case <-ctx.Done():
				return false
			}
		}
		// Not our child: poll, the only way to watch another's process.
		deadline := time.Now().Add(d)
		for {
			if syscall.Kill(pid, 0) != nil {
				return true
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return false
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if exited(grace) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill qemu (pid %d): %w", pid, err)
	}
	if !exited(10 * time.Second) {
		return fmt.Errorf("qemu (pid %d) still runs after SIGKILL", pid)
	}
	return nil
}

// leftoverPID returns the pid in dir's pid file if that process is still
// the qemu of dir: its command line names dir's overlay, so a pid reused
// by another program is never signalled.
func (q *QEMU) leftoverPID(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, qemuPID))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cl, []byte(filepath.Join(dir, qemuOverlay))) {
		return 0, false
	}
	return pid, true
}

// Check returns nil while the instance's qemu runs, and an error wrapping
// latent.ErrGone, with the end of its console, once it does not.
func (q *QEMU) Check(ctx context.Context, name string) error {
	if err := checkInstanceName(name); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	dir := filepath.Join(q.RunDir, name)
	q.mu.Lock()
	v := q.vms[name]
	q.mu.Unlock()
	if v != nil {
		select {
		case <-v.done:
			return fmt.Errorf("qemu: instance %s: %w: qemu exited (%v)%s", name, latent.ErrGone, v.err, logTail(dir, qemuConsole))
		default:
			return nil
		}
	}
	if _, ok := q.leftoverPID(dir); ok {
		return nil
	}
	return fmt.Errorf("qemu: instance %s: %w: no qemu runs for it", name, latent.ErrGone)
}

// List returns the names of the run directories under RunDir that start
// with prefix: the instances started and not yet stopped, by this master
// process or an earlier one.
func (q *QEMU) List(ctx context.Context, prefix string) ([]string, error) {
	ents, err := os.ReadDir(q.RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("qemu: list: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// accel resolves Accel.
func (q *QEMU) accel() (string, error) {
	switch q.Accel {
	case "", "auto":
		if KVMWorks() {
			return "kvm", nil
		}
		return "tcg", nil
	case "kvm", "tcg":
		return q.Accel, nil
	}
	return "", fmt.Errorf("qemu: accel %q: want \"auto\", \"kvm\" or \"tcg\"", q.Accel)
}

// KVMWorks reports whether KVM can run VMs here: /dev/kvm opens
// read-write and the CPU flags show vmx or svm. A /dev/kvm alone is not
// enough: without the flags qemu -accel kvm hangs silently.
func KVMWorks() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
		return false
	}
	return false
}

// guestAddr is the master's address as a guest on user-mode networking
// dials it: the host's loopback (and an unspecified address, which
// listens on it too) is 10.0.2.2 there.
func guestAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("master address %q: %w", addr, err)
	}
	if host == "" || host == "localhost" {
		return net.JoinHostPort("10.0.2.2", port), nil
	}
	if ip := net.ParseIP(host); ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		return net.JoinHostPort("10.0.2.2", port), nil
	}
	return addr, nil
}

// checkInstanceName refuses names that cannot be a directory name.
func checkInstanceName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("bad instance name %q", name)
	}
	return nil
}

// awaitQMP waits until the QMP socket at path accepts a connection, qemu
// exits (done), or ctx ends. qemu creates the socket before the guest
// starts, so this takes milliseconds.
func awaitQMP(ctx context.Context, path string, done <-chan struct{}) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return errors.New("qemu exited at once")
		case <-ctx.Done():
			return fmt.Errorf("waiting for qemu's QMP socket: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// qmpQuit asks the qemu at the QMP socket path to quit, and waits for its
// answer: a socket closed before the answer may lose the command.
func qmpQuit(ctx context.Context, path string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("qmp: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	for _, cmd := range []string{"qmp_capabilities", "quit"} {
		if _, err := fmt.Fprintf(c, `{"execute":%q}`+"\n", cmd); err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		for {
			var m struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			if err := dec.Decode(&m); err != nil {
				if cmd == "quit" {
					return nil // qemu closed the socket on its way out
				}
				return fmt.Errorf("qmp %s: %w", cmd, err)
			}
			if m.Error != nil {
				return fmt.Errorf("qmp %s: %s", cmd, m.Error.Desc)
			}
			if m.Return != nil {
				break
			}
			// An event (SHUTDOWN may come before quit's answer): read on.
		}
	}
	return nil
}

// logTail returns the end of the file name in dir, for error messages.
func logTail(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return fmt.Sprintf("\n%s:\n%s", name, bytes.TrimSpace(b))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

var (
	_ latent.Driver  = (*QEMU)(nil)
	_ latent.Checker = (*QEMU)(nil)
	_ latent.Lister  = (*QEMU)(nil)
)
