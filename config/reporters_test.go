package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestReporters(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "master.star")
	src := `
secrets_env(prefix = "SF_")
http_reporter("https://hooks.example.com/ci", headers = {"X-Plain": "v", "Authorization": secret("hook-auth")}, mode = "failing")
github_status(token = secret("gh"), builders = ["app"], branches = ["main"])
gitea_status(base_url = "https://tea.example.com/", token = secret("tea"), context = "ci/BUILDER", mode = "change")
gitlab_status(token = secret("gl"), tags = ["release"], mode = "problem")
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	var got []Reporter
	for _, r := range cfg.Reporters {
		c := *r
		c.Pos = Pos{}
		got = append(got, c)
	}
	want := []Reporter{
		{Kind: "http", URL: "https://hooks.example.com/ci", Headers: map[string]string{"X-Plain": "v"},
			SecretHeaders: map[string]string{"Authorization": "hook-auth"}, Mode: "failing"},
		{Kind: "github", URL: "https://api.github.com", Token: "gh", Context: "starforge/BUILDER",
			Builders: []string{"app"}, Branches: []string{"main"}, Mode: "all"},
		{Kind: "gitea", URL: "https://tea.example.com", Token: "tea", Context: "ci/BUILDER", Mode: "change"},
		{Kind: "gitlab", URL: "https://gitlab.com", Token: "gl", Context: "starforge/BUILDER", Tags: []string{"release"}, Mode: "problem"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
