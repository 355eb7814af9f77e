package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixtureBuild is a build of the fixture: its builder, when it completed
// (days before now; negative: still running) and its artifacts' contents.
type fixtureBuild struct {
	builder string
	daysAgo int
	files   []string
}

type fixture struct {
	st      *store.Store
	basedir string
	builds  []store.Build // as given
}

func newFixture(t *testing.T, builds []fixtureBuild) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, basedir: filepath.Join(dir, "master")}
	for i, fb := range builds {
		bid, err := st.EnsureBuilder(ctx, store.Builder{Name: fb.builder})
		if err != nil {
			t.Fatal(err)
		}
		b, err := st.AddBuild(ctx, store.NewBuild{BuilderID: bid, StartedAt: now.Add(-time.Duration(fb.daysAgo)*24*time.Hour - time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		f.builds = append(f.builds, b)
		for j, body := range fb.files {
			f.record(t, b.ID, filepath.Join("out", fb.builder, "f"+string(rune('a'+i))+string(rune('a'+j))), body)
		}
		if fb.daysAgo >= 0 {
			if err := st.FinishBuild(ctx, b.ID, result.Success, "done", now.Add(-time.Duration(fb.daysAgo)*24*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

// record writes body to rel under the base directory and records it as an
// artifact of build as the build runner does.
func (f *fixture) record(t *testing.T, build int64, rel, body string) {
	t.Helper()
	p := filepath.Join(f.basedir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cas := Open(f.basedir)
	release := cas.Hold()
	defer release()
	blob, err := cas.Put(p, sum(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.AddArtifacts(context.Background(), []store.Artifact{{BuildID: build, Name: filepath.Base(rel),
		Path: blob, SHA256: sum(body), Size: int64(len(body))}}); err != nil {
		t.Fatal(err)
	}
}

func sum(s string) string { x := sha256.Sum256([]byte(s)); return hex.EncodeToString(x[:]) }

// kept returns, per build of the fixture (by index), how many artifacts it
// has left.
func (f *fixture) kept(t *testing.T) []int {
	t.Helper()
	out := make([]int, len(f.builds))
	for i, b := range f.builds {
		as, err := f.st.ListArtifacts(context.Background(), b.ID)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = len(as)
	}
	return out
}

// blobs returns the contents of the blobs left, sorted.
func (f *fixture) blobs(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(f.basedir, Dir), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if filepath.Base(p) != sum(string(b)) {
			t.Errorf("blob %s holds %q", p, b)
		}
		out = append(out, string(b))
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestJanitorSweep(t *testing.T) {
	all := func(rs ...*config.ArtifactRetention) []*config.ArtifactRetention { return rs }
	for _, tc := range []struct {
		name     string
		builds   []fixtureBuild
		policies []*config.ArtifactRetention
		kept     []int
		blobs    []string
		report   Report
	}{
		{
			name: "keep_builds",
			builds: []fixtureBuild{
				{"a", 9, []string{"a1", "x"}}, {"a", 8, []string{"a2"}}, {"a", 7, []string{"a3"}}, {"a", 6, []string{"a4"}},
				{"b", 9, []string{"b1"}},
			},
			policies: all(&config.ArtifactRetention{KeepBuilds: 2, Builders: []string{"a"}}),
			kept:     []int{0, 0, 1, 1, 1},
			blobs:    []string{"a3", "a4", "b1"},
			report:   Report{Artifacts: 3, Builds: 2, Blobs: 3, Bytes: 5},
		},
		{
			name: "keep_days",
			builds: []fixtureBuild{
				{"a", 10, []string{"old"}}, {"a", 8, []string{"older"}}, {"a", 6, []string{"recent"}}, {"b", 30, []string{"b"}},
			},
			policies: all(&config.ArtifactRetention{KeepDays: 7}),
			kept:     []int{0, 0, 1, 0},
			blobs:    []string{"recent"},
			report:   Report{Artifacts: 3, Builds: 3, Blobs: 3, Bytes: 9},
		},
		{
			name: "both limits: beyond either one expires",
			builds: []fixtureBuild{
				{"a", 1, []string{"a1"}}, {"a", 1, []string{"a2"}}, {"a", 1, []string{"a3"}},
				{"b", 10, []string{"b1"}}, {"b", 1, []string{"b2"}},
			},
			policies: all(&config.ArtifactRetention{KeepBuilds: 2, KeepDays: 7}),
			kept:     []int{0, 1, 1, 0, 1},
			blobs:    []string{"a2", "a3", "b2"},
			report:   Report{Artifacts: 2, Builds: 2, Blobs: 2, Bytes: 4},
		},
		{
			name: "a running build keeps its artifacts",
			builds: []fixtureBuild{
				{"a", 20, []string{"a1"}}, {"a", -1, []string{"running"}}, {"a", 10, []string{"a3"}}, {"a", 9, []string{"a4"}},
			},
			policies: all(&config.ArtifactRetention{KeepBuilds: 1, KeepDays: 30}),
			kept:     []int{0, 1, 0, 1},
			blobs:    []string{"a4", "running"},
			report:   Report{Artifacts: 2, Builds: 2, Blobs: 2, Bytes: 4},
		},
		{
			name: "a shared blob stays while a row references it",
			builds: []fixtureBuild{
				{"a", 9, []string{"shared", "mine"}}, {"b", 1, []string{"shared"}}, {"a", 1, []string{"new"}},
			},
			policies: all(&config.ArtifactRetention{KeepBuilds: 1, Builders: []string{"a"}}),
			kept:     []int{0, 1, 1},
			blobs:    []string{"new", "shared"},
			report:   Report{Artifacts: 2, Builds: 1, Blobs: 1, Bytes: 4},
		},
		{
			name: "the first policy that covers a builder applies; uncovered builders keep all",
			builds: []fixtureBuild{
				{"a", 9, []string{"a1"}}, {"a", 8, []string{"a2"}}, {"pkg-x", 9, []string{"p1"}}, {"pkg-x", 8, []string{"p2"}},
				{"c", 90, []string{"c1"}},
			},
			policies: all(
				&config.ArtifactRetention{KeepBuilds: 5, Builders: []string{"a"}},
				&config.ArtifactRetention{KeepBuilds: 1, Builders: []string{"pkg-*", "a"}},
			),
			kept:   []int{1, 1, 0, 1, 1},
			blobs:  []string{"a1", "a2", "c1", "p2"},
			report: Report{Artifacts: 1, Builds: 1, Blobs: 1, Bytes: 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.builds)
			cfg := &config.Config{ArtifactRetention: tc.policies}
			j := &Janitor{Store: f.st, Basedir: f.basedir, Config: func() *config.Config { return cfg },
				Clock: clock.NewFake(now), Logger: quiet()}
			rep, err := j.Sweep(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rep != tc.report {
				t.Errorf("report %+v, want %+v", rep, tc.report)
			}
			if got := f.kept(t); !slices.Equal(got, tc.kept) {
				t.Errorf("artifacts left per build %v, want %v", got, tc.kept)
			}
			if got := f.blobs(t); !slices.Equal(got, tc.blobs) {
				t.Errorf("blobs left %q, want %q", got, tc.blobs)
			}
			// A second sweep finds nothing more to do.
			if rep, err := j.Sweep(context.Background()); err != nil || rep != (Report{}) {
				t.Errorf("second sweep: %+v, %v", rep, err)
			}
		})
	}
}

// TestJanitorRun checks that Run sweeps at once and then every interval
// of the clock, and stops with its context.
func TestJanitorRun(t *testing.T) {
	f := newFixture(t, []fixtureBuild{{"a", 3, []string{"a1"}}, {"a", 2, []string{"a2"}}})
	cfg := &config.Config{ArtifactRetention: []*config.ArtifactRetention{
		{KeepBuilds: 1, Interval: time.Hour}, {KeepBuilds: 1, Interval: 10 * time.Minute},
	}}
	clk := clock.NewFake(now)
	j := &Janitor{Store: f.st, Basedir: f.basedir, Config: func() *config.Config { return cfg }, Clock: clk, Logger: quiet()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	added := clk.Added()
	go func() { j.Run(ctx); close(done) }()
	<-added // the first sweep is over: Run waits for its timer
	if got := f.kept(t); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("after the first sweep: %v", got)
	}
	// A newer build makes build 2 expire at the next sweep, which comes
	// after the shortest interval.
	b, err := f.st.AddBuild(ctx, store.NewBuild{BuilderID: f.builds[0].BuilderID, StartedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	f.record(t, b.ID, "out/new", "new")
	if err := f.st.FinishBuild(ctx, b.ID, result.Success, "done", now); err != nil {
		t.Fatal(err)
	}
	added = clk.Added()
	clk.Advance(9 * time.Minute)
	if got := f.kept(t); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("before the interval: %v", got)
	}
	clk.Advance(time.Minute)
	<-added
	if got := f.kept(t); !slices.Equal(got, []int{0, 0}) {
		t.Errorf("after the interval: %v", got)
	}
	if got := f.blobs(t); !slices.Equal(got, []string{"new"}) {
		t.Errorf("blobs %q", got)
	}
	cancel()
	<-done
}

// TestPut checks that the same content is kept once, and that a blob keeps
// its content when the file it came from is replaced.
func TestPut(t *testing.T) {
	dir := t.TempDir()
	cas := Open(dir)
	if Open(filepath.Join(dir, ".")) != cas {
		t.Error("Open gives two stores for one directory")
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a", "same")
	b := write("b", "same")
	pa, err := cas.Put(a, sum("same"))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := cas.Put(b, sum("same"))
	if err != nil || pb != pa || pa != RelPath(sum("same")) {
		t.Fatalf("second put: %q, %v (first %q)", pb, err, pa)
	}
	// An upload replaces its destination by renaming a new file over it.
	tmp := write("a.new", "different")
	if err := os.Rename(tmp, a); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(cas.Path(sum("same"))); err != nil || string(got) != "same" {
		t.Errorf("blob after the source was replaced: %q, %v", got, err)
	}
	if _, err := cas.Put(a, "nothex"); err == nil {
		t.Error("a bad sum was accepted")
	}
	// The copy (used across file systems) checks the content it copies.
	if err := copyVerified(a, filepath.Join(dir, "copy"), sum("same")); err == nil {
		t.Error("a copy whose content does not match its sum was kept")
	}
	if err := copyVerified(a, filepath.Join(dir, "copy"), sum("different")); err != nil {
		t.Error(err)
	}
}

// TestJanitorLaterSweeps: after its first sweep, which looks at every blob,
// the janitor removes the blobs of the rows it expires (a shared one only
// once no row is left), and an orphan blob made since is left to the first
// sweep of the next janitor.
func TestJanitorLaterSweeps(t *testing.T) {
	f := newFixture(t, []fixtureBuild{{"a", 9, []string{"old", "shared"}}, {"b", 9, []string{"shared"}}, {"a", 1, []string{"new"}}})
	cfg := &config.Config{}
	j := &Janitor{Store: f.st, Basedir: f.basedir, Config: func() *config.Config { return cfg },
		Clock: clock.NewFake(now), Logger: quiet()}
	if rep, err := j.Sweep(context.Background()); err != nil || rep != (Report{}) {
		t.Fatalf("sweep without policies: %+v, %v", rep, err)
	}
	if err := os.WriteFile(filepath.Join(f.basedir, "stray"), []byte("orphan"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(f.basedir).Put(filepath.Join(f.basedir, "stray"), sum("orphan")); err != nil {
		t.Fatal(err)
	}

	cfg.ArtifactRetention = []*config.ArtifactRetention{{KeepBuilds: 1, Builders: []string{"a"}}}
	rep, err := j.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (Report{Artifacts: 2, Builds: 1, Blobs: 1, Bytes: 3}); rep != want {
		t.Errorf("report %+v, want %+v", rep, want)
	}
	if got, want := f.blobs(t), []string{"new", "orphan", "shared"}; !slices.Equal(got, want) {
		t.Errorf("blobs left %q, want %q", got, want)
	}
	next := &Janitor{Store: f.st, Basedir: f.basedir, Config: func() *config.Config { return cfg },
		Clock: clock.NewFake(now), Logger: quiet()}
	if rep, err := next.Sweep(context.Background()); err != nil || rep.Blobs != 1 {
		t.Errorf("next janitor's first sweep: %+v, %v; want the orphan removed", rep, err)
	}
}
