package donate

import (
	"strings"
	"testing"
	"time"
)

func TestParseWindow(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "mon-fri 19:00-07:00", want: "mon,tue,wed,thu,fri 19:00-07:00"},
		{in: "sat,sun", want: "sat,sun"},
		{in: "Fri-Mon", want: "mon,fri,sat,sun"},
		{in: "daily 12:00-13:30", want: "daily 12:00-13:30"},
		{in: "wed 22:00-24:00", want: "wed 22:00-24:00"},
		{in: "", err: "want DAYS"},
		{in: "someday", err: `unknown day "someday"`},
		{in: "mon-xyz", err: `unknown day "xyz"`},
		{in: "mon 9-17", err: `time "9": want HH:MM`},
		{in: "mon 09:00", err: "want HH:MM-HH:MM"},
		{in: "mon 24:00-08:00", err: `time "24:00"`},
		{in: "mon 08:00-08:00", err: "leave the time out"},
		{in: "mon 08:00-09:00 extra", err: "want DAYS"},
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseWindow(%q) = %v, want error containing %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || w.String() != tt.want {
			t.Errorf("ParseWindow(%q) = %q, %v; want %q", tt.in, w.String(), err, tt.want)
		}
	}
}

func TestScheduleContains(t *testing.T) {
	s := Schedule{mustWindow("mon-fri 19:00-07:00"), mustWindow("sat,sun")}
	at := func(day, hhmm string) time.Time {
		// 2026-03-02 is a Monday.
		days := map[string]int{"mon": 2, "tue": 3, "wed": 4, "thu": 5, "fri": 6, "sat": 7, "sun": 8}
		tm, err := time.Parse("2006-01-02 15:04", "2026-03-0"+string(rune('0'+days[day]))+" "+hhmm)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		day, hhmm string
		in        bool
	}{
		{"mon", "06:59", false}, // the night into monday follows sunday, not a weekday
		{"mon", "12:00", false},
		{"mon", "19:00", true},
		{"tue", "06:59", true}, // monday's window runs into tuesday
		{"tue", "07:00", false},
		{"fri", "23:00", true},
		{"sat", "06:00", true},
		{"sat", "15:00", true},
		{"sun", "23:59", true},
	}
	for _, tt := range tests {
		if got := s.Contains(at(tt.day, tt.hhmm), time.UTC); got != tt.in {
			t.Errorf("%s %s: in = %v, want %v", tt.day, tt.hhmm, got, tt.in)
		}
	}
	next, ok := s.Next(at("mon", "12:00"), time.UTC)
	if !ok || !next.Equal(at("mon", "19:00")) {
		t.Errorf("next after mon 12:00 = %v", next)
	}
	if !(Schedule{}).Contains(at("mon", "12:00"), time.UTC) {
		t.Error("an empty schedule must contain every time")
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"5GiB": 5 << 30, "512M": 512 << 20, "2g": 2 << 30, "1048576": 1 << 20, "1.5K": 1536, "0": 0, "10 MB": 10 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "five", "-1G", "1X"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	if got := FormatSize(5 << 30); got != "5 GiB" {
		t.Errorf("FormatSize = %q", got)
	}
	if got := FormatSize(1536); got != "1.5 KiB" {
		t.Errorf("FormatSize = %q", got)
	}
}
