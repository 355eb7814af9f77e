package job

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkSubmit measures a submission from the first byte of its archive
// to its answer: extract, validate, move into the store's directory, and
// the committed store.AddJob, for a job of two packages and three files.
// It reports the median and the 99th percentile.
func BenchmarkSubmit(b *testing.B) {
	e := newEnv(b)
	go func() {
		for range e.got {
		}
	}()
	tarball := helloTar(b, true, "")
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if _, err := e.acc.Submit(ctx, bytes.NewReader(tarball), "bench"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
