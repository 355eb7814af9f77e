package webhook

import (
	"bytes"
	"encoding/json"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/starforge/starforge/master/store"
)

// baseChange is a change of the base dialect, Buildbot's generic hook:
// a JSON object, or form fields (query string, url-encoded or multipart
// body) in which files and properties hold JSON.
type baseChange struct {
	Author        string         `json:"author"`
	Who           string         `json:"who"` // Buildbot's older name for author
	Committer     string         `json:"committer"`
	Comments      string         `json:"comments"`
	Branch        string         `json:"branch"`
	Revision      string         `json:"revision"`
	Revlink       string         `json:"revlink"`
	Repository    string         `json:"repository"`
	Project       string         `json:"project"`
	Codebase      string         `json:"codebase"`
	Category      string         `json:"category"`
	WhenTimestamp *float64       `json:"when_timestamp"` // unix seconds
	When          *float64       `json:"when"`           // Buildbot's older name
	Files         []string       `json:"files"`
	Properties    map[string]any `json:"properties"`
}

// baseFields are the field names of baseChange, for error messages.
const baseFields = "author (or who), committer, comments, branch, revision, revlink, repository, project, codebase, category, when_timestamp, files, properties"

// maxUnixTime is the last second of year 9999, the latest time accepted.
const maxUnixTime = 253402300799

// maxFormMemory bounds the memory a multipart form takes; the body is
// already bounded by Options.MaxBody.
const maxFormMemory = 1 << 20

func parseBase(req *request) ([]store.Change, string, error) {
	doc, err := baseDocument(req)
	if err != nil {
		return nil, "", err
	}
	var b baseChange
	if err := decode(doc, &b); err != nil {
		return nil, "", err
	}
	// Again, refusing unknown fields: a misspelt "brnach" must not make a
	// change on the default branch.
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(new(baseChange)); err != nil {
		name, _ := strings.CutPrefix(err.Error(), "json: unknown field ")
		return nil, "", badPayload("unknown field %s; the fields are %s", name, baseFields)
	}
	c, err := b.change()
	if err != nil {
		return nil, "", err
	}
	return []store.Change{c}, "", nil
}

func (b *baseChange) change() (store.Change, error) {
	author := b.Author
	if author == "" {
		author = b.Who
	}
	if author == "" {
		return store.Change{}, badPayload("author: missing or empty (who wrote the change)")
	}
	c := store.Change{
		Author:     author,
		Committer:  b.Committer,
		Comments:   b.Comments,
		Branch:     b.Branch,
		Revision:   b.Revision,
		Revlink:    b.Revlink,
		Repository: b.Repository,
		Project:    b.Project,
		Codebase:   b.Codebase,
		Category:   b.Category,
		Files:      b.Files,
	}
	when, field := b.WhenTimestamp, "when_timestamp"
	if when == nil {
		when, field = b.When, "when"
	}
	if when != nil {
		if *when < 0 || *when > maxUnixTime {
			return store.Change{}, badPayload("%s: want unix seconds, got %v", field, *when)
		}
		sec, frac := math.Modf(*when)
		c.When = time.Unix(int64(sec), int64(frac*1e9))
	}
	for i, f := range b.Files {
		if f == "" {
			return store.Change{}, badPayload("%s: empty file name", at("files", i))
		}
	}
	if len(b.Properties) > 0 {
		c.Properties = make(map[string]store.Property, len(b.Properties))
		for name, v := range b.Properties {
			if name == "" {
				return store.Change{}, badPayload("properties: empty property name")
			}
			c.Properties[name] = store.Property{Value: v, Source: "Change"}
		}
	}
	return c, nil
}

// baseDocument returns the request's change as one JSON object: the body
// if it is JSON, else the form fields converted.
func baseDocument(req *request) ([]byte, error) {
	ct := req.r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct != "" && err != nil {
		return nil, refuse(http.StatusUnsupportedMediaType, "Content-Type: %v", err)
	}
	if mt == "application/json" {
		return req.body, nil
	}
	var form url.Values
	switch mt {
	case "", "application/x-www-form-urlencoded":
		if form, err = url.ParseQuery(string(req.body)); err != nil {
			return nil, badPayload("form body: %v", err)
		}
	case "multipart/form-data":
		mf, err := multipart.NewReader(bytes.NewReader(req.body), params["boundary"]).ReadForm(maxFormMemory)
		if err != nil {
			return nil, badPayload("multipart body: %v", err)
		}
		defer mf.RemoveAll()
		form = mf.Value
	default:
		return nil, refuse(http.StatusUnsupportedMediaType, "Content-Type: want application/json, application/x-www-form-urlencoded or multipart/form-data, got %q", ct)
	}
	for k, vs := range req.r.URL.Query() {
		form[k] = append(form[k], vs...)
	}
	return formToJSON(form)
}

// formToJSON converts form fields to the JSON object of a baseChange.
func formToJSON(form url.Values) ([]byte, error) {
	obj := make(map[string]json.RawMessage, len(form))
	for name, vs := range form {
		if len(vs) > 1 {
			return nil, badPayload("%s: given %d times, want once", name, len(vs))
		}
		v := vs[0]
		switch name {
		case "files", "properties":
			want := "a JSON list of file names"
			if name == "properties" {
				want = "a JSON object of property values"
			}
			if !json.Valid([]byte(v)) {
				return nil, badPayload("%s: want %s, got %.40q", name, want, v)
			}
			obj[name] = json.RawMessage(v)
		case "when_timestamp", "when":
			var f float64
			if err := json.Unmarshal([]byte(v), &f); err != nil {
				return nil, badPayload("%s: want unix seconds, got %.40q", name, v)
			}
			obj[name] = json.RawMessage(v)
		default:
			obj[name], _ = json.Marshal(v) // a string always marshals
		}
	}
	return json.Marshal(obj)
}
