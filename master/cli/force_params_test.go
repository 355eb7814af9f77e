package cli_test

import (
	"context"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/starforge/starforge/master/cli"
)

// TestForceParamFlag: --param values reach the force scheduler's declared
// parameters, typed by the master; --owner fills the username parameter;
// a wrong value is the master's 400, named.
func TestForceParamFlag(t *testing.T) {
	m, url := startMaster(t, `
worker("w1", "pw1")
builder("proj", workers = ["w1"], steps = [shell("true")])
force_scheduler("force", builders = ["proj"], params = [
    int_param("jobs", default = 1),
    choice_param("platforms", ["linux", "macos", "windows"], multiple = True),
    username_param(required = True),
    codebase_param("lib", branch = "main"),
])
`)
	tests := []struct {
		name      string
		args      []string // after "force --master URL"
		code      int
		stderrHas []string
		props     map[string]any
		libBranch string
	}{
		{name: "typed values", args: []string{"--owner", "ann", "--param", "jobs=8", "--param", "platforms=linux", "proj", "--param", "platforms=macos", "--param", "lib_branch=dev"},
			code: cli.ExitOK, props: map[string]any{"jobs": int64(8), "platforms": []any{"linux", "macos"}, "username": "ann", "owner": "ann"}, libBranch: "dev"},
		{name: "defaults", args: []string{"--owner", "bob", "proj"},
			code: cli.ExitOK, props: map[string]any{"jobs": int64(1), "platforms": []any{}, "username": "bob"}, libBranch: "main"},
		{name: "not an int", args: []string{"--param", "jobs=many", "proj"}, code: cli.ExitProblem,
			stderrHas: []string{`jobs: want an integer, got "many"`}},
		{name: "unknown choice", args: []string{"--param", "platforms=bsd", "proj"}, code: cli.ExitProblem,
			stderrHas: []string{`platforms: "bsd" is not one of`}},
		{name: "reason as a param", args: []string{"--param", "reason=x", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"--param reason: use --reason"}},
		{name: "username as a param", args: []string{"--param", "username=x", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"--param username: use --owner"}},
		{name: "both param and prop", args: []string{"--param", "jobs=2", "--prop", "jobs=3", "proj"}, code: cli.ExitUsage,
			stderrHas: []string{"jobs is given both as --param and as --prop"}},
		{name: "param without a value", args: []string{"proj", "--param"}, code: cli.ExitUsage,
			stderrHas: []string{"flag --param needs a value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"force", "--master", url}, tt.args...)
			stdout, stderr, code := run(t, args...)
			if code != tt.code {
				t.Fatalf("starforge %s: exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, tt.code, stdout, stderr)
			}
			for _, s := range tt.stderrHas {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tt.props == nil {
				return
			}
			n := regexp.MustCompile(`queued buildset (\d+)`).FindStringSubmatch(stdout)
			if n == nil {
				t.Fatalf("no buildset in %q", stdout)
			}
			id, _ := strconv.ParseInt(n[1], 10, 64)
			bs, err := m.Store().GetBuildset(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.props {
				if got := bs.Properties[k].Value; !reflect.DeepEqual(got, want) {
					t.Errorf("property %s = %#v, want %#v", k, got, want)
				}
			}
			var lib string
			for _, ss := range bs.SourceStamps {
				if ss.Codebase == "lib" {
					lib = ss.Branch
				}
			}
			if lib != tt.libBranch {
				t.Errorf("codebase lib's branch %q, want %q (stamps %+v)", lib, tt.libBranch, bs.SourceStamps)
			}
		})
	}
}
