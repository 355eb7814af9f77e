package proto

import (
	"strings"
	"testing"
)

// realisticUpdate is what a worker sends for 1 MiB of 100-byte lines.
func realisticUpdate() Message {
	text := strings.Repeat(strings.Repeat("x", 99)+"\n", 10486)
	return Message{"op": OpUpdate, "seq_number": 7, "command_id": "12",
		"args": EncodeUpdates([]Update{{UpdStdout, NewLogChunk(text, 1.795e9)}})}
}

func BenchmarkEncodeUpdate(b *testing.B) {
	m := realisticUpdate()
	b.SetBytes(1 << 20)
	for i := 0; i < b.N; i++ {
		if _, err := Encode(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeUpdate(b *testing.B) {
	raw, err := Encode(realisticUpdate())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m, err := Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeUpdates(m["args"]); err != nil {
			b.Fatal(err)
		}
	}
}
