package command

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/starforge/starforge/worker/proto"
)

// This file turns a command's raw output into lines the way Buildbot's
// worker does (util/lineboundaries.py): matches of the master's newline_re
// become "\n", and lines longer than max_line_length are split. Unlike
// Buildbot 3.7 no byte is ever lost, and a newline sequence split across two
// reads is recognised exactly as if it had arrived in one.
//
// The work is split in two layers:
//   - a newlineScanner classifies raw bytes into text and line ends. It may
//     hold back a few bytes whose meaning depends on what follows (a "\r" at
//     the end of the data seen so far, a partial escape sequence).
//   - a lineAssembler collects text into the current line, cuts it at
//     MaxLineLength on a UTF-8 boundary and hands complete lines on.

// lineSink receives a scanner's classification of the bytes it was fed.
type lineSink interface {
	// text is line content. p is only valid during the call.
	text(p []byte)
	// newline ends the current line.
	newline()
}

// newlineScanner finds line ends in a byte stream fed in arbitrary pieces.
// It is not safe for concurrent use.
type newlineScanner interface {
	// feed classifies p. With eof set no more data follows, so everything
	// held back is resolved as end of data resolves it.
	feed(p []byte, eof bool, out lineSink)
	// holding reports whether bytes are held back undecided.
	holding() bool
}

// newScannerFactory returns a constructor of scanners for the master's
// newline_re. The default Buildbot pattern gets an exact hand-written
// scanner; a pattern using only RE2 syntax (plus the trailing "(?=.)"
// lookahead Buildbot's default uses) is handled with Go's regexp; anything
// else is an error, so that set_worker_settings can reject it.
func newScannerFactory(pattern string) (func() newlineScanner, error) {
	switch pattern {
	case proto.DefaultNewlineRE:
		return func() newlineScanner { return &defaultScanner{} }, nil
	case "":
		// No pattern: only "\n" ends a line.
		return func() newlineScanner { return &plainScanner{} }, nil
	}
	re, la, err := compileNewlineRE(pattern)
	if err != nil {
		return nil, err
	}
	return func() newlineScanner { return &regexpScanner{re: re, lookahead: la} }, nil
}

// ValidateNewlineRE reports whether the worker can apply pattern as a
// newline_re; the agent uses it to reject set_worker_settings.
func ValidateNewlineRE(pattern string) error {
	_, err := newScannerFactory(pattern)
	return err
}

// pyLookaheadAny is the only lookahead form accepted in a newline_re:
// "followed by any character but a newline", as in Buildbot's `\r(?=.)`.
const pyLookaheadAny = "(?=.)"

// compileNewlineRE translates a Python newline_re into a Go regexp. Each
// "(?=.)" becomes an empty named group whose position the scanner checks by
// hand; the names of those groups' indexes are returned.
func compileNewlineRE(pattern string) (*regexp.Regexp, []int, error) {
	translated := pattern
	var names []string
	for i := 0; strings.Contains(translated, pyLookaheadAny); i++ {
		name := fmt.Sprintf("sfla%d", i)
		names = append(names, name)
		translated = strings.Replace(translated, pyLookaheadAny, "(?P<"+name+">)", 1)
	}
	re, err := regexp.Compile(translated)
	if err != nil {
		return nil, nil, fmt.Errorf("newline_re %q: not supported by this worker (Go RE2 syntax plus a trailing (?=.) only): %w", pattern, err)
	}
	if re.MatchString("") {
		// Python would insert a newline between every two characters.
		return nil, nil, fmt.Errorf("newline_re %q matches the empty string", pattern)
	}
	la := make([]int, len(names))
	for i, n := range names {
		la[i] = re.SubexpIndex(n)
	}
	return re, la, nil
}

// plainScanner ends lines at "\n" only.
type plainScanner struct{}

func (plainScanner) feed(p []byte, _ bool, out lineSink) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			out.text(p)
			return
		}
		if i > 0 {
			out.text(p[:i])
		}
		out.newline()
		p = p[i+1:]
	}
}

func (plainScanner) holding() bool { return false }

// maxEscLen bounds the escape sequences the default scanner recognises, and
// therefore how many bytes it holds back. A cursor-position sequence longer
// than this (absurdly many digits) is treated as text whether or not it was
// split, so the output never depends on how the data was chunked.
const maxEscLen = 32

// defaultScanner implements Buildbot's default newline_re,
//
//	(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)
//
// as a streaming state machine. Each match becomes one line end, as
// re.sub(newline_re, "\n", text) does, and a "\n" in the data ends a line
// as well. Where the regexp needs to see the next byte (a "\r", a run of
// backspaces, a partial escape sequence at the end of the data seen so far)
// the scanner waits for it, so any split of the input gives the same lines.
type defaultScanner struct {
	pendCR bool   // saw "\r"; the next byte decides between "\r\n" and a lone "\r"
	inBS   bool   // inside a run of backspaces, which ends the line once
	esc    []byte // held prefix of a possible escape sequence (starts with ESC)
}

func (s *defaultScanner) holding() bool { return s.pendCR || s.inBS || len(s.esc) > 0 }

