package store

import (
	"testing"
	"time"
)

// BenchmarkBuildDurations reads a week of 100,000 builds over 10 builders.
func BenchmarkBuildDurations(b *testing.B) {
	s := newStore(b)
	var names []string
	for i := range 10 {
		names = append(names, string(rune('a'+i)))
	}
	bids := addBuilders(b, s, names...)
	w := must(s.EnsureWorker(b.Context(), "w"))(b)
	now := time.Now()
	const n = 100_000
	err := s.write(b.Context(), 0, func(tx *wtx) error {
		for i := range n {
			start := now.Add(-time.Duration(n-i) * 5 * time.Second).UnixMicro()
			dur := int64(60+i%300) * 1_000_000
			if _, err := tx.exec(`INSERT INTO builds (number, builderid, workerid, started_at, complete_at, results, state_string)
				VALUES (?, ?, ?, ?, ?, ?, 'x')`, i, bids[i%10], w, start, start+dur, i%7); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		bs, err := s.BuildDurations(b.Context(), nil, now, 7)
		if err != nil || len(bs) != 10 {
			b.Fatal(len(bs), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}
