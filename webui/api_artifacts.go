package webui

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/starforge/starforge/master/artifact"
	"github.com/starforge/starforge/master/store"
)

// artifactJSON is a file a build uploaded to the master (an extension:
// Buildbot has no artifacts resource).
type artifactJSON struct {
	ArtifactID  int64    `json:"artifactid"`
	BuildID     int64    `json:"buildid"`
	BuilderID   int64    `json:"builderid"`
	BuildNumber int      `json:"build_number"`
	StepID      *int64   `json:"stepid"`
	Name        string   `json:"name"`
	Size        int64    `json:"size"`
	SHA256      string   `json:"sha256"`
	CreatedAt   unixTime `json:"created_at"`
	DownloadURL string   `json:"download_url"`
}

func toArtifactJSON(a store.Artifact, builderID int64, buildNumber int) artifactJSON {
	j := artifactJSON{ArtifactID: a.ID, BuildID: a.BuildID, BuilderID: builderID, BuildNumber: buildNumber, Name: a.Name, Size: a.Size, SHA256: a.SHA256,
		CreatedAt: unixTime(a.CreatedAt), DownloadURL: artifactURL(a.ID)}
	if a.StepID != 0 {
		id := a.StepID
		j.StepID = &id
	}
	return j
}

func artifactURL(id int64) string { return fmt.Sprintf("/artifacts/%d/download", id) }

// GET /api/v2/builds/{build}/artifacts with the list conventions.
func (s *Server) listArtifacts(w http.ResponseWriter, r *http.Request) error {
	q, err := parseList(r, resourceOf[artifactJSON]("artifacts"))
	if err != nil {
		return err
	}
	b, err := s.buildFromPath(r)
	if err != nil {
		return err
	}
	as, err := s.m.Store().ListArtifacts(r.Context(), b.ID)
	if err != nil {
		return fmt.Errorf("artifacts of build %d: %w", b.ID, err)
	}
	out := make([]artifactJSON, len(as))
	for i, a := range as {
		out[i] = toArtifactJSON(a, b.BuilderID, b.Number)
	}
	writeSmallList(w, q, out)
	return nil
}

// GET /api/v2/artifacts/{id}?field=
func (s *Server) getArtifact(w http.ResponseWriter, r *http.Request) error {
	q, err := parseOne(r, resourceOf[artifactJSON]("artifacts"))
	if err != nil {
		return err
	}
	a, err := s.artifactFromPath(r)
	if err != nil {
		return err
	}
	b, err := s.m.Store().GetBuild(r.Context(), a.BuildID)
	if err != nil {
		return fmt.Errorf("artifact %d: %w", a.ID, err)
	}
	writeOne(w, q, toArtifactJSON(a, b.BuilderID, b.Number))
	return nil
}

func (s *Server) artifactFromPath(r *http.Request) (store.Artifact, error) {
	id, err := pathID(r, "id", "artifact id")
	if err != nil {
		return store.Artifact{}, err
	}
	a, err := s.m.Store().GetArtifact(r.Context(), id)
	if err != nil {
		return a, lookupErr(err, "artifact %d", id)
	}
	return a, nil
}

// GET /artifacts/{id}/download: the artifact's file, as an attachment.
// The artifact's blob in the artifact store is served, so a later upload
// to the same master path does not change it. Only files inside the
// master's base directory are served, opened through an os.Root so that
// no path or symbolic link leads outside it, and only while the file is
// the one recorded (same size; for a row older than the artifact store,
// which names the upload's destination, same modification time too): a
// file replaced by a later upload is refused rather than served under the
// old build's name and hash.
func (s *Server) downloadArtifact(w http.ResponseWriter, r *http.Request) error {
	a, err := s.artifactFromPath(r)
	if err != nil {
		return err
	}
	if s.basedir == "" {
		return errorf(http.StatusNotFound, "artifact %d: this master serves no files", a.ID)
	}
	if filepath.IsAbs(a.Path) || !filepath.IsLocal(a.Path) {
		return errorf(http.StatusForbidden, "artifact %d (%s) is outside the master's base directory: it is not served", a.ID, a.Name)
	}
	root, err := os.OpenRoot(s.basedir)
	if err != nil {
		return fmt.Errorf("artifact %d: open the base directory: %w", a.ID, err)
	}
	defer root.Close()
	f, err := root.Open(a.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errorf(http.StatusGone, "artifact %d (%s) is no longer on the master", a.ID, a.Name)
	case err != nil && !errors.Is(err, fs.ErrPermission):
		// os.Root refuses a path that leaves the root through a link.
		return errorf(http.StatusForbidden, "artifact %d (%s): %s is not served: %v", a.ID, a.Name, a.Path, rootErr(err))
	case err != nil:
		return fmt.Errorf("artifact %d: %w", a.ID, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("artifact %d: %w", a.ID, err)
	}
	if !fi.Mode().IsRegular() {
		return errorf(http.StatusGone, "artifact %d (%s) is no longer a file on the master", a.ID, a.Name)
	}
	// A blob of the artifact store is shared by every artifact with its
	// content and so keeps the first one's modification time: only its
	// size is checked. A row recorded before the store existed names the
	// upload's destination, which a later upload may have replaced.
	blob := strings.HasPrefix(filepath.ToSlash(a.Path), artifact.Dir+"/sha256/")
	if fi.Size() != a.Size || (!blob && !a.ModTime.IsZero() && !fi.ModTime().Truncate(time.Microsecond).Equal(a.ModTime)) {
		return errorf(http.StatusGone, "artifact %d (%s) was replaced on the master since build %d uploaded it", a.ID, a.Name, a.BuildID)
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fileName(path.Base(a.Name))}))
	h.Set("Cache-Control", "private, no-cache")
	if a.SHA256 != "" {
		h.Set("ETag", strconv.Quote(a.SHA256))
	}
	http.ServeContent(w, r, "", fi.ModTime(), f)
	return nil
}

// rootErr shortens an os.Root error to its reason.
func rootErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// artifactRow is an artifact as the build page lists it.
type artifactRow struct {
	store.Artifact
	URL, SizeText, ShortSHA string
}

// artifactRows lists the artifacts of build id for its page.
func (s *Server) artifactRows(ctx context.Context, id int64) ([]artifactRow, error) {
	as, err := s.m.Store().ListArtifacts(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("artifacts of build %d: %w", id, err)
	}
	out := make([]artifactRow, len(as))
	for i, a := range as {
		out[i] = newArtifactRow(a)
	}
	return out, nil
}

func newArtifactRow(a store.Artifact) artifactRow {
	short := a.SHA256
	if len(short) > 12 {
		short = short[:12]
	}
	return artifactRow{Artifact: a, URL: artifactURL(a.ID), SizeText: formatBytes(a.Size), ShortSHA: short}
}

// formatBytes writes n as people read sizes: "512 B", "1.5 KiB", "20 MiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for f >= unit && i < 5 {
		f /= unit
		i++
	}
	suffix := []string{"", "KiB", "MiB", "GiB", "TiB", "PiB"}[i]
	if f < 10 {
		return fmt.Sprintf("%.1f %s", f, suffix)
	}
	return fmt.Sprintf("%.0f %s", f, suffix)
}
