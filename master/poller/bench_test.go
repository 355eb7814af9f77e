package poller

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/starforge/starforge/config"
)

// BenchmarkPollRound200 measures one poll round over 200 local
// repositories that have not changed since the last round: what polling
// costs the master when nothing happens. Each poll lists the remote's refs
// (a git-upload-pack process for a local repository) and reads the
// poller's state from SQLite; nothing is fetched or written.
func BenchmarkPollRound200(b *testing.B) {
	const n = 200
	r := newRepo(b)
	r.fileCommit("base")
	r.git("branch", "dev")
	dir := b.TempDir()
	e := newEnv(b)
	var cfgs []*config.GitPoller
	for i := range n {
		repo := filepath.Join(dir, fmt.Sprintf("repo%03d", i))
		if out, err := exec.Command("cp", "-a", r.dir, repo).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v\n%s", err, out)
		}
		c := onDemand(fmt.Sprintf("p%03d", i), repo)
		c.AllBranches = true
		cfgs = append(cfgs, c)
	}
	m := NewManager(e.options())
	m.SetConfig(cfgs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	round := func() {
		var wg sync.WaitGroup
		for _, c := range cfgs {
			wg.Go(func() {
				if err := m.PollNow(context.Background(), c.Name); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	round() // records the heads and fills the caches
	for b.Loop() {
		round()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/round")
}
