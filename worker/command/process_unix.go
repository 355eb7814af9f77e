//go:build unix

package command

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// On Unix every command runs in its own process group (as Buildbot's
// ProcGroupProcess does), and signals go to the whole group, so that a
// shell's children and grandchildren are stopped with it.

// shellArgv returns the argv that runs command with the system shell.
func shellArgv(command string, _ map[string]string) []string {
	return []string{"/bin/sh", "-c", command}
}

// prepareCmd sets the platform attributes of a command about to start.
func prepareCmd(cmd *exec.Cmd, _ bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// procGroup is a started command's process group.
type procGroup struct {
	pgid int
}

// startGroup starts cmd (prepared by prepareCmd) and returns its group.
func startGroup(cmd *exec.Cmd) (*procGroup, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// With Setpgid and Pgid 0 the child's group id is its pid.
	return &procGroup{pgid: cmd.Process.Pid}, nil
}

// signal sends sig to every process of the group. A group that has no
// processes left is not an error.
func (g *procGroup) signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("signal %v is not a unix signal", sig)
	}
	// The group id stays reserved while any member lives, even after the
	// leader was reaped, so this cannot hit an unrelated process.
	if err := syscall.Kill(-g.pgid, s); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d with %v: %w", g.pgid, s, err)
	}
	return nil
}

// canStop: process groups can be stopped and continued here.
const canStop = true

// stop stops every process of the group (SIGSTOP cannot be caught).
func (g *procGroup) stop() error { return g.signal(syscall.SIGSTOP) }

// cont continues the group's processes.
func (g *procGroup) cont() error { return g.signal(syscall.SIGCONT) }

// release frees what the group holds once the command is done.
func (g *procGroup) release() {}

// id is the process group id, for the ledger.
func (g *procGroup) id() int { return g.pgid }

var sigKill os.Signal = syscall.SIGKILL
var sigTerm os.Signal = syscall.SIGTERM

// signalNames are the names interruptSignal may use (Python's signal
// module names without "SIG").
var signalNames = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"ILL": syscall.SIGILL, "TRAP": syscall.SIGTRAP, "ABRT": syscall.SIGABRT,
	"BUS": syscall.SIGBUS, "FPE": syscall.SIGFPE, "KILL": syscall.SIGKILL,
	"USR1": syscall.SIGUSR1, "SEGV": syscall.SIGSEGV, "USR2": syscall.SIGUSR2,
	"PIPE": syscall.SIGPIPE, "ALRM": syscall.SIGALRM, "TERM": syscall.SIGTERM,
}

// parseSignal resolves an interruptSignal name such as "TERM" or "SIGINT".
func parseSignal(name string) (os.Signal, error) {
	if s, ok := signalNames[strings.TrimPrefix(strings.ToUpper(name), "SIG")]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("unknown signal %q", name)
}

// signalNumber is sig's number, for "process killed by signal N".
func signalNumber(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return int(s)
	}
	return -1
}

// exitSignal reports the signal that ended the process, if one did.
func exitSignal(ps *os.ProcessState) (int, bool) {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return int(ws.Signal()), true
	}
	return 0, false
}

// lookPathIn finds file the way execvp does with the child's PATH (not the
// worker's, which exec.LookPath would use). Empty PATH entries mean the
// working directory dir.
func lookPathIn(file, pathEnv, dir string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil // relative names are resolved against cmd.Dir
	}
	if pathEnv == "" {
		pathEnv = "/bin:/usr/bin" // execvp's default
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" || !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: %w in PATH %s", file, exec.ErrNotFound, pathEnv)
}

// fileOwner returns fi's owner, for cpdir's ownership preservation.
func fileOwner(fi os.FileInfo) (uid, gid int, ok bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid), true
	}
	return 0, 0, false
}
