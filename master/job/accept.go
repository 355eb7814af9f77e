package job

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/store"
)

// JobsDir is the directory under the master's base directory that holds
// the jobs, one directory BASEDIR/jobs/KEY each.
const JobsDir = "jobs"

// RejectedSuffix ends the name of the report left beside an invalid job
// in an incoming directory (NAME.rejected), and of a job directory that an
// adopting master set aside (BASEDIR/jobs/KEY.rejected).
const RejectedSuffix = ".rejected"

// AcceptOptions configures an Accepter.
type AcceptOptions struct {
	Store   *store.Store
	BaseDir string // the master's base directory; jobs go in BaseDir/jobs
	// Config returns the configuration in force; it is called for every
	// job, so a reconfig applies to the next one.
	Config func() *config.Config
	Clock  clock.Clock // default clock.Real
	// MaxSize caps the files of a submitted archive, in bytes: 0 means the
	// configuration's upload_max_size, negative no limit.
	MaxSize int64
	// OnAccepted is called with each job once it is stored (by Submit, the
	// incoming watcher and adoption), before Submit returns. It must not
	// block for long.
	OnAccepted func(store.Job)
	Logger     *slog.Logger // default slog.Default()
}

// Accepter takes jobs in: from archives (Submit), from the farms' incoming
// directories (Run) and, at start, from job directories a master stopped
// before storing (Run). A job is validated, its files put in
// BASEDIR/jobs/KEY/input, and then it is stored; an invalid job leaves
// nothing behind. Its methods are safe for concurrent use.
type Accepter struct {
	opts AcceptOptions
	// mu is held from a job directory getting its final name to the job
	// being stored, so that adoption never sees a directory whose job is
	// being stored.
	mu sync.Mutex
}

// NewAccepter returns an Accepter; it does nothing until called.
func NewAccepter(opts AcceptOptions) *Accepter {
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Accepter{opts: opts}
}

// Submit accepts the job in r, a tar or tar.gz archive of the job
// directory (job.json at its top, or in its one top directory), submitted
// by submitter: the name of whoever the caller authenticated, used when
// job.json names no submitter. The job is stored before Submit returns.
//
// An invalid job gives an *InvalidError (its Problems say what is wrong)
// and leaves nothing stored and no files behind; other errors are the
// master's.
func (a *Accepter) Submit(ctx context.Context, r io.Reader, submitter string) (store.Job, error) {
	cfg := a.opts.Config()
	key, stage, err := a.stage()
	if err != nil {
		return store.Job{}, err
	}
	defer os.RemoveAll(stage) // gone once renamed; only failures leave it
	raw := filepath.Join(stage, "archive")
	if err := os.Mkdir(raw, 0o755); err != nil {
		return store.Job{}, fmt.Errorf("accept job: %w", err)
	}
	limit := a.opts.MaxSize
	if limit == 0 {
		limit = cfg.Master.UploadMaxSize
	}
	top, err := Extract(r, raw, max(limit, 0))
	if err != nil {
		return store.Job{}, err
	}
	defaultName := ""
	if top != raw {
		defaultName = filepath.Base(top)
	}
	spec, farm, err := Check(top, defaultName, cfg.Farms)
	if err != nil {
		return store.Job{}, err
	}
	if spec.Submitter == "" {
		spec.Submitter = submitter
	}
	if err := writeSpec(stage, spec); err != nil {
		return store.Job{}, err
	}
	if err := os.Rename(top, filepath.Join(stage, "input")); err != nil {
		return store.Job{}, fmt.Errorf("accept job: %w", err)
	}
	if err := os.RemoveAll(raw); err != nil {
		return store.Job{}, fmt.Errorf("accept job: %w", err)
	}
	return a.store(ctx, key, stage, spec, farm, cfg, true)
}

