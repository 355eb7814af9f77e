//go:build unix

package latent

import (
	"os/exec"
	"syscall"
)

// newGroup makes cmd the leader of a process group of its own, so that it
// can be signalled with its children and outlives nothing of the master's.
func newGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup signals the process group led by pid.
func killGroup(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
}

// alive reports whether process pid runs. A zombie does not: a leftover
// whose parent died is reaped by whoever adopted it, maybe never.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return (err == nil || err == syscall.EPERM) && !zombie(pid)
}
