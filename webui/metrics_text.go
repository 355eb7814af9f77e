package webui

import (
	"bytes"
	"math"
	"strconv"
	"strings"
)

// This file writes Prometheus's text exposition format, version 0.0.4:
//
//	# HELP name text
//	# TYPE name counter|gauge|histogram
//	name{label="value",...} 1.5
//
// Label values escape \, " and newline; HELP text escapes \ and newline.
// A histogram is the series name_bucket{le="..."} (cumulative counts,
// ending with le="+Inf"), name_sum and name_count.

// label is one name="value" pair.
type label struct{ name, value string }

type labels []label

// histogram counts observations into buckets with upper bounds bounds
// (ascending; +Inf is implied). It is not safe for concurrent use.
type histogram struct {
	bounds []float64
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	count  uint64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	if math.IsNaN(v) {
		return
	}
	i := len(h.bounds)
	for j, b := range h.bounds {
		if v <= b {
			i = j
			break
		}
	}
	h.counts[i]++
	h.sum += v
	h.count++
}

// exposition accumulates one scrape's text.
type exposition struct{ buf bytes.Buffer }

func (x *exposition) bytes() []byte { return x.buf.Bytes() }

// family starts a metric family: its help and type lines.
func (x *exposition) family(name, typ, help string) {
	x.buf.WriteString("# HELP ")
	x.buf.WriteString(name)
	x.buf.WriteByte(' ')
	x.buf.WriteString(helpEscaper.Replace(help))
	x.buf.WriteString("\n# TYPE ")
	x.buf.WriteString(name)
	x.buf.WriteByte(' ')
	x.buf.WriteString(typ)
	x.buf.WriteByte('\n')
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// sample writes one sample line.
func (x *exposition) sample(name string, ls labels, v float64) {
	x.buf.WriteString(name)
	if len(ls) > 0 {
		x.buf.WriteByte('{')
		for i, l := range ls {
			if i > 0 {
				x.buf.WriteByte(',')
			}
			x.buf.WriteString(l.name)
			x.buf.WriteString(`="`)
			x.buf.WriteString(labelEscaper.Replace(l.value))
			x.buf.WriteByte('"')
		}
		x.buf.WriteByte('}')
	}
	x.buf.WriteByte(' ')
	x.buf.WriteString(formatFloat(v))
	x.buf.WriteByte('\n')
}

// histogram writes h's series with labels ls.
func (x *exposition) histogram(name string, ls labels, h *histogram) {
	var cum uint64
	for i, c := range h.counts {
		cum += c
		le := "+Inf"
		if i < len(h.bounds) {
			le = formatFloat(h.bounds[i])
		}
		x.sample(name+"_bucket", append(ls[:len(ls):len(ls)], label{"le", le}), float64(cum))
	}
	x.sample(name+"_sum", ls, h.sum)
	x.sample(name+"_count", ls, float64(h.count))
}

// formatFloat writes v as Prometheus parses it: integers without an
// exponent up to 2^53, +Inf, -Inf and NaN by name.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
