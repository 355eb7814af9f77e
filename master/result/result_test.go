package result

import "testing"

func TestWorst(t *testing.T) {
	tests := []struct{ a, b, want Result }{
		{Success, Warnings, Warnings},
		{Failure, Warnings, Failure},
		{Skipped, Success, Success},
		{None, Failure, Failure},
		{Exception, Failure, Exception},
		{Cancelled, Retry, Cancelled},
	}
	for _, tt := range tests {
		if got := Worst(tt.a, tt.b); got != tt.want {
			t.Errorf("Worst(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Worst(tt.b, tt.a); got != tt.want {
			t.Errorf("Worst(%v, %v) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	for r := Success; r <= Cancelled; r++ {
		got, err := Parse(r.String())
		if err != nil || got != r {
			t.Errorf("Parse(%q) = %v, %v", r.String(), got, err)
		}
	}
	if _, err := Parse("bogus"); err == nil {
		t.Error("Parse(bogus) succeeded")
	}
}
