package config

import (
	"regexp"

	"go.starlark.net/starlark"
)

// QEMUDriver is the setting of a qemu_driver(...): each instance is a
// qemu VM booting Kernel and Initrd with a throw-away overlay of Image as
// its disk (plugins/latent.QEMU). Relative paths are relative to the
// master's basedir.
type QEMUDriver struct {
	Kernel, Initrd, Image string
	Memory                string // as qemu's -m: "512M"
	CPUs                  int
	Accel                 string // "auto", "kvm" or "tcg"
	RunDir                string // one directory per instance
	Append                string // more kernel command line
}

var qemuDriverParams = []param{
	{name: "kernel", required: true},
	{name: "image", required: true},
	{name: "initrd"},
	{name: "memory"},
	{name: "cpus"},
	{name: "accel"},
	{name: "run_dir"},
	{name: "append"},
}

var qemuMemory = regexp.MustCompile(`^[1-9][0-9]*[KMGT]?$`)

// builtinQEMUDriver implements qemu_driver(kernel=, image=, initrd="",
// memory="512M", cpus=1, accel="auto", run_dir="vms", append="").
func builtinQEMUDriver(c *call) (starlark.Value, error) {
	q := &QEMUDriver{
		Kernel: c.nonEmptyStr("kernel", ""),
		Image:  c.nonEmptyStr("image", ""),
		Initrd: c.str("initrd", ""),
		Memory: c.nonEmptyStr("memory", "512M"),
		CPUs:   c.int("cpus", 1),
		Accel:  c.nonEmptyStr("accel", "auto"),
		RunDir: c.nonEmptyStr("run_dir", "vms"),
		Append: c.str("append", ""),
	}
	if !qemuMemory.MatchString(q.Memory) {
		c.argErrorf("memory", "want a size such as \"512M\" or \"2G\", got %q", q.Memory)
	}
	if q.CPUs < 1 {
		c.argErrorf("cpus", "must be at least 1, got %d", q.CPUs)
	}
	if accels := []string{"auto", "kvm", "tcg"}; q.Accel != "auto" && q.Accel != "kvm" && q.Accel != "tcg" {
		c.argErrorf("accel", "want \"auto\", \"kvm\" or \"tcg\", got %q%s", q.Accel, didYouMean(q.Accel, accels))
	}
	d := &LatentDriver{Kind: "qemu", QEMU: q, Pos: c.pos}
	return driverObject(c, d, "qemu_driver(...)"), nil
}
