package bench

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starforge/starforge/worker/proto"
)

// idleWorker answers the master's handshake and then stays connected,
// answering pings (gorilla does) and nothing else.
type idleWorker struct {
	attached chan struct{}
	once     sync.Once
}

func (w *idleWorker) HandleRequest(op string, msg proto.Message) (any, error) {
	switch op {
	case proto.OpGetWorkerInfo:
		return map[string]any{"basedir": "/idle", "system": "posix", "version": "idle", "numcpus": 1}, nil
	case proto.OpPrint:
		if msg["message"] == "attached" {
			w.once.Do(func() { close(w.attached) })
		}
		return nil, nil
	case proto.OpSetWorkerSettings, proto.OpKeepalive:
		return nil, nil
	}
	return nil, fmt.Errorf("Command %s does not exist.", op)
}

// procStat returns a process's resident set (KiB) and its user+system CPU
// time in clock ticks.
func procStat(pid int) (rssKB int, ticks uint64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			rssKB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	f.Close()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ut, _ := strconv.ParseUint(fields[11], 10, 64) // field 14
	st, _ := strconv.ParseUint(fields[12], 10, 64) // field 15
	return rssKB, ut + st, nil
}

// BenchmarkIdleWorkers: N simulated workers (STARFORGE_BENCH_WORKERS,
// default 10,000) connect over real websockets to a real master process
// and stay idle. Reports the master's RSS, RSS per worker, and CPU while
// idle. Targets: 10,000 workers, RSS ≤ 500 MB (≤ 50 KB a worker), idle CPU
// ≤ 5 %.
func BenchmarkIdleWorkers(b *testing.B) {
	n := 10000
	if v := os.Getenv("STARFORGE_BENCH_WORKERS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "starforge")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/starforge").CombinedOutput(); err != nil {
		b.Fatalf("build master: %v\n%s", err, out)
	}
	var cfg strings.Builder
	cfg.WriteString(`master(http_addr="127.0.0.1:0", worker_addr="127.0.0.1:0")` + "\n")
	fmt.Fprintf(&cfg, "[worker(\"w%%d\" %% i, password = \"pw\") for i in range(%d)]\n", n)
	if err := os.WriteFile(filepath.Join(dir, "master.star"), []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "master", "--basedir", dir, "--log-level", "warn")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	var addr string
	for sc.Scan() {
		if _, rest, ok := strings.Cut(sc.Text(), "workers connect to "); ok {
			addr = strings.TrimSpace(rest)
			break
		}
	}
	if addr == "" {
		b.Fatal("master did not start")
	}
	go func() {
		for sc.Scan() {
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var conns []*proto.Conn
	var mu sync.Mutex
	var failed atomic.Int64
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			h := http.Header{}
			h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("w%d:pw", i))))
			d := websocket.Dialer{ReadBufferSize: 1024, WriteBufferSize: 1024, HandshakeTimeout: 30 * time.Second}
			ws, _, err := d.DialContext(ctx, "ws://"+addr+"/", h)
			if err != nil {
				failed.Add(1)
				return
			}
			w := &idleWorker{attached: make(chan struct{})}
			c := proto.NewConn(ws, w, proto.Options{PingInterval: -1})
			go c.Serve()
			select {
			case <-w.attached:
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			case <-time.After(60 * time.Second):
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	connectTime := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d workers failed to attach", f, n)
	}
	// Let connection-time garbage be collected, as a long-running master's
	// would be, then measure a quiet interval.
	time.Sleep(3 * time.Second)
	_, t0, err := procStat(cmd.Process.Pid)
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	const window = 10 * time.Second
	b.ResetTimer()
	time.Sleep(window)
	b.StopTimer()
	rss, t1, _ := procStat(cmd.Process.Pid)
	cpu := float64(t1-t0) / 100 / window.Seconds() * 100 // USER_HZ is 100 on Linux
	b.ReportMetric(float64(n), "workers")
	b.ReportMetric(float64(rss)/1024, "master-RSS-MB")
	b.ReportMetric(float64(rss)/float64(n), "KB/worker")
	b.ReportMetric(cpu, "idle-CPU-%")
	b.ReportMetric(connectTime.Seconds(), "connect-all-s")
	for _, c := range conns {
		c.Close(nil)
	}
}
