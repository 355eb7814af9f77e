package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/master"
	"github.com/starforge/starforge/master/cli"
	"github.com/starforge/starforge/worker"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the commands print now")

// run runs cli.Main in-process and returns what it printed and its exit code.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code = cli.Main(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// closedURL returns the URL of a 127.0.0.1 port on which nothing listens:
// one the kernel just handed out and that was closed again.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/"
}

// TestCheckconfigGolden runs `starforge checkconfig` on each file of
// testdata/checkconfig and compares what it prints on stdout and stderr
// with FILE.out. Run with -update to rewrite the .out files.
func TestCheckconfigGolden(t *testing.T) {
	tests := []struct {
		file string
		code int
	}{
		{"valid.star", cli.ExitOK},
		{"plural.star", cli.ExitOK},
		{"several_errors.star", cli.ExitFailed},
		{"syntax_error.star", cli.ExitFailed},
		{"traceback.star", cli.ExitFailed},
		{"load_errors.star", cli.ExitFailed},
	}
	// Every .star file in the directory is a case, and every case has a file.
	files, err := filepath.Glob("testdata/checkconfig/*.star")
	if err != nil {
		t.Fatal(err)
	}
	inTable := map[string]bool{}
	for _, tt := range tests {
		inTable[tt.file] = true
	}
	for _, f := range files {
		if !inTable[filepath.Base(f)] {
			t.Errorf("%s has no entry in the table of TestCheckconfigGolden", f)
		}
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".star"), func(t *testing.T) {
			// A relative path, as a user types it: positions repeat it.
			path := "testdata/checkconfig/" + tt.file
			stdout, stderr, code := run(t, "checkconfig", path)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			checkSummary(t, path, stdout, stderr, code)
			got := "-- stdout --\n" + stdout + "-- stderr --\n" + stderr
			golden := strings.TrimSuffix(path, ".star") + ".out"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("checkconfig %s printed:\n%s\nwant (%s):\n%s", path, got, golden, want)
			}
		})
	}
}

// checkSummary checks the shape of checkconfig's output independently of
// the golden files, so that -update cannot bless a wrong shape: an OK line
// on stdout only, or errors on stderr only, each starting with
// FILE:LINE:COL, followed by "N errors" when there are several.
func checkSummary(t *testing.T, path, stdout, stderr string, code int) {
	t.Helper()
	if code == cli.ExitOK {
		if !regexp.MustCompile(`^` + regexp.QuoteMeta(path) + `: OK: \d+ workers?, \d+ builders?, \d+ schedulers?\n$`).MatchString(stdout) {
			t.Errorf("stdout = %q, want %q", stdout, path+": OK: N workers, N builders, N schedulers")
		}
		if stderr != "" {
			t.Errorf("a valid file printed on stderr: %q", stderr)
		}
		return
	}
	if stdout != "" {
		t.Errorf("an invalid file printed on stdout: %q", stdout)
	}
	errLine := regexp.MustCompile(`^testdata/checkconfig/\S+\.star:\d+:\d+: \S`)
	var n int
	var count string
	for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, " "): // a traceback under its error
		case errLine.MatchString(l):
			n++
		case count == "":
			count = l
		default:
			t.Errorf("unexpected line %q in stderr:\n%s", l, stderr)
		}
	}
	if n == 0 {
		t.Errorf("no FILE:LINE:COL error in stderr:\n%s", stderr)
	}
	switch want := fmt.Sprintf("%d errors", n); {
	case n > 1 && count != want:
		t.Errorf("count line %q, want %q after %d errors", count, want, n)
	case n == 1 && count != "":
		t.Errorf("one error, then %q; want no count line", count)
	}
}

