//go:build !unix && !windows

package command

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Platforms without process groups (Plan 9, WebAssembly): signals reach the
// main process only, and children it started may survive it.

func shellArgv(command string, _ map[string]string) []string {
	return []string{"/bin/rc", "-c", command}
}

func prepareCmd(*exec.Cmd, bool) {}

type procGroup struct{ p *os.Process }

func startGroup(cmd *exec.Cmd) (*procGroup, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &procGroup{p: cmd.Process}, nil
}

func (g *procGroup) signal(sig os.Signal) error {
	if sig == sigKill {
		return g.p.Kill()
	}
	return g.p.Signal(sig)
}

func (g *procGroup) release() {}

var sigKill = os.Kill
var sigTerm = os.Interrupt

func parseSignal(name string) (os.Signal, error) {
	switch strings.TrimPrefix(strings.ToUpper(name), "SIG") {
	case "KILL":
		return sigKill, nil
	case "INT", "TERM", "HUP", "QUIT":
		return sigTerm, nil
	}
	return nil, fmt.Errorf("unknown signal %q", name)
}

func signalNumber(sig os.Signal) int {
	if sig == os.Kill {
		return 9
	}
	return 2
}

func exitSignal(*os.ProcessState) (int, bool) { return 0, false }

func lookPathIn(file, _, _ string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	return exec.LookPath(file)
}

func fileOwner(os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }

// id is 0: the ledger of orphaned process groups is for unix, where a
// killed worker's children outlive it (a Windows job object dies with it).
func (g *procGroup) id() int { return 0 }

// canStop: processes cannot be stopped here.
const canStop = false

func (g *procGroup) stop() error { return errUnsupported }
func (g *procGroup) cont() error { return errUnsupported }
