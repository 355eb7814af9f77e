package webui

import (
	"testing"
	"time"

	"github.com/starforge/starforge/master/result"
)

func TestFormatDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{999 * time.Millisecond, "0s"},
		{45 * time.Second, "45s"},
		{83 * time.Second, "1m 23s"},
		{time.Hour - time.Second, "59m 59s"},
		{time.Hour, "1h 0m"},
		{2*time.Hour + 5*time.Minute + 9*time.Second, "2h 5m"},
		{76 * time.Hour, "3d 4h"},
	} {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestFormatAgo(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Minute, "just now"},
		{4 * time.Second, "just now"},
		{5 * time.Second, "5 seconds ago"},
		{time.Minute, "1 minute ago"},
		{2*time.Minute + 59*time.Second, "2 minutes ago"},
		{time.Hour, "1 hour ago"},
		{23 * time.Hour, "23 hours ago"},
		{25 * time.Hour, "1 day ago"},
		{45 * 24 * time.Hour, "1 month ago"},
		{800 * 24 * time.Hour, "2 years ago"},
	} {
		if got := formatAgo(now.Add(-tt.d), now); got != tt.want {
			t.Errorf("formatAgo(now-%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestStatusClass(t *testing.T) {
	for _, tt := range []struct {
		r                 result.Result
		started, complete bool
		want              string
	}{
		{result.None, false, false, "pending"},
		{result.None, true, false, "running"},
		{result.Success, true, true, "success"},
		{result.Cancelled, true, true, "cancelled"},
		{result.Result(42), true, true, "unknown"},
		{result.None, true, true, "unknown"},
	} {
		if got := statusClass(tt.r, tt.started, tt.complete); got != tt.want {
			t.Errorf("statusClass(%v, %v, %v) = %q, want %q", tt.r, tt.started, tt.complete, got, tt.want)
		}
	}
}