func (s *defaultScanner) feed(p []byte, eof bool, out lineSink) {
	buf := p
	if len(s.esc) > 0 {
		// Rescan the held prefix together with the new bytes. The prefix is
		// at most maxEscLen bytes, and held prefixes are rare.
		buf = append(append(make([]byte, 0, len(s.esc)+len(p)), s.esc...), p...)
		s.esc = s.esc[:0]
	}
	i := 0
	for i < len(buf) {
		if s.pendCR {
			// `\r\n` is one line end; `\r(?=.)` is one too and leaves the
			// following byte to be scanned on its own.
			s.pendCR = false
			out.newline()
			if buf[i] == '\n' {
				i++
			}
			continue
		}
		if s.inBS {
			for i < len(buf) && buf[i] == '\b' {
				i++
			}
			if i == len(buf) {
				break // the run may continue in the next piece
			}
			s.inBS = false
			out.newline()
			continue
		}
		j := indexSpecial(buf[i:])
		if j < 0 {
			out.text(buf[i:])
			break
		}
		if j > 0 {
			out.text(buf[i : i+j])
			i += j
		}
		switch buf[i] {
		case '\n':
			out.newline()
			i++
		case '\r':
			s.pendCR = true
			i++
		case '\b':
			s.inBS = true
			i++
		case 0x1b:
			n, more := matchEsc(buf[i:])
			if more && !eof {
				s.esc = append(s.esc[:0], buf[i:]...)
				return
			}
			if n > 0 {
				out.newline()
				i += n
			} else {
				out.text(buf[i : i+1])
				i++
			}
		}
	}
	if eof {
		// A "\r" or backspace run at the very end: Buildbot's flush appends
		// "\n", which makes "\r\n" (one line end) or "\b+\n"; we end the
		// line once in both cases rather than adding an empty line.
		if s.pendCR || s.inBS {
			out.newline()
		}
		s.pendCR, s.inBS = false, false
	}
}

// indexSpecial returns the index of the first byte that may start a line end.
func indexSpecial(p []byte) int {
	for i, c := range p {
		switch c {
		case '\n', '\r', '\b', 0x1b:
			return i
		}
	}
	return -1
}

// matchEsc matches the default pattern's escape sequences at the start of
// b (b[0] is ESC): ESC[u, ESC[<n>;<m>H, ESC[<n>;<m>f and ESC[2J. It returns
// the match length, or 0 for no match; more reports that b ends inside what
// could still become a match.
func matchEsc(b []byte) (n int, more bool) {
	if len(b) < 2 {
		return 0, true
	}
	if b[1] != '[' {
		return 0, false
	}
	if len(b) < 3 {
		return 0, true
	}
	if b[2] == 'u' {
		return 3, false
	}
	if b[2] == '2' {
		if len(b) < 4 {
			return 0, true
		}
		if b[3] == 'J' {
			return 4, false
		}
	}
	// ESC [ digits ; digits [Hf]
	j := 2
	for j < len(b) && j < maxEscLen && isASCIIDigit(b[j]) {
		j++
	}
	switch {
	case j == 2:
		return 0, false
	case j == maxEscLen:
		return 0, false
	case j == len(b):
		return 0, true
	case b[j] != ';':
		return 0, false
	}
	j++
	k := j
	for j < len(b) && j < maxEscLen && isASCIIDigit(b[j]) {
		j++
	}
	switch {
	case j == maxEscLen:
		return 0, false
	case j == len(b):
		return 0, true
	case j == k:
		return 0, false
	case b[j] == 'H' || b[j] == 'f':
		return j + 1, false
	}
	return 0, false
}

func isASCIIDigit(c byte) bool { return c >= '0' && c <= '9' }

// regexpHold bounds how much of an unterminated line the regexp scanner
// keeps for rescanning when more data arrives (Buildbot rescans its whole
// partial line). A match spanning more than this many bytes of a very long
// line can be missed; the bytes are never lost.
const regexpHold = 4096

// regexpScanner applies a custom newline_re with Go's regexp. Like
// Buildbot it rescans the unterminated rest of the data when more arrives,
// so matches split across reads are found; a match touching the end of the
// data is only taken once the following byte is known (or at eof), since
// it might extend or, for "(?=.)", not match at all.
type regexpScanner struct {
	re        *regexp.Regexp
	lookahead []int  // submatch indexes of the translated (?=.) groups
	pending   []byte // raw bytes not classified yet
}

func (s *regexpScanner) holding() bool { return len(s.pending) > 0 }

func (s *regexpScanner) feed(p []byte, eof bool, out lineSink) {
	s.pending = append(s.pending, p...)
	if !eof {
		i := s.scan(s.pending, false, out)
		n := copy(s.pending, s.pending[i:])
		s.pending = s.pending[:n]
		return
	}
	// At the end, Buildbot's flush appends "\n" to the unterminated rest
	// of the line and applies the pattern to it once more (so a final
	// "\r" becomes "\r\n", one line end).
	buf := s.pending
	s.pending = nil
	if i := s.scan(buf, true, out); i < len(buf) {
		rest := append(append(make([]byte, 0, len(buf)-i+1), buf[i:]...), '\n')
		s.scan(rest, true, out)
	}
}

