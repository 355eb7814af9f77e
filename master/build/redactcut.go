package build

import (
	"bytes"
	"strings"

	"github.com/starforge/starforge/worker/proto"
)

// A worker cuts a line longer than max_line_length into several lines
// (starforge-worker at a UTF-8 boundary at most 3 bytes short of it,
// buildbot-worker at that many characters), so a secret in a long line may
// be stored split across two lines, where replacing whole secrets cannot
// see it. The log sink therefore looks at each pair of lines the first of
// which is long enough to be such a cut, and holds back a final line that
// is, until the next append (or the end of the log) shows what follows.

// cutLen is the shortest line, in bytes and without its stream prefix,
// that may be the first piece of a cut line.
const cutLen = proto.DefaultMaxLineLength - 3

// mayBeCut reports whether a stored line ("oTEXT", without its newline) is
// long enough to be the first piece of a cut.
func mayBeCut(line []byte) bool { return len(line)-1 >= cutLen }

// acrossCut redacts the secrets that span the boundary between a and b,
// two lines of one stream, each without its stream prefix or newline. It
// returns them unchanged when no secret spans it; otherwise the
// replacement goes at the end of the first line.
func (r *redactor) acrossCut(a, b string) (string, string) {
	if r == nil {
		return a, b
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for secret, name := range r.names {
		for k := 1; k < len(secret); k++ {
			if strings.HasSuffix(a, secret[:k]) && strings.HasPrefix(b, secret[k:]) {
				a = a[:len(a)-k] + "<secret:" + name + ">"
				b = b[len(secret)-k:]
				break
			}
		}
	}
	return a, b
}

// redactCuts redacts secrets across the cut lines of data (whole prefixed
// lines), and returns the lines to store now and a final line to hold
// back, if it may be the first piece of a cut whose rest has not come.
func (r *redactor) redactCuts(data []byte) (store, held []byte) {
	if r.replacer() == nil {
		return data, nil
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	changed := false
	for i := 0; i+1 < len(lines); i++ {
		a, b := bytes.TrimSuffix(lines[i], []byte("\n")), bytes.TrimSuffix(lines[i+1], []byte("\n"))
		if !mayBeCut(a) || len(b) == 0 || b[0] != a[0] {
			continue
		}
		na, nb := r.acrossCut(string(a[1:]), string(b[1:]))
		if na != string(a[1:]) {
			lines[i] = []byte(string(a[0]) + na + "\n")
			lines[i+1] = []byte(string(b[0]) + nb + "\n")
			changed = true
		}
	}
	if n := len(lines); n > 0 && mayBeCut(bytes.TrimSuffix(lines[n-1], []byte("\n"))) {
		held = lines[n-1]
		lines = lines[:n-1]
	}
	if !changed && held == nil {
		return data, nil
	}
	return bytes.Join(lines, nil), held
}