// stage makes a new staging directory BASEDIR/jobs/.KEY and returns KEY
// and its path. The dot keeps adoption and people away from it.
func (a *Accepter) stage() (key, dir string, err error) {
	jobs := filepath.Join(a.opts.BaseDir, JobsDir)
	if err := os.MkdirAll(jobs, 0o755); err != nil {
		return "", "", fmt.Errorf("accept job: %w", err)
	}
	for range 10 {
		key = a.newKey()
		dir = filepath.Join(jobs, "."+key)
		if err = os.Mkdir(dir, 0o755); err == nil {
			return key, dir, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	return "", "", fmt.Errorf("accept job: staging directory: %w", err)
}

// keyRE matches a job directory's name: YYYYMMDDTHHMMSS-<8 hex digits>.
var keyRE = regexp.MustCompile(`^(\d{8}T\d{6})-[0-9a-f]{8}$`)

func (a *Accepter) newKey() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return a.opts.Clock.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

// store gives the staging directory stage (holding input/) its final name
// BASEDIR/jobs/KEY, stores the job and announces it. When the store fails
// and removeOnFail is set, the directory goes too: the job was refused.
func (a *Accepter) store(ctx context.Context, key, stage string, spec Spec, farm *config.Farm, cfg *config.Config, removeOnFail bool) (store.Job, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	dir := filepath.Join(a.opts.BaseDir, JobsDir, key)
	if stage != dir {
		if err := os.Rename(stage, dir); err != nil {
			return store.Job{}, fmt.Errorf("accept job %q: %w", spec.Name, err)
		}
	}
	j, err := a.add(ctx, key, spec, farm, cfg)
	if err != nil {
		if removeOnFail {
			os.RemoveAll(dir)
		}
		return store.Job{}, err
	}
	a.opts.Logger.Info("job accepted", "job", j.ID, "name", j.Name, "farm", j.Farm, "dir", j.Dir, "platforms", len(j.Platforms))
	if a.opts.OnAccepted != nil {
		a.opts.OnAccepted(j)
	}
	return j, nil
}

// add stores the job of BASEDIR/jobs/KEY.
func (a *Accepter) add(ctx context.Context, key string, spec Spec, farm *config.Farm, cfg *config.Config) (store.Job, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return store.Job{}, fmt.Errorf("accept job %q: %w", spec.Name, err)
	}
	j := store.Job{
		Farm:      farm.Name,
		Name:      spec.Name,
		Submitter: spec.Submitter,
		Spec:      data,
		Dir:       JobsDir + "/" + key,
	}
	if m := keyRE.FindStringSubmatch(key); m != nil {
		// Adoption keeps the time the job was accepted.
		if t, err := time.Parse("20060102T150405", m[1]); err == nil {
			j.SubmittedAt = t
		}
	}
	for _, name := range spec.Platforms {
		i := slices.IndexFunc(farm.Platforms, func(p config.FarmPlatform) bool { return p.Name == name })
		id, err := a.builderID(ctx, farm.Platforms[i].Builder, cfg)
		if err != nil {
			return store.Job{}, fmt.Errorf("accept job %q: %w", spec.Name, err)
		}
		j.Platforms = append(j.Platforms, store.JobPlatform{Platform: name, BuilderID: id})
	}
	return a.opts.Store.AddJob(ctx, j)
}

// builderID returns the store's id of builder name, adding it if the
// master has not yet (it adds every configured builder at start and at
// reconfig).
func (a *Accepter) builderID(ctx context.Context, name string, cfg *config.Config) (int64, error) {
	b, err := a.opts.Store.GetBuilderByName(ctx, name)
	if err == nil {
		return b.ID, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	sb := store.Builder{Name: name}
	if cb := cfg.Builder(name); cb != nil {
		sb.Description, sb.Tags = cb.Description, cb.Tags
	}
	return a.opts.Store.EnsureBuilder(ctx, sb)
}

// AcceptDir accepts the job directory dir (named NAME: the job's name
// unless job.json gives one), for example one dropped into an incoming
// directory: it is validated in place, then moved into BASEDIR/jobs (by
// renaming it, or by copying it and removing it when it is on another
// file system), then stored. An invalid job gives an *InvalidError and
// stays where it is.
func (a *Accepter) AcceptDir(ctx context.Context, dir string) (store.Job, error) {
	cfg := a.opts.Config()
	spec, farm, err := Check(dir, filepath.Base(dir), cfg.Farms)
	if err != nil {
		return store.Job{}, err
	}
	key, stage, err := a.stage()
	if err != nil {
		return store.Job{}, err
	}
	input := filepath.Join(stage, "input")
	err = writeSpec(stage, spec)
	if err == nil {
		err = os.Rename(dir, input)
	}
	if errors.Is(err, syscall.EXDEV) {
		err = copyTree(dir, input)
		if err == nil {
			// The job is in the master's hands once this rename is done:
			// a master that stops before the removal below adopts the job
			// and takes the incoming one again (built twice rather than
			// lost).
			a.mu.Lock()
			err = os.Rename(stage, filepath.Join(a.opts.BaseDir, JobsDir, key))
			a.mu.Unlock()
			if err == nil {
				stage = filepath.Join(a.opts.BaseDir, JobsDir, key)
				err = os.RemoveAll(dir)
			}
		}
	}
	if err != nil {
		os.RemoveAll(stage)
		return store.Job{}, fmt.Errorf("accept job %s: %w", dir, err)
	}
	return a.store(ctx, key, stage, spec, farm, cfg, false)
}

// AcceptedSpec is the file beside input/ that holds the job's normalized
// spec as accepted: what adoption goes by for what job.json leaves to the
// submission (the name of an incoming directory, the submitter of an
// upload).
const AcceptedSpec = "spec.json"

func writeSpec(stage string, spec Spec) error {
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("accept job %q: %w", spec.Name, err)
	}
	if err := os.WriteFile(filepath.Join(stage, AcceptedSpec), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("accept job %q: %w", spec.Name, err)
	}
	return nil
}

// copyTree copies the regular files and directories of src to dst.
func copyTree(src, dst string) error {
	_, err := walkCopy(src, dst, copyFile)
	return err
}

// walkCopy copies the regular files and directories of src to dst with
// copy, and returns how many files it copied. Anything else in src (a
// link, a device) is an error.
func walkCopy(src, dst string, copy func(src, dst string, mode fs.FileMode) error) (int, error) {
	n := 0
	err := filepath.WalkDir(src, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, file)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			n++
			return copy(file, target, info.Mode().Perm())
		}
		return fmt.Errorf("%s: not a regular file or directory", file)
	})
	return n, err
}

