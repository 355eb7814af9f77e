package scheduler

import (
	"time"

	"github.com/starforge/starforge/config"
)

// cron is a nightly() schedule: the wall-clock minutes its fields match in
// loc.
type cron struct {
	minute, hour, dom, month, dow config.CronField
	loc                           *time.Location
}

func cronOf(n *config.Nightly) cron {
	return cron{minute: n.Minute, hour: n.Hour, dom: n.DayOfMonth, month: n.Month, dow: n.DayOfWeek, loc: n.Location}
}

// searchDays bounds the search for the next match: February 29 can be
// eight years away (2096, then 2104), and a schedule such as February 30
// never matches.
const searchDays = 9*366 + 2

// next returns the first instant strictly after after at which the
// schedule matches, or the zero time if it never does. Matches are whole
// minutes of the wall clock in loc, with two rules where that clock is
// not continuous:
//
//   - a wall-clock time skipped by a daylight-saving change (02:30 on the
//     night clocks go from 02:00 to 03:00) fires once, at the first instant
//     after the gap (03:00), so a nightly build is not lost that night;
//   - a wall-clock time that happens twice (02:30 when clocks go back from
//     03:00 to 02:00) fires at its first occurrence only, unless the hour
//     field is "*" (an hourly schedule runs in both hours).
//
// Days follow cron: month must match, and when both day_of_month and
// day_of_week are restricted a day matching either is enough; when one of
// them is "*" the other decides.
func (c cron) next(after time.Time) time.Time {
	loc := c.loc
	if loc == nil {
		loc = time.Local
	}
	a := after.In(loc)
	// Start a day early: the first instants of after's local day may lie
	// before after, and an offset change can move a slot across midnight.
	day := time.Date(a.Year(), a.Month(), a.Day()-1, 0, 0, 0, 0, time.UTC)
	var best time.Time
	foundOn := -1
	for i := 0; i < searchDays; i++ {
		if foundOn >= 0 && i > foundOn+1 {
			break
		}
		d := day.AddDate(0, 0, i)
		if !c.dayMatches(d) {
			continue
		}
		offs := offsetsAround(d, loc)
		for h := 0; h < 24; h++ {
			if !c.hour.Match(h) {
				continue
			}
			for m := 0; m < 60; m++ {
				if !c.minute.Match(m) {
					continue
				}
				for _, t := range instants(d.Year(), d.Month(), d.Day(), h, m, loc, offs, c.hour.Any) {
					if t.After(after) && (best.IsZero() || t.Before(best)) {
						best = t
						if foundOn < 0 {
							foundOn = i
						}
					}
				}
			}
		}
	}
	return best
}

// dayMatches reports whether the civil date d (a UTC midnight) matches
// the month, day-of-month and day-of-week fields.
func (c cron) dayMatches(d time.Time) bool {
	if !c.month.Match(int(d.Month())) {
		return false
	}
	dom, dow := c.dom.Match(d.Day()), c.dow.Match(int(d.Weekday()))
	if c.dom.Any || c.dow.Any {
		return dom && dow
	}
	return dom || dow
}

// offsetsAround returns the UTC offsets loc uses from a day before the
// civil date d to a day after it: every offset a wall time of d can have.
func offsetsAround(d time.Time, loc *time.Location) []int {
	var offs []int
	for h := -30; h <= 54; h += 3 {
		_, off := d.Add(time.Duration(h) * time.Hour).In(loc).Zone()
		if !containsInt(offs, off) {
			offs = append(offs, off)
		}
	}
	return offs
}

func containsInt(s []int, v int) bool {
	for _, e := range s {
		if e == v {
			return true
		}
	}
	return false
}

// instants returns the instants at which the wall clock in loc shows
// y-mo-d h:m, as next's rules want them: none or one normally, the end of
// the gap for a skipped time, the first (or, with both, every) occurrence
// of a repeated one.
func instants(y int, mo time.Month, d, h, m int, loc *time.Location, offs []int, both bool) []time.Time {
	wall := time.Date(y, mo, d, h, m, 0, 0, time.UTC)
	var valid []time.Time
	for _, off := range offs {
		t := wall.Add(-time.Duration(off) * time.Second)
		if sameWall(t.In(loc), wall) && !containsTime(valid, t) {
			valid = append(valid, t)
		}
	}
	switch {
	case len(valid) == 0:
		// Skipped: the gap ends where a zone starts whose first wall time
		// is after wall and whose previous instant's wall time is before.
		for _, off := range offs {
			start, _ := wall.Add(-time.Duration(off) * time.Second).In(loc).ZoneBounds()
			if start.IsZero() {
				continue
			}
			before := start.Add(-time.Nanosecond).In(loc)
			if wallOf(start.In(loc)).After(wall) && wallOf(before).Before(wall) {
				return []time.Time{start}
			}
		}
		return nil
	case len(valid) > 1 && !both:
		first := valid[0]
		for _, t := range valid[1:] {
			if t.Before(first) {
				first = t
			}
		}
		return []time.Time{first}
	}
	return valid
}

// wallOf returns t's wall clock as a UTC time, to compare wall clocks.
func wallOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

func sameWall(t, wall time.Time) bool { return wallOf(t).Equal(wall) }

func containsTime(s []time.Time, t time.Time) bool {
	for _, e := range s {
		if e.Equal(t) {
			return true
		}
	}
	return false
}
