//go:build linux

package worker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// processStartTime returns the start time of process pid in clock ticks
// since boot (field 22 of /proc/PID/stat): with the pid, it identifies a
// process for good, since a reused pid has a later start time.
func processStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from after
	// its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, errors.New("short stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// killOrphanGroup kills process group pgid if it is the one recorded with
// its leader's start time. If the leader still lives, its start time must
// match. If the leader is gone but the group still has members, the group
// is the recorded one: Linux does not hand out a pid that is still in use
// as a process group id. Otherwise it is left alone, and why says why
// ("" when the group simply no longer exists).
func killOrphanGroup(pgid int, start uint64) (killed bool, why string) {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false, "" // nothing left
	}
	if st, err := processStartTime(pgid); err == nil {
		if start == 0 || st != start {
			return false, "its number now belongs to another process"
		}
		if g, err := syscall.Getpgid(pgid); err != nil || g != pgid {
			return false, "its leader is no longer a group leader"
		}
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false, "kill failed: " + err.Error()
	}
	return true, ""
}
