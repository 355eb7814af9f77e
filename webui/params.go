package webui

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
)

// maxLimit is the largest page a list endpoint returns, as the store caps it.
const maxLimit = 1000

// params reads query parameters and keeps the first invalid one, so a
// handler can read all its parameters and check once.
type params struct {
	q   url.Values
	err error
}

func queryParams(r *http.Request) *params { return &params{q: r.URL.Query()} }

// Err is the error for the first invalid parameter read, or nil.
func (p *params) Err() error { return p.err }

func (p *params) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// intIn returns parameter name as an integer in [lo, hi], or def if absent.
func (p *params) intIn(name string, lo, hi, def int64) int64 {
	s := p.q.Get(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < lo || v > hi {
		want := fmt.Sprintf("an integer from %d to %d", lo, hi)
		switch {
		case lo == 1 && hi == math.MaxInt64:
			want = "a positive integer"
		case lo == 0 && hi == math.MaxInt32:
			want = "a non-negative integer"
		}
		p.fail(badParam(name, want, s))
		return def
	}
	return v
}

// limit returns ?limit= (1..maxLimit), or 0 — the store's default — if absent.
func (p *params) limit() int { return int(p.intIn("limit", 1, maxLimit, 0)) }

// id returns a positive id parameter, or 0 if absent.
func (p *params) id(name string) int64 { return p.intIn(name, 1, math.MaxInt64, 0) }

// line returns a log line number parameter (0-based), or def if absent.
func (p *params) line(name string, def int) int {
	return int(p.intIn(name, 0, math.MaxInt32, int64(def)))
}

// flag returns a boolean parameter written as 1/0/true/false (absent: false).
func (p *params) flag(name string) bool {
	switch s := p.q.Get(name); s {
	case "", "0", "false":
		return false
	case "1", "true":
		return true
	default:
		p.fail(badParam(name, "1, 0, true or false", s))
		return false
	}
}

// pathID returns the path wildcard key of r as a positive id; what names it
// in the error ("build id").
func pathID(r *http.Request, key, what string) (int64, error) {
	s := r.PathValue(key)
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		return 0, badParam(what, "a positive integer", s)
	}
	return v, nil
}
