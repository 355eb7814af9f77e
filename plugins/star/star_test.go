package star_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/plugins/star"
)

func TestMakeHelper(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.star")
	src := `load("@starforge//steps.star", "make")
worker("w1", password = "pw")
builder("proj", workers = ["w1"], steps = make("all", "check", halt_on_failure = True, timeout = "5m"))
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadWith(path, config.Options{Library: star.Library})
	if err != nil {
		t.Fatal(err)
	}
	steps := cfg.Builder("proj").Steps
	if len(steps) != 2 || steps[0].Name != "all" || steps[1].Name != "check" {
		t.Fatalf("steps = %v", steps)
	}
	sh := steps[1].Action.(*config.ShellAction)
	if strings.Join(sh.Argv, " ") != "make check" || !steps[1].HaltOnFailure || steps[1].Timeout.Minutes() != 5 {
		t.Fatalf("step 2 = %+v %+v", steps[1], sh)
	}
}

func TestMakeWithoutTargets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.star")
	src := "load(\"@starforge//steps.star\", \"make\")\nx = make()\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := config.LoadWith(path, config.Options{Library: star.Library})
	if err == nil || !strings.Contains(err.Error(), "make: give at least one target") {
		t.Fatalf("err = %v", err)
	}
}
