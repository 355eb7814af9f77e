package build

import (
	"os/exec"
	"testing"
)

func TestRedactRepo(t *testing.T) {
	for _, tc := range []struct{ repo, in, want string }{
		{"https://ci:t0ken%2Fx@example.org/p.git", "clone https://ci:t0ken%2Fx@example.org/p.git t0ken/x", "clone https://ci:<secret:git-credentials>@example.org/p.git <secret:git-credentials>"},
		{"https://ghp_abcdef@github.com/o/p.git", "clone https://ghp_abcdef@github.com/o/p.git", "clone https://<secret:git-credentials>@github.com/o/p.git"},
		{"ssh://git@example.org/p.git", "clone ssh://git@example.org/p.git", "clone ssh://git@example.org/p.git"},
		{"/srv/git/p.git", "clone /srv/git/p.git", "clone /srv/git/p.git"},
		{"git@example.org:p.git", "clone git@example.org:p.git", "clone git@example.org:p.git"},
	} {
		s := &stepRun{b: &run{redact: &redactor{}}}
		s.redactRepo(tc.repo)
		if got := s.b.redact.str(tc.in); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.repo, got, tc.want)
		}
	}
	if got := shortSHA("0123456789abcdef"); got != "0123456" {
		t.Errorf("shortSHA = %q", got)
	}
}

func TestPatchSubdir(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"sub", "sub", true},
		{"sub/dir/", "sub/dir", true},
		{`sub\dir`, "sub/dir", true},
		{"/etc", "", false},
		{"../x", "", false},
		{"a/../../x", "", false},
		{"C:/x", "", false},
		{"/", "", false},
	} {
		got, ok := patchSubdir(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("patchSubdir(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestShellQuote runs what shellQuote makes through sh, as git does with
// GIT_SSH_COMMAND.
func TestShellQuote(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, s := range []string{"/plain/path", "/with space/key", "it's", `a"b$c\d` + "`e`", ""} {
		out, err := exec.Command(sh, "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh sees %q (%v), want %q", out, err, s)
		}
	}
}
