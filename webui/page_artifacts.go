package webui

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"

	"github.com/starforge/starforge/master/artifact"
	"github.com/starforge/starforge/master/store"
)

// This file serves the artifacts of every build: GET /api/v2/artifacts
// and the /artifacts page, newest first, by builder, build or content.

func init() {
	// The page is parsed with the others (pages.go).
	morePageNames = append(morePageNames, "artifacts")
}

// artifactRoutes adds the artifacts collection and page.
func (s *Server) artifactRoutes(api, mux *http.ServeMux) {
	api.Handle("GET /api/v2/artifacts", s.api(s.queryArtifacts))
	mux.Handle("GET /artifacts", s.page(s.artifactsPage))
}

// artifactFilter is what ?builder=, ?build= and ?sha256= select, shared by
// the API and the page.
type artifactFilter struct {
	Builder string // as given: a name or an id
	Build   int64
	SHA256  string
}

// parseArtifactFilter reads the filter parameters of query and resolves
// the builder. A builder that does not exist is an error (404), not an
// empty list: it is most likely a typing mistake.
func (s *Server) parseArtifactFilter(ctx context.Context, query url.Values) (artifactFilter, store.ArtifactQuery, error) {
	var f artifactFilter
	var q store.ArtifactQuery
	f.Builder = query.Get("builder")
	if f.Builder != "" {
		b, err := s.m.Store().GetBuilderByName(ctx, f.Builder)
		if id, perr := strconv.ParseInt(f.Builder, 10, 64); err != nil && perr == nil && id > 0 {
			b, err = s.m.Store().GetBuilder(ctx, id)
		}
		if err != nil {
			return f, q, lookupErr(err, "builder %q", f.Builder)
		}
		q.BuilderID = b.ID
	}
	if v := query.Get("build"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id < 1 {
			return f, q, errorf(http.StatusBadRequest, "build: want a build id (a positive integer), got %q", v)
		}
		f.Build, q.BuildID = id, id
	}
	if v := query.Get("sha256"); v != "" {
		if !artifact.ValidSum(v) {
			return f, q, errorf(http.StatusBadRequest, "sha256: want 64 lowercase hex digits, got %q", v)
		}
		f.SHA256, q.SHA256 = v, v
	}
	return f, q, nil
}

// GET /api/v2/artifacts with the list conventions of large collections
// (keyset pages by artifactid, newest first), filtered by ?builder= (name
// or id), ?build= (build id) and ?sha256=; the fields builderid, buildid
// and sha256 filter in SQL too.
func (s *Server) queryArtifacts(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[artifactJSON]("artifacts"), "before", "builder", "build", "sha256")
	if err != nil {
		return err
	}
	_, aq, err := s.parseArtifactFilter(r.Context(), q.extra)
	if err != nil {
		return err
	}
	for _, c := range []struct {
		id   *int64
		name string
	}{{&aq.BuilderID, "builderid"}, {&aq.BuildID, "buildid"}} {
		if v := q.sqlEq(c.name); v != 0 {
			if *c.id != 0 && *c.id != v {
				writeItems(w, q, []artifactJSON(nil), listMeta{})
				return nil
			}
			*c.id = v
		}
	}
	if v := sqlEqString(q, "sha256"); v != "" {
		if aq.SHA256 != "" && aq.SHA256 != v {
			writeItems(w, q, []artifactJSON(nil), listMeta{})
			return nil
		}
		aq.SHA256 = v
	}
	st := s.m.Store()
	return scanList(r.Context(), w, q, largeList[artifactJSON]{
		idField: "artifactid",
		scanCap: 5000,
		fetch: func(ctx context.Context, p store.Page) ([]artifactJSON, error) {
			aq.Page = p
			as, err := st.QueryArtifacts(ctx, aq)
			if err != nil {
				return nil, err
			}
			out := make([]artifactJSON, len(as))
			for i, a := range as {
				out[i] = toArtifactJSON(a.Artifact, a.BuilderID, a.BuildNumber)
			}
			return out, nil
		},
		id: func(a artifactJSON) int64 { return a.ArtifactID },
	})
}

// sqlEqString returns the single value of an eq filter on the string
// field name, marking it as done by SQL, or "" if there is none.
func sqlEqString(q *listQuery, name string) string {
	for _, fl := range q.filters {
		if fl.f.name == name && (fl.op == "eq" || fl.op == "in") && len(fl.vals) == 1 {
			if v, ok := fl.vals[0].(string); ok && v != "" {
				fl.inSQL = true
				return v
			}
		}
	}
	return ""
}

// artifactsPageSize is how many artifacts the page lists at once.
const artifactsPageSize = 100

type artifactsData struct {
	layout
	Filter      artifactFilter
	FilterQuery template.URL // the filter's parameters, for the pager's links
	Rows        []artifactListRow
	Before      int64 // this page's bound, 0 on the first page
	Older       int64 // the before= of the next page, 0 if none
}

type artifactListRow struct {
	artifactRow
	BuilderID   int64
	BuilderName string
	BuildNumber int
}

// GET /artifacts: the artifacts of every build, newest first, a page at a
// time (?before=ID), filtered like the API.
func (s *Server) artifactsPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	query := r.URL.Query()
	f, aq, err := s.parseArtifactFilter(ctx, query)
	if err != nil {
		return err
	}
	p := &params{q: query}
	aq.Before = p.id("before")
	if err := p.Err(); err != nil {
		return err
	}
	aq.Limit = artifactsPageSize + 1
	as, err := s.m.Store().QueryArtifacts(ctx, aq)
	if err != nil {
		return err
	}
	d := artifactsData{layout: layout{Site: s.m.Title(), Title: "Artifacts", Nav: "artifacts"}, Filter: f, Before: aq.Before}
	if len(as) > artifactsPageSize {
		as = as[:artifactsPageSize]
		d.Older = as[len(as)-1].ID
	}
	fq := url.Values{}
	for _, k := range []string{"builder", "build", "sha256"} {
		if v := query.Get(k); v != "" {
			fq.Set(k, v)
		}
	}
	if len(fq) > 0 {
		d.FilterQuery = template.URL("&" + fq.Encode())
	}
	names := map[int64]string{}
	builders, err := s.m.Store().ListBuilders(ctx)
	if err != nil {
		return fmt.Errorf("list builders: %w", err)
	}
	for _, b := range builders {
		names[b.ID] = b.Name
	}
	for _, a := range as {
		d.Rows = append(d.Rows, artifactListRow{artifactRow: newArtifactRow(a.Artifact), BuilderID: a.BuilderID,
			BuilderName: names[a.BuilderID], BuildNumber: a.BuildNumber})
	}
	return s.render(w, http.StatusOK, "artifacts", d)
}
