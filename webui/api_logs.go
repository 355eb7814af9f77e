package webui

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/starforge/starforge/master/store"
)

// GET /api/v2/steps/{step}/logs with the list conventions.
func (s *Server) listLogs(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[logJSON]("logs"))
	if err != nil {
		return err
	}
	id, err := pathID(r, "step", "step id")
	if err != nil {
		return err
	}
	st := s.m.Store()
	if _, err := st.GetStep(r.Context(), id); err != nil {
		return lookupErr(err, "step %d", id)
	}
	logs, err := st.ListLogs(r.Context(), id)
	if err != nil {
		return fmt.Errorf("list logs of step %d: %w", id, err)
	}
	out := make([]logJSON, len(logs))
	for i, l := range logs {
		out[i] = toLogJSON(l)
	}
	writeSmallList(w, q, out)
	return nil
}

// GET /api/v2/logs/{log}?field=
func (s *Server) getLog(w http.ResponseWriter, r *http.Request) error {
	q, err := parseOne(r, resourceOf[logJSON]("logs"))
	if err != nil {
		return err
	}
	l, err := s.logFromPath(r)
	if err != nil {
		return err
	}
	writeOne(w, q, toLogJSON(l))
	return nil
}

// GET /api/v2/logs/{log}/contents?first=N&last=M
//
// Lines first..last (0-based, inclusive; last absent or -1: to the end) as
// one Buildbot log chunk: {"logchunks":[{"firstline":N,"content":"..."}]}.
// The content is exactly what the store holds, stdio stream prefixes
// included, one "\n"-terminated line after another. It is streamed from the
// store, so a huge range costs bandwidth but not memory.
func (s *Server) logContents(w http.ResponseWriter, r *http.Request) error {
	l, err := s.logFromPath(r)
	if err != nil {
		return err
	}
	p := queryParams(r)
	first := p.line("first", 0)
	last := int(p.intIn("last", -1, math.MaxInt32, -1))
	if err := p.Err(); err != nil {
		return err
	}
	if last >= 0 && last < first {
		return badParam("last", fmt.Sprintf("-1 or an integer from first (%d) to %d", first, math.MaxInt32), r.URL.Query().Get("last"))
	}

	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 32<<10)
	bw.WriteString(`{"logchunks":[{"firstline":`)
	bw.WriteString(strconv.Itoa(first))
	bw.WriteString(`,"content":"`)
	jw := newJSONStringWriter(bw)
	// The log's line count is read before its lines, so a growing log may
	// give a few more lines than it had; a start past the end gives none.
	if first < l.NumLines {
		if _, err := s.m.Store().ReadLog(r.Context(), l.ID, first, last, jw); err != nil {
			return s.streamFailed(r, cw, bw, fmt.Errorf("read log %d: %w", l.ID, err))
		}
	}
	jw.Close()
	bw.WriteString(`"}],"meta":{"total":1}}` + "\n")
	// A failed flush means the client went away; there is no one to tell.
	_ = bw.Flush()
	return nil
}

// GET /api/v2/logs/{log}/raw
//
// The whole log as a plain-text download, with the stream prefix of stdio
// log lines removed, streamed from the store.
func (s *Server) logRaw(w http.ResponseWriter, r *http.Request) error {
	l, err := s.logFromPath(r)
	if err != nil {
		return err
	}
	st := s.m.Store()
	step, err := st.GetStep(r.Context(), l.StepID)
	if err != nil {
		return lookupErr(err, "step %d", l.StepID)
	}
	b, err := st.GetBuild(r.Context(), step.BuildID)
	if err != nil {
		return lookupErr(err, "build %d", step.BuildID)
	}
	name := fileName(fmt.Sprintf("%s_build_%d_%s_%s.log", b.BuilderName, b.Number, step.Name, l.Slug))

	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("Cache-Control", "no-store")
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 32<<10)
	var dst io.Writer = bw
	if l.Type == "s" {
		dst = &prefixStripper{w: bw}
	}
	if l.NumLines > 0 {
		if _, err := st.ReadLog(r.Context(), l.ID, 0, -1, dst); err != nil {
			return s.streamFailed(r, cw, bw, fmt.Errorf("read log %d: %w", l.ID, err))
		}
	}
	_ = bw.Flush()
	return nil
}

// streamFailed handles err met while streaming a reply through bw into cw.
// If nothing reached the client yet, the buffered part is dropped and err
// is returned to be answered as a proper error. Otherwise the status is
// already sent: err is logged and the reply is cut short, which the client
// sees as a truncated body.
func (s *Server) streamFailed(r *http.Request, cw *countingWriter, bw *bufio.Writer, err error) error {
	if cw.n == 0 {
		bw.Reset(nil)
		if w, ok := cw.w.(http.ResponseWriter); ok {
			w.Header().Del("Content-Disposition")
		}
		return err
	}
	s.log.Error("webui: log stream failed", "path", r.URL.Path, "err", err)
	return nil
}

func (s *Server) logFromPath(r *http.Request) (store.Log, error) {
	id, err := pathID(r, "log", "log id")
	if err != nil {
		return store.Log{}, err
	}
	l, err := s.m.Store().GetLog(r.Context(), id)
	if err != nil {
		return l, lookupErr(err, "log %d", id)
	}
	return l, nil
}

// fileName keeps the characters of s that are safe in a file name on every
// system, replacing the others with '_'.
func fileName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}
