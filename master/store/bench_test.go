package store

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
)

// logBatch returns about size bytes of stdio log lines of 40 to 120 bytes.
func logBatch(size int) []byte {
	var b bytes.Buffer
	for i := 0; ; i++ {
		n := 40 + (i*37)%81
		if b.Len()+n > size {
			break
		}
		b.WriteByte("oe"[i%2])
		fmt.Fprintf(&b, "%06d ", i)
		b.Write(bytes.Repeat([]byte{'a' + byte(i%26)}, n-9))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// reportMBs reports throughput in MB/s over the benchmark's whole time.
func reportMBs(b *testing.B, bytes int64) {
	b.ReportMetric(float64(bytes)/1e6/b.Elapsed().Seconds(), "MB/s")
}

// BenchmarkAppendLog measures log ingest with 64 KiB appends: one log
// written by one goroutine (each append waits for its own commit), and many
// logs written at once, as many running builds do (appends share commits).
func BenchmarkAppendLog(b *testing.B) {
	batch := logBatch(MaxChunk)
	b.Run("serial", func(b *testing.B) {
		s := newStore(b)
		l := newLog(b, s, LogStdio)
		ctx := b.Context()
		b.SetBytes(int64(len(batch)))
		for b.Loop() {
			if _, _, err := s.AppendLog(ctx, l.ID, batch); err != nil {
				b.Fatal(err)
			}
		}
		reportMBs(b, int64(b.N)*int64(len(batch)))
	})
	b.Run("parallel", func(b *testing.B) {
		s := newStore(b)
		ctx := b.Context()
		l := newLog(b, s, LogStdio)
		var next atomic.Int64
		logs := make([]int64, 64)
		for i := range logs {
			logs[i] = must(s.AddLog(ctx, l.StepID, fmt.Sprint("log", i), LogStdio))(b).ID
		}
		b.SetBytes(int64(len(batch)))
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			id := logs[next.Add(1)%int64(len(logs))]
			for pb.Next() {
				if _, _, err := s.AppendLog(ctx, id, batch); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportMBs(b, int64(b.N)*int64(len(batch)))
	})
}

// trivialBuild does every write of a one-step build, as the master would.
func trivialBuild(b *testing.B, s *Store, builderID, workerID int64, out []byte) {
	ctx := b.Context()
	now := time.Now()
	check := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	bs, reqs, err := s.AddBuildset(ctx, NewBuildset{
		Reason:       "bench",
		Properties:   map[string]Property{"branch": {"main", "Scheduler"}},
		SourceStamps: []SourceStamp{{Repository: "https://example.org/proj.git", Branch: "main", Revision: "abc"}},
		BuilderIDs:   []int64{builderID},
		SubmittedAt:  now,
	})
	check(err)
	check(s.ClaimRequest(ctx, reqs[0].ID, now))
	bld, err := s.AddBuild(ctx, NewBuild{BuilderID: builderID, RequestID: reqs[0].ID, WorkerID: workerID, StartedAt: now,
		Properties: map[string]Property{"buildnumber": {0, "Build"}}})
	check(err)
	st, err := s.AddStep(ctx, bld.ID, 1, "shell")
	check(err)
	check(s.StartStep(ctx, st.ID, now))
	l, err := s.AddLog(ctx, st.ID, "stdio", LogStdio)
	check(err)
	_, _, err = s.AppendLog(ctx, l.ID, out)
	check(err)
	check(s.FinishLog(ctx, l.ID))
	check(s.FinishStep(ctx, st.ID, result.Success, "ran", now))
	check(s.FinishBuild(ctx, bld.ID, result.Success, "build successful", now))
	done, err := s.CompleteRequest(ctx, reqs[0].ID, result.Success, now)
	check(err)
	if !done {
		b.Fatalf("buildset %d not complete", bs.ID)
	}
}

// BenchmarkAddBuildsetClaimFinish measures the store's share of a trivial
// build (12 writes: buildset, claim, build, step, log, lines, finishes), one
// build at a time and from 50 goroutines at once as 50 busy workers would.
func BenchmarkAddBuildsetClaimFinish(b *testing.B) {
	out := []byte("hhello\noworld\n")
	for _, par := range []int{1, 50} {
		b.Run(fmt.Sprintf("builds=%d", par), func(b *testing.B) {
			s := newStore(b)
			ctx := b.Context()
			bid := must(s.EnsureBuilder(ctx, Builder{Name: "proj"}))(b)
			wid := must(s.EnsureWorker(ctx, "w"))(b)
			if par == 1 {
				for b.Loop() {
					trivialBuild(b, s, bid, wid, out)
				}
			} else {
				b.SetParallelism((par + 1) / 2) // GOMAXPROCS is 2 on the target machine
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						trivialBuild(b, s, bid, wid, out)
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "builds/s")
		})
	}
}

// BenchmarkListBuilds measures one page of 100 builds out of 100,000, with
// and without filters, at the newest end and deep in the history.
func BenchmarkListBuilds(b *testing.B) {
	s := newStore(b)
	ctx := b.Context()
	var builders, workers []int64
	for i := range 50 {
		builders = append(builders, must(s.EnsureBuilder(ctx, Builder{Name: fmt.Sprint("builder", i)}))(b))
	}
	for i := range 20 {
		workers = append(workers, must(s.EnsureWorker(ctx, fmt.Sprint("worker", i)))(b))
	}
	ids := addBuilds(b, s, 100_000, builders, workers, 101) // ~1,000 running, on every builder
	mid := ids[len(ids)/2]
	for _, bench := range []struct {
		name string
		f    BuildFilter
	}{
		{"newest", BuildFilter{Limit: 100}},
		{"deep", BuildFilter{Before: mid, Limit: 100}},
		{"builder", BuildFilter{BuilderID: builders[7], Limit: 100}},
		{"builder-deep", BuildFilter{BuilderID: builders[7], Before: mid, Limit: 100}},
		{"worker", BuildFilter{WorkerID: workers[3], Limit: 100}},
		{"running", BuildFilter{RunningOnly: true, Limit: 100}},
		{"running-builder", BuildFilter{BuilderID: builders[7], RunningOnly: true, Limit: 100}},
	} {
		b.Run(bench.name, func(b *testing.B) {
			for b.Loop() {
				bs, err := s.ListBuilds(ctx, bench.f)
				if err != nil || len(bs) == 0 {
					b.Fatalf("%d builds, %v", len(bs), err)
				}
			}
		})
	}
}
