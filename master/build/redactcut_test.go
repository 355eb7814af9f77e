package build

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestSecretAcrossACutLine: a secret in a line longer than the worker's
// max_line_length is stored split across two lines; it must not show in
// the log, whether both pieces come in one append or in two, and a held
// line is stored at the end.
func TestSecretAcrossACutLine(t *testing.T) {
	const secret = "hunter2-very-secret-token"
	for _, tc := range []struct {
		name  string
		split int // where the worker cut the secret
		apart bool
	}{
		{"one append", 10, false},
		{"two appends", 7, true},
		{"cut after the first byte", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, l := newLog(t)
			ctx := context.Background()
			r := &redactor{}
			r.add("token", secret)
			sink := &logSink{st: st, log: l, redact: r}
			first := "o" + strings.Repeat("x", cutLen+2-tc.split) + secret[:tc.split] + "\n"
			second := "o" + secret[tc.split:] + " and more\n"
			if tc.apart {
				if err := sink.append(ctx, []byte(first)); err != nil {
					t.Fatal(err)
				}
				if err := sink.append(ctx, []byte(second)); err != nil {
					t.Fatal(err)
				}
			} else if err := sink.append(ctx, []byte(first+second)); err != nil {
				t.Fatal(err)
			}
			if err := sink.append(ctx, []byte("o"+strings.Repeat("y", cutLen+1)+"\n")); err != nil {
				t.Fatal(err)
			}
			sink.finish(ctx)
			var buf bytes.Buffer
			if _, err := st.ReadLog(ctx, l.ID, 0, -1, &buf); err != nil {
				t.Fatal(err)
			}
			got := buf.String()
			if strings.Contains(got, secret[:tc.split]+"\n") || strings.Contains(got, "\no"+secret[tc.split:]) {
				t.Errorf("a piece of the secret is stored")
			}
			if !strings.Contains(got, "<secret:token>\no and more\n") {
				t.Errorf("the cut secret is not replaced where it was: %q", got[len(got)-min(len(got), 200):])
			}
			if !strings.HasSuffix(got, strings.Repeat("y", 50)+"\n") {
				t.Error("the held final line was not stored at the end")
			}
		})
	}
}
