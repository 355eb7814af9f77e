package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestWebAuthSettings(t *testing.T) {
	dir := t.TempDir()
	htpasswd := "# comment\n\n" +
		"ann:$2a$04$xjY2iVOMa539l9hRPwy8su/J4qSq4csYIqvRlYXknwjxfPbjL6ebi\n" +
		"  zed:$2a$04$e3eDHLlSQ66tXKpBsNTp6edw9fjwqMzcu6eg.YxGFRy63.mlgK7Fe  \n" +
		"yan:$2a$04$WE8ir9dKoCphoeC40/4qJeqT8lXOkeY82sSfGj28/4aalngUtpQNy\n"
	if err := os.WriteFile(filepath.Join(dir, "users.htpasswd"), []byte(htpasswd), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "master.star")
	src := `
master(web_auth = "users", web_htpasswd = "users.htpasswd", web_htpasswd_roles = ["developer"],
       web_anonymous_read = False, web_session_lifetime = "12h")
worker("w", "pw")
builder("linux-amd64", workers = ["w"], steps = [shell("true")])
builder("linux-arm64", workers = ["w"], steps = [shell("true")])
builder("windows", workers = ["w"], steps = [shell("true")])
role("linux-dev", can = ["force", "stop"], builders = ["linux-*"])
role("win-rebuild", can = ["rebuild"], builders = ["windows"])
user("ann", roles = ["admin"], tokens = [secret("ann-token")])
user("lin", password_hash = "$2b$12$" + "a" * 53, roles = ["viewer", "linux-dev", "win-rebuild"])
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Master.Web
	if w.AnonymousRead || w.SessionLifetime != 12*time.Hour || w.Htpasswd != filepath.Join(dir, "users.htpasswd") {
		t.Errorf("web settings %+v", w)
	}
	if !slices.Contains(cfg.Files, w.Htpasswd) {
		t.Errorf("Files %v lack the htpasswd file", cfg.Files)
	}
	var names []string
	for _, u := range cfg.Users {
		names = append(names, u.Name)
	}
	if want := []string{"ann", "lin", "zed", "yan"}; !slices.Equal(names, want) {
		t.Fatalf("users %v, want %v (declared first, then the file's new ones)", names, want)
	}
	ann, zed := cfg.User("ann"), cfg.User("zed")
	if ann.PasswordHash != "$2a$04$xjY2iVOMa539l9hRPwy8su/J4qSq4csYIqvRlYXknwjxfPbjL6ebi" || !slices.Equal(ann.Roles, []string{"admin"}) {
		t.Errorf("ann took %+v; want the file's hash and her own roles", ann)
	}
	if !slices.Equal(ann.Tokens, []string{"ann-token"}) {
		t.Errorf("ann's tokens %v", ann.Tokens)
	}
	if zed.PasswordHash != "$2a$04$e3eDHLlSQ66tXKpBsNTp6edw9fjwqMzcu6eg.YxGFRy63.mlgK7Fe" || !slices.Equal(zed.Roles, []string{"developer"}) {
		t.Errorf("zed is %+v; want the file's hash and web_htpasswd_roles", zed)
	}
	if zed.Pos.Line != 4 || filepath.Base(zed.Pos.File) != "users.htpasswd" {
		t.Errorf("zed declared at %s, want users.htpasswd:4", zed.Pos)
	}

	tests := []struct {
		user, perm, builder string
		want                bool
	}{
		{"lin", "force", "linux-amd64", true},
		{"lin", "stop", "linux-arm64", true},
		{"lin", "force", "windows", false},
		{"lin", "rebuild", "windows", true},
		{"lin", "rebuild", "linux-amd64", false},
		{"lin", "force", "", false}, // every builder: not by a limited role
		{"lin", "view", "", true},
		{"lin", "view", "windows", true},
		{"zed", "force", "windows", true},
		{"zed", "force", "", true},
		{"zed", "pause", "windows", false},
		{"ann", "pause", "", true},
		{"ghost", "view", "windows", false},
	}
	for _, tt := range tests {
		if got := cfg.AllowedOn(tt.user, tt.perm, tt.builder); got != tt.want {
			t.Errorf("AllowedOn(%q, %q, %q) = %v, want %v", tt.user, tt.perm, tt.builder, got, tt.want)
		}
	}
	if !cfg.AllowedAny("lin", "force") || cfg.AllowedAny("lin", "cancel") || cfg.AllowedAny("ghost", "view") {
		t.Error("AllowedAny: lin may force somewhere, may cancel nowhere; ghost nothing")
	}
	if cfg.Allowed("lin", "force") {
		t.Error("Allowed(lin, force): a role limited to some builders must not grant it everywhere")
	}
}

func TestWebAuthDefaults(t *testing.T) {
	for _, src := range []string{``, `master(title = "x")`, `master(web_auth = "users")` + "\nuser(\"u\")"} {
		cfg := loadText(t, src)
		w := cfg.Master.Web
		if !w.AnonymousRead || w.SessionLifetime != DefaultSessionLifetime || w.Htpasswd != "" || !slices.Equal(w.HtpasswdRoles, []string{"viewer"}) {
			t.Errorf("%q: web settings %+v, want the defaults", src, w)
		}
	}
}

func TestCheckBcrypt(t *testing.T) {
	for _, h := range []string{"$2a$04$xjY2iVOMa539l9hRPwy8su/J4qSq4csYIqvRlYXknwjxfPbjL6ebi", "$2y$10$" + "xjY2iVOMa539l9hRPwy8su/J4qSq4csYIqvRlYXknwjxfPbjL6ebi"} {
		if err := checkBcrypt(h); err != nil {
			t.Errorf("checkBcrypt(%q) = %v", h, err)
		}
	}
	for _, h := range []string{"", "$2a$04$short", "$1$abc$def", "$6$x$y", "abcdefghijklm", "$2a$32$xjY2iVOMa539l9hRPwy8su/J4qSq4csYIqvRlYXknwjxfPbjL6ebi"} {
		if checkBcrypt(h) == nil {
			t.Errorf("checkBcrypt(%q) accepted it", h)
		}
	}
}
