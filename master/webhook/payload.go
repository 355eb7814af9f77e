package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/starforge/starforge/master/store"
)

// decode unmarshals the JSON payload data into v. Its errors are 400s
// that say where the payload went wrong.
func decode(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return badPayload("empty payload: want a JSON object")
	}
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se) && strings.HasPrefix(se.Error(), "unexpected end of JSON input"):
		return badPayload("truncated JSON: the payload ends (after %d bytes) in the middle of a value", len(data))
	case errors.As(err, &se):
		return badPayload("invalid JSON at byte %d: %v", se.Offset, err)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "payload"
		}
		return badPayload("%s: want %s, got %s", field, jsonKind(te.Type), te.Value)
	}
	return badPayload("invalid JSON: %v", err)
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Float64, reflect.Float32, reflect.Uint, reflect.Uint64:
		return "a number"
	}
	return t.String()
}

// timeLayouts are the timestamp formats the services send: RFC 3339
// (GitHub, Gitea, Bitbucket Cloud, GitLab commits), an offset without a
// colon (Bitbucket Server), and GitLab's older "2013-12-03 17:23:34 UTC".
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999-0700",
	"2006-01-02 15:04:05 MST",
	"2006-01-02 15:04:05 -0700",
}

// parseTime parses the timestamp s of field; "" is the zero time, which
// the store replaces with the time of arrival.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, badPayload("%s: want a timestamp such as 2024-05-01T12:00:00Z, got %q", field, s)
}

// person formats a name and an email address as git does.
func person(name, email string) string {
	switch {
	case email == "":
		return name
	case name == "":
		return "<" + email + ">"
	}
	return name + " <" + email + ">"
}

// isZeroSHA reports whether rev is the all-zero revision that services
// send as the new head of a deleted branch.
func isZeroSHA(rev string) bool {
	return len(rev) >= 40 && strings.Trim(rev, "0") == ""
}

// required returns a 400 naming field if v is empty.
func required(field, v string) error {
	if v == "" {
		return badPayload("%s: missing or empty", field)
	}
	return nil
}

// splitRef returns the branch or tag that a full ref names, and whether
// it is a tag. A ref outside refs/heads/ and refs/tags/ is returned whole.
func splitRef(ref string) (name string, tag bool) {
	if n, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		return n, true
	}
	if n, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		return n, false
	}
	return ref, false
}

// CategoryTag and CategoryPull are the categories of the changes made for
// a pushed tag and for a pull (or merge) request, as in Buildbot. Branch
// pushes have no category.
const (
	CategoryTag  = "tag"
	CategoryPull = "pull"
)

// props makes change properties from name, value pairs, dropping empty
// strings and zero numbers, which say nothing.
func props(kv ...any) map[string]store.Property {
	m := make(map[string]store.Property, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		name := kv[i].(string)
		switch v := kv[i+1].(type) {
		case string:
			if v == "" {
				continue
			}
		case int64:
			if v == 0 {
				continue
			}
		}
		m[name] = store.Property{Value: kv[i+1], Source: "Change"}
	}
	return m
}

// at returns "field[i]" for error messages.
func at(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }
