//go:build !linux

package latent

import (
	"os/exec"
	"strconv"
	"strings"
)

// cmdline returns process pid's command line, as ps shows it.
func cmdline(pid int) (string, error) {
	out, err := exec.Command("ps", "-o", "command=", "-p", strconv.Itoa(pid)).Output()
	return strings.TrimSpace(string(out)), err
}

// killUnder would kill what a killed worker left running in dir; without
// /proc there is no cheap way to find it, so it does nothing.
func killUnder(dir string) {}

// zombie cannot tell without /proc; a zombie counts as running.
func zombie(pid int) bool { return false }
