package webui

import (
	"bufio"
	"bytes"
	"io"
	"unicode/utf8"
)

// This file holds the writers that let log endpoints stream a log from
// store.ReadLog to the client without holding it in memory.

// jsonStringWriter writes the bytes written to it as the inside of a JSON
// string (no quotes), escaped exactly as encoding/json escapes a Go string:
// invalid UTF-8 becomes U+FFFD, and <, >, &, U+2028, U+2029 are escaped so
// the output is safe to embed anywhere. A UTF-8 sequence split across two
// Writes is kept back until its end arrives; Close writes any incomplete
// sequence left at the end as U+FFFD.
type jsonStringWriter struct {
	w     *bufio.Writer
	tail  [2 * utf8.UTFMax]byte // an incomplete sequence, then room to complete it
	ntail int
}

func newJSONStringWriter(w *bufio.Writer) *jsonStringWriter { return &jsonStringWriter{w: w} }

// Write escapes p. It always reports len(p) unless the underlying writer
// fails, as bufio.Writer's sticky error then makes the stream worthless.
func (j *jsonStringWriter) Write(p []byte) (int, error) {
	n := len(p)
	if j.ntail > 0 {
		// Complete the held-back sequence with the first bytes of p.
		old := j.ntail
		k := copy(j.tail[old:], p)
		buf := j.tail[:old+k]
		pos := 0
		for pos < old {
			if !utf8.FullRune(buf[pos:]) {
				// Still incomplete: p was shorter than the rest of the rune.
				j.ntail = copy(j.tail[:], buf[pos:])
				return n, j.err()
			}
			pos += j.rune(buf[pos:])
		}
		j.ntail = 0
		p = p[pos-old:]
	}
	j.escape(p, false)
	return n, j.err()
}

// Close writes what is held back as replacement characters. It does not
// close or flush the underlying writer.
func (j *jsonStringWriter) Close() error {
	j.escape(j.tail[:j.ntail], true)
	j.ntail = 0
	return j.err()
}

// err returns the underlying writer's sticky error without flushing it.
func (j *jsonStringWriter) err() error {
	_, err := j.w.Write(nil)
	return err
}

// escape writes p escaped; unless final, an incomplete sequence at its end
// is held back in j.tail.
func (j *jsonStringWriter) escape(p []byte, final bool) {
	start := 0
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			j.w.Write(p[start:i])
			j.ascii(c)
			i++
			start = i
			continue
		}
		if !final && !utf8.FullRune(p[i:]) {
			j.w.Write(p[start:i])
			j.ntail = copy(j.tail[:], p[i:])
			return
		}
		r, size := utf8.DecodeRune(p[i:])
		if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
			j.w.Write(p[start:i])
			j.rune(p[i:])
			i += size
			start = i
			continue
		}
		i += size
	}
	j.w.Write(p[start:])
}

// rune writes the first (non-ASCII or ASCII) rune of p escaped and returns
// its length. p must hold a full rune or an invalid byte.
func (j *jsonStringWriter) rune(p []byte) int {
	if p[0] < utf8.RuneSelf {
		j.ascii(p[0])
		return 1
	}
	r, size := utf8.DecodeRune(p)
	switch {
	case r == utf8.RuneError && size == 1:
		j.w.WriteString(`\ufffd`)
	case r == '\u2028':
		j.w.WriteString(`\u2028`)
	case r == '\u2029':
		j.w.WriteString(`\u2029`)
	default:
		j.w.Write(p[:size])
	}
	return size
}

// ascii writes one ASCII byte, escaped as encoding/json would.
func (j *jsonStringWriter) ascii(c byte) {
	if jsonSafe[c] {
		j.w.WriteByte(c)
		return
	}
	switch c {
	case '\\', '"':
		j.w.WriteByte('\\')
		j.w.WriteByte(c)
	case '\b':
		j.w.WriteString(`\b`)
	case '\f':
		j.w.WriteString(`\f`)
	case '\n':
		j.w.WriteString(`\n`)
	case '\r':
		j.w.WriteString(`\r`)
	case '\t':
		j.w.WriteString(`\t`)
	default:
		const hex = "0123456789abcdef"
		j.w.WriteString(`\u00`)
		j.w.WriteByte(hex[c>>4])
		j.w.WriteByte(hex[c&0xf])
	}
}

// jsonSafe says which ASCII bytes go into a JSON string unescaped.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// prefixStripper removes the first byte of every line written through it:
// the stream character ('o', 'e', 'h') of Buildbot's stdio logs. An empty
// line, which has lost its stream somehow, is kept as it is rather than
// merged with the next.
type prefixStripper struct {
	w       io.Writer
	midLine bool
}

func (s *prefixStripper) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if !s.midLine {
			if p[0] != '\n' {
				p = p[1:]
			}
			s.midLine = true
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if _, err := s.w.Write(p); err != nil {
				return 0, err
			}
			break
		}
		if _, err := s.w.Write(p[:i+1]); err != nil {
			return 0, err
		}
		p = p[i+1:]
		s.midLine = false
	}
	return n, nil
}

// countingWriter counts the bytes that reached w, so that a handler knows
// whether it can still reply with an error status.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
