package build

import "testing"

func TestRedactor(t *testing.T) {
	var none *redactor
	if got := none.str("abc"); got != "abc" {
		t.Errorf("nil redactor changed %q", got)
	}
	r := &redactor{}
	if got := r.str("nothing yet"); got != "nothing yet" {
		t.Errorf("empty redactor changed %q", got)
	}
	r.add("short", "abc")            // too short to redact
	r.add("tok", "s3cr3t")           //
	r.add("long", "s3cr3t-and-more") // contains tok: replaced whole
	r.add("multi", "line-one\nline-two")
	r.add("again", "s3cr3t") // a value already known keeps its first name
	tests := []struct{ in, want string }{
		{"abc s3cr3t", "abc <secret:tok>"},
		{"x=s3cr3t-and-more;", "x=<secret:long>;"},
		{"os3cr3ts3cr3t\n", "o<secret:tok><secret:tok>\n"},
		{"oline-one\noline-two\n", "o<secret:multi>\no<secret:multi>\n"},
		{"line-one\nline-two", "<secret:multi>"},
	}
	for _, tt := range tests {
		if got := r.str(tt.in); got != tt.want {
			t.Errorf("str(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := string(r.bytes([]byte(tt.in))); got != tt.want {
			t.Errorf("bytes(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
