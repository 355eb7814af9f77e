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

// alive reports whether process pid exists (a zombie counts until reaped).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
