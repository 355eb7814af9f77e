package proto

import (
	"fmt"
	"strings"
)

// Update is one [key, value] entry of an update message's args.
type Update struct {
	Key   string
	Value any
}

// EncodeUpdates turns updates into the wire form: a list of two-element lists.
func EncodeUpdates(us []Update) []any {
	out := make([]any, len(us))
	for i, u := range us {
		v := u.Value
		switch t := v.(type) {
		case LogChunk:
			v = t.wire()
		case NamedLogChunk:
			v = []any{t.Name, t.Chunk.wire()}
		}
		out[i] = []any{u.Key, v}
	}
	return out
}

// DecodeUpdates parses an update message's args. Text entries (stdout,
// stderr, header) become LogChunk and log entries NamedLogChunk; other
// values are passed through as decoded.
func DecodeUpdates(v any) ([]Update, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("update args: want list of [key, value], got %T", v)
	}
	out := make([]Update, 0, len(list))
	for i, e := range list {
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("update args[%d]: want [key, value]", i)
		}
		key, ok := pair[0].(string)
		if !ok {
			return nil, fmt.Errorf("update args[%d]: key is %T, not string", i, pair[0])
		}
		val := pair[1]
		switch key {
		case UpdStdout, UpdStderr, UpdHeader:
			c, err := decodeLogChunk(val)
			if err != nil {
				return nil, fmt.Errorf("update %q: %w", key, err)
			}
			val = c
		case UpdLog:
			p, ok := val.([]any)
			if !ok || len(p) != 2 {
				return nil, fmt.Errorf("update log: want [name, chunk]")
			}
			name, ok := p[0].(string)
			if !ok {
				return nil, fmt.Errorf("update log: name is %T, not string", p[0])
			}
			c, err := decodeLogChunk(p[1])
			if err != nil {
				return nil, fmt.Errorf("update log %q: %w", name, err)
			}
			val = NamedLogChunk{Name: name, Chunk: c}
		}
		out = append(out, Update{Key: key, Value: val})
	}
	return out, nil
}

// LogChunk is the value of a stdout, stderr or header update: one or more
// complete lines, each ending in "\n", with the offset of each newline and
// the time (float seconds since the epoch) each line began.
type LogChunk struct {
	Text    string
	Indexes []int
	Times   []float64
}

// NamedLogChunk is the value of a log update (a logfile the command watches).
type NamedLogChunk struct {
	Name  string
	Chunk LogChunk
}

// NewLogChunk builds a chunk from text, computing the newline indexes; every
// line gets time t. Text that does not end in a newline gets one, since the
// wire form carries whole lines only.
func NewLogChunk(text string, t float64) LogChunk {
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	c := LogChunk{Text: text}
	for i := 0; i < len(text); i++ {
		if text[i] == '\n' {
			c.Indexes = append(c.Indexes, i)
			c.Times = append(c.Times, t)
		}
	}
	return c
}

func (c LogChunk) wire() []any {
	idx := make([]any, len(c.Indexes))
	for i, n := range c.Indexes {
		idx[i] = n
	}
	ts := make([]any, len(c.Times))
	for i, t := range c.Times {
		ts[i] = t
	}
	return []any{c.Text, idx, ts}
}

func decodeLogChunk(v any) (LogChunk, error) {
	switch t := v.(type) {
	case string:
		// Lenient: some peers send bare text.
		return LogChunk{Text: t}, nil
	case []any:
		if len(t) < 1 {
			return LogChunk{}, fmt.Errorf("empty chunk")
		}
		var c LogChunk
		switch s := t[0].(type) {
		case string:
			c.Text = s
		case []byte:
			c.Text = string(s)
		default:
			return LogChunk{}, fmt.Errorf("chunk text is %T", t[0])
		}
		// Indexes and times are informational; keep them when well-formed.
		if len(t) >= 3 {
			if idx, ok := t[1].([]any); ok {
				c.Indexes = make([]int, 0, len(idx))
				for _, e := range idx {
					if n, ok := toInt(e); ok {
						c.Indexes = append(c.Indexes, int(n))
					}
				}
			}
			if ts, ok := t[2].([]any); ok {
				c.Times = make([]float64, 0, len(ts))
				for _, e := range ts {
					if f, ok := toFloat(e); ok {
						c.Times = append(c.Times, f)
					}
				}
			}
		}
		return c, nil
	}
	return LogChunk{}, fmt.Errorf("want [text, indexes, times], got %T", v)
}
