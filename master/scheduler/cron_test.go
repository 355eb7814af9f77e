package scheduler

import (
	"testing"
	"time"

	"github.com/starforge/starforge/config"
)

func any_() config.CronField         { return config.CronField{Any: true} }
func vals(v ...int) config.CronField { return config.CronField{Values: v} }
func span(lo, hi, step int) config.CronField {
	var f config.CronField
	for v := lo; v <= hi; v += step {
		f.Values = append(f.Values, v)
	}
	return f
}

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestCronNext(t *testing.T) {
	paris, ny := mustLoc(t, "Europe/Paris"), mustLoc(t, "America/New_York")
	utc := time.UTC
	daily := func(h, m int, loc *time.Location) cron {
		return cron{minute: vals(m), hour: vals(h), dom: any_(), month: any_(), dow: any_(), loc: loc}
	}
	at := func(loc *time.Location, y int, mo time.Month, d, h, m int) time.Time {
		return time.Date(y, mo, d, h, m, 0, 0, loc)
	}
	u := func(y int, mo time.Month, d, h, m int) time.Time { return at(utc, y, mo, d, h, m) }

	for _, tc := range []struct {
		name  string
		c     cron
		after time.Time
		want  time.Time // zero: never
	}{
		{"daily, later today", daily(3, 0, paris), at(paris, 2026, 11, 22, 1, 0), at(paris, 2026, 11, 22, 3, 0)},
		{"daily, tomorrow", daily(3, 0, paris), at(paris, 2026, 11, 22, 12, 0), at(paris, 2026, 11, 23, 3, 0)},
		{"strictly after a match", daily(3, 0, paris), at(paris, 2026, 11, 23, 3, 0), at(paris, 2026, 11, 24, 3, 0)},
		{"seconds past a match", daily(3, 0, utc), u(2026, 1, 1, 3, 0).Add(30 * time.Second), u(2026, 1, 2, 3, 0)},
		{"year end", daily(0, 0, utc), u(2026, 12, 31, 23, 59), u(2027, 1, 1, 0, 0)},

		// Europe/Paris: 2026-03-29 02:00 CET becomes 03:00 CEST (01:00 UTC);
		// 2026-10-25 03:00 CEST becomes 02:00 CET (01:00 UTC).
		{"Paris gap: 02:30 runs at 03:00", daily(2, 30, paris), at(paris, 2026, 3, 28, 12, 0), u(2026, 3, 29, 1, 0)},
		{"Paris gap: the day after", daily(2, 30, paris), u(2026, 3, 29, 1, 0), u(2026, 3, 30, 0, 30)},
		{"Paris gap: every 15 min in hour 2 runs once",
			cron{minute: span(0, 45, 15), hour: vals(2), dom: any_(), month: any_(), dow: any_(), loc: paris},
			u(2026, 3, 29, 0, 50), u(2026, 3, 29, 1, 0)},
		{"Paris gap: and then the next day",
			cron{minute: span(0, 45, 15), hour: vals(2), dom: any_(), month: any_(), dow: any_(), loc: paris},
			u(2026, 3, 29, 1, 0), u(2026, 3, 30, 0, 0)},
		{"Paris gap: 03:00 itself is one run", daily(3, 0, paris), at(paris, 2026, 3, 28, 12, 0), u(2026, 3, 29, 1, 0)},
		{"Paris overlap: first 02:30", daily(2, 30, paris), u(2026, 10, 24, 22, 0), u(2026, 10, 25, 0, 30)},
		{"Paris overlap: not the second 02:30", daily(2, 30, paris), u(2026, 10, 25, 0, 30), u(2026, 10, 26, 1, 30)},
		{"Paris overlap: hourly runs in both hours",
			cron{minute: vals(30), hour: any_(), dom: any_(), month: any_(), dow: any_(), loc: paris},
			u(2026, 10, 25, 0, 40), u(2026, 10, 25, 1, 30)},
		{"Paris: summer time", daily(3, 0, paris), u(2026, 7, 1, 12, 0), u(2026, 7, 2, 1, 0)},

		// America/New_York: 2026-03-08 02:00 EST becomes 03:00 EDT (07:00
		// UTC); 2026-11-01 02:00 EDT becomes 01:00 EST (06:00 UTC).
		{"New York gap", daily(2, 30, ny), at(ny, 2026, 3, 7, 12, 0), u(2026, 3, 8, 7, 0)},
		{"New York gap: the day after", daily(2, 30, ny), u(2026, 3, 8, 7, 0), u(2026, 3, 9, 6, 30)},
		{"New York overlap: first 01:30", daily(1, 30, ny), at(ny, 2026, 10, 31, 12, 0), u(2026, 11, 1, 5, 30)},
		{"New York overlap: not the second", daily(1, 30, ny), u(2026, 11, 1, 5, 30), u(2026, 11, 2, 6, 30)},
		{"New York overlap: every 20 min, hour *",
			cron{minute: span(0, 40, 20), hour: any_(), dom: any_(), month: any_(), dow: any_(), loc: ny},
			u(2026, 11, 1, 5, 40), u(2026, 11, 1, 6, 0)}, // 01:00 EST, the second 01:00

		// February 29 and impossible dates.
		{"Feb 29", cron{minute: vals(0), hour: vals(0), dom: vals(29), month: vals(2), dow: any_(), loc: utc},
			u(2026, 3, 1, 0, 0), u(2028, 2, 29, 0, 0)},
		{"Feb 29 skips 2100", cron{minute: vals(0), hour: vals(0), dom: vals(29), month: vals(2), dow: any_(), loc: utc},
			u(2096, 3, 1, 0, 0), u(2104, 2, 29, 0, 0)},
		{"Feb 30 never", cron{minute: vals(0), hour: vals(0), dom: vals(30), month: vals(2), dow: any_(), loc: utc},
			u(2026, 1, 1, 0, 0), time.Time{}},
		{"31st skips short months", cron{minute: vals(0), hour: vals(12), dom: vals(31), month: any_(), dow: any_(), loc: utc},
			u(2026, 4, 1, 0, 0), u(2026, 5, 31, 12, 0)},

		// Day of month and day of week.
		{"dow only: Sundays", cron{minute: vals(0), hour: vals(6), dom: any_(), month: any_(), dow: vals(0), loc: utc},
			u(2026, 11, 23, 0, 0), u(2026, 11, 29, 6, 0)},
		{"dom only: the 15th", cron{minute: vals(0), hour: vals(6), dom: vals(15), month: any_(), dow: any_(), loc: utc},
			u(2026, 11, 23, 0, 0), u(2026, 12, 15, 6, 0)},
		{"dom or dow: a Monday first", cron{minute: vals(0), hour: vals(0), dom: vals(1), month: any_(), dow: vals(1), loc: utc},
			u(2026, 6, 2, 0, 0), u(2026, 6, 8, 0, 0)},
		{"dom or dow: the 1st first", cron{minute: vals(0), hour: vals(0), dom: vals(1), month: any_(), dow: vals(1), loc: utc},
			u(2026, 6, 29, 12, 0), u(2026, 7, 1, 0, 0)},
		{"weekdays", cron{minute: vals(0), hour: vals(9), dom: any_(), month: any_(), dow: span(1, 5, 1), loc: utc},
			u(2026, 11, 20, 10, 0), u(2026, 11, 23, 9, 0)}, // Friday after nine: Monday
		{"month and dom", cron{minute: vals(0), hour: vals(0), dom: vals(25), month: vals(12), dow: any_(), loc: utc},
			u(2026, 12, 25, 0, 0), u(2027, 12, 25, 0, 0)},
		{"every minute", cron{minute: any_(), hour: any_(), dom: any_(), month: any_(), dow: any_(), loc: utc},
			u(2026, 1, 1, 0, 0).Add(time.Second), u(2026, 1, 1, 0, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.c.next(tc.after)
			if !got.Equal(tc.want) {
				t.Errorf("next(%s) = %s, want %s", tc.after.UTC(), got.UTC(), tc.want.UTC())
			}
		})
	}
}

