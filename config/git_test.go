package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestGitParse checks what git() keeps of its arguments (the golden dump
// shows only the common options).
func TestGitParse(t *testing.T) {
	cfg, err := LoadWith("testdata/valid/git_step.star", Options{Library: testLibrary})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]GitAction{}
	for _, s := range cfg.Builders[0].Steps {
		a := *s.Action.(*GitAction)
		if a.RepoR != nil {
			a.Repo, a.RepoR = "R:"+a.RepoR.String(), nil
		}
		if a.SSHKeyR != nil {
			a.SSHKey, a.SSHKeyR = "R:"+a.SSHKeyR.String(), nil
		}
		if a.SSHKnownHostsR != nil {
			a.SSHKnownHosts, a.SSHKnownHostsR = "R:"+a.SSHKnownHostsR.String(), nil
		}
		got[s.Name] = a
	}
	const repo = "https://example.org/proj.git"
	want := map[string]GitAction{
		"git":     {Repo: repo, Mode: "incremental"},
		"clobber": {Repo: repo, Branch: "main", Mode: "full", Method: "clobber"},
		"clean":   {Repo: repo, Mode: "full", Method: "clean", Submodules: true},
		"fresh":   {Repo: repo, Mode: "full", Method: "fresh", Depth: 1},
		"token":   {Repo: `R:interpolate("https://ci:%(secret:token)s@example.org/proj.git")`, Mode: "incremental", Depth: 50, Codebase: "proj"},
		"secret":  {Repo: `R:secret("repo_url")`, Mode: "incremental"},
		"nohalt":  {Repo: "git@example.org:proj.git", Mode: "incremental"},
		"copy": {Repo: "git@example.org:proj.git", Mode: "full", Method: "copy", RetryFetch: 1, ClobberOnFailure: true,
			SSHKey: `R:secret("deploy-key")`, SSHKnownHosts: "example.org ssh-ed25519 AAAAC3Nza"},
		"plainkey": {Repo: "ssh://git@example.org/proj.git", Mode: "incremental", RetryFetch: 3,
			SSHKey:        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n",
			SSHKnownHosts: `R:interpolate("%(prop:known_hosts)s")`},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: got %+v, want %+v", name, got[name], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d steps, want %d", len(got), len(want))
	}
}

// TestTriggerParse checks a valid trigger() and its cross-check with
// triggerable().
func TestTriggerParse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.star")
	src := `
worker("w", "pw")
triggerable("deploy2", builders=["b"])
t = triggerable("deploy", builders=["b"])
builder("a", ["w"], [
    trigger(["deploy2", t], wait_for_finish=True, set_properties={"n": 1, "r": prop("got_revision")}, update_sourcestamp=False, always_use_latest=True),
    trigger(["deploy"], name="plain"),
])
builder("b", ["w"], [shell("true")])
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Builders[0].Steps[0].Action.(*TriggerAction)
	if len(a.Schedulers) != 2 || a.Schedulers[0] != "deploy2" || a.Schedulers[1] != "deploy" ||
		!a.WaitForFinish || a.UpdateSourcestamp || !a.AlwaysUseLatest ||
		a.SetProperties["n"] != int64(1) || a.SetPropertiesR["r"] == nil {
		t.Errorf("trigger: %+v", a)
	}
	p := cfg.Builders[0].Steps[1].Action.(*TriggerAction)
	if p.WaitForFinish || !p.UpdateSourcestamp || p.AlwaysUseLatest || p.SetProperties != nil || p.Kind() != "trigger" {
		t.Errorf("trigger defaults: %+v", p)
	}
}
