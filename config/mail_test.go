package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestMailReporter(t *testing.T) {
	dir := t.TempDir()
	src := `
mail_reporter(
    to = ["Ops <ops@example.org>", "dev@example.org"],
    from_addr = "Starforge <ci@example.org>",
    smtp_host = "smtp.example.org",
    smtp_user = "ci",
    smtp_password = secret("smtp"),
    builders = ["app"],
)
mail_reporter(to = ["x@example.org"], from_addr = "ci@example.org", smtp_host = "localhost",
    smtp_port = 25, use_tls = "none", mode = "all", subject = "{{.Builder}}: {{upper .Result}}")
`
	file := filepath.Join(dir, "master.star")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Reporters) != 2 {
		t.Fatalf("got %d reporters, want 2", len(cfg.Reporters))
	}
	r := cfg.Reporters[0]
	m := r.Mail
	if r.Kind != "mail" || r.Mode != "failing" || m == nil || m.Port != 587 || m.TLS != "starttls" ||
		m.User != "ci" || m.Password != "smtp" || !slices.Equal(m.To, []string{"Ops <ops@example.org>", "dev@example.org"}) ||
		m.SubjectText != DefaultMailSubject || m.Subject == nil || m.Body == nil {
		t.Errorf("first reporter: %+v %+v", r, m)
	}
	r = cfg.Reporters[1]
	var sb strings.Builder
	if err := r.Mail.Subject.Execute(&sb, SampleMailData()); err != nil {
		t.Fatal(err)
	}
	if r.Mode != "all" || r.Mail.Port != 25 || r.Mail.TLS != "none" || sb.String() != "app: FAILURE" {
		t.Errorf("second reporter: mode %q port %d tls %q subject %q", r.Mode, r.Mail.Port, r.Mail.TLS, sb.String())
	}
}