// scan classifies buf and returns how much of it was consumed. Before eof
// it stops at a line end that needs more data to be decided, and keeps the
// unterminated rest for rescanning (up to regexpHold bytes); at eof it
// decides everything and leaves the unterminated rest to the caller.
func (s *regexpScanner) scan(buf []byte, eof bool, out lineSink) int {
	i := 0
	// The next candidate match, kept while it lies ahead: searching again
	// after every "\n" would make many short lines quadratic.
	var m struct {
		valid, ok, hold bool
		start, end      int
	}
	for i < len(buf) {
		if !m.valid || m.start < i {
			m.start, m.end, m.ok, m.hold = s.next(buf, i, eof)
			m.valid = true
			if !m.ok && !m.hold {
				m.start = len(buf) // none in the rest
			}
		}
		nl := bytes.IndexByte(buf[i:], '\n')
		if m.hold && (nl < 0 || i+nl >= m.start) {
			// The first candidate line end needs more data. Keep the text
			// before it too: with more data a match might begin earlier.
			if m.start-i > regexpHold {
				out.text(buf[i:m.start])
				i = m.start
			}
			return i
		}
		if m.ok && (nl < 0 || m.start <= i+nl) {
			if m.start > i {
				out.text(buf[i:m.start])
			}
			out.newline()
			i = m.end
			m.valid = false
			continue
		}
		if nl >= 0 {
			if nl > 0 {
				out.text(buf[i : i+nl])
			}
			out.newline()
			i += nl + 1
			continue
		}
		// No line end in the rest: keep it for rescanning, within limits.
		if rest := len(buf) - i; !eof && rest > regexpHold {
			out.text(buf[i : len(buf)-regexpHold])
			i = len(buf) - regexpHold
		}
		return i
	}
	return i
}

// next finds the first acceptable match in buf at or after from. hold
// reports that the first candidate (at start) cannot be decided before more
// data arrives.
func (s *regexpScanner) next(buf []byte, from int, eof bool) (start, end int, ok, hold bool) {
	for from < len(buf) {
		m := s.re.FindSubmatchIndex(buf[from:])
		if m == nil {
			return 0, 0, false, false
		}
		start, end = from+m[0], from+m[1]
		if end == len(buf) && !eof {
			// A greedy match might grow with the next byte.
			return start, end, false, true
		}
		reject := false
		for _, g := range s.lookahead {
			if g < 0 || m[2*g] < 0 {
				continue
			}
			at := from + m[2*g]
			switch {
			case at >= len(buf) && !eof:
				return start, end, false, true
			case at >= len(buf) || buf[at] == '\n':
				// Python's "." matches neither end of data nor "\n".
				reject = true
			}
		}
		if reject || end == start {
			from = start + 1
			continue
		}
		return start, end, true, false
	}
	return 0, 0, false, false
}

// lineAssembler builds lines from a scanner's output, splitting lines
// longer than max bytes. It is not safe for concurrent use.
type lineAssembler struct {
	max  int
	line []byte
	// emit receives each complete line, without its "\n"; line is only
	// valid during the call.
	emit func(line []byte)
}

func (a *lineAssembler) text(p []byte) {
	if a.max <= 0 {
		a.line = append(a.line, p...)
		return
	}
	for {
		// Cut once enough bytes past max are here to see any character
		// straddling it, so the pieces do not depend on how the data was
		// read. The line never grows beyond max+UTFMax, so a long line
		// costs linear time however it arrives.
		for len(a.line) >= a.max+utf8.UTFMax {
			a.cut()
		}
		if len(p) == 0 {
			return
		}
		n := min(len(p), a.max+utf8.UTFMax-len(a.line))
		a.line = append(a.line, p[:n]...)
		p = p[n:]
	}
}

func (a *lineAssembler) newline() {
	for a.max > 0 && len(a.line) > a.max {
		a.cut()
	}
	a.emit(a.line)
	a.line = a.line[:0]
}

// cut emits the first piece of an overlong line.
func (a *lineAssembler) cut() {
	n := utf8Cut(a.line, a.max)
	a.emit(a.line[:n])
	a.line = a.line[:copy(a.line, a.line[n:])]
}

// utf8Cut returns where to cut b (len(b) > max) so that the first piece has
// at most max bytes and no valid UTF-8 sequence is split between pieces. It
// never returns 0; invalid data is cut at max.
func utf8Cut(b []byte, max int) int {
	for j := max - 1; j >= 0 && j > max-utf8.UTFMax; j-- {
		c := b[j]
		if c < utf8.RuneSelf {
			break // ASCII: nothing straddles the cut
		}
		if !utf8.RuneStart(c) {
			continue // a continuation byte: look for its lead byte
		}
		if r, size := utf8.DecodeRune(b[j:]); j > 0 && j+size > max && (r != utf8.RuneError || size > 1) {
			return j // a valid character would be cut in two
		}
		break
	}
	return max
}
