package latent_test

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/master"
	"github.com/starforge/starforge/master/event"
	mlatent "github.com/starforge/starforge/master/latent"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
	plugin "github.com/starforge/starforge/plugins/latent"
	"github.com/starforge/starforge/webui"
)

// imageBuilt says whether a test asked for the image.
var imageBuilt bool

// buildImage runs examples/latent-qemu/build-image.sh once per test
// binary and returns its output directory.
var buildImage = sync.OnceValues(func() (string, error) {
	imageBuilt = true
	dir, err := os.MkdirTemp("", "starforge-qemu-image-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("../../examples/latent-qemu/build-image.sh", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", &exec.ExitError{ProcessState: cmd.ProcessState, Stderr: out}
	}
	return dir, nil
})

// TestMain removes the image buildImage made, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	if imageBuilt {
		if dir, err := buildImage(); err == nil {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

// observer hands the test the builds' progress.
type observer struct {
	commands chan time.Time
	finished chan store.Build
}

func (o *observer) BuildStarted(store.Build)                 {}
func (o *observer) StepChanged(int64, store.Step)            {}
func (o *observer) CommandStarted(int64, store.Step, string) { o.commands <- time.Now() }
func (o *observer) BuildFinished(b store.Build)              { o.finished <- b }

// The steps of the build in the VM: the first fails if an earlier build's
// file is there, then writes it; the second checks that it reached the
// disk (the overlay), so its absence next time is the overlay's doing.
const cleanSlateConfig = `
master(http_addr = "127.0.0.1:0", worker_addr = "127.0.0.1:0")
worker("vm", "s3cret-one-time")
builder("inside", ["vm"], [
    shell("if [ -e /data/marker ]; then echo found an earlier build; exit 1; fi; uname -r > /data/marker; sync", name = "write"),
    shell("test -s /data/marker && grep -q ' /data ext4' /proc/mounts", name = "on-disk"),
])
force_scheduler("go", ["inside"])
`

// TestQEMUCleanSlate boots the example image under qemu twice, each time
// runs a build inside the VM, and checks that the file the first build
// wrote on its disk is absent in the second: every instance starts from
// the same clean base image.
func TestQEMUCleanSlate(t *testing.T) {
	qemu := testenv.LookPath(t, "qemu-system-x86_64", "qemu-system-x86")
	qemuImg := testenv.LookPath(t, "qemu-img", "qemu-utils")
	for _, p := range [][2]string{{"busybox", "busybox-static"}, {"cpio", "cpio"}, {"mkfs.ext4", "e2fsprogs"}, {"xz", "xz-utils"}, {"go", "golang"}} {
		testenv.LookPath(t, p[0], p[1])
	}
	if m, _ := filepath.Glob("/boot/vmlinuz-*"); len(m) == 0 {
		testenv.LookPath(t, "no-kernel-in-/boot", "linux-image-amd64")
	}
	img, err := buildImage()
	if err != nil {
		t.Fatalf("build-image.sh: %v\n%s", err, err.(*exec.ExitError).Stderr)
	}
	base := filepath.Join(img, "base.qcow2")
	baseSum := fileSum(t, base)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "master.star"), []byte(cleanSlateConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	obs := &observer{commands: make(chan time.Time, 16), finished: make(chan store.Build, 4)}
	m, err := master.New(master.Options{Basedir: dir, Observer: obs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-m.Ready()
	connected := m.Events().Subscribe(8, event.Filter{"workers", "*", "connected"})
	defer connected.Close()

	d := &plugin.QEMU{
		Kernel: filepath.Join(img, "vmlinux"),
		Initrd: filepath.Join(img, "initrd.gz"),
		Image:  base,
		RunDir: filepath.Join(dir, "vms"),
		QEMU:   qemu, QEMUImg: qemuImg,
	}
	for i, name := range []string{"vm-1", "vm-2"} {
		inst := mlatent.Instance{Name: name, WorkerName: "vm", Password: "s3cret-one-time", MasterAddr: m.WorkerAddr()}
		// The request comes first, as when a build asks for an instance.
		requested := time.Now()
		if _, _, err := m.Force(ctx, webui.ForceRequest{Scheduler: "go", Reason: "clean slate " + name}); err != nil {
			t.Fatal(err)
		}
		launched := time.Now()
		if err := d.Start(ctx, inst); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Stop(context.Background(), name) })
		if err := d.Check(ctx, name); err != nil {
			t.Fatalf("Check after Start: %v", err)
		}
		timeout := time.NewTimer(3 * time.Minute)
		select {
		case <-connected.C():
		case <-timeout.C:
			t.Fatalf("%s: worker did not connect within 3 minutes%s", name, console(dir, name))
		}
		up := time.Now()
		var first time.Time
		select {
		case first = <-obs.commands:
		case <-timeout.C:
			t.Fatalf("%s: no command within 3 minutes%s", name, console(dir, name))
		}
		var b store.Build
		select {
		case b = <-obs.finished:
		case <-timeout.C:
			t.Fatalf("%s: build did not finish within 3 minutes%s", name, console(dir, name))
		}
		timeout.Stop()
		for len(obs.commands) > 0 { // the later steps' commands
			<-obs.commands
		}
		if b.Results != result.Success {
			t.Fatalf("build %d in %s: %v, want success (the file of an earlier build found, or not written)%s", i+1, name, b.Results, console(dir, name))
		}
		names, err := d.List(ctx, "vm-")
		if err != nil || len(names) != 1 || names[0] != name {
			t.Errorf("List(vm-) = %v, %v; want [%s]", names, err, name)
		}
		stopping := time.Now()
		if err := d.Stop(ctx, name); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		t.Logf("%s: launch → worker connected %v, request → first command %v, stop %v",
			name, up.Sub(launched).Round(time.Millisecond), first.Sub(requested).Round(time.Millisecond), stopped.Sub(stopping).Round(time.Millisecond))
		if _, err := os.Stat(filepath.Join(d.RunDir, name)); !os.IsNotExist(err) {
			t.Errorf("run dir of %s still there after Stop (%v)", name, err)
		}
		if err := d.Check(ctx, name); err == nil || !strings.Contains(err.Error(), mlatent.ErrGone.Error()) {
			t.Errorf("Check after Stop = %v, want ErrGone", err)
		}
	}
	if names, err := d.List(ctx, ""); err != nil || len(names) != 0 {
		t.Errorf("List after stopping both = %v, %v; want none", names, err)
	}
	if fileSum(t, base) != baseSum {
		t.Errorf("the base image changed")
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// console is the VM's console log, for failure messages.
func console(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, "vms", name, "console.log"))
	if err != nil {
		return "\n(no console log: " + err.Error() + ")"
	}
	return "\nconsole:\n" + string(b)
}
