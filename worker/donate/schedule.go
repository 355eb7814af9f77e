package donate

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a time of day on some weekdays during which builds may run.
// A window whose end is not after its start runs past midnight into the
// next day: "fri 19:00-07:00" is Friday 19:00 to Saturday 07:00.
type Window struct {
	Days       [7]bool // indexed by time.Weekday
	Start, End int     // minutes since midnight; End may be 24*60
}

// Schedule is a set of windows; a time is inside it if it is inside any.
type Schedule []Window

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseWindow parses "DAYS [HH:MM-HH:MM]": DAYS is a comma-separated list
// of days (mon, tue, ..., sun) and ranges of days (mon-fri, fri-mon), or
// "daily"; without a time the window is the whole day. Examples:
// "mon-fri 19:00-07:00", "sat,sun", "daily 12:00-13:30".
func ParseWindow(s string) (Window, error) {
	var w Window
	fields := strings.Fields(strings.ToLower(s))
	if len(fields) == 0 || len(fields) > 2 {
		return w, fmt.Errorf("window %q: want DAYS [HH:MM-HH:MM], such as \"mon-fri 19:00-07:00\" or \"sat,sun\"", s)
	}
	if err := parseDays(fields[0], &w.Days); err != nil {
		return w, fmt.Errorf("window %q: %w", s, err)
	}
	w.Start, w.End = 0, 24*60
	if len(fields) == 2 {
		from, to, ok := strings.Cut(fields[1], "-")
		if !ok {
			return w, fmt.Errorf("window %q: time %q: want HH:MM-HH:MM", s, fields[1])
		}
		var err error
		if w.Start, err = parseClock(from, false); err != nil {
			return w, fmt.Errorf("window %q: %w", s, err)
		}
		if w.End, err = parseClock(to, true); err != nil {
			return w, fmt.Errorf("window %q: %w", s, err)
		}
		if w.Start == w.End {
			return w, fmt.Errorf("window %q: starts and ends at %s; for the whole day leave the time out", s, from)
		}
	}
	return w, nil
}

func parseDays(s string, days *[7]bool) error {
	if s == "daily" || s == "*" {
		for i := range days {
			days[i] = true
		}
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, ok := dayNames[from]
		if !ok {
			return fmt.Errorf("unknown day %q: want mon, tue, wed, thu, fri, sat, sun or daily", from)
		}
		if !isRange {
			days[a] = true
			continue
		}
		b, ok := dayNames[to]
		if !ok {
			return fmt.Errorf("unknown day %q: want mon, tue, wed, thu, fri, sat, sun", to)
		}
		for d := a; ; d = (d + 1) % 7 {
			days[d] = true
			if d == b {
				break
			}
		}
	}
	return nil
}

// parseClock parses HH:MM; 24:00 is allowed as an end.
func parseClock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !end)) {
		return 0, fmt.Errorf("time %q: want HH:MM between 00:00 and 24:00", s)
	}
	return hh*60 + mm, nil
}

// String formats w as ParseWindow reads it.
func (w Window) String() string {
	var days []string
	for d := time.Sunday; d <= time.Saturday; d++ {
		if w.Days[(d+1)%7] { // monday first
			days = append(days, strings.ToLower(((d + 1) % 7).String()[:3]))
		}
	}
	s := strings.Join(days, ",")
	if len(days) == 7 {
		s = "daily"
	}
	if w.Start == 0 && w.End == 24*60 {
		return s
	}
	return fmt.Sprintf("%s %02d:%02d-%02d:%02d", s, w.Start/60, w.Start%60, w.End/60, w.End%60)
}

// contains reports whether minute-of-week t (day d, minute m) is inside w.
func (w Window) contains(d time.Weekday, m int) bool {
	if w.Start < w.End {
		return w.Days[d] && m >= w.Start && m < w.End
	}
	// Past midnight: the evening of a listed day, or the morning after one.
	return (w.Days[d] && m >= w.Start) || (w.Days[(d+6)%7] && m < w.End)
}

// Contains reports whether t is inside the schedule, in loc (nil: local).
// An empty schedule contains every time.
func (s Schedule) Contains(t time.Time, loc *time.Location) bool {
	if len(s) == 0 {
		return true
	}
	if loc == nil {
		loc = time.Local
	}
	t = t.In(loc)
	m := t.Hour()*60 + t.Minute()
	for _, w := range s {
		if w.contains(t.Weekday(), m) {
			return true
		}
	}
	return false
}

// Next returns the first minute after t that is inside the schedule, if
// one comes within a week.
func (s Schedule) Next(t time.Time, loc *time.Location) (time.Time, bool) {
	if loc == nil {
		loc = time.Local
	}
	t = t.In(loc).Truncate(time.Minute)
	for i := 1; i <= 7*24*60; i++ {
		c := t.Add(time.Duration(i) * time.Minute)
		if s.Contains(c, loc) {
			return c, true
		}
	}
	return time.Time{}, false
}

// ParseSize parses a byte count such as "5GiB", "512M", "2g" or "1048576".
// K, M, G and T are powers of 1024 with or without "i" and "B".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		for _, form := range []string{suf.s + "IB", suf.s + "B", suf.s} {
			if strings.HasSuffix(u, form) {
				u, mult = strings.TrimSpace(strings.TrimSuffix(u, form)), suf.m
				goto num
			}
		}
	}
	u = strings.TrimSuffix(u, "B")
num:
	f, err := strconv.ParseFloat(u, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("size %q: want a number of bytes such as 5GiB, 512M or 0", s)
	}
	return int64(f * float64(mult)), nil
}

// FormatSize formats n bytes with a binary unit: "5 GiB", "512 MiB".
func FormatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if f == float64(int64(f)) || f >= 100 {
		return fmt.Sprintf("%.0f %s", f, units[i])
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
