package webui

import (
	"fmt"
	"html"
	"net/http"
	"strings"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// GET /badges/{builder}.svg[?branch=B]: the builder's last finished build
// (on that branch) as a status badge, for READMEs.
func (s *Server) badge(w http.ResponseWriter, r *http.Request) error {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".svg")
	if !ok {
		return errorf(http.StatusNotFound, "badges are /badges/BUILDER.svg")
	}
	st := s.m.Store()
	b, err := st.GetBuilderByName(r.Context(), name)
	if err != nil {
		return lookupErr(err, "builder %q", name)
	}
	branch := r.URL.Query().Get("branch")
	status, color := "no builds", "#9f9f9f"
	var before int64
	// Walk the history newest first until a finished build (on the branch).
	for page := 0; page < 10; page++ {
		builds, err := st.ListBuilds(r.Context(), store.BuildFilter{BuilderID: b.ID, Before: before, Limit: 100})
		if err != nil {
			return err
		}
		found := false
		for _, bd := range builds {
			before = bd.ID
			if bd.CompleteAt.IsZero() {
				continue
			}
			if branch != "" {
				props, err := st.BuildProperties(r.Context(), bd.ID)
				if err != nil {
					return err
				}
				if fmt.Sprint(props["branch"].Value) != branch {
					continue
				}
			}
			status, color = bd.Results.String(), badgeColor(bd.Results)
			found = true
			break
		}
		if found || len(builds) < 100 {
			break
		}
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-cache")
	_, err = fmt.Fprint(w, badgeSVG(name, status, color))
	return err
}

func badgeColor(r result.Result) string {
	switch r {
	case result.Success:
		return "#4c1"
	case result.Warnings:
		return "#dfb317"
	case result.Failure:
		return "#e05d44"
	case result.Exception:
		return "#a03fe0"
	}
	return "#9f9f9f"
}

// badgeSVG draws a two-part badge; widths are estimated from the text
// (about 7 px a character in the 11 px font), as the usual badges do.
func badgeSVG(label, status, color string) string {
	lw, sw := 10+7*len(label), 10+7*len(status)
	l, s := html.EscapeString(label), html.EscapeString(status)
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%[1]d" height="20" role="img" aria-label="%[4]s: %[5]s">`+
		`<title>%[4]s: %[5]s</title>`+
		`<rect width="%[2]d" height="20" fill="#555"/><rect x="%[2]d" width="%[3]d" height="20" fill="%[6]s"/>`+
		`<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">`+
		`<text x="%[7]d" y="14">%[4]s</text><text x="%[8]d" y="14">%[5]s</text></g></svg>`,
		lw+sw, lw, sw, l, s, color, lw/2, lw+sw/2)
}