// TestCommandLine covers the commands' usage errors and the failures that
// need no running master.
func TestCommandLine(t *testing.T) {
	nobody := closedURL(t)
	// Nothing here may reach a master on the default port (a demo may run).
	t.Setenv("STARFORGE_URL", nobody)
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string   // exact, when the command prints on stdout
		stderrHas  []string // substrings of stderr
		stderrNone bool
	}{
		{name: "no arguments", args: nil, code: cli.ExitUsage,
			stderrHas: []string{"usage: starforge COMMAND", "checkconfig", "force", "master", "version"}},
		{name: "help", args: []string{"help"}, code: cli.ExitOK,
			stderrHas: []string{"usage: starforge COMMAND"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: cli.ExitUsage,
			stderrHas: []string{`unknown command "frobnicate"`, "usage: starforge COMMAND"}},
		{name: "version", args: []string{"version"}, code: cli.ExitOK,
			stdout: "starforge dev\n", stderrNone: true},
		{name: "checkconfig without a file", args: []string{"checkconfig"}, code: cli.ExitUsage,
			stderrHas: []string{"usage: starforge checkconfig FILE"}},
		{name: "checkconfig of two files", args: []string{"checkconfig", "a.star", "b.star"}, code: cli.ExitUsage,
			stderrHas: []string{"usage: starforge checkconfig FILE"}},
		{name: "checkconfig of a missing file", args: []string{"checkconfig", "testdata/checkconfig/no-such.star"}, code: cli.ExitFailed,
			stderrHas: []string{"testdata/checkconfig/no-such.star", "no such file or directory"}},
		{name: "force without a builder", args: []string{"force"}, code: cli.ExitUsage,
			stderrHas: []string{"usage: starforge force", "BUILDER"}},
		{name: "force of two builders", args: []string{"force", "a", "b"}, code: cli.ExitUsage,
			stderrHas: []string{"usage: starforge force"}},
		{name: "force with a bad master URL", args: []string{"force", "--master", "::bad", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"--master"}},
		{name: "force with a non-http master URL", args: []string{"force", "--master", "ftp://127.0.0.1/", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"--master", "http://"}},
		{name: "force with a property without '='", args: []string{"force", "--prop", "color", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"NAME=VALUE", `"color"`}},
		{name: "force with a property without '=' after the builder", args: []string{"force", "proj", "--prop", "color"}, code: cli.ExitUsage,
			stderrHas: []string{"NAME=VALUE", `"color"`}},
		{name: "force with an empty property name", args: []string{"force", "--prop", "=blue", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"NAME=VALUE"}},
		{name: "force with a flag value missing at the end", args: []string{"force", "proj", "--prop"}, code: cli.ExitUsage,
			stderrHas: []string{"flag --prop needs a value"}},
		{name: "force with --reason missing its value", args: []string{"force", "proj", "--reason"}, code: cli.ExitUsage,
			stderrHas: []string{"flag --reason needs a value"}},
		{name: "force with a reserved property, master down", args: []string{"force", "--prop", "reason=x", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"--prop reason", "use --reason"}},
		{name: "force with builderNames as a property", args: []string{"force", "--prop", "builderNames=x", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"reserved", "choose another property name"}},
		{name: "version with an argument", args: []string{"version", "--bogus"}, code: cli.ExitUsage},
		{name: "version with a positional argument", args: []string{"version", "extra"}, code: cli.ExitUsage,
			stderrHas: []string{"usage: starforge version"}},
		{name: "force with --master missing its value at the end", args: []string{"force", "proj", "--master"}, code: cli.ExitUsage},
		{name: "force with an unknown flag", args: []string{"force", "--frob", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"frob", "usage: starforge force"}},
		{name: "force against a closed port", args: []string{"force", "--master", nobody, "proj"}, code: cli.ExitProblem,
			stderrHas: []string{"cannot reach the master", strings.TrimPrefix(strings.TrimSuffix(nobody, "/"), "http://")}},
		{name: "force against a closed port from STARFORGE_URL", args: []string{"force", "proj", "--wait"}, code: cli.ExitProblem,
			stderrHas: []string{"cannot reach the master"}},
		{name: "force against a closed port, host:port only", args: []string{"force", "--master", strings.TrimPrefix(nobody, "http://"), "proj"}, code: cli.ExitProblem,
			stderrHas: []string{"cannot reach the master"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, tt.args...)
			if code != tt.code {
				t.Errorf("starforge %s: exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(tt.args, " "), code, tt.code, stdout, stderr)
			}
			if tt.stdout != "" || tt.code != cli.ExitOK {
				if stdout != tt.stdout {
					t.Errorf("stdout = %q, want %q", stdout, tt.stdout)
				}
			}
			for _, s := range tt.stderrHas {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tt.stderrNone && stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
		})
	}
}

// startMaster runs a master in-process on free 127.0.0.1 ports with the
// configuration cfg (without its master() call) and returns its web URL.
// Its log is shown if the test fails.
func startMaster(t *testing.T, cfg string) (*master.Master, string) {
	t.Helper()
	dir := t.TempDir()
	body := `master(title = "cli test", http_addr = "127.0.0.1:0", worker_addr = "127.0.0.1:0")` + "\n" + cfg
	if err := os.WriteFile(filepath.Join(dir, "master.star"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	m, err := master.New(master.Options{
		Basedir:         dir,
		Logger:          slog.New(slog.NewTextHandler(logs, nil)),
		ShutdownTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("master.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("the master did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("master log:\n%s", logs)
		}
	})
	select {
	case <-m.Ready():
	case err := <-done:
		t.Fatalf("master.Run returned before listening: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("the master did not listen within 30s:\n%s", logs)
	}
	return m, "http://" + m.HTTPAddr() + "/"
}

// startWorker runs a starforge worker agent in-process, connected to m.
func startWorker(t *testing.T, m *master.Master, name, password string) {
	t.Helper()
	logs := &testenv.Buffer{}
	a := &worker.Agent{
		Master:   m.WorkerAddr(),
		Name:     name,
		Password: password,
		Basedir:  t.TempDir(),
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("the worker did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", logs)
		}
	})
}

// TestForce forces builds on a real master (in-process, with a real worker
// on a websocket) and checks the exit codes and what the user reads.
func TestForce(t *testing.T) {
	m, url := startMaster(t, `
worker("w1", "pw1")
builder("proj", workers = ["w1"], steps = [shell("echo building proj", name = "compile")])
builder("broken", workers = ["w1"], steps = [shell("echo about to fail; exit 3", name = "compile")])
builder("internal", workers = ["w1"], steps = [shell("true")])
force_scheduler("force", builders = ["proj", "broken"])
`)
	startWorker(t, m, "w1", "pw1")
	t.Setenv("STARFORGE_URL", closedURL(t)) // --master is always given below

	tests := []struct {
		name      string
		args      []string // after "force --master URL"
		code      int
		stdoutRE  []string
		stderrHas []string
		props     map[string]string // properties the build must have
		pageHas   []string          // what the build's page shows
	}{
		{name: "builder no force_scheduler lists", args: []string{"internal"}, code: cli.ExitProblem,
			stderrHas: []string{`"internal"`, "forceable: broken, proj"}},
		{name: "unknown builder", args: []string{"nosuch", "--wait"}, code: cli.ExitProblem,
			stderrHas: []string{`"nosuch"`, "forceable: broken, proj"}},
		{name: "property named like the request's reason", args: []string{"proj", "--prop", "reason=x"}, code: cli.ExitUsage,
			stderrHas: []string{"--prop reason", "--reason"}},
		{name: "property named like the request's owner", args: []string{"--prop", "owner=x", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"--prop owner", "--owner"}},
		{name: "property named like the request's username", args: []string{"--prop", "username=x", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"--prop username"}},
		{name: "property named like the request's builderNames", args: []string{"--prop", "builderNames=x", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"--prop builderNames"}},
		{name: "queue without waiting", args: []string{"proj"}, code: cli.ExitOK,
			stdoutRE: []string{`^queued buildset \d+: build request \d+ for proj\n$`}},
		{name: "flags after the builder", args: []string{"proj", "--wait", "--prop", "color=blue", "--reason", "after the name"}, code: cli.ExitOK,
			stdoutRE: []string{`(?m)^queued buildset \d+: build request \d+ for proj$`, `(?m)^build proj #\d+ started on w1$`,
				`(?m)^  success +compile `, `(?m)^build proj #\d+: success .* in \S+$`},
			props: map[string]string{"color": "blue"}, pageHas: []string{"after the name"}},
		{name: "flags before the builder", args: []string{"--wait", "--prop", "color=green", "proj"}, code: cli.ExitOK,
			stdoutRE: []string{`(?m)^build proj #\d+: success`},
			props:    map[string]string{"color": "green"}},
		{name: "a failing build exits 1", args: []string{"broken", "--wait"}, code: cli.ExitFailed,
			stdoutRE: []string{`(?m)^  failure +compile `, `(?m)^build broken #1: failure`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"force", "--master", url}, tt.args...)
			stdout, stderr, code := run(t, args...)
			if code != tt.code {
				t.Fatalf("starforge %s: exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, tt.code, stdout, stderr)
			}
			for _, re := range tt.stdoutRE {
				if !regexp.MustCompile(re).MatchString(stdout) {
					t.Errorf("stdout does not match %q:\n%s", re, stdout)
				}
			}
			for _, s := range tt.stderrHas {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tt.props == nil && tt.pageHas == nil {
				return
			}
			n := regexp.MustCompile(`build proj #(\d+) started`).FindStringSubmatch(stdout)
			if n == nil {
				t.Fatalf("no build number in %q", stdout)
			}
			id, builderID := buildIDs(t, url, "proj", n[1])
			got := buildProperties(t, url, id)
			for k, v := range tt.props {
				if got[k] != v {
					t.Errorf("property %s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
			page := getBody(t, fmt.Sprintf("%sbuilders/%d/builds/%s", url, builderID, n[1]))
			for _, s := range tt.pageHas {
				if !strings.Contains(page, s) {
					t.Errorf("the build page lacks %q", s)
				}
			}
		})
	}

}

// buildIDs returns the ids of builder's build number and of the builder.
func buildIDs(t *testing.T, url, builder, number string) (buildID, builderID int64) {
	t.Helper()
	var b struct {
		Builds []struct {
			ID        int64 `json:"buildid"`
			BuilderID int64 `json:"builderid"`
		} `json:"builds"`
	}
	getJSON(t, url+"api/v2/builders/"+builder+"/builds/"+number, &b)
	if len(b.Builds) != 1 {
		t.Fatalf("build %s #%s: got %d builds", builder, number, len(b.Builds))
	}
	return b.Builds[0].ID, b.Builds[0].BuilderID
}

// buildProperties returns a build's properties as strings.
func buildProperties(t *testing.T, url string, buildID int64) map[string]string {
	t.Helper()
	var p struct {
		Properties []map[string][]any `json:"properties"`
	}
	getJSON(t, url+"api/v2/builds/"+strconv.FormatInt(buildID, 10)+"/properties", &p)
	out := map[string]string{}
	for _, m := range p.Properties {
		for k, v := range m {
			if len(v) > 0 {
				out[k] = fmt.Sprint(v[0])
			}
		}
	}
	return out
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(getBody(t, url)), v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// TestForceWithoutForceScheduler: a master that has no force_scheduler says
// so instead of listing nothing.
func TestForceWithoutForceScheduler(t *testing.T) {
	_, url := startMaster(t, `
worker("w1", "pw1")
builder("proj", workers = ["w1"], steps = [shell("true")])
`)
	stdout, stderr, code := run(t, "force", "--master", url, "proj")
	if code != cli.ExitProblem {
		t.Errorf("exit code %d, want %d", code, cli.ExitProblem)
	}
	if stdout != "" || !strings.Contains(stderr, "no force_scheduler") {
		t.Errorf("stdout %q, stderr %q; want a message that the master has no force_scheduler", stdout, stderr)
	}
}
