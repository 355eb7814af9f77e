package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master"
)

// BenchmarkIdleWorkerRSS: the resident memory of a real starforge-worker
// process connected to a master and idle. Target: ≤ 20 MB.
func BenchmarkIdleWorkerRSS(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "starforge-worker")
	build := exec.Command("go", "build", "-o", bin, "../../worker/cmd/starforge-worker")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build worker: %v\n%s", err, out)
	}
	cfg := `master(http_addr="127.0.0.1:0", worker_addr="127.0.0.1:0")
worker("w1", password="pw")
`
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
	defer func() { cancel(); <-done }()
	<-m.Ready()
	w := exec.Command(bin, "--master", m.WorkerAddr(), "--name", "w1", "--password", "pw", "--basedir", filepath.Join(dir, "w"))
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { w.Process.Kill(); w.Wait() }()
	for len(m.WorkerStates()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	// Let start-up garbage settle, as an idle worker would.
	time.Sleep(2 * time.Second)
	b.ResetTimer()
	var kb int
	for i := 0; i < b.N; i++ {
		kb = rssKB(b, w.Process.Pid)
	}
	b.ReportMetric(float64(kb)/1024, "RSS-MB")
}

func rssKB(b *testing.B, pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
