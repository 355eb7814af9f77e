package webui

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/starforge/starforge/master/store"
)

// httpError is an error whose message is meant for the client, with the
// HTTP status to send it with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string   { return e.msg }
func (e *httpError) HTTPStatus() int { return e.status }

// errorf returns an error shown to the client as is, with status.
func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// badParam reports an invalid query or path parameter. The message always
// starts with the parameter's name so that the client knows what to fix.
func badParam(name, want, got string) error {
	return errorf(http.StatusBadRequest, "%s: want %s, got %q", name, want, got)
}

// lookupErr turns the error of a store lookup of the thing described by
// format and args into a 404 naming it, or wraps any other failure.
func lookupErr(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "%s not found", what)
	}
	return fmt.Errorf("get %s: %w", what, err)
}

// statusOf picks the HTTP status for err: the one it carries (through
// errors.As, so wrapping keeps it), 404 for store.ErrNotFound, else 500.
func statusOf(err error) int {
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		if st := hs.HTTPStatus(); st >= 400 && st <= 599 {
			return st
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// clientMessage is what the client is told about err: its own message for
// 4xx errors, which are about the request, and a generic text for 5xx ones,
// whose details (SQL, paths) belong in the master's log only.
func clientMessage(err error, status int) string {
	if status < 500 {
		return err.Error()
	}
	return "internal server error (details are in the master's log)"
}
