package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestSlugify(t *testing.T) {
	tests := []struct{ in, want string }{
		{"stdio", "stdio"},
		{"Test Results", "test_results"},
		{"make -j4 (build)", "make__j4__build_"},
		{"déjà vu", "d_j__vu"},
		{"UPPER_123", "upper_123"},
	}
	for _, tt := range tests {
		if got := slugify(tt.in); got != tt.want {
			t.Errorf("slugify(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSplitChunks(t *testing.T) {
	line := func(n int) string { return strings.Repeat("x", n-1) + "\n" }
	tests := []struct {
		name  string
		in    string
		sizes []int // bytes per chunk
	}{
		{"one line", "a\n", []int{2}},
		{"exactly MaxChunk", strings.Repeat(line(1024), 64), []int{MaxChunk}},
		{"MaxChunk plus a line", strings.Repeat(line(1024), 65), []int{MaxChunk, 1024}},
		{"one line longer than MaxChunk", line(MaxChunk + 10), []int{MaxChunk + 10}},
		{"long line between short ones", line(100) + line(3*MaxChunk) + line(100), []int{100, 3 * MaxChunk, 100}},
		{"short lines then a long one", strings.Repeat(line(1000), 10) + line(MaxChunk+1), []int{10000, MaxChunk + 1}},
	}
	for _, tt := range tests {
		var sizes []int
		total := 0
		for _, c := range splitChunks([]byte(tt.in), nil) {
			sizes = append(sizes, len(c.data))
			if c.lines != bytes.Count(c.data, []byte("\n")) || c.data[len(c.data)-1] != '\n' {
				t.Errorf("%s: bad chunk: %d lines, ends %q", tt.name, c.lines, c.data[len(c.data)-1])
			}
			total += len(c.data)
		}
		if fmt.Sprint(sizes) != fmt.Sprint(tt.sizes) || total != len(tt.in) {
			t.Errorf("%s: chunk sizes %v, want %v", tt.name, sizes, tt.sizes)
		}
	}
}

// newLog adds a build, a step and a log to s.
func newLog(t testing.TB, s *Store, typ string) Log {
	t.Helper()
	ctx := t.Context()
	bid := must(s.EnsureBuilder(ctx, Builder{Name: "b"}))(t)
	b := must(s.AddBuild(ctx, NewBuild{BuilderID: bid}))(t)
	st := must(s.AddStep(ctx, b.ID, 1, "shell"))(t)
	return must(s.AddLog(ctx, st.ID, "stdio", typ))(t)
}

// TestAppendReadLog appends lines of varied sizes in varied batches and reads
// ranges back, comparing with a copy kept in memory.
func TestAppendReadLog(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	l := newLog(t, s, LogStdio)
	rng := rand.New(rand.NewPCG(1, 2))

	var lines [][]byte // the reference copy, one entry per line
	var total int64
	mkline := func(n int) []byte {
		b := make([]byte, n)
		b[0] = "oeh"[rng.IntN(3)]
		for i := 1; i < n-1; i++ {
			b[i] = byte('a' + rng.IntN(26))
		}
		b[n-1] = '\n'
		return b
	}
	appendBatch := func(batch [][]byte) {
		t.Helper()
		first, last := must2(t)(s.AppendLog(ctx, l.ID, bytes.Join(batch, nil)))
		if first != len(lines) || last != len(lines)+len(batch)-1 {
			t.Fatalf("AppendLog range = %d..%d, want %d..%d", first, last, len(lines), len(lines)+len(batch)-1)
		}
		for _, b := range batch {
			lines = append(lines, b)
			total += int64(len(b))
		}
	}
	for i := range 200 {
		var batch [][]byte
		switch i % 5 {
		case 0: // one short line
			batch = [][]byte{mkline(1 + rng.IntN(80))}
		case 1: // many lines, more than one chunk's worth
			for range 100 + rng.IntN(1500) {
				batch = append(batch, mkline(1+rng.IntN(200)))
			}
		default:
			for range 1 + rng.IntN(50) {
				batch = append(batch, mkline(1+rng.IntN(300)))
			}
		}
		if i == 77 { // a line longer than a chunk, between others
			batch = append(batch, mkline(MaxChunk+12345), mkline(5))
		}
		if i == 150 {
			batch = [][]byte{mkline(3 * MaxChunk)}
		}
		appendBatch(batch)
	}
	appendBatch([][]byte{[]byte("\n")}) // an empty line is a line

	got := must(s.GetLog(ctx, l.ID))(t)
	if got.NumLines != len(lines) || got.Size != total || got.Complete || got.Type != LogStdio || got.Slug != "stdio" {
		t.Fatalf("log = %+v, want %d lines %d bytes", got, len(lines), total)
	}

	// Chunks respect MaxChunk unless they hold a single line.
	rows := must(s.rdb.QueryContext(ctx, `SELECT first_line, last_line, length(content) FROM logchunks WHERE logid = ? ORDER BY first_line`, l.ID))(t)
	next := 0
	for rows.Next() {
		var first, last, size int
		ok(t, rows.Scan(&first, &last, &size))
		if first != next || last < first {
			t.Errorf("chunk %d..%d after line %d", first, last, next-1)
		}
		if size > MaxChunk && last != first {
			t.Errorf("chunk %d..%d is %d bytes", first, last, size)
		}
		next = last + 1
	}
	ok(t, rows.Err())
	rows.Close()
	if next != len(lines) {
		t.Errorf("chunks end at line %d, want %d", next, len(lines))
	}

	check := func(first, last int) {
		t.Helper()
		var buf bytes.Buffer
		n := must(s.ReadLog(ctx, l.ID, first, last, &buf))(t)
		end := last + 1
		if last < 0 || end > len(lines) {
			end = len(lines)
		}
		var want []byte
		wantN := 0
		if first < end {
			want = bytes.Join(lines[first:end], nil)
			wantN = end - first
		}
		if n != wantN || !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("ReadLog(%d, %d) = %d lines %d bytes, want %d lines %d bytes", first, last, n, buf.Len(), wantN, len(want))
		}
	}
	n := len(lines)
	for _, r := range [][2]int{
		{0, -1}, {0, 0}, {0, n - 1}, {n - 1, n - 1}, {n - 1, -1}, {n - 2, n + 100},
		{n, -1}, {n + 5, n + 10}, {10, 5}, {1, 1},
	} {
		check(r[0], r[1])
	}
	for range 300 {
		a := rng.IntN(n)
		check(a, a+rng.IntN(3000))
	}

	// A finished log takes no more lines.
	ok(t, s.FinishLog(ctx, l.ID))
	if _, _, err := s.AppendLog(ctx, l.ID, []byte("late\n")); !errors.Is(err, ErrAlreadyFinished) {
		t.Errorf("append to finished log: %v, want ErrAlreadyFinished", err)
	}
	if err := s.FinishLog(ctx, l.ID); !errors.Is(err, ErrAlreadyFinished) {
		t.Errorf("second FinishLog: %v, want ErrAlreadyFinished", err)
	}
	check(0, -1)
}

// must2 is must for functions returning two values and an error.
func must2(t testing.TB) func(a, b int, err error) (int, int) {
	return func(a, b int, err error) (int, int) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

func TestAppendLogErrors(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	l := newLog(t, s, LogText)
	for _, in := range []string{"", "no newline", "a\nb"} {
		if _, _, err := s.AppendLog(ctx, l.ID, []byte(in)); err == nil {
			t.Errorf("AppendLog(%q) succeeded", in)
		}
	}
	if _, _, err := s.AppendLog(ctx, 999, []byte("x\n")); !errors.Is(err, ErrNotFound) {
		t.Errorf("AppendLog to missing log: %v, want ErrNotFound", err)
	}
	if _, err := s.ReadLog(ctx, 999, 0, -1, new(bytes.Buffer)); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadLog of missing log: %v, want ErrNotFound", err)
	}
	if _, err := s.ReadLog(ctx, l.ID, -1, -1, new(bytes.Buffer)); err == nil {
		t.Error("ReadLog from line -1 succeeded")
	}
	if n, err := s.ReadLog(ctx, l.ID, 0, -1, new(bytes.Buffer)); n != 0 || err != nil {
		t.Errorf("ReadLog of empty log = %d, %v", n, err)
	}
	if err := s.FinishLog(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("FinishLog of missing log: %v, want ErrNotFound", err)
	}
	if _, err := s.AddLog(ctx, l.StepID, "x", "z"); err == nil {
		t.Error("AddLog with a bad type succeeded")
	}
	if _, err := s.AddLog(ctx, 999, "x", LogText); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddLog to missing step: %v, want ErrNotFound", err)
	}
}

func TestLogSlugsUnique(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	l := newLog(t, s, LogStdio)
	l2 := must(s.AddLog(ctx, l.StepID, "STDIO", LogText))(t)
	l3 := must(s.AddLog(ctx, l.StepID, "Test Results", LogHTML))(t)
	if l2.Slug != "stdio_2" || l3.Slug != "test_results" {
		t.Errorf("slugs %q %q", l2.Slug, l3.Slug)
	}
	ls := must(s.ListLogs(ctx, l.StepID))(t)
	if len(ls) != 3 || ls[0] != l || ls[1] != l2 || ls[2] != l3 {
		t.Errorf("ListLogs = %+v", ls)
	}
	if g := must(s.GetLogBySlug(ctx, l.StepID, "stdio_2"))(t); g != l2 {
		t.Errorf("GetLogBySlug = %+v", g)
	}
}

// failWriter fails after n bytes, as a client that goes away would.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return 0, errors.New("client gone")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestReadLogWriterError(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	l := newLog(t, s, LogText)
	for range 40 {
		must2(t)(s.AppendLog(ctx, l.ID, bytes.Repeat([]byte("0123456789abcdef\n"), 1000)))
	}
	if _, err := s.ReadLog(ctx, l.ID, 0, -1, &failWriter{100000}); err == nil || !strings.Contains(err.Error(), "client gone") {
		t.Errorf("ReadLog to a failing writer: %v", err)
	}
}
