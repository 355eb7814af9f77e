package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Sample is one build's duration, or how long one build request waited.
type Sample struct {
	Day  int           // 0: the 24 hours up to now; 1: the 24 hours before those; ...
	Time time.Duration // to the millisecond; never negative
	Good bool          // the build ended SUCCESS or WARNINGS (false for waits)
}

// statsDay is the length of one day of Sample.Day.
const statsDay = 24 * time.Hour

// maxStatsDays bounds the days of BuildDurations and WaitTimes (the
// packing of samples below has room for 64).
const maxStatsDays = 64

// BuildDurations returns, by builder id, the durations of the finished
// builds of builders (nil: every builder) that started in the days days up
// to now. Builds that ended SKIPPED, RETRY or CANCELLED are left out: they
// say nothing about how long a build takes or whether it passes.
//
// The builds_started index covers the query, and each builder's samples
// come back packed in one string: SQLite groups by builder in index order
// without sorting, and the caller gets one row per builder rather than one
// per build, which is what keeps a week of 100,000 builds in a few
// milliseconds. (group_concat is SQLite's; PostgreSQL has string_agg.)
func (s *Store) BuildDurations(ctx context.Context, builders []int64, now time.Time, days int) (map[int64][]Sample, error) {
	out, err := s.samples(ctx, `SELECT builderid, group_concat(
			((CASE WHEN complete_at > started_at THEN complete_at - started_at ELSE 0 END) / 1000 * 64
			+ (? - started_at) / ?) * 2 + (results <= 1))
		FROM builds
		WHERE builderid IN `+builderSet(builders)+` AND started_at > ? AND started_at <= ?
			AND complete_at IS NOT NULL AND results IN (0, 1, 2, 4)
		GROUP BY builderid`, builders, now, days)
	if err != nil {
		return nil, fmt.Errorf("store: build durations: %w", err)
	}
	return out, nil
}

// WaitTimes returns, by builder id, how long the build requests of
// builders (nil: every builder) that a build claimed in the days days up
// to now waited from submission to that claim; Day is the claim's. A
// request retried waited until its last claim. Requests still pending,
// and those cancelled before they started, are not counted. It costs what
// BuildDurations does, with the buildrequests_claimed_at index.
func (s *Store) WaitTimes(ctx context.Context, builders []int64, now time.Time, days int) (map[int64][]Sample, error) {
	out, err := s.samples(ctx, `SELECT builderid, group_concat(
			((CASE WHEN claimed_at > submitted_at THEN claimed_at - submitted_at ELSE 0 END) / 1000 * 64
			+ (? - claimed_at) / ?) * 2)
		FROM buildrequests
		WHERE builderid IN `+builderSet(builders)+` AND claimed_at > ? AND claimed_at <= ?
		GROUP BY builderid`, builders, now, days)
	if err != nil {
		return nil, fmt.Errorf("store: wait times: %w", err)
	}
	return out, nil
}

// builderSet returns an IN list of placeholders for ids, or for nil (every
// builder) a subquery, which lets SQLite probe the index once per builder
// rather than scan it whole.
func builderSet(ids []int64) string {
	switch {
	case ids == nil:
		return `(SELECT id FROM builders)`
	case len(ids) == 0:
		return `(NULL)`
	}
	return `(?` + strings.Repeat(`, ?`, len(ids)-1) + `)`
}

// samples runs a query of BuildDurations or WaitTimes and unpacks its
// rows: builder id, then the samples as comma-separated integers
// ((milliseconds * 64 + day) * 2 + good).
func (s *Store) samples(ctx context.Context, q string, builders []int64, now time.Time, days int) (map[int64][]Sample, error) {
	if days < 1 || days > maxStatsDays {
		return nil, fmt.Errorf("days %d out of range 1 to %d", days, maxStatsDays)
	}
	to := now.UnixMicro()
	args := []any{to, statsDay.Microseconds()}
	for _, id := range builders {
		args = append(args, id)
	}
	args = append(args, now.Add(-time.Duration(days)*statsDay).UnixMicro(), to)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64][]Sample{}
	for rows.Next() {
		var id int64
		var packed []byte
		if err := rows.Scan(&id, &packed); err != nil {
			return nil, err
		}
		ss, err := unpackSamples(packed)
		if err != nil {
			return nil, fmt.Errorf("builder %d: %w", id, err)
		}
		out[id] = ss
	}
	return out, rows.Err()
}

// unpackSamples parses the packed samples of one builder.
func unpackSamples(b []byte) ([]Sample, error) {
	out := make([]Sample, 0, len(b)/8)
	var v int64
	digits := 0
	for i := 0; i <= len(b); i++ {
		if i < len(b) && b[i] != ',' {
			c := b[i]
			if c < '0' || c > '9' || digits >= 18 {
				return nil, fmt.Errorf("bad packed sample at byte %d", i)
			}
			v = v*10 + int64(c-'0')
			digits++
			continue
		}
		if digits == 0 {
			return nil, fmt.Errorf("empty packed sample at byte %d", i)
		}
		out = append(out, Sample{Good: v&1 == 1, Day: int(v >> 1 & 63), Time: time.Duration(v>>7) * time.Millisecond})
		v, digits = 0, 0
	}
	return out, nil
}
