package proto

import (
	"fmt"
	"math"
	"sort"
)

// Args is a map of command arguments or message fields, with accessors that
// accept every integer width msgpack may produce and report a wrong type as
// an error naming the key.
type Args map[string]any

// Has reports whether key is present (its value may be nil).
func (a Args) Has(key string) bool { _, ok := a[key]; return ok }

// Require returns an error naming the first of keys that is absent.
func (a Args) Require(keys ...string) error {
	for _, k := range keys {
		if !a.Has(k) {
			return fmt.Errorf("missing argument %q", k)
		}
	}
	return nil
}

// String returns a[key] as a string; def if absent or nil.
func (a Args) String(key, def string) (string, error) {
	v, ok := a[key]
	if !ok || v == nil {
		return def, nil
	}
	switch s := v.(type) {
	case string:
		return s, nil
	case []byte:
		return string(s), nil
	}
	return "", fmt.Errorf("argument %q: want string, got %T", key, v)
}

// Int returns a[key] as an int64; def if absent or nil. Floats with no
// fractional part are accepted (Python masters sometimes send 120.0).
func (a Args) Int(key string, def int64) (int64, error) {
	v, ok := a[key]
	if !ok || v == nil {
		return def, nil
	}
	if n, ok := toInt(v); ok {
		return n, nil
	}
	if f, ok := toFloat(v); ok && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int64(f), nil
	}
	return 0, fmt.Errorf("argument %q: want integer, got %T", key, v)
}

// OptInt returns a[key] as an int64 and true, or false when absent or nil.
func (a Args) OptInt(key string) (int64, bool, error) {
	if v, ok := a[key]; !ok || v == nil {
		return 0, false, nil
	}
	n, err := a.Int(key, 0)
	return n, err == nil, err
}

// Float returns a[key] as a float64; def if absent or nil.
func (a Args) Float(key string, def float64) (float64, error) {
	v, ok := a[key]
	if !ok || v == nil {
		return def, nil
	}
	if f, ok := toFloat(v); ok {
		return f, nil
	}
	return 0, fmt.Errorf("argument %q: want number, got %T", key, v)
}

// OptFloat returns a[key] as a float64 and true, or false when absent or nil.
func (a Args) OptFloat(key string) (float64, bool, error) {
	if v, ok := a[key]; !ok || v == nil {
		return 0, false, nil
	}
	f, err := a.Float(key, 0)
	return f, err == nil, err
}

// Bool returns a[key] as a bool; def if absent or nil. Integers count as
// booleans (0 is false), as Python's truthiness does.
func (a Args) Bool(key string, def bool) (bool, error) {
	v, ok := a[key]
	if !ok || v == nil {
		return def, nil
	}
	if b, ok := v.(bool); ok {
		return b, nil
	}
	if n, ok := toInt(v); ok {
		return n != 0, nil
	}
	return false, fmt.Errorf("argument %q: want boolean, got %T", key, v)
}

// Strings returns a[key] as a list of strings; nil if absent or nil.
func (a Args) Strings(key string) ([]string, error) {
	v, ok := a[key]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("argument %q: want list of strings, got %T", key, v)
	}
	out := make([]string, len(list))
	for i, e := range list {
		switch s := e.(type) {
		case string:
			out[i] = s
		case []byte:
			out[i] = string(s)
		default:
			return nil, fmt.Errorf("argument %q[%d]: want string, got %T", key, i, e)
		}
	}
	return out, nil
}

// Map returns a[key] as a map; nil if absent or nil.
func (a Args) Map(key string) (map[string]any, error) {
	v, ok := a[key]
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("argument %q: want map, got %T", key, v)
	}
	return m, nil
}

// Bytes returns a[key] as bytes (bin or str); nil if absent or nil.
func (a Args) Bytes(key string) ([]byte, error) {
	v, ok := a[key]
	if !ok || v == nil {
		return nil, nil
	}
	switch b := v.(type) {
	case []byte:
		return b, nil
	case string:
		return []byte(b), nil
	}
	return nil, fmt.Errorf("argument %q: want bytes, got %T", key, v)
}

// Keys returns the keys in sorted order, for stable logging.
func (a Args) Keys() []string {
	ks := make([]string, 0, len(a))
	for k := range a {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// AsInt converts any msgpack integer to int64.
func AsInt(v any) (int64, bool) { return toInt(v) }

// AsFloat converts any msgpack number to float64.
func AsFloat(v any) (float64, bool) { return toFloat(v) }

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int8:
		return int64(n), true
	case int16:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case uint:
		return int64(n), n <= math.MaxInt64
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint64:
		return int64(n), n <= math.MaxInt64
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch f := v.(type) {
	case float64:
		return f, true
	case float32:
		return float64(f), true
	}
	if n, ok := toInt(v); ok {
		return float64(n), true
	}
	return 0, false
}