// copyFile copies src to the new file dst, synced, with the given mode.
func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Run adopts the job directories a master left unstored, then watches the
// incoming directory of every farm until ctx is done: each is scanned at
// once and then every farm's incoming_interval, as the configuration in
// force says. It returns ctx's error.
//
// In an incoming directory, entries whose names start with "." or end in
// ".rejected" are ignored, and so is a directory without job.json (not
// complete yet) or with a NAME.rejected beside it (rejected already). A
// valid job is moved into the master's store; for an invalid one a report
// NAME.rejected is written beside it and the directory is left as it is.
func (a *Accepter) Run(ctx context.Context) error {
	if err := a.Adopt(ctx); err != nil {
		a.opts.Logger.Error("adopting unstored jobs", "err", err)
	}
	next := make(map[string]time.Time) // farm → when its incoming is due
	for {
		now := a.opts.Clock.Now()
		wait := config.DefaultIncomingInterval
		for _, f := range a.opts.Config().Farms {
			if f.Incoming == "" {
				continue
			}
			if due, ok := next[f.Name]; !ok || !now.Before(due) {
				a.scan(ctx, f)
				next[f.Name] = now.Add(f.IncomingInterval)
			}
			wait = min(wait, next[f.Name].Sub(now))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		tick := make(chan struct{})
		t := a.opts.Clock.AfterFunc(max(wait, 0), func() { close(tick) })
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-tick:
		}
	}
}

