package webui

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/starforge/starforge/master/store"
)

type buildData struct {
	layout
	Builder store.Builder
	Build   store.Build
	Running bool
	Reason  string
	Props   []propertyRow  // sorted by name
	Steps   []stepRow      // hidden steps left out, as Buildbot does
	Changes []store.Change // what the build builds, oldest first
	// Parent is the build whose trigger step started this one, if any;
	// Children are the builds this one's trigger steps started.
	Parent   *store.Build
	Children []childRow
	Patch    *store.Patch // a try build's patch, if it has one
	// Artifacts are the files the build uploaded to the master.
	Artifacts []artifactRow
}

// childRow is one request of a buildset a trigger step started: its
// build once it has one (the latest, after retries).
type childRow struct {
	Step    string // the trigger step's name
	Request store.BuildRequest
	Build   *store.Build
}

type propertyRow struct {
	Name, Value, Source string
}

type stepRow struct {
	Step store.Step
	Logs []store.Log
}

// GET /builders/{builder}/builds/{number}
func (s *Server) buildPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	st := s.m.Store()
	b, err := s.builder(ctx, r.PathValue("builder"))
	if err != nil {
		return err
	}
	n, err := buildNumber(r.PathValue("number"))
	if err != nil {
		return err
	}
	bd, err := st.GetBuildByNumber(ctx, b.ID, n)
	if err != nil {
		return lookupErr(err, "build %s/%d", b.Name, n)
	}
	d := buildData{
		layout:  layout{Site: s.m.Title(), Title: fmt.Sprintf("%s #%d", b.Name, bd.Number)},
		Builder: b,
		Build:   bd,
		Running: bd.CompleteAt.IsZero(),
	}

	if bd.BuildsetID != 0 { // 0: started without a request
		bs, err := st.GetBuildset(ctx, bd.BuildsetID)
		if err != nil {
			return lookupErr(err, "buildset %d", bd.BuildsetID)
		}
		d.Reason = bs.Reason
		for _, ss := range bs.SourceStamps {
			if ss.Patch != nil {
				d.Patch = ss.Patch
				break
			}
		}
		if d.Changes, err = st.BuildsetChanges(ctx, bs.ID); err != nil {
			return fmt.Errorf("changes of build %d: %w", bd.ID, err)
		}
		if bs.ParentBuildID != 0 {
			if p, err := st.GetBuild(ctx, bs.ParentBuildID); err == nil {
				d.Parent = &p
			}
		}
	}
	if d.Children, err = children(r, st, bd.ID); err != nil {
		return err
	}

	if d.Artifacts, err = s.artifactRows(ctx, bd.ID); err != nil {
		return err
	}

	props, err := st.BuildProperties(ctx, bd.ID)
	if err != nil {
		return fmt.Errorf("properties of build %d: %w", bd.ID, err)
	}
	for name, p := range props {
		d.Props = append(d.Props, propertyRow{Name: name, Value: propertyText(p.Value), Source: p.Source})
	}
	slices.SortFunc(d.Props, func(a, b propertyRow) int { return strings.Compare(a.Name, b.Name) })

	steps, err := st.ListSteps(ctx, bd.ID)
	if err != nil {
		return fmt.Errorf("list steps of build %d: %w", bd.ID, err)
	}
	for _, sp := range steps {
		if sp.Hidden {
			continue
		}
		logs, err := st.ListLogs(ctx, sp.ID)
		if err != nil {
			return fmt.Errorf("list logs of step %d: %w", sp.ID, err)
		}
		d.Steps = append(d.Steps, stepRow{Step: sp, Logs: logs})
	}
	return s.render(w, http.StatusOK, "build", d)
}

// children lists the requests of the buildsets build id triggered.
func children(r *http.Request, st *store.Store, id int64) ([]childRow, error) {
	ctx := r.Context()
	sets, err := st.ChildBuildsets(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("buildsets triggered by build %d: %w", id, err)
	}
	var out []childRow
	for _, bs := range sets {
		reqs, err := st.BuildsetRequests(ctx, bs.ID)
		if err != nil {
			return nil, fmt.Errorf("buildsets triggered by build %d: %w", id, err)
		}
		for _, req := range reqs {
			row := childRow{Step: bs.ParentRelationship, Request: req}
			builds, err := st.ListBuilds(ctx, store.BuildFilter{RequestID: req.ID, Limit: 1})
			if err != nil {
				return nil, fmt.Errorf("builds of request %d: %w", req.ID, err)
			}
			if len(builds) > 0 {
				row.Build = &builds[0]
			}
			out = append(out, row)
		}
	}
	return out, nil
}
