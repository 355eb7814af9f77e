package worker

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ledgerFile, in the worker's basedir, lists the process groups of the
// commands running now. A worker killed without a chance to clean up (kill
// -9, a crash, a power cut of the container) leaves their processes
// behind; the next start reads the file and kills those still running.
const ledgerFile = ".starforge-processes"

// ledger implements command.ProcessLedger. It is safe for concurrent use.
type ledger struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	entries map[int]uint64 // pgid → its leader's start time (0 if unknown)
}

func newLedger(basedir string, log *slog.Logger) *ledger {
	return &ledger{path: filepath.Join(basedir, ledgerFile), log: log, entries: map[int]uint64{}}
}

// Started records a command's process group.
func (l *ledger) Started(pgid int) {
	st, _ := processStartTime(pgid)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries[pgid] = st
	l.save()
}

// Ended forgets a process group whose command has ended (and whose group
// the command already killed).
func (l *ledger) Ended(pgid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, pgid)
	l.save()
}

// save writes the ledger; called with mu held. The file is replaced
// atomically so a crash never leaves half a list.
func (l *ledger) save() {
	var b bytes.Buffer
	pgids := make([]int, 0, len(l.entries))
	for p := range l.entries {
		pgids = append(pgids, p)
	}
	sort.Ints(pgids)
	for _, p := range pgids {
		fmt.Fprintf(&b, "%d %d\n", p, l.entries[p])
	}
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		l.log.Warn("cannot record running process groups", "err", err)
		return
	}
	if err := os.Rename(tmp, l.path); err != nil {
		l.log.Warn("cannot record running process groups", "err", err)
	}
}

// cleanup kills the process groups a previous run of this worker left
// running, then empties the ledger. A group is killed only when it is
// provably the one recorded (see sameGroup), never a stranger that reused
// the number.
func (l *ledger) cleanup() {
	f, err := os.Open(l.path)
	if err != nil {
		return // no file: nothing was running
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		pgid, err1 := strconv.Atoi(fields[0])
		start, err2 := strconv.ParseUint(fields[1], 10, 64)
		if err1 != nil || err2 != nil || pgid <= 1 {
			continue
		}
		switch killed, why := killOrphanGroup(pgid, start); {
		case killed:
			l.log.Warn("killed an orphaned process group left by a previous run of this worker", "pgid", pgid)
		case why != "":
			l.log.Info("left a recorded process group alone", "pgid", pgid, "why", why)
		}
	}
	f.Close()
	l.mu.Lock()
	l.entries = map[int]uint64{}
	l.save()
	l.mu.Unlock()
}
