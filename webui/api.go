package webui

import (
	"net/http"
)

// apiFunc is an API handler. It returns an error instead of writing one so
// that all errors share one JSON shape and one logging policy; a handler
// that has started writing its reply must not return an error any more.
type apiFunc func(w http.ResponseWriter, r *http.Request) error

// api adapts f to http.Handler, answering its errors as
// {"error": "..."} with the status statusOf picks.
func (s *Server) api(f apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			st := s.logIfInternal(r, err)
			challenge(w, st) // auth.go
			writeJSON(w, st, errorBody{Error: clientMessage(err, st)})
		}
	})
}

// logIfInternal returns err's status, logging err if it is a server fault.
func (s *Server) logIfInternal(r *http.Request, err error) int {
	st := statusOf(err)
	if st >= 500 {
		s.log.Error("webui: request failed", "method", r.Method, "path", r.URL.Path, "status", st, "err", err)
	}
	return st
}
