package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/master/artifact"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// buildWith runs one build of builder on worker with buildset properties
// props and returns it once finished.
func (h *harness) buildWith(builder, worker string, props map[string]any) builtBuild {
	h.t.Helper()
	ps := map[string]store.Property{}
	for k, v := range props {
		ps[k] = store.Property{Value: v, Source: "Job"}
	}
	return h.runBuildset(builder, worker, store.NewBuildset{Properties: ps})
}

// writeFiles writes files (slash path → content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree returns the regular files under dir (slash path → content).
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const jobStepsConfig = `
worker("w", "pw")
builder("pkg", ["w"], [
    shell("mkdir -p job && echo stale > job/stale.txt", name="prep"),
    job_download(),
    shell("set -e; test ! -e job/stale.txt; mkdir -p out/sub; cat job/hello.dsc job/sub/x.txt > out/hello.deb; ls job/repo > out/sub/repo.txt", name="build"),
    job_upload("out"),
])
builder("plain", ["w"], [job_download(), job_upload("out")])
`

// TestJobSteps runs job_download and job_upload on the starforge worker
// and on Debian's buildbot-worker: the package's files and the platform's
// repository reach the worker, the results join the repository (beside
// what earlier builds stored) and become artifacts in the blob store.
func TestJobSteps(t *testing.T) {
	for _, kind := range []string{"starforge", "buildbot"} {
		t.Run(kind, func(t *testing.T) {
			h := newHarness(t, jobStepsConfig)
			var wdir string
			if kind == "buildbot" {
				wdir = h.startBuildbotWorker(testenv.LookPath(t, "buildbot-worker", "buildbot-worker"), "w")
			} else {
				wdir = h.startAgent("w")
			}
			job := filepath.Join(h.dir, "jobs", "20260301T120000-0123abcd")
			writeFiles(t, job, map[string]string{
				"input/job.json":                          "{}",
				"input/hello.dsc":                         "dsc\n",
				"input/sub/x.txt":                         "x\n",
				"input/other.txt":                         "not this package's",
				"repo/debian-12-amd64/old.deb":            "from package 1",
				"repo/debian-13-amd64/other-platform.deb": "not this platform's",
			})
			props := map[string]any{
				"job_dir": "jobs/20260301T120000-0123abcd", "job_files": []any{"hello.dsc", "sub/x.txt"},
				"job_platform": "debian-12-amd64", "job_id": 1,
			}
			b := h.buildWith("pkg", "w", props)
			h.want(b, "prep", result.Success, "")
			h.want(b, "job_download", result.Success, "downloaded 2 package files and 1 repository file")
			h.want(b, "build", result.Success, "")
			h.want(b, "job_upload", result.Success, "stored 2 files in jobs/20260301T120000-0123abcd/repo/debian-12-amd64")

			got := readTree(t, filepath.Join(wdir, "pkg", "build", "job"))
			want := map[string]string{"hello.dsc": "dsc\n", "sub/x.txt": "x\n", "repo/old.deb": "from package 1"}
			if !mapsEqual(got, want) {
				t.Errorf("worker's job directory %v, want %v", got, want)
			}
			repo := filepath.Join(job, "repo", "debian-12-amd64")
			want = map[string]string{"old.deb": "from package 1", "hello.deb": "dsc\nx\n", "sub/repo.txt": "old.deb\n"}
			if got := readTree(t, repo); !mapsEqual(got, want) {
				t.Errorf("repository %v, want %v", got, want)
			}
			as, err := h.st.ListArtifacts(context.Background(), b.ID)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, a := range as {
				names = append(names, a.Name)
				sum := sha256.Sum256([]byte(want[a.Name]))
				if a.SHA256 != hex.EncodeToString(sum[:]) || a.Path != artifact.RelPath(a.SHA256) || a.StepID != b.steps["job_upload"].ID {
					t.Errorf("artifact %+v", a)
				}
				if body, err := os.ReadFile(filepath.Join(h.dir, a.Path)); err != nil || string(body) != want[a.Name] {
					t.Errorf("blob of %s: %q, %v", a.Name, body, err)
				}
			}
			if !slices.Equal(names, []string{"hello.deb", "sub/repo.txt"}) {
				t.Errorf("artifacts %v", names)
			}
			ents, _ := os.ReadDir(filepath.Join(job, "repo"))
			if len(ents) != 2 {
				t.Errorf("leftovers beside the platforms' repositories: %v", ents)
			}

			// The next package of the job sees the results of this one.
			props["job_files"] = []any{"other.txt"}
			b = h.buildWith("pkg", "w", props)
			h.want(b, "job_download", result.Success, "downloaded 1 package file and 3 repository files")
			if got := readTree(t, filepath.Join(wdir, "pkg", "build", "job")); got["repo/hello.deb"] != "dsc\nx\n" || got["hello.dsc"] != "" {
				t.Errorf("second package's job directory: %v", got)
			}

			// A build without job properties fails clearly.
			b = h.buildWith("plain", "w", nil)
			h.want(b, "job_download", result.Failure, "job_download: this build has no job properties (job_dir, job_files and job_platform): job steps run in the builds of a package farm's jobs")
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestJobStepsRefuseEscapes checks that no job property leads a job step
// outside the job's directory.
func TestJobStepsRefuseEscapes(t *testing.T) {
	h := newHarness(t, `
worker("w", "pw")
builder("down", ["w"], [job_download()])
builder("up", ["w"], [shell("mkdir -p out && echo x > out/x"), job_upload("out")])
`)
	h.startAgent("w")
	job := filepath.Join(h.dir, "jobs", "k")
	writeFiles(t, job, map[string]string{"input/a": "a"})
	writeFiles(t, h.dir, map[string]string{"secret.txt": "secret"})
	if err := os.Symlink(filepath.Join(h.dir, "secret.txt"), filepath.Join(job, "input", "link")); err != nil {
		t.Fatal(err)
	}
	good := func() map[string]any {
		return map[string]any{"job_dir": "jobs/k", "job_files": []any{"a"}, "job_platform": "p"}
	}
	for _, tc := range []struct {
		name, prop string
		value      any
		msg        string
	}{
		{"dotdot file", "job_files", []any{"../input/a"}, `property job_files[0]: "../input/a" is not a relative path inside the job`},
		{"absolute file", "job_files", []any{"a", "/etc/passwd"}, `property job_files[1]: "/etc/passwd" is not a relative path`},
		{"link out", "job_files", []any{"link"}, `"link" is not a file of job jobs/k`},
		{"missing file", "job_files", []any{"nope"}, `"nope" is not a file of job jobs/k`},
		{"files not a list", "job_files", "a", `property job_files: want a list of file names, got "a"`},
		{"dir outside jobs", "job_dir", ".", `property job_dir: "." is not a job directory (want "jobs/KEY")`},
		{"dir climbing", "job_dir", "jobs/../jobs/k", `property job_dir: "jobs/../jobs/k" is not a job directory`},
		{"dir unknown", "job_dir", "jobs/other", `job directory jobs/other: not found on the master`},
		{"platform climbing", "job_platform", "../../x", `property job_platform: "../../x" is not a platform name`},
		{"platform missing", "job_platform", nil, `this build lacks the job properties job_platform`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			props := good()
			props[tc.prop] = tc.value
			for _, builder := range []string{"down", "up"} {
				if builder == "up" && tc.prop == "job_files" {
					continue // job_upload does not read them (but checks them)
				}
				b := h.buildWith(builder, "w", props)
				step := "job_" + map[string]string{"down": "download", "up": "upload"}[builder]
				s := b.steps[step]
				if s.Results != result.Failure || !strings.Contains(s.StateString, tc.msg) {
					t.Errorf("%s: %v %q, want failure with %q", step, s.Results, s.StateString, tc.msg)
				}
			}
		})
	}
	if got := readTree(t, h.dir)["secret.txt"]; got != "secret" {
		t.Errorf("secret.txt: %q", got)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "x")); !os.IsNotExist(err) {
		t.Errorf("an upload landed outside the job: %v", err)
	}
}
