package artifact

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/store"
)

// tmpMaxAge is how old a temporary file of an interrupted copy must be
// before the janitor removes it: older than any copy still running.
const tmpMaxAge = 24 * time.Hour

// Janitor applies the artifact_retention() policies of the configuration:
// it deletes the artifact rows of the finished builds beyond them, then
// the blobs of those rows that no row references any more. Its first sweep
// looks at every blob instead, for those a crash left without a row. The builds of a builder that no policy
// covers keep their artifacts.
type Janitor struct {
	Store   *store.Store
	Basedir string
	// Config returns the configuration in force; it is read at every
	// sweep, so a reload takes effect at the next one.
	Config func() *config.Config
	Clock  clock.Clock  // nil: the real clock
	Logger *slog.Logger // nil: slog.Default()

	walked bool // the first sweep looked at every blob
}

// Report is what one sweep removed.
type Report struct {
	Artifacts int   // artifact rows deleted
	Builds    int   // builds they belonged to
	Blobs     int   // blob files removed
	Bytes     int64 // their size
}

func (j *Janitor) clock() clock.Clock {
	if j.Clock == nil {
		return clock.Real
	}
	return j.Clock
}

func (j *Janitor) logger() *slog.Logger {
	if j.Logger == nil {
		return slog.Default()
	}
	return j.Logger
}

// Interval is how often Run sweeps under cfg: the shortest interval of
// its policies, or 0 when it has none.
func Interval(cfg *config.Config) time.Duration {
	var d time.Duration
	for _, r := range cfg.ArtifactRetention {
		if d == 0 || r.Interval < d {
			d = r.Interval
		}
	}
	return d
}

// Run sweeps at once and then every Interval of the configuration in
// force, until ctx is done. While the configuration has no policy it
// looks again every config.DefaultArtifactRetentionInterval, so that one
// added by a reload is applied. Failures are logged, and the next sweep
// tries again.
func (j *Janitor) Run(ctx context.Context) {
	tick := make(chan struct{}, 1)
	for {
		d := config.DefaultArtifactRetentionInterval
		if cfg := j.Config(); len(cfg.ArtifactRetention) > 0 {
			if _, err := j.Sweep(ctx); err != nil && ctx.Err() == nil {
				j.logger().Error("artifact janitor", "err", err)
			}
			d = Interval(cfg)
		}
		t := j.clock().AfterFunc(d, func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-tick:
		}
	}
}

// Sweep applies the policies once and logs what it removed. It is safe to
// call while builds run and record artifacts; two sweeps must not run at
// once.
func (j *Janitor) Sweep(ctx context.Context) (Report, error) {
	var rep Report
	cfg := j.Config()
	now := j.clock().Now()
	builders, err := j.Store.ListBuilders(ctx)
	if err != nil {
		return rep, fmt.Errorf("artifact janitor: %w", err)
	}
	var errs []error
	expired := map[string]bool{} // the sums whose rows went: only their blobs can have lost their last row
	for _, b := range builders {
		p := cfg.ArtifactPolicy(b.Name)
		if p == nil {
			continue
		}
		r := store.ArtifactRetention{BuilderID: b.ID, KeepBuilds: p.KeepBuilds}
		if p.KeepDays > 0 {
			r.CompletedBefore = now.Add(-time.Duration(p.KeepDays) * 24 * time.Hour)
		}
		gone, err := j.Store.ExpireArtifacts(ctx, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("builder %s: %w", b.Name, err))
			continue
		}
		builds := map[int64]bool{}
		for _, a := range gone {
			builds[a.BuildID] = true
			expired[a.SHA256] = true
		}
		rep.Artifacts += len(gone)
		rep.Builds += len(builds)
	}
	var blobs int
	var bytes int64
	if !j.walked {
		// Once per janitor, every blob: those a master stopped between
		// storing a blob and its row, and temporary files of copies it
		// interrupted, are found only so.
		blobs, bytes, err = j.removeUnreferenced(ctx, now)
		j.walked = err == nil
	} else {
		blobs, bytes, err = j.removeExpired(ctx, expired)
	}
	rep.Blobs, rep.Bytes = blobs, bytes
	if err != nil {
		errs = append(errs, err)
	}
	if rep != (Report{}) {
		j.logger().Info("artifact janitor: removed expired artifacts", "artifacts", rep.Artifacts, "builds", rep.Builds,
			"blobs", rep.Blobs, "bytes", rep.Bytes)
	}
	if err := errors.Join(errs...); err != nil {
		return rep, fmt.Errorf("artifact janitor: %w", err)
	}
	return rep, nil
}

// removeUnreferenced removes every blob no artifact row references, and
// temporary files of copies that were interrupted long ago. Each blob is
// checked and removed under the store's lock, so that a blob a build has
// just put and is about to record is not taken from under it.
func (j *Janitor) removeUnreferenced(ctx context.Context, now time.Time) (int, int64, error) {
	cas := Open(j.Basedir)
	top := filepath.Join(cas.basedir, Dir, "sha256")
	var n int
	var size int64
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == top {
				return filepath.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		name := d.Name()
		if strings.HasPrefix(name, ".tmp-") {
			if fi, err := d.Info(); err == nil && now.Sub(fi.ModTime()) > tmpMaxAge {
				_ = os.Remove(p)
			}
			return nil
		}
		if !ValidSum(name) || filepath.Base(filepath.Dir(p)) != name[:2] {
			return nil // not ours: left alone
		}
		removed, bytes, err := cas.removeIfUnreferenced(ctx, j.Store, name)
		if err != nil {
			return err
		}
		if removed {
			n++
			size += bytes
		}
		return nil
	})
	if err != nil {
		return n, size, fmt.Errorf("remove unreferenced blobs: %w", err)
	}
	return n, size, nil
}

// removeExpired removes the blobs of sums that no artifact row references
// any more.
func (j *Janitor) removeExpired(ctx context.Context, sums map[string]bool) (int, int64, error) {
	cas := Open(j.Basedir)
	var n int
	var size int64
	for sum := range sums {
		if !ValidSum(sum) {
			continue // a row from before the store (no blob of its own)
		}
		removed, bytes, err := cas.removeIfUnreferenced(ctx, j.Store, sum)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed by hand, or never stored
		}
		if err != nil {
			return n, size, fmt.Errorf("remove unreferenced blobs: %w", err)
		}
		if removed {
			n++
			size += bytes
		}
	}
	return n, size, nil
}

func (c *CAS) removeIfUnreferenced(ctx context.Context, st *store.Store, sum string) (bool, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	used, err := st.ArtifactReferenced(ctx, sum)
	if err != nil || used {
		return false, 0, err
	}
	p := c.Path(sum)
	fi, err := os.Lstat(p)
	if err != nil {
		return false, 0, err
	}
	if err := os.Remove(p); err != nil {
		return false, 0, err
	}
	return true, fi.Size(), nil
}
