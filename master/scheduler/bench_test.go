package scheduler

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// BenchmarkChangeToQueue measures one change, from ChangesAdded to its
// build requests reaching the queue, without a tree-stable timer: real
// clock, real SQLite file.
func BenchmarkChangeToQueue(b *testing.B) {
	dir := b.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.sqlite"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	file := filepath.Join(dir, "master.star")
	src := preamble + `single_branch_scheduler("main", ["b"], branch = "main")`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := st.EnsureBuilder(ctx, store.Builder{Name: "b"}); err != nil {
		b.Fatal(err)
	}
	q := &fakeQueue{ch: make(chan []store.BuildRequest, 1)}
	m := New(Options{Store: st, Queue: q, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	m.SetConfig(cfg)
	go m.Run(ctx)
	if err := m.flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cs, err := st.AddChanges(ctx, []store.Change{onMain("r")})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		m.ChangesAdded(cs)
		<-q.ch
	}
}
