package latent

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starforge/starforge/master/latent"
)

func TestGuestAddr(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"127.0.0.1:9989", "10.0.2.2:9989", ""},
		{"localhost:9989", "10.0.2.2:9989", ""},
		{"[::1]:9989", "10.0.2.2:9989", ""},
		{"0.0.0.0:9989", "10.0.2.2:9989", ""},
		{":9989", "10.0.2.2:9989", ""},
		{"master.example.org:9989", "master.example.org:9989", ""},
		{"192.0.2.7:1", "192.0.2.7:1", ""},
		{"nonsense", "", "master address \"nonsense\""},
	} {
		got, err := guestAddr(tc.in)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("guestAddr(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestQEMUBadInput: Start refuses what cannot work, before running
// anything; Stop, Check and List of nothing are calm.
func TestQEMUBadInput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	q := &QEMU{Kernel: "k", Image: filepath.Join(dir, "missing.qcow2"), RunDir: filepath.Join(dir, "vms")}
	ok := latent.Instance{Name: "vm-1", WorkerName: "vm", Password: "pw", MasterAddr: "127.0.0.1:1"}
	for _, tc := range []struct {
		mod  func(*latent.Instance, *QEMU)
		want string
	}{
		{func(i *latent.Instance, _ *QEMU) { i.Name = "../x" }, `bad instance name "../x"`},
		{func(i *latent.Instance, _ *QEMU) { i.Password = "a b" }, `password "a b" cannot go on a kernel command line`},
		{func(i *latent.Instance, _ *QEMU) { i.MasterAddr = "nope" }, `master address "nope"`},
		{func(_ *latent.Instance, q *QEMU) {}, "base image"},
		{func(_ *latent.Instance, q *QEMU) { q.Image, q.Accel = "qemu_test.go", "hvf" }, `accel "hvf"`},
	} {
		i, qq := ok, &QEMU{Kernel: q.Kernel, Image: q.Image, RunDir: q.RunDir}
		tc.mod(&i, qq)
		if err := qq.Start(ctx, i); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start = %v, want an error with %q", err, tc.want)
		}
	}
	if err := q.Stop(ctx, "vm-1"); err != nil {
		t.Errorf("Stop of nothing: %v", err)
	}
	if err := q.Check(ctx, "vm-1"); !errors.Is(err, latent.ErrGone) {
		t.Errorf("Check of nothing = %v, want ErrGone", err)
	}
	if names, err := q.List(ctx, ""); err != nil || names != nil {
		t.Errorf("List of nothing = %v, %v", names, err)
	}
}
