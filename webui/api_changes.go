package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/starforge/starforge/master/store"
)

// changeRoutes adds the endpoints of changes to api.
func (s *Server) changeRoutes(api *http.ServeMux) {
	api.Handle("GET /api/v2/changes", s.api(s.listChanges))
	api.Handle("POST /api/v2/changes", s.api(s.postChanges))
	api.Handle("GET /api/v2/changes/{change}", s.api(s.getChange))
	api.Handle("GET /api/v2/builds/{build}/changes", s.api(s.buildChanges))
}

type changeJSON struct {
	ChangeID      int64             `json:"changeid"`
	Author        string            `json:"author"`
	Committer     *string           `json:"committer"`
	Comments      string            `json:"comments"`
	Branch        *string           `json:"branch"`
	Revision      *string           `json:"revision"`
	Revlink       *string           `json:"revlink"`
	WhenTimestamp int64             `json:"when_timestamp"` // unix seconds
	Category      *string           `json:"category"`
	Repository    string            `json:"repository"`
	Codebase      string            `json:"codebase"`
	Project       string            `json:"project"`
	Files         []string          `json:"files"`
	Properties    map[string][2]any `json:"properties"` // name: [value, source]
	SourceStamp   sourceStampJSON   `json:"sourcestamp"`
}

func toChangeJSON(c store.Change) changeJSON {
	files := c.Files
	if files == nil {
		files = []string{}
	}
	props := make(map[string][2]any, len(c.Properties))
	for name, p := range c.Properties {
		props[name] = [2]any{p.Value, p.Source}
	}
	return changeJSON{
		ChangeID:      c.ID,
		Author:        c.Author,
		Committer:     nullString(c.Committer),
		Comments:      c.Comments,
		Branch:        nullString(c.Branch),
		Revision:      nullString(c.Revision),
		Revlink:       nullString(c.Revlink),
		WhenTimestamp: c.When.Unix(),
		Category:      nullString(c.Category),
		Repository:    c.Repository,
		Codebase:      c.Codebase,
		Project:       c.Project,
		Files:         files,
		Properties:    props,
		// The store makes a change's source stamp from the change's own
		// fields, so they need no lookup.
		SourceStamp: toSourceStampJSON(store.SourceStamp{ID: c.SourceStampID, Codebase: c.Codebase,
			Repository: c.Repository, Branch: c.Branch, Revision: c.Revision, Project: c.Project}),
	}
}

func writeChanges(w http.ResponseWriter, cs []store.Change) {
	writeCollection(w, "changes", changeJSONs(cs))
}

func changeJSONs(cs []store.Change) []changeJSON {
	out := make([]changeJSON, len(cs))
	for i, c := range cs {
		out[i] = toChangeJSON(c)
	}
	return out
}

// GET /api/v2/changes with the list conventions and the extension
// before=ID (changeid__lt=ID). Newest first unless order=changeid; only
// bounds on changeid are applied in SQL.
func (s *Server) listChanges(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[changeJSON]("changes"), "before")
	if err != nil {
		return err
	}
	st := s.m.Store()
	return scanList(r.Context(), w, q, largeList[changeJSON]{
		idField: "changeid",
		// Each change's files and properties are JSON to decode.
		scanCap: 2000,
		fetch: func(ctx context.Context, p store.Page) ([]changeJSON, error) {
			cs, err := st.QueryChanges(ctx, p)
			if err != nil {
				return nil, fmt.Errorf("list changes: %w", err)
			}
			return changeJSONs(cs), nil
		},
		id: func(c changeJSON) int64 { return c.ChangeID },
	})
}

// GET /api/v2/changes/{change}?field=
func (s *Server) getChange(w http.ResponseWriter, r *http.Request) error {
	q, err := parseOne(r, resourceOf[changeJSON]("changes"))
	if err != nil {
		return err
	}
	id, err := pathID(r, "change", "change id")
	if err != nil {
		return err
	}
	c, err := s.m.Store().GetChange(r.Context(), id)
	if err != nil {
		return lookupErr(err, "change %d", id)
	}
	writeOne(w, q, toChangeJSON(c))
	return nil
}

// GET /api/v2/builds/{build}/changes: the changes the build's buildset
// builds, oldest first, with the list conventions.
func (s *Server) buildChanges(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[changeJSON]("changes"))
	if err != nil {
		return err
	}
	b, err := s.buildFromPath(r)
	if err != nil {
		return err
	}
	cs, err := s.m.Store().BuildsetChanges(r.Context(), b.BuildsetID)
	if err != nil {
		return fmt.Errorf("changes of build %d: %w", b.ID, err)
	}
	writeSmallList(w, q, changeJSONs(cs))
	return nil
}

// Limits of POST /api/v2/changes.
const (
	maxChangesBody = 10 << 20
	maxPostChanges = 1000
	maxUnixTime    = 253402300799 // the last second of year 9999
)

