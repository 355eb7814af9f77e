package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// Message is one decoded frame: a msgpack map with string keys. Values are
// nil, bool, signed or unsigned integers of any width, float32/float64,
// string (msgpack str), []byte (msgpack bin), []any and map[string]any.
// Use Args' accessors rather than type switches on the integer widths.
type Message map[string]any

// Op returns the message's op, or "" when it has none.
func (m Message) Op() string { s, _ := m["op"].(string); return s }

// Seq returns the message's seq_number and whether it has a valid one.
func (m Message) Seq() (int64, bool) { return toInt(m["seq_number"]) }

// A claimed map or array length is checked against the bytes left in the
// frame (every element takes at least one byte, every entry two) before
// anything is allocated for it, so a tiny frame claiming four billion
// entries is refused, and what is preallocated is never more than decoding
// a genuine frame of that size would allocate anyway.

// maxDepth bounds nesting, so a frame of nested one-element arrays cannot
// exhaust the stack.
const maxDepth = 64

// Encode packs m as one frame's payload. Strings become msgpack str and
// []byte becomes bin, as both Buildbot sides expect.
func Encode(m Message) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(map[string]any(m)); err != nil {
		return nil, fmt.Errorf("encode %q message: %w", m.Op(), err)
	}
	return buf.Bytes(), nil
}

// ErrNotMap is returned by Decode for a frame that is valid msgpack but not a
// map with string keys.
var ErrNotMap = errors.New("frame is not a msgpack map with string keys")

// Decode unpacks one frame's payload. It never panics and never allocates
// much more than the frame's size, whatever the frame claims.
func Decode(b []byte) (Message, error) {
	d := &decoder{buf: b, r: bytes.NewReader(b)}
	d.dec = msgpack.NewDecoder(d.r)
	code, err := d.dec.PeekCode()
	if err != nil {
		return nil, fmt.Errorf("decode frame: %w", err)
	}
	if !isMapCode(code) {
		return nil, ErrNotMap
	}
	v, err := d.value(0)
	if err != nil {
		return nil, fmt.Errorf("decode frame: %w", err)
	}
	if d.r.Len() != 0 {
		return nil, fmt.Errorf("decode frame: %d trailing bytes after the map", d.r.Len())
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, ErrNotMap
	}
	return Message(m), nil
}

func isMapCode(c byte) bool {
	return (c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf
}

func isArrayCode(c byte) bool {
	return (c >= 0x90 && c <= 0x9f) || c == 0xdc || c == 0xdd
}

type decoder struct {
	buf []byte // the whole frame
	r   *bytes.Reader
	dec *msgpack.Decoder
}

// raw returns the payload of the str or bin at the reader's position,
// sliced from the frame (no copy) and skips past it. msgpack's own reader
// copies large payloads in growing chunks; a log update's text is one
// megabyte-sized str, so this matters.
func (d *decoder) raw(c byte) ([]byte, error) {
	off := len(d.buf) - d.r.Len()
	var hdr, n int
	rest := d.buf[off:]
	switch {
	case c >= 0xa0 && c <= 0xbf:
		hdr, n = 1, int(c&0x1f)
	case c == 0xd9 || c == 0xc4:
		if len(rest) < 2 {
			return nil, io.ErrUnexpectedEOF
		}
		hdr, n = 2, int(rest[1])
	case c == 0xda || c == 0xc5:
		if len(rest) < 3 {
			return nil, io.ErrUnexpectedEOF
		}
		hdr, n = 3, int(binary.BigEndian.Uint16(rest[1:]))
	case c == 0xdb || c == 0xc6:
		if len(rest) < 5 {
			return nil, io.ErrUnexpectedEOF
		}
		hdr, n = 5, int(binary.BigEndian.Uint32(rest[1:]))
	default:
		return nil, fmt.Errorf("code %#x is not a str or bin", c)
	}
	if n > len(rest)-hdr {
		return nil, fmt.Errorf("string of %d bytes in %d remaining bytes: %w", n, len(rest)-hdr, io.ErrUnexpectedEOF)
	}
	if _, err := d.r.Seek(int64(off+hdr+n), io.SeekStart); err != nil {
		return nil, err
	}
	return rest[hdr : hdr+n], nil
}

func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nesting deeper than %d", maxDepth)
	}
	c, err := d.dec.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case isMapCode(c):
		n, err := d.dec.DecodeMapLen()
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		if 2*n > d.r.Len() {
			return nil, fmt.Errorf("map claims %d entries in %d remaining bytes", n, d.r.Len())
		}
		m := make(map[string]any, n)
		for i := 0; i < n; i++ {
			kc, err := d.dec.PeekCode()
			if err != nil {
				return nil, err
			}
			if !isStrCode(kc) {
				return nil, fmt.Errorf("map key is not a string (code %#x)", kc)
			}
			kb, err := d.raw(kc)
			if err != nil {
				return nil, err
			}
			k := string(kb)
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, fmt.Errorf("key %q: %w", k, err)
			}
			m[k] = v
		}
		return m, nil
	case isArrayCode(c):
		n, err := d.dec.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		if n > d.r.Len() {
			return nil, fmt.Errorf("array claims %d elements in %d remaining bytes", n, d.r.Len())
		}
		a := make([]any, 0, n)
		for i := 0; i < n; i++ {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		return a, nil
	case isBinCode(c):
		b, err := d.raw(c)
		if err != nil {
			return nil, err
		}
		// A copy: callers may keep bin values (file data) past the frame.
		return append(make([]byte, 0, len(b)), b...), nil
	case isStrCode(c):
		b, err := d.raw(c)
		if err != nil {
			return nil, err
		}
		return string(b), nil
	default:
		// Scalars (and extensions, which the protocol never uses).
		return d.dec.DecodeInterface()
	}
}

func isStrCode(c byte) bool {
	return (c >= 0xa0 && c <= 0xbf) || c == 0xd9 || c == 0xda || c == 0xdb
}

func isBinCode(c byte) bool { return c == 0xc4 || c == 0xc5 || c == 0xc6 }
