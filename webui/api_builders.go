package webui

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/starforge/starforge/master/store"
)

// GET /api/v2/builders with the list conventions.
func (s *Server) listBuilders(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[builderJSON]("builders"))
	if err != nil {
		return err
	}
	bs, err := s.m.Store().ListBuilders(r.Context())
	if err != nil {
		return fmt.Errorf("list builders: %w", err)
	}
	out := make([]builderJSON, len(bs))
	for i, b := range bs {
		out[i] = toBuilderJSON(b)
	}
	writeSmallList(w, q, out)
	return nil
}

// GET /api/v2/builders/{builder}?field=
func (s *Server) getBuilder(w http.ResponseWriter, r *http.Request) error {
	q, err := parseOne(r, resourceOf[builderJSON]("builders"))
	if err != nil {
		return err
	}
	b, err := s.builder(r.Context(), r.PathValue("builder"))
	if err != nil {
		return err
	}
	writeOne(w, q, toBuilderJSON(b))
	return nil
}

// GET /api/v2/builders/{builder}/builds: as /api/v2/builds, of one
// builder.
func (s *Server) listBuilderBuilds(w http.ResponseWriter, r *http.Request) error {
	b, err := s.builder(r.Context(), r.PathValue("builder"))
	if err != nil {
		return err
	}
	return s.queryBuilds(w, r, b.ID)
}

// GET /api/v2/builders/{builder}/builds/{number}?field=
func (s *Server) getBuilderBuild(w http.ResponseWriter, r *http.Request) error {
	q, err := parseOne(r, resourceOf[buildJSON]("builds"))
	if err != nil {
		return err
	}
	b, err := s.builder(r.Context(), r.PathValue("builder"))
	if err != nil {
		return err
	}
	n, err := buildNumber(r.PathValue("number"))
	if err != nil {
		return err
	}
	bd, err := s.m.Store().GetBuildByNumber(r.Context(), b.ID, n)
	if err != nil {
		return lookupErr(err, "build %s/%d", b.Name, n)
	}
	writeOne(w, q, toBuildJSON(bd))
	return nil
}

// builder finds a builder by id or, failing that, by name: Buildbot
// accepts both in URLs, and a builder may well be named "42".
func (s *Server) builder(ctx context.Context, key string) (store.Builder, error) {
	st := s.m.Store()
	if id, err := strconv.ParseInt(key, 10, 64); err == nil && id > 0 {
		b, err := st.GetBuilder(ctx, id)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return b, lookupErr(err, "builder %d", id)
		}
	}
	b, err := st.GetBuilderByName(ctx, key)
	if err != nil {
		return b, lookupErr(err, "builder %q", key)
	}
	return b, nil
}

func buildNumber(s string) (int, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt32 {
		return 0, badParam("build number", "a non-negative integer", s)
	}
	return int(n), nil
}