// TestCronNextWalk walks an every-ten-minutes schedule in Paris across
// both DST changes of 2026: the instants strictly increase ten minutes
// apart, the skipped hour gives no run and each slot of the repeated hour
// runs twice, since the hour field is "*".
func TestCronNextWalk(t *testing.T) {
	paris := mustLoc(t, "Europe/Paris")
	c := cron{minute: span(0, 50, 10), hour: any_(), dom: any_(), month: any_(), dow: any_(), loc: paris}
	for _, from := range []time.Time{
		time.Date(2026, 3, 28, 12, 0, 0, 0, paris),
		time.Date(2026, 10, 24, 12, 0, 0, 0, paris),
	} {
		end := from.Add(48 * time.Hour) // 48 real hours
		n := 0
		for t0 := from; ; n++ {
			t1 := c.next(t0)
			if !t1.Before(end) {
				break
			}
			if d := t1.Sub(t0); d != 10*time.Minute && n > 0 {
				t.Fatalf("after %s comes %s (%s)", t0, t1, d)
			}
			t0 = t1
		}
		// 48 real hours hold 288 ten-minute slots whatever the wall clock;
		// the wall-clock count differs by the hour skipped or repeated.
		if n != 288-1 {
			t.Errorf("from %s: %d runs, want %d", from, n, 288-1)
		}
	}
}
