package proto

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestTraceRoundTrip encodes every message of the captured exchange with a
// real buildbot-worker 3.7 and decodes it back unchanged.
func TestTraceRoundTrip(t *testing.T) {
	f, err := os.Open("testdata/buildbot-msgpack-trace.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		var rec struct {
			Msg map[string]any `json:"msg"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Msg == nil {
			continue
		}
		msg := Message(normalizeJSON(rec.Msg).(map[string]any))
		b, err := Encode(msg)
		if err != nil {
			t.Fatalf("encode %v: %v", msg, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("decode %v: %v", msg, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(msg)) {
			t.Errorf("round trip changed the message:\n got %#v\nwant %#v", got, msg)
		}
		if msg.Op() == OpUpdate {
			if _, err := DecodeUpdates(got["args"]); err != nil {
				t.Errorf("DecodeUpdates(%v): %v", got["args"], err)
			}
		}
		n++
	}
	if n < 100 {
		t.Fatalf("only %d messages in the trace", n)
	}
}

// normalizeJSON turns the trace's JSON forms back into wire types: numbers
// that are whole become int64, {"__bytes__": s} becomes []byte.
func normalizeJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		if s, ok := t["__bytes__"].(string); ok {
			b := make([]byte, 0, len(s))
			for _, r := range s {
				b = append(b, byte(r))
			}
			return b
		}
		for k, e := range t {
			t[k] = normalizeJSON(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = normalizeJSON(e)
		}
		return t
	case float64:
		if t == float64(int64(t)) {
			return int64(t)
		}
	}
	return v
}

// normalize maps every integer width to int64 for comparison.
func normalize(v any) any {
	switch t := v.(type) {
	case Message:
		return normalize(map[string]any(t))
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = normalize(e)
		}
		return out
	}
	if n, ok := toInt(v); ok {
		return n
	}
	return v
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "decode frame"},
		{"not a map", []byte{0x93, 1, 2, 3}, "not a msgpack map"},
		{"int key", []byte{0x81, 0x01, 0x02}, "map key is not a string"},
		{"huge map claim", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, "claims"},
		{"huge array claim", []byte{0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff}, "claims"},
		{"trailing bytes", []byte{0x80, 0x00}, "trailing"},
		{"truncated", []byte{0x82, 0xa2, 'o', 'p'}, "decode frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode(%x) = %v, want error containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestDecodeDeepNesting(t *testing.T) {
	var b bytes.Buffer
	b.Write([]byte{0x81, 0xa1, 'a'})
	for i := 0; i < 10000; i++ {
		b.WriteByte(0x91) // a one-element array, nested
	}
	b.WriteByte(0xc0)
	if _, err := Decode(b.Bytes()); err == nil || !strings.Contains(err.Error(), "nesting") {
		t.Fatalf("deep nesting: err = %v", err)
	}
}

func TestBinAndStrStayDistinct(t *testing.T) {
	b, err := Encode(Message{"s": "text", "b": []byte("data"), "e": []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m["s"].(string); !ok {
		t.Errorf("str decoded as %T", m["s"])
	}
	if _, ok := m["b"].([]byte); !ok {
		t.Errorf("bin decoded as %T", m["b"])
	}
	if e, ok := m["e"].([]byte); !ok || len(e) != 0 {
		t.Errorf("empty bin decoded as %#v (a worker needs an empty bin for EOF)", m["e"])
	}
}

func TestUpdatesRoundTrip(t *testing.T) {
	in := []Update{
		{UpdHeader, NewLogChunk("sh -c x\n in dir /b\n", 1.5)},
		{UpdStdout, NewLogChunk("out1\npartial", 2)},
		{UpdLog, NamedLogChunk{Name: "test.log", Chunk: NewLogChunk("x\n", 3)}},
		{UpdRC, 3},
		{UpdElapsed, 0.25},
	}
	b, err := Encode(Message{"args": EncodeUpdates(in)})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeUpdates(m["args"])
	if err != nil {
		t.Fatal(err)
	}
	if c := got[1].Value.(LogChunk); c.Text != "out1\npartial\n" || !reflect.DeepEqual(c.Indexes, []int{4, 12}) {
		t.Errorf("stdout chunk = %+v", c)
	}
	if nc := got[2].Value.(NamedLogChunk); nc.Name != "test.log" || nc.Chunk.Text != "x\n" {
		t.Errorf("log chunk = %+v", nc)
	}
	if rc, _ := AsInt(got[3].Value); rc != 3 {
		t.Errorf("rc = %v", got[3].Value)
	}
}

func FuzzDecode(f *testing.F) {
	seeds := []Message{
		{"op": "update", "seq_number": 4, "command_id": "c3", "args": EncodeUpdates([]Update{{UpdStdout, NewLogChunk("a\n", 1)}, {UpdRC, 0}})},
		{"op": "response", "seq_number": 1, "result": nil},
		{"op": "response", "seq_number": 1, "result": "boom", "is_exception": true},
		{"op": "update_upload_file_write", "seq_number": 2, "command_id": "c", "args": []byte("data")},
	}
	for _, s := range seeds {
		b, _ := Encode(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		if m.Op() == OpUpdate {
			_, _ = DecodeUpdates(m["args"])
		}
		// What decodes must encode again.
		if _, err := Encode(m); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
	})
}
