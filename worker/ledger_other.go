//go:build !linux

package worker

import "errors"

func processStartTime(int) (uint64, error) { return 0, errors.New("unsupported") }

// killOrphanGroup cannot prove a group is the recorded one without /proc,
// so it kills nothing there.
func killOrphanGroup(int, uint64) (bool, string) {
	return false, "cannot verify process identity on this system"
}
