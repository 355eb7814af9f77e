package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stopCLI runs `starforge stop` in the background and returns a channel
// with its output and exit code.
func stopCLI(t *testing.T, args ...string) <-chan [2]any {
	t.Helper()
	ch := make(chan [2]any, 1)
	go func() {
		out, code := cliNoFatal(append([]string{"stop"}, args...)...)
		ch <- [2]any{out, code}
	}()
	return ch
}

// TestStopWaitsForRunningBuilds: `starforge stop` lets a running build
// finish, then the master exits and the command says what happened.
func TestStopWaitsForRunningBuilds(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	basedir := filepath.Join(dir, "master")
	m := startMaster(t, basedir, oneWorker+`
builder("proj", workers=["w1"], steps=[shell("while [ ! -e `+gate+` ]; do sleep 0.05; done; echo finished-normally")])
force_scheduler("force", builders=["proj"])
`)
	m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
	if out, code := cli(t, "force", "--master", m.url, "proj"); code != 0 {
		t.Fatalf("force: %s", out)
	}
	m.out.wait(t, `build started.*builder=proj`, 30*time.Second)
	done := stopCLI(t, "--basedir", basedir, "--timeout", "60s")
	m.out.wait(t, `master stopping: waiting for running builds.*running=1`, 30*time.Second)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if out, code := r[0].(string), r[1].(int); code != 0 || !strings.Contains(out, "stopped: 1 running build(s) finished, 0 interrupted") {
		t.Fatalf("stop: exit %d:\n%s", code, out)
	}
	<-m.done
	m.out.wait(t, `build finished.*builder=proj.*result=success`, time.Second)
}

// TestStopNowAndTimeout: --now interrupts a running build at once (RETRY,
// requeued, run again after a restart); a grace period that runs out does
// the same.
func TestStopNowAndTimeout(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"now", []string{"--now"}},
		{"timeout", []string{"--timeout", "1s"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			basedir := filepath.Join(dir, "master")
			first := filepath.Join(dir, "first")
			pidfile := filepath.Join(dir, "pid")
			cfg := oneWorker + `
builder("proj", workers=["w1"], steps=[
    shell('if [ ! -e ` + first + ` ]; then touch ` + first + `; echo $$ > ` + pidfile + `; exec sleep 600; fi; echo second-run'),
])
force_scheduler("force", builders=["proj"])
`
			m := startMaster(t, basedir, cfg)
			m.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
			t.Cleanup(func() { killPidfile(pidfile) })
			if out, code := cli(t, "force", "--master", m.url, "proj"); code != 0 {
				t.Fatalf("force: %s", out)
			}
			waitFile(t, pidfile, m)
			r := <-stopCLI(t, append([]string{"--basedir", basedir}, tt.args...)...)
			if out, code := r[0].(string), r[1].(int); code != 0 || !strings.Contains(out, "0 running build(s) finished, 1 interrupted and requeued (RETRY)") {
				t.Fatalf("stop: exit %d:\n%s", code, out)
			}
			<-m.done
			m.out.wait(t, `build finished.*builder=proj.*result=retry`, time.Second)
			if alive(t, pidfile) {
				t.Error("the interrupted step's process still runs")
			}
			// A restart picks the request up again.
			m2 := startMaster(t, basedir, cfg)
			m2.startWorker(t, "w1", "pw1", filepath.Join(dir, "worker"))
			m2.out.wait(t, `build finished.*builder=proj.*result=success`, 60*time.Second)
		})
	}
}

// TestStopWithoutMaster: no master there → exit 3.
func TestStopWithoutMaster(t *testing.T) {
	out, code := cli(t, "stop", "--basedir", t.TempDir())
	if code != 3 || !strings.Contains(out, "no master is running there") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
