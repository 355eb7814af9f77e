package webui

import (
	"context"
	"fmt"
	"net/http"

	"github.com/starforge/starforge/master/store"
)

type sourceStampJSON struct {
	SSID       int64      `json:"ssid"`
	Codebase   string     `json:"codebase"`
	Repository string     `json:"repository"`
	Branch     *string    `json:"branch"`
	Revision   *string    `json:"revision"`
	Project    string     `json:"project"`
	Patch      *patchJSON `json:"patch"`
}

type patchJSON struct {
	PatchID int64  `json:"patchid"`
	Level   int    `json:"level"`
	Subdir  string `json:"subdir"`
	Author  string `json:"author"`
	Comment string `json:"comment"`
}

func toSourceStampJSON(ss store.SourceStamp) sourceStampJSON {
	j := sourceStampJSON{SSID: ss.ID, Codebase: ss.Codebase, Repository: ss.Repository,
		Branch: nullString(ss.Branch), Revision: nullString(ss.Revision), Project: ss.Project}
	if p := ss.Patch; p != nil {
		j.Patch = &patchJSON{PatchID: p.ID, Level: p.Level, Subdir: p.Subdir, Author: p.Author, Comment: p.Comment}
	}
	return j
}

type buildsetJSON struct {
	BSID               int64             `json:"bsid"`
	Reason             string            `json:"reason"`
	SubmittedAt        unixTime          `json:"submitted_at"`
	Complete           bool              `json:"complete"`
	CompleteAt         unixTime          `json:"complete_at"`
	Results            resultJSON        `json:"results"`
	SourceStamps       []sourceStampJSON `json:"sourcestamps"`
	ParentBuildID      *int64            `json:"parent_buildid"`
	ParentRelationship *string           `json:"parent_relationship"`
}

func toBuildsetJSON(bs store.Buildset) buildsetJSON {
	j := buildsetJSON{BSID: bs.ID, Reason: bs.Reason, SubmittedAt: unixTime(bs.SubmittedAt), Complete: bs.Complete,
		CompleteAt: unixTime(bs.CompleteAt), Results: resultJSON(bs.Results),
		SourceStamps: make([]sourceStampJSON, len(bs.SourceStamps))}
	for i, ss := range bs.SourceStamps {
		j.SourceStamps[i] = toSourceStampJSON(ss)
	}
	if bs.ParentBuildID != 0 {
		id := bs.ParentBuildID
		j.ParentBuildID = &id
		j.ParentRelationship = &bs.ParentRelationship
	}
	return j
}

// GET /api/v2/buildsets with the list conventions and the extension
// before=ID (bsid__lt=ID). Newest first unless order=bsid.
// parent_buildid (the buildsets a build's trigger steps started) and
// bounds on bsid are applied in SQL.
func (s *Server) listBuildsets(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[buildsetJSON]("buildsets"), "before")
	if err != nil {
		return err
	}
	f := store.BuildsetQuery{ParentBuildID: q.sqlEq("parent_buildid")}
	st := s.m.Store()
	return scanList(r.Context(), w, q, largeList[buildsetJSON]{
		idField: "bsid",
		// Each buildset is a few queries (its stamps and properties).
		scanCap: 500,
		fetch: func(ctx context.Context, p store.Page) ([]buildsetJSON, error) {
			f.Page = p
			sets, err := st.QueryBuildsets(ctx, f)
			if err != nil {
				return nil, fmt.Errorf("list buildsets: %w", err)
			}
			out := make([]buildsetJSON, len(sets))
			for i, bs := range sets {
				out[i] = toBuildsetJSON(bs)
			}
			return out, nil
		},
		id: func(b buildsetJSON) int64 { return b.BSID },
	})
}

// GET /api/v2/buildsets/{id}?field=
func (s *Server) getBuildset(w http.ResponseWriter, r *http.Request) error {
	q, err := parseOne(r, resourceOf[buildsetJSON]("buildsets"))
	if err != nil {
		return err
	}
	id, err := pathID(r, "id", "buildset id")
	if err != nil {
		return err
	}
	bs, err := s.m.Store().GetBuildset(r.Context(), id)
	if err != nil {
		return lookupErr(err, "buildset %d", id)
	}
	writeOne(w, q, toBuildsetJSON(bs))
	return nil
}
