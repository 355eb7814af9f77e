package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var staticFS embed.FS

//go:embed templates
var templateFS embed.FS

// assets serves the embedded static files. Pages link them with a content
// hash in the query (?v=…), so a browser may cache a versioned URL forever
// and still never run a stale script after an upgrade.
type assets struct {
	files map[string]asset // by name under static/
}

type asset struct {
	data    []byte
	version string // first hex digits of the content's SHA-256
	ctype   string
}

func newAssets() *assets {
	a := &assets{files: map[string]asset{}}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = http.DetectContentType(data)
		}
		a.files[strings.TrimPrefix(p, "static/")] = asset{data: data, version: hex.EncodeToString(sum[:6]), ctype: ctype}
		return nil
	})
	if err != nil {
		panic("webui: reading embedded assets: " + err.Error()) // a build defect
	}
	return a
}

// url is the versioned URL of the asset named name (e.g. "app.js").
// It panics on an unknown name, which only a template typo can cause.
func (a *assets) url(name string) string {
	f, ok := a.files[name]
	if !ok {
		panic("webui: no asset " + name)
	}
	return "/static/" + name + "?v=" + f.version
}

func (a *assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	f, ok := a.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("ETag", `"`+f.version+`"`)
	if r.URL.Query().Get("v") == f.version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.data))
}
