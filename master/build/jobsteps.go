package build

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/worker/proto"
)

// This file runs the steps of package farm builds, job_download() and
// job_upload(), which move files between the job's directory on the
// master and the worker. The job comes from the build's properties
// (job_dir, job_files, job_platform), set by the job coordinator.

// jobAction returns how to run sc when it is a job step, or nil.
func (s *stepRun) jobAction(sc *config.Step) stepAction {
	switch sc.Action.(type) {
	case *config.JobDownloadAction:
		return s.jobDownload
	case *config.JobUploadAction:
		return s.jobUpload
	}
	return nil
}

// jobContext is the job of a build, checked.
type jobContext struct {
	dir      string // BASEDIR/job_dir, absolute
	rel      string // job_dir as given ("jobs/KEY")
	platform string
	files    []string // job_files: slash paths relative to dir/input
}

// jobPropNames are the properties job steps need.
const jobPropNames = "job_dir, job_files and job_platform"

// jobContext reads and checks the build's job properties. Nothing they
// name may lead outside the job's directory: job_dir must be jobs/KEY,
// job_platform one path element, job_files relative paths without "..".
func (b *run) jobContext() (jobContext, error) {
	var jc jobContext
	get := func(name string) (any, bool) {
		p, ok := b.props[name]
		return p.Value, ok && p.Value != nil
	}
	dv, hasDir := get("job_dir")
	pv, hasPlatform := get("job_platform")
	fv, hasFiles := get("job_files")
	if !hasDir && !hasPlatform && !hasFiles {
		return jc, fmt.Errorf("this build has no job properties (%s): job steps run in the builds of a package farm's jobs", jobPropNames)
	}
	var missing []string
	for _, m := range []struct {
		name string
		ok   bool
	}{{"job_dir", hasDir}, {"job_files", hasFiles}, {"job_platform", hasPlatform}} {
		if !m.ok {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return jc, fmt.Errorf("this build lacks the job properties %s", strings.Join(missing, ", "))
	}
	dir, ok := dv.(string)
	key, found := strings.CutPrefix(dir, "jobs/")
	if !ok || !found || !isPathElem(key) {
		return jc, fmt.Errorf("property job_dir: %s is not a job directory (want \"jobs/KEY\")", showValue(dv))
	}
	jc.rel = dir
	if jc.platform, ok = pv.(string); !ok || !isPathElem(jc.platform) {
		return jc, fmt.Errorf("property job_platform: %s is not a platform name", showValue(pv))
	}
	var list []any
	switch v := fv.(type) {
	case []any:
		list = v
	case []string:
		for _, s := range v {
			list = append(list, s)
		}
	default:
		return jc, fmt.Errorf("property job_files: want a list of file names, got %s", showValue(fv))
	}
	for i, f := range list {
		s, ok := f.(string)
		clean := path.Clean(s)
		if !ok || s == "" || strings.Contains(s, `\`) || !fs.ValidPath(clean) || clean == "." {
			return jc, fmt.Errorf("property job_files[%d]: %s is not a relative path inside the job (no \"..\", not absolute)", i, showValue(f))
		}
		jc.files = append(jc.files, clean)
	}
	if b.runner.Basedir == "" {
		return jc, errors.New("this master has no base directory, where jobs are kept")
	}
	jc.dir = filepath.Join(b.runner.Basedir, filepath.FromSlash(dir))
	if fi, err := os.Stat(jc.dir); err != nil || !fi.IsDir() {
		return jc, fmt.Errorf("job directory %s: not found on the master", dir)
	}
	return jc, nil
}

// isPathElem reports whether s is one plain path element: not empty, not
// hidden, without separators.
func isPathElem(s string) bool {
	return s != "" && s[0] != '.' && !strings.ContainsAny(s, `/\`) && !strings.ContainsRune(s, 0)
}

// fail logs msg and fails the step with it.
func (s *stepRun) fail(ctx context.Context, stdio *logSink, res result.Result, msg string) (result.Result, string) {
	stdio.header(ctx, msg)
	return res, msg
}

// jobDownload runs job_download(dest): it empties WORKDIR/dest, then
// downloads the package's files and the platform's repository there.
func (s *stepRun) jobDownload(ctx context.Context, stdio *logSink, sc *config.Step) (result.Result, string) {
	a, err := sc.Action.(*config.JobDownloadAction).Render(s.b.env)
	if err != nil {
		writeError(ctx, stdio, err)
		return result.Exception, "render error: " + firstLine(err.Error())
	}
	jc, err := s.b.jobContext()
	if err != nil {
		return s.fail(ctx, stdio, result.Failure, "job_download: "+err.Error())
	}
	root, err := os.OpenRoot(jc.dir)
	if err != nil {
		return s.fail(ctx, stdio, result.Failure, "job_download: "+err.Error())
	}
	defer root.Close()
	// What goes where: input files first, in the submitter's order.
	type item struct{ src, dest string }
	var items []item
	for i, f := range jc.files {
		fi, err := root.Stat("input/" + f)
		if err != nil || !fi.Mode().IsRegular() {
			return s.fail(ctx, stdio, result.Failure, fmt.Sprintf("job_download: property job_files[%d]: %s is not a file of job %s", i, strconv.Quote(f), jc.rel))
		}
		items = append(items, item{"input/" + f, f})
	}
	repo, err := repoFiles(jc)
	if err != nil {
		return s.fail(ctx, stdio, result.Failure, "job_download: "+err.Error())
	}
	for _, f := range repo {
		items = append(items, item{"repo/" + jc.platform + "/" + f, "repo/" + f})
	}

	b := s.b
	dest := b.sess.Join(s.workdir(sc), a.Dest)
	stdio.header(ctx, fmt.Sprintf("job %s on %s: %d package files, %d repository files, into %s", jc.rel, jc.platform, len(jc.files), len(repo), a.Dest))
	if res, state := s.runCommand(ctx, command{name: proto.CmdRmdir, args: map[string]any{
		"paths":      []any{dest},
		"logEnviron": sc.LogEnviron,
		"timeout":    seconds(sc.Timeout),
		"maxTime":    seconds(sc.MaxTime),
	}}, nil); res != result.Success {
		return res, "emptying " + a.Dest + ": " + state
	}
	if res, state := s.runCommand(ctx, command{name: proto.CmdMkdir, args: map[string]any{"paths": []any{dest}}}, nil); res != result.Success {
		return res, "creating " + a.Dest + ": " + state
	}
	for i, it := range items {
		f, err := root.Open(filepath.FromSlash(it.src))
		if err != nil {
			return s.fail(ctx, stdio, result.Failure, fmt.Sprintf("job_download: %s: %v", it.src, err))
		}
		t := &download{src: path.Join(jc.rel, it.src), f: f, sum: sha256.New()}
		res, state := s.runCommand(ctx, command{name: proto.CmdDownloadFile, transfer: t, args: map[string]any{
			"path":      b.sess.Join(append([]string{dest}, strings.Split(it.dest, "/")...)...),
			"blocksize": transferBlockSize,
			"maxsize":   nil,
			"mode":      nil,
		}}, nil)
		if res != result.Success {
			return res, fmt.Sprintf("file %d of %d: %s", i+1, len(items), state)
		}
	}
	return result.Success, fmt.Sprintf("downloaded %s and %s", plural(len(jc.files), "package file"), plural(len(repo), "repository file"))
}

// repoFiles lists the regular files of the platform's repository of the
// job, as slash paths relative to it, sorted; none if it does not exist
// yet. Symbolic links are left out: job_upload never makes them.
func repoFiles(jc jobContext) ([]string, error) {
	top := filepath.Join(jc.dir, "repo", jc.platform)
	var out []string
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == top && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipAll
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(top, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repository of %s: %w", jc.platform, err)
	}
	sort.Strings(out)
	return out, nil
}

// jobUploadTransfer is the upload_dir transfer of job_upload, hiding
// uploadDir's artifact listing: the step records the files once they are
// in the repository, not where they were unpacked.
type jobUploadTransfer struct{ u *uploadDir }

func (t jobUploadTransfer) handle(op string, msg proto.Message) (any, error) {
	return t.u.handle(op, msg)
}
func (t jobUploadTransfer) finish(ok bool) (string, error) { return t.u.finish(ok) }

// jobUpload runs job_upload(workersrc): the directory is unpacked beside
// the platform's repository, then its files are moved into it (replacing
// files of the same name, keeping the others) and recorded as artifacts
// of the build.
func (s *stepRun) jobUpload(ctx context.Context, stdio *logSink, sc *config.Step) (result.Result, string) {
	a, err := sc.Action.(*config.JobUploadAction).Render(s.b.env)
	if err != nil {
		writeError(ctx, stdio, err)
		return result.Exception, "render error: " + firstLine(err.Error())
	}
	jc, err := s.b.jobContext()
	if err != nil {
		return s.fail(ctx, stdio, result.Failure, "job_upload: "+err.Error())
	}
	b := s.b
	stage := filepath.Join(jc.dir, "repo", fmt.Sprintf(".upload-%s-%d", jc.platform, s.step.ID))
	defer os.RemoveAll(stage)
	u, err := newUploadDir(stage, "", b.cfg.Master.UploadMaxSize)
	if err != nil {
		return s.fail(ctx, stdio, result.Failure, "job_upload: "+err.Error())
	}
	res, state := s.runCommand(ctx, command{name: proto.CmdUploadDirectory, transfer: jobUploadTransfer{u}, args: map[string]any{
		"path":      b.sess.Join(s.workdir(sc), a.WorkerSrc),
		"blocksize": transferBlockSize,
		"maxsize":   nil,
		"compress":  nil,
	}}, nil)
	if res != result.Success {
		return res, state
	}
	repo := path.Join(jc.rel, "repo", jc.platform)
	files, skipped, err := mergeInto(stage, filepath.Join(jc.dir, "repo", jc.platform))
	for _, sk := range skipped {
		stdio.header(ctx, "not stored (not a regular file): "+sk)
	}
	if err != nil {
		return s.fail(ctx, stdio, result.Failure, fmt.Sprintf("job_upload: store into %s: %v", repo, err))
	}
	if len(files) > maxDirArtifacts {
		stdio.header(ctx, fmt.Sprintf("%d more files are not listed as artifacts (at most %d per directory)", len(files)-maxDirArtifacts, maxDirArtifacts))
		files = files[:maxDirArtifacts]
	}
	if err := b.runner.keepArtifacts(ctx, b.build.ID, s.step.ID, files); err != nil {
		// The files are in the repository all the same, as for upload.
		stdio.header(ctx, err.Error())
	}
	msg := fmt.Sprintf("stored %s in %s", plural(len(files), "file"), repo)
	stdio.header(ctx, msg)
	if len(files) == 0 {
		return result.Warnings, "nothing to store: " + a.WorkerSrc + " is empty"
	}
	return result.Success, msg
}

// mergeInto moves the regular files of the tree stage into dir, at the
// same relative paths, replacing files there and keeping the others, and
// returns them (hashed, named by their relative path) with the entries it
// skipped (symbolic links).
func mergeInto(stage, dir string) (files []storedFile, skipped []string, err error) {
	err = filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(stage, p)
		if err != nil || rel == "." {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			skipped = append(skipped, filepath.ToSlash(rel))
			return nil
		}
		target := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if fi, err := os.Lstat(target); err == nil && fi.IsDir() {
			return fmt.Errorf("%s: a directory of that name is in the repository", filepath.ToSlash(rel))
		}
		if err := os.Rename(p, target); err != nil {
			return err
		}
		f, err := hashFile(target)
		if err != nil {
			return err
		}
		f.name = filepath.ToSlash(rel)
		files = append(files, f)
		return nil
	})
	return files, skipped, err
}
