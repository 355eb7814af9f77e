package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

type latentWorkerJSON struct {
	Name     string  `json:"name"`
	State    *string `json:"latent_state"`
	Instance *string `json:"latent_instance"`
	Latent   *string `json:"latent_worker"`
}

func (m *master) latentWorker(t *testing.T, name string) latentWorkerJSON {
	t.Helper()
	var r struct {
		Workers []latentWorkerJSON `json:"workers"`
	}
	m.getJSON(t, "api/v2/workers?name="+name, &r)
	if len(r.Workers) != 1 {
		t.Fatalf("workers named %s: %+v", name, r.Workers)
	}
	return r.Workers[0]
}

// TestLatentProcessWorkerAndCrash: with the real binaries, a build runs on
// a process latent worker (starforge-worker found next to the master's
// binary); then the master is killed with SIGKILL while the instance
// runs, and the next master finds the instance by its name and stops it.
func TestLatentProcessWorkerAndCrash(t *testing.T) {
	dir := t.TempDir()
	basedir := filepath.Join(dir, "master")
	cfg := `
latent_worker("lat", process_driver(), build_wait_timeout = None)
builder("proj", workers = ["lat"], steps = [shell("echo built on $(pwd)", name = "hello")])
force_scheduler("force", builders = ["proj"])
`
	m := startMaster(t, basedir, cfg)
	out, code := m.force(t, "proj")
	if code != 0 {
		t.Fatalf("force: exit %d:\n%s\nmaster:\n%s", code, out, m.out)
	}
	bs := m.builds(t, "proj")
	if len(bs) != 1 || resultOf(bs[0].Results) != 0 {
		t.Fatalf("builds = %+v", bs)
	}
	steps := m.steps(t, bs[0].ID)
	if log := m.stepLog(t, steps[0].ID); !strings.Contains(log, filepath.Join(basedir, "latent", "process", "lat-")) {
		t.Errorf("the build did not run in the instance's fresh directory: %q", log)
	}
	w := m.latentWorker(t, "lat")
	if w.State == nil || *w.State != "running" || w.Instance == nil || w.Latent == nil || *w.Latent != "lat" {
		t.Fatalf("latent worker after the build: %+v", w)
	}
	inst := *w.Instance
	instDir := filepath.Join(basedir, "latent", "process", inst)
	b, err := os.ReadFile(filepath.Join(instDir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) }) // if the test fails before the master does it

	m.kill() // a crash: nothing is stopped
	if !alivePID(pid) {
		t.Fatal("the instance died with the master; the test would prove nothing")
	}

	m2 := startMaster(t, basedir, "")
	m2.out.wait(t, `stopped instance left running by a previous run.*instance=`+inst, 60*time.Second)
	for i := 0; alivePID(pid) && i < 1000; i++ {
		time.Sleep(10 * time.Millisecond) // not our child: polled until its parent reaps it
	}
	if alivePID(pid) {
		t.Error("the leftover instance still runs")
	}
	if _, err := os.Stat(instDir); !os.IsNotExist(err) {
		t.Errorf("the leftover instance's directory is still there: %v", err)
	}
	// The new master runs builds on new instances.
	if out, code := m2.force(t, "proj"); code != 0 {
		t.Fatalf("force after the restart: exit %d:\n%s", code, out)
	}
	if w := m2.latentWorker(t, "lat"); w.Instance == nil || *w.Instance == inst {
		t.Errorf("after the restart: %+v", w)
	}
	m2.stop(t)
	if _, err := os.ReadDir(filepath.Join(basedir, "latent", "process")); err == nil {
		ents, _ := os.ReadDir(filepath.Join(basedir, "latent", "process"))
		if len(ents) != 0 {
			t.Errorf("instance directories left after a clean stop: %v", ents)
		}
	}
}
