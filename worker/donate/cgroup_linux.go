//go:build linux

package donate

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// cgroupRoot is where the cgroup v2 hierarchy is mounted.
var cgroupRoot = "/sys/fs/cgroup"

// buildCgroup is a cgroup v2 with a memory cap that every command starts
// in (clone3's CLONE_INTO_CGROUP, so not even a fork right after the start
// escapes it).
//
// It needs a cgroup the worker may manage: one delegated to it, as
// systemd does for `systemd-run --user -p Delegate=yes starforge-worker
// ...` or a unit with Delegate=yes. The worker moves itself into a leaf
// "starforge-worker" of that cgroup (a cgroup that has processes cannot
// pass controllers down), enables the memory controller there, and
// creates "starforge-builds" beside it.
type buildCgroup struct {
	dir string // the builds' cgroup
	fd  int
}

func newBuildCgroup(limit int64) (*buildCgroup, error) {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err != nil {
		return nil, errors.New("cgroup v2 is not mounted at " + cgroupRoot)
	}
	rel, err := ownCgroup("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	own := filepath.Join(cgroupRoot, rel)
	moved := false
	if filepath.Base(own) == "starforge-worker" {
		// A previous run moved the worker here and it was restarted in
		// place (systemd keeps the cgroup of a restarted unit).
		own = filepath.Dir(own)
	}
	ctrls, _ := os.ReadFile(filepath.Join(own, "cgroup.controllers"))
	if !slices.Contains(strings.Fields(string(ctrls)), "memory") {
		return nil, fmt.Errorf("the memory controller is not delegated to cgroup %s (run the worker with systemd-run --user -p Delegate=yes, or set MemoryMax= in its unit)", rel)
	}
	leaf := filepath.Join(own, "starforge-worker")
	builds := filepath.Join(own, "starforge-builds")
	pid := []byte(strconv.Itoa(os.Getpid()))
	if filepath.Join(cgroupRoot, rel) != leaf {
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("cgroup %s is not the worker's to manage: %w", rel, err)
		}
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), pid, 0); err != nil {
			os.Remove(leaf)
			return nil, fmt.Errorf("cannot move the worker into %s: %w", leaf, err)
		}
		moved = true
	}
	undo := func() {
		if moved {
			_ = os.WriteFile(filepath.Join(own, "cgroup.procs"), pid, 0)
			os.Remove(leaf)
		}
	}
	if err := os.WriteFile(filepath.Join(own, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
		undo()
		return nil, fmt.Errorf("cannot enable the memory controller in %s (other processes share the worker's cgroup?): %w", own, err)
	}
	if err := os.Mkdir(builds, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		undo()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(builds, "memory.max"), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
		undo()
		return nil, fmt.Errorf("cannot set memory.max: %w", err)
	}
	fd, err := syscall.Open(builds, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		undo()
		return nil, err
	}
	cg := &buildCgroup{dir: builds, fd: fd}
	// Old kernels (before 5.7) cannot start a process in a cgroup; find
	// out now rather than fail every command.
	probe := exec.Command("/bin/true")
	probe.SysProcAttr = &syscall.SysProcAttr{}
	cg.procAttr(probe.SysProcAttr)
	if err := probe.Run(); err != nil {
		cg.close()
		undo()
		return nil, fmt.Errorf("cannot start processes in %s: %w", builds, err)
	}
	return cg, nil
}

func (cg *buildCgroup) procAttr(a *syscall.SysProcAttr) {
	a.UseCgroupFD = true
	a.CgroupFD = cg.fd
}

func (cg *buildCgroup) close() { syscall.Close(cg.fd) }

// ownCgroup returns the process's cgroup v2 path from /proc/self/cgroup
// (the "0::" line).
func ownCgroup(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return rest, nil
		}
	}
	return "", errors.New("the worker is not in a cgroup v2")
}
