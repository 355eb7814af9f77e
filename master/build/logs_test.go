package build

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/master/store"
)

// newLog makes a real log in a real store for sink tests.
func newLog(t *testing.T) (*store.Store, store.Log) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	bid, err := st.EnsureBuilder(ctx, store.Builder{Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	_, reqs, err := st.AddBuildset(ctx, store.NewBuildset{Reason: "t", BuilderIDs: []int64{bid}, SubmittedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.AddBuild(ctx, store.NewBuild{BuilderID: bid, RequestID: reqs[0].ID, StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	step, err := st.AddStep(ctx, b.ID, 0, "s")
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.AddLog(ctx, step.ID, "stdio", "s")
	if err != nil {
		t.Fatal(err)
	}
	return st, l
}

func TestLogCapKeepsWholeLinesAndSaysSo(t *testing.T) {
	st, l := newLog(t)
	ctx := context.Background()
	sink := &logSink{st: st, log: l, max: 100}
	line := "o" + strings.Repeat("x", 29) + "\n" // 31 bytes
	for i := 0; i < 10; i++ {
		if err := sink.append(ctx, []byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	sink.finish(ctx)
	var buf bytes.Buffer
	if _, err := st.ReadLog(ctx, l.ID, 0, -1, &buf); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	// 3 lines fit in 100 bytes; the 4th would not.
	if len(got) != 5 || got[0] != strings.TrimSuffix(line, "\n") || got[2] != got[0] {
		t.Fatalf("log = %q", got)
	}
	if !strings.HasPrefix(got[3], "hlog truncated: it reached its limit of 100 bytes") {
		t.Fatalf("truncation note = %q", got[3])
	}
	if got[4] != "h217 bytes of output were dropped after the limit" { // 7 lines of 31
		t.Fatalf("dropped note = %q", got[4])
	}
}

func TestLogWithoutCap(t *testing.T) {
	st, l := newLog(t)
	ctx := context.Background()
	sink := &logSink{st: st, log: l}
	big := []byte(strings.Repeat("o"+strings.Repeat("y", 99)+"\n", 100))
	if err := sink.append(ctx, big); err != nil {
		t.Fatal(err)
	}
	sink.finish(ctx)
	got, err := st.GetLog(ctx, l.ID)
	if err != nil || got.NumLines != 100 {
		t.Fatalf("log = %+v, %v", got, err)
	}
}
