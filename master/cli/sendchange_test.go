package cli_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starforge/starforge/master/cli"
)

// apiChange is a change as GET /api/v2/changes/{id} shows it.
type apiChange struct {
	ID         int64             `json:"changeid"`
	Author     string            `json:"author"`
	Comments   string            `json:"comments"`
	Branch     *string           `json:"branch"`
	Revision   *string           `json:"revision"`
	Revlink    *string           `json:"revlink"`
	When       int64             `json:"when_timestamp"`
	Category   *string           `json:"category"`
	Repository string            `json:"repository"`
	Codebase   string            `json:"codebase"`
	Project    string            `json:"project"`
	Files      []string          `json:"files"`
	Properties map[string][2]any `json:"properties"`
}

func getChange(t *testing.T, base string, id int) apiChange {
	t.Helper()
	var r struct{ Changes []apiChange }
	getJSON(t, fmt.Sprintf("%sapi/v2/changes/%d", base, id), &r)
	if len(r.Changes) != 1 {
		t.Fatalf("change %d: %+v", id, r)
	}
	return r.Changes[0]
}

func TestSendchange(t *testing.T) {
	t.Setenv("STARFORGE_URL", "")
	t.Setenv("STARFORGE_BASEDIR", "")
	_, base := startMaster(t, `worker("w", "pw")
builder("b", ["w"], [shell("true")])
`)
	stdout, stderr, code := run(t, "sendchange", "--master", base,
		"--who", "Ann Dev <ann@example.org>", "--repository", "https://git.example.org/app.git",
		"--branch", "main", "--revision", "1234abcd", "--comments", "Fix the frobnicator",
		"--project", "app", "--codebase", "core", "--category", "hotfix",
		"--revlink", "https://git.example.org/app/commit/1234abcd", "--when", "2024-05-01T12:00:00Z",
		"--property", "ticket=T-42", "--property", "jobs=4",
		"src/frob.c", "README")
	if code != cli.ExitOK || stdout != "created change 1\n" || stderr != "" {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	c := getChange(t, base, 1)
	str := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	got := fmt.Sprintf("%s|%s|%s|%s|%s|%d|%s|%s|%s|%s|%q|%v", c.Author, c.Comments, str(c.Branch), str(c.Revision),
		str(c.Revlink), c.When, str(c.Category), c.Repository, c.Codebase, c.Project, c.Files, c.Properties)
	want := `Ann Dev <ann@example.org>|Fix the frobnicator|main|1234abcd|https://git.example.org/app/commit/1234abcd|` +
		`1714564800|hotfix|https://git.example.org/app.git|core|app|["src/frob.c" "README"]|map[jobs:[4 Change] ticket:[T-42 Change]]`
	if got != want {
		t.Errorf("change:\n got %s\nwant %s", got, want)
	}

	// The master from STARFORGE_URL, the comments from a file.
	dir := t.TempDir()
	log := filepath.Join(dir, "msg")
	if err := os.WriteFile(log, []byte("Line one\n\nLine three\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STARFORGE_URL", base)
	stdout, stderr, code = run(t, "sendchange", "--who", "bob", "--logfile", log, "--when", "1714564800.25")
	if code != cli.ExitOK || stdout != "created change 2\n" {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	if c := getChange(t, base, 2); c.Comments != "Line one\n\nLine three" || c.When != 1714564800 || c.Branch != nil || len(c.Files) != 0 {
		t.Errorf("change 2: %+v", c)
	}

	// The master from BASEDIR/run/http.addr, written as for a master that
	// listens on every address.
	t.Setenv("STARFORGE_URL", "")
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run", "http.addr"), []byte("0.0.0.0:"+u.Port()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = run(t, "sendchange", "--basedir", dir, "--who", "carol", "--", "-odd-name.c")
	if code != cli.ExitOK || stdout != "created change 3\n" {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	if c := getChange(t, base, 3); c.Author != "carol" || len(c.Files) != 1 || c.Files[0] != "-odd-name.c" {
		t.Errorf("change 3: %+v", c)
	}

	// A change the master refuses: its reason is shown, nothing is stored.
	stdout, stderr, code = run(t, "sendchange", "--master", base, "--who", "dave", "ok.c", "")
	if code != cli.ExitProblem || stdout != "" || !strings.Contains(stderr, "master refused: files[1]: empty file name") {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	var r struct{ Changes []apiChange }
	getJSON(t, base+"api/v2/changes", &r)
	if len(r.Changes) != 3 {
		t.Errorf("%d changes stored, want 3", len(r.Changes))
	}
}

func TestSendchangeErrors(t *testing.T) {
	nobody := closedURL(t)
	t.Setenv("STARFORGE_URL", "")
	t.Setenv("STARFORGE_BASEDIR", "")
	empty := t.TempDir()
	log := filepath.Join(empty, "msg")
	if err := os.WriteFile(log, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no who", []string{"--master", nobody, "a.c"}, cli.ExitUsage, "--who is required"},
		{"blank who", []string{"--master", nobody, "--who", " "}, cli.ExitUsage, "--who is required"},
		{"flag after files", []string{"--master", nobody, "--who", "a", "x.c", "--branch", "b"}, cli.ExitUsage, "--branch after the files"},
		{"bad when", []string{"--master", nobody, "--who", "a", "--when", "yesterday"}, cli.ExitUsage, `--when: want unix seconds or an RFC 3339 time such as 2024-05-01T12:00:00Z, got "yesterday"`},
		{"negative when", []string{"--master", nobody, "--who", "a", "--when", "-3"}, cli.ExitUsage, "--when: want unix seconds"},
		{"bad property", []string{"--master", nobody, "--who", "a", "--property", "nameonly"}, cli.ExitUsage, "NAME=VALUE"},
		{"comments and logfile", []string{"--master", nobody, "--who", "a", "--comments", "x", "--logfile", log}, cli.ExitUsage, "not both"},
		{"missing logfile", []string{"--master", nobody, "--who", "a", "--logfile", filepath.Join(empty, "nope")}, cli.ExitUsage, "--logfile: open"},
		{"bad master URL", []string{"--master", "ftp://x/", "--who", "a"}, cli.ExitUsage, "--master: want an http:// or https:// URL"},
		{"master down", []string{"--master", nobody, "--who", "a"}, cli.ExitProblem, "cannot reach the master"},
		{"no master in basedir", []string{"--basedir", empty, "--who", "a"}, cli.ExitProblem, "no running master in " + empty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, append([]string{"sendchange"}, tt.args...)...)
			if code != tt.code || stdout != "" || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d (want %d)\nstdout %q\nstderr %q\nwant %q", code, tt.code, stdout, stderr, tt.want)
			}
		})
	}
}
