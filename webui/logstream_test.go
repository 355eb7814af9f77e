package webui

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// writeSplit writes data to w in pieces cut at random places.
func writeSplit(t *testing.T, rng *rand.Rand, w interface{ Write([]byte) (int, error) }, data []byte) {
	t.Helper()
	for len(data) > 0 {
		n := 1 + rng.IntN(min(len(data), 7))
		if rng.IntN(4) == 0 {
			n = len(data)
		}
		if k, err := w.Write(data[:n]); err != nil || k != n {
			t.Fatalf("Write: %d, %v", k, err)
		}
		data = data[n:]
	}
}

func TestJSONStringWriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", " ", "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f", "\x7f", `"`, `\`, "<", ">", "&",
		"é", "✓", "😀", "\u2028", "\u2029", "\xff", "\xe2\x82", "\xf0\x9f", "\xc3", "\x80", "\ufffd"}
	fixed := []string{"", "plain", "\xe2\x82\xac", "\xe2\x82", "\xe2", "ab\xe2", "\xe2\xe2\x82\xac", "\xed\xa0\x80"}
	for i := range 3000 {
		var s string
		if i < len(fixed) {
			s = fixed[i]
		} else {
			var b strings.Builder
			for range rng.IntN(30) {
				b.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			s = b.String()
		}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		jw := newJSONStringWriter(bw)
		writeSplit(t, rng, jw, []byte(s))
		if err := jw.Close(); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		want, _ := json.Marshal(s)
		if got := `"` + out.String() + `"`; got != string(want) {
			t.Fatalf("%q:\n got %s\nwant %s", s, got, want)
		}
	}
}

func TestPrefixStripper(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"ohello\n", "hello\n"},
		{"ohello\neworld\nh\n", "hello\nworld\n\n"},
		{"o\n\nox\n", "\n\nx\n"},
		{"oé✓\neno newline at end", "é✓\nno newline at end"},
	} {
		for range 50 {
			var out bytes.Buffer
			writeSplit(t, rng, &prefixStripper{w: &out}, []byte(tt.in))
			if out.String() != tt.want {
				t.Fatalf("%q: got %q, want %q", tt.in, out.String(), tt.want)
			}
		}
	}
}
