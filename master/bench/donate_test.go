package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master"
	"github.com/starforge/starforge/webui"
)

// donorMaster runs an in-process master with a donated worker "desk" and
// returns it with a freshly built starforge-worker binary.
func donorMaster(b *testing.B, builders string) (*master.Master, string, string) {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "starforge-worker")
	build := exec.Command("go", "build", "-o", bin, "../../worker/cmd/starforge-worker")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build worker: %v\n%s", err, out)
	}
	cfg := `master(http_addr="127.0.0.1:0", worker_addr="127.0.0.1:0")
worker("desk", password="pw", donated=True)
` + builders
	if err := os.WriteFile(filepath.Join(dir, "master.star"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	m, err := master.New(master.Options{Basedir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	<-m.Ready()
	return m, bin, dir
}

// startDonorProcess starts the worker binary with --donate and waits
// until the master has it.
func startDonorProcess(b *testing.B, m *master.Master, bin, basedir string, env []string, extra ...string) (*exec.Cmd, *bytes.Buffer) {
	b.Helper()
	args := append([]string{"--master", m.WorkerAddr(), "--name", "desk", "--password", "pw", "--basedir", basedir, "--donate"}, extra...)
	w := exec.Command(bin, args...)
	w.Env = append(os.Environ(), env...)
	var logs bytes.Buffer
	w.Stderr = &logs
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Process.Kill(); w.Wait() })
	for len(m.WorkerStates()) == 0 {
		time.Sleep(10 * time.Millisecond) // one-off setup wait
	}
	return w, &logs
}

// BenchmarkDonorWaiting: a real starforge-worker --donate with its real
// idle sources and machine checks, connected to a master, with no build to
// run, for STARFORGE_BENCH_DONOR_SECONDS (default 30). Reports its CPU use
// in percent of one core and its RSS. Targets: ≤ 1 % and ≤ 20 MB.
// STARFORGE_BENCH_DONOR_ARGS adds worker flags, such as
// "--idle-command xprintidle" to count a program run at every poll.
func BenchmarkDonorWaiting(b *testing.B) {
	secs := 30
	if v := os.Getenv("STARFORGE_BENCH_DONOR_SECONDS"); v != "" {
		secs, _ = strconv.Atoi(v)
	}
	m, bin, dir := donorMaster(b, "")
	w, logs := startDonorProcess(b, m, bin, filepath.Join(dir, "desk"), nil, strings.Fields(os.Getenv("STARFORGE_BENCH_DONOR_ARGS"))...)
	time.Sleep(2 * time.Second) // start-up settles, as on a desktop
	b.ResetTimer()
	var cpu, rss float64
	for i := 0; i < b.N; i++ {
		t0, err := treeTicks(w.Process.Pid)
		if err != nil {
			b.Skipf("no /proc: %v", err)
		}
		start := time.Now()
		time.Sleep(time.Duration(secs) * time.Second)
		kb, _, _ := procStat(w.Process.Pid)
		t1, _ := treeTicks(w.Process.Pid)
		elapsed := time.Since(start).Seconds()
		cpu = float64(t1-t0) / 100 / elapsed * 100 // USER_HZ is 100 on Linux
		rss = float64(kb) / 1024
	}
	b.ReportMetric(cpu, "CPU-%")
	b.ReportMetric(rss, "RSS-MB")
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "donate:") && !strings.Contains(line, "level=DEBUG") {
			b.Log(line)
		}
	}
}

// treeTicks returns the CPU time of pid and of its children it waited
// for (the programs it runs to read the idle time, say), in clock ticks.
func treeTicks(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	var sum uint64
	for _, v := range f[11:15] { // utime, stime, cutime, cstime
		n, _ := strconv.ParseUint(v, 10, 64)
		sum += n
	}
	return sum, nil
}

// BenchmarkDonorFreezeLatency: how long the owner waits for the machine.
// A build runs on a real donating worker; each iteration the owner comes
// back (its idle file is touched) and the time until the build's processes
// are stopped is measured; then the owner leaves and the build thaws.
// Reports the median and the worst. Run with -benchtime=10x.
func BenchmarkDonorFreezeLatency(b *testing.B) {
	m, bin, dir := donorMaster(b, `
builder("busy", workers=["desk"], allow_donated=True, steps=[shell("while :; do :; done", timeout=None)])
force_scheduler("force", builders=["busy"])
`)
	idle := filepath.Join(dir, "owner")
	basedir := filepath.Join(dir, "desk")
	startDonorProcess(b, m, bin, basedir, []string{"STARFORGE_DONATE_IDLE_FILE=" + idle},
		"--max-foreign-load", "0", "--disk-floor", "0", "--resume-delay", "0")
	if _, _, err := m.Force(context.Background(), webui.ForceRequest{Scheduler: "force", Builders: []string{"busy"}}); err != nil {
		b.Fatal(err)
	}
	pgid := 0
	for pgid == 0 {
		data, _ := os.ReadFile(filepath.Join(basedir, ".starforge-processes"))
		if f := strings.Fields(string(data)); len(f) == 2 {
			pgid, _ = strconv.Atoi(f[0])
		}
		time.Sleep(10 * time.Millisecond) // setup
	}
	state := func() string {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pgid))
		if err != nil {
			b.Fatalf("the build's process is gone: %v", err)
		}
		return strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))[0]
	}
	var waits []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Let the monitor settle into its running cadence, then come back
		// at a different point of its 250 ms cycle each time (the thaw
		// happened on a poll, so a whole second would always hit the
		// same point).
		time.Sleep(time.Second + time.Duration(i%10)*25*time.Millisecond)
		t0 := time.Now()
		if err := os.WriteFile(idle, []byte{}, 0o644); err != nil {
			b.Fatal(err)
		}
		os.Chtimes(idle, t0, t0)
		for state() != "T" {
			time.Sleep(time.Millisecond)
		}
		waits = append(waits, time.Since(t0))
		old := time.Now().Add(-time.Hour)
		os.Chtimes(idle, old, old)
		for state() == "T" {
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.StopTimer()
	slices.Sort(waits)
	b.ReportMetric(float64(waits[len(waits)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(waits[len(waits)-1].Microseconds())/1000, "max-ms")
}