// changeInput is a change as POST /api/v2/changes takes it.
type changeInput struct {
	Author        string         `json:"author"`
	Committer     string         `json:"committer"`
	Comments      string         `json:"comments"`
	Branch        string         `json:"branch"`
	Revision      string         `json:"revision"`
	Revlink       string         `json:"revlink"`
	WhenTimestamp *float64       `json:"when_timestamp"` // unix seconds; absent: now
	Category      string         `json:"category"`
	Repository    string         `json:"repository"`
	Codebase      string         `json:"codebase"`
	Project       string         `json:"project"`
	Files         []string       `json:"files"`
	Properties    map[string]any `json:"properties"` // name: value
}

// POST /api/v2/changes
//
// The body is one change, or {"changes": [change, ...]}, in the fields of
// the change JSON; properties map names to plain values. The changes are
// stored together or not at all, and the reply lists them as GET would.
// Like the control endpoints, it takes application/json only, which a
// browser cannot send cross-site without a preflight.
func (s *Server) postChanges(w http.ResponseWriter, r *http.Request) error {
	if err := allow(r, "force", "", "send changes"); err != nil { // auth.go: changes start builds
		return err
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, "Content-Type: want application/json, got %q", r.Header.Get("Content-Type"))
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(http.MaxBytesReader(w, r.Body, maxChangesBody)); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, "request body larger than %d bytes", maxChangesBody)
		}
		return errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	inputs, err := decodeChangeInputs(body.Bytes())
	if err != nil {
		return err
	}
	cs := make([]store.Change, len(inputs))
	for i, in := range inputs {
		where := ""
		if len(inputs) > 1 {
			where = fmt.Sprintf("changes[%d].", i)
		}
		if cs[i], err = in.change(where); err != nil {
			return err
		}
	}
	stored, err := s.m.AddChanges(r.Context(), cs)
	if err != nil {
		return fmt.Errorf("add %d changes: %w", len(cs), err)
	}
	writeChanges(w, stored)
	return nil
}

// decodeChangeInputs reads one change or {"changes": [...]}.
func decodeChangeInputs(b []byte) ([]changeInput, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, errorf(http.StatusBadRequest, "invalid JSON: %v; want a change object or {\"changes\": [...]}", err)
	}
	if list, ok := top["changes"]; ok {
		if len(top) != 1 {
			return nil, errorf(http.StatusBadRequest, "a body with \"changes\" must have no other field")
		}
		var raws []json.RawMessage
		if err := json.Unmarshal(list, &raws); err != nil {
			return nil, errorf(http.StatusBadRequest, "changes: want a list of change objects")
		}
		switch {
		case len(raws) == 0:
			return nil, errorf(http.StatusBadRequest, "changes: empty list")
		case len(raws) > maxPostChanges:
			return nil, errorf(http.StatusBadRequest, "changes: %d changes, at most %d at once", len(raws), maxPostChanges)
		}
		out := make([]changeInput, len(raws))
		for i, raw := range raws {
			if err := decodeChangeInput(raw, &out[i]); err != nil {
				return nil, errorf(http.StatusBadRequest, "changes[%d]%s", i, err)
			}
		}
		return out, nil
	}
	var in changeInput
	if err := decodeChangeInput(b, &in); err != nil {
		return nil, errorf(http.StatusBadRequest, "change%s", err)
	}
	return []changeInput{in}, nil
}

// decodeChangeInput decodes one change object, refusing unknown fields. Its
// error starts with the field ("." + name), or with ": " when it has none,
// to follow the change's own place.
func decodeChangeInput(b []byte, in *changeInput) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(in)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return fmt.Errorf(".%s: want %s, got %s", te.Field, jsonKind(te.Type), te.Value)
	case errors.As(err, &te):
		return fmt.Errorf(": want an object, got %s", te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf(": unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return fmt.Errorf(": %v", err)
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Float64, reflect.Pointer:
		return "a number"
	}
	return t.String()
}

// change checks in and makes it a store.Change; where prefixes the field
// names in errors.
func (in *changeInput) change(where string) (store.Change, error) {
	bad := func(field, format string, args ...any) error {
		return errorf(http.StatusBadRequest, "%s%s: %s", where, field, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(in.Author) == "" {
		return store.Change{}, bad("author", "missing or empty (who made the change)")
	}
	c := store.Change{
		Author: in.Author, Committer: in.Committer, Comments: in.Comments,
		Branch: in.Branch, Revision: in.Revision, Revlink: in.Revlink,
		Category: in.Category, Repository: in.Repository, Codebase: in.Codebase, Project: in.Project,
		Files: in.Files,
	}
	if t := in.WhenTimestamp; t != nil {
		if *t < 0 || *t > maxUnixTime {
			return store.Change{}, bad("when_timestamp", "want unix seconds, got %v", *t)
		}
		sec, frac := math.Modf(*t)
		c.When = time.Unix(int64(sec), int64(frac*1e9))
	}
	for i, f := range in.Files {
		if f == "" {
			return store.Change{}, bad(fmt.Sprintf("files[%d]", i), "empty file name")
		}
	}
	if len(in.Properties) > 0 {
		c.Properties = make(map[string]store.Property, len(in.Properties))
		for name, v := range in.Properties {
			if name == "" {
				return store.Change{}, bad("properties", "empty property name")
			}
			c.Properties[name] = store.Property{Value: v, Source: "Change"}
		}
	}
	return c, nil
}
