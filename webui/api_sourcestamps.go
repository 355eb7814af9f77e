package webui

import (
	"context"
	"fmt"
	"net/http"

	"github.com/starforge/starforge/master/store"
)

// ssJSON is Buildbot's sourcestamp resource. Buildsets and changes embed
// stamps as sourceStampJSON, without created_at, as Buildbot does.
type ssJSON struct {
	SSID       int64      `json:"ssid"`
	Codebase   string     `json:"codebase"`
	Repository string     `json:"repository"`
	Branch     *string    `json:"branch"`
	Revision   *string    `json:"revision"`
	Project    string     `json:"project"`
	CreatedAt  unixTime   `json:"created_at"`
	Patch      *patchJSON `json:"patch"`
}

func toSSJSON(ss store.StoredSourceStamp) ssJSON {
	e := toSourceStampJSON(ss.SourceStamp)
	return ssJSON{SSID: e.SSID, Codebase: e.Codebase, Repository: e.Repository, Branch: e.Branch,
		Revision: e.Revision, Project: e.Project, CreatedAt: unixTime(ss.CreatedAt), Patch: e.Patch}
}

// GET /api/v2/sourcestamps with the list conventions and the extension
// before=ID (ssid__lt=ID). Newest first unless order=ssid; only bounds on
// ssid are applied in SQL.
func (s *Server) listSourceStamps(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[ssJSON]("sourcestamps"), "before")
	if err != nil {
		return err
	}
	st := s.m.Store()
	return scanList(r.Context(), w, q, largeList[ssJSON]{
		idField: "ssid",
		scanCap: 5000,
		fetch: func(ctx context.Context, p store.Page) ([]ssJSON, error) {
			sss, err := st.QuerySourceStamps(ctx, p)
			if err != nil {
				return nil, fmt.Errorf("list source stamps: %w", err)
			}
			out := make([]ssJSON, len(sss))
			for i, ss := range sss {
				out[i] = toSSJSON(ss)
			}
			return out, nil
		},
		id: func(ss ssJSON) int64 { return ss.SSID },
	})
}

// GET /api/v2/sourcestamps/{id}?field=
func (s *Server) getSourceStamp(w http.ResponseWriter, r *http.Request) error {
	q, err := parseOne(r, resourceOf[ssJSON]("sourcestamps"))
	if err != nil {
		return err
	}
	id, err := pathID(r, "id", "source stamp id")
	if err != nil {
		return err
	}
	ss, err := s.m.Store().GetSourceStamp(r.Context(), id)
	if err != nil {
		return lookupErr(err, "source stamp %d", id)
	}
	writeOne(w, q, toSSJSON(ss))
	return nil
}
