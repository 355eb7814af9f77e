package webui

import (
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

// GET /api/v2/buildsets?parent_buildid=&limit=&before=
//
// parent_buildid lists the buildsets a build's trigger steps started.
func (s *Server) listBuildsets(w http.ResponseWriter, r *http.Request) error {
	p := queryParams(r)
	parent := p.id("parent_buildid")
	f := store.BuildsetFilter{Limit: p.limit(), Before: p.id("before")}
	if err := p.Err(); err != nil {
		return err
	}
	var sets []store.Buildset
	var err error
	if parent != 0 {
		sets, err = s.m.Store().ChildBuildsets(r.Context(), parent)
	} else {
		sets, err = s.m.Store().ListBuildsets(r.Context(), f)
	}
	if err != nil {
		return fmt.Errorf("list buildsets: %w", err)
	}
	out := make([]buildsetJSON, len(sets))
	for i, bs := range sets {
		out[i] = toBuildsetJSON(bs)
	}
	writeCollection(w, "buildsets", out)
	return nil
}

// GET /api/v2/buildsets/{id}
func (s *Server) getBuildset(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id", "buildset id")
	if err != nil {
		return err
	}
	bs, err := s.m.Store().GetBuildset(r.Context(), id)
	if err != nil {
		return lookupErr(err, "buildset %d", id)
	}
	writeCollection(w, "buildsets", []buildsetJSON{toBuildsetJSON(bs)})
	return nil
}