// scan takes the jobs waiting in farm f's incoming directory.
func (a *Accepter) scan(ctx context.Context, f *config.Farm) {
	dir := f.Incoming
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(a.opts.BaseDir, dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.opts.Logger.Warn("incoming directory", "farm", f.Name, "dir", dir, "err", err)
		}
		return
	}
	names := make(map[string]bool, len(entries))
	for _, e := range entries {
		names[e.Name()] = true
	}
	for _, e := range entries {
		name := e.Name()
		if ctx.Err() != nil {
			return
		}
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, RejectedSuffix) || !e.IsDir() || names[name+RejectedSuffix] {
			continue
		}
		jobDir := filepath.Join(dir, name)
		if _, err := os.Lstat(filepath.Join(jobDir, SpecFile)); err != nil {
			continue // still being written: job.json comes last
		}
		j, err := a.AcceptDir(ctx, jobDir)
		var inv *InvalidError
		switch {
		case errors.As(err, &inv):
			a.opts.Logger.Warn("incoming job rejected", "farm", f.Name, "dir", jobDir, "problems", len(inv.problems))
			if err := writeReport(dir, name+RejectedSuffix, jobDir, inv); err != nil {
				a.opts.Logger.Error("writing rejection report", "dir", jobDir, "err", err)
			}
		case err != nil:
			a.opts.Logger.Error("incoming job", "farm", f.Name, "dir", jobDir, "err", err)
		default:
			a.opts.Logger.Info("incoming job taken", "farm", f.Name, "dir", jobDir, "job", j.ID)
		}
	}
}

// writeReport writes the report of an invalid job as dir/name, atomically:
// a half-written report would stop the job being retried and explain
// nothing.
func writeReport(dir, name, jobDir string, inv *InvalidError) error {
	var b strings.Builder
	fmt.Fprintf(&b, "The job %s was rejected:\n\n", jobDir)
	for _, p := range inv.problems {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	fmt.Fprintf(&b, "\nFix the job and remove this file (%s) to have it taken again.\n", name)
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}

// Adopt stores the jobs whose directories are under BASEDIR/jobs but that
// the store does not know: a master that stopped between moving a job's
// files in and storing it. Each is validated again, against the
// configuration in force; one that is no longer valid is renamed
// KEY.rejected, with the report in it as rejected.txt. Staging directories
// (".KEY") left by a stopped master are removed. Run calls it first.
func (a *Accepter) Adopt(ctx context.Context) error {
	jobs := filepath.Join(a.opts.BaseDir, JobsDir)
	a.mu.Lock()
	defer a.mu.Unlock()
	entries, err := os.ReadDir(jobs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("adopt jobs: %w", err)
	}
	known, err := a.opts.Store.JobDirs(ctx)
	if err != nil {
		return fmt.Errorf("adopt jobs: %w", err)
	}
	cfg := a.opts.Config()
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") && keyRE.MatchString(name[1:]) {
			// A staging directory of a stopped master: nothing was
			// promised about it.
			if err := os.RemoveAll(filepath.Join(jobs, name)); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if !e.IsDir() || !keyRE.MatchString(name) || known[JobsDir+"/"+name] {
			continue
		}
		input := filepath.Join(jobs, name, "input")
		var was Spec
		if data, err := os.ReadFile(filepath.Join(jobs, name, AcceptedSpec)); err == nil {
			_ = json.Unmarshal(data, &was) // without it, job.json alone says
		}
		spec, farm, err := Check(input, was.Name, cfg.Farms)
		if err == nil && spec.Submitter == "" {
			spec.Submitter = was.Submitter
		}
		var inv *InvalidError
		switch {
		case errors.As(err, &inv):
			a.opts.Logger.Warn("unstored job no longer valid; set aside", "dir", JobsDir+"/"+name, "problems", len(inv.problems))
			aside := filepath.Join(jobs, name+RejectedSuffix)
			if err := os.Rename(filepath.Join(jobs, name), aside); err != nil {
				errs = append(errs, err)
			} else if err := writeReport(aside, "rejected.txt", JobsDir+"/"+name, inv); err != nil {
				errs = append(errs, err)
			}
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		j, err := a.add(ctx, name, spec, farm, cfg)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a.opts.Logger.Info("unstored job adopted", "job", j.ID, "name", j.Name, "dir", j.Dir)
		if a.opts.OnAccepted != nil {
			a.opts.OnAccepted(j)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("adopt jobs: %w", errors.Join(errs...))
	}
	return nil
}
