package build

import "testing"

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
