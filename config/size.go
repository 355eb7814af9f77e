package config

import (
	"fmt"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// DefaultLogMaxSize is the default cap on one stored log.
const DefaultLogMaxSize = 64 << 20

// DefaultUploadMaxSize is the default cap on one upload to the master.
const DefaultUploadMaxSize = 10 << 30

// sizeUnits are the suffixes byteSize accepts, longest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// parseSize reads "64MiB", "500 MB", "1GiB" or a plain number of bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q; want bytes (an int) or a size such as \"64MiB\", \"500MB\" or \"1GiB\"", s)
	}
	return n * mult, nil
}

// byteSize returns argument name as a number of bytes: an int, or a string
// with a unit; def when not given. 0 means no limit.
func (c *call) byteSize(name string, def int64) int64 {
	v, ok := c.given(name)
	if !ok {
		return def
	}
	switch x := v.(type) {
	case starlark.Int:
		n, ok := x.Int64()
		if !ok || n < 0 {
			c.argErrorf(name, "want a non-negative size, got %s", x)
			return def
		}
		return n
	case starlark.String:
		n, err := parseSize(string(x))
		if err != nil {
			c.argErrorf(name, "%v", err)
			return def
		}
		return n
	}
	c.argErrorf(name, "want an int of bytes or a size string such as \"64MiB\", got %s", v.Type())
	return def
}
