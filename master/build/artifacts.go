package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/starforge/starforge/master/artifact"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// maxDirArtifacts bounds the files of one upload_dir recorded as
// artifacts; the directory itself is stored whole either way.
const maxDirArtifacts = 1000

// storedFile is a file a finished upload left on the master.
type storedFile struct {
	path, name string // where it is; what the build page calls it
	sha256     string
	size       int64
	mtime      time.Time
}

// artifactSource is a transfer that leaves files on the master, which the
// build lists as its artifacts.
type artifactSource interface {
	// stored lists the files of the finished transfer; more is the number
	// of further files left out.
	stored() (files []storedFile, more int, err error)
}

func (u *upload) stored() ([]storedFile, int, error) {
	fi, err := os.Stat(u.dest)
	if err != nil {
		return nil, 0, err
	}
	return []storedFile{{path: u.dest, name: filepath.Base(u.dest), sha256: hex.EncodeToString(u.sum.Sum(nil)),
		size: u.n, mtime: fi.ModTime()}}, 0, nil
}

// stored hashes the regular files of the unpacked directory, in name
// order, up to maxDirArtifacts of them; symbolic links are not artifacts.
func (u *uploadDir) stored() ([]storedFile, int, error) {
	var out []storedFile
	more := 0
	base := filepath.Base(u.dest)
	err := filepath.WalkDir(u.dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if len(out) == maxDirArtifacts {
			more++
			return nil
		}
		rel, err := filepath.Rel(u.dest, p)
		if err != nil {
			return err
		}
		f, err := hashFile(p)
		if err != nil {
			return err
		}
		f.name = filepath.ToSlash(filepath.Join(base, rel))
		out = append(out, f)
		return nil
	})
	return out, more, err
}

func hashFile(p string) (storedFile, error) {
	f, err := os.Open(p)
	if err != nil {
		return storedFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return storedFile{}, fmt.Errorf("read %s: %w", p, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return storedFile{}, err
	}
	return storedFile{path: p, sha256: hex.EncodeToString(h.Sum(nil)), size: n, mtime: fi.ModTime()}, nil
}

// recordArtifacts records the files cmd's transfer stored, once it has
// succeeded, as artifacts of the build. A failure to record is written to
// the step's log but does not change the step's result: the files are
// there all the same.
func (s *stepRun) recordArtifacts(ctx context.Context, cmd command, res result.Result) {
	src, ok := cmd.transfer.(artifactSource)
	if !ok || res != result.Success {
		return
	}
	stdio := s.logs["stdio"]
	files, more, err := src.stored()
	if err != nil {
		stdio.header(ctx, "could not list the uploaded files as artifacts: "+err.Error())
		return
	}
	if more > 0 {
		stdio.header(ctx, fmt.Sprintf("%d more files are not listed as artifacts (at most %d per directory)", more, maxDirArtifacts))
	}
	if err := s.b.runner.keepArtifacts(ctx, s.b.build.ID, s.step.ID, files); err != nil {
		stdio.header(ctx, err.Error())
	}
}

// keepArtifacts records files as artifacts of build (and step): each one's
// content goes into the master's blob store first, and the row points at
// the blob, so that what a build uploaded stays downloadable when a later
// build writes over the same master path. A master without a base
// directory records the files where they are.
func (r *Runner) keepArtifacts(ctx context.Context, build, step int64, files []storedFile) error {
	if len(files) == 0 {
		return nil
	}
	as := make([]store.Artifact, len(files))
	for i, f := range files {
		as[i] = store.Artifact{BuildID: build, StepID: step, Name: f.name,
			Path: r.artifactPath(f.path), SHA256: f.sha256, Size: f.size, ModTime: f.mtime}
	}
	if r.Basedir != "" {
		cas := artifact.Open(r.Basedir)
		defer cas.Hold()()
		for i, f := range files {
			p, err := cas.Put(f.path, f.sha256)
			if err != nil {
				return fmt.Errorf("could not keep %s in the artifact store: %w", f.name, err)
			}
			as[i].Path = p
		}
	}
	if _, err := r.Store.AddArtifacts(ctx, as); err != nil {
		return fmt.Errorf("could not record the artifacts: %w", err)
	}
	return nil
}

// artifactPath is how an artifact's path is stored: relative to the
// master's base directory when it is inside it, so the basedir may move;
// absolute otherwise (the web UI does not serve such files).
func (r *Runner) artifactPath(p string) string {
	if r.Basedir != "" {
		if rel, err := filepath.Rel(r.Basedir, p); err == nil && rel != "." && filepath.IsLocal(rel) {
			return rel
		}
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
