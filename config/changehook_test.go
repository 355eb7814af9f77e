package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestChangeHooks(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "master.star")
	src := `
secrets_env(prefix = "SF_")
change_hook("github", secret = secret("gh-hook"), codebase = "app")
change_hook("gitlab", token = secret("gl-token"), project = "group/app", category = "push")
change_hook("gitea")
change_hook("bitbucket", secret = secret("bb"))
change_hook("base", token = secret("base-token"))
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	var got []ChangeHook
	for _, h := range cfg.ChangeHooks {
		c := *h
		c.Pos = Pos{}
		got = append(got, c)
	}
	want := []ChangeHook{
		{Dialect: "github", Secret: "gh-hook", Codebase: "app"},
		{Dialect: "gitlab", Token: "gl-token", Project: "group/app", Category: "push"},
		{Dialect: "gitea"},
		{Dialect: "bitbucket", Secret: "bb"},
		{Dialect: "base", Token: "base-token"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("hooks:\n got %+v\nwant %+v", got, want)
	}
	if h := cfg.ChangeHook("gitlab"); h == nil || h.Token != "gl-token" || h.Pos.Line != 4 {
		t.Errorf("ChangeHook(gitlab) = %+v", h)
	}
	for _, d := range []string{"poller", "GitHub", ""} {
		if h := cfg.ChangeHook(d); h != nil {
			t.Errorf("ChangeHook(%q) = %+v, want nil", d, h)
		}
	}
}

// TestChangeHookSecretsNotRead checks that loading never looks a hook's
// secret up: the secret need not exist until a request comes.
func TestChangeHookSecretsNotRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "master.star")
	src := `secrets_dir("missing-dir")
change_hook("github", secret = secret("nowhere"))
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Secret(cfg.ChangeHooks[0].Secret); err == nil {
		t.Error("the secret was found; the test needs a missing one")
	}
}
