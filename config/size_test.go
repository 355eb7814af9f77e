package config

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"64MiB", 64 << 20, true},
		{"500 MB", 500e6, true},
		{"1GiB", 1 << 30, true},
		{"4096", 4096, true},
		{"10KB", 10000, true},
		{"0", 0, true},
		{"-1", 0, false},
		{"lots", 0, false},
		{"1.5GiB", 0, false},
		{"9999999999GiB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
