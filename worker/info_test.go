package worker

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadOSRelease(t *testing.T) {
	p := filepath.Join(t.TempDir(), "os-release")
	os.WriteFile(p, []byte(`PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
# a comment
ID=debian

EMPTY=
NOEQUALS
HOME_URL="https://www.debian.org/"
SINGLE='kept'
`), 0o644)
	info := map[string]any{}
	if !readOSRelease(p, info) {
		t.Fatal("file not read")
	}
	want := map[string]any{
		"os_pretty_name": "Debian GNU/Linux 12 (bookworm)",
		"os_name":        "Debian GNU/Linux",
		"os_version_id":  "12",
		"os_id":          "debian",
		"os_home_url":    "https://www.debian.org/",
		"os_single":      "'kept'", // Buildbot strips double quotes only
	}
	if len(info) != len(want) {
		t.Errorf("got %v, want %v", info, want)
	}
	for k, v := range want {
		if info[k] != v {
			t.Errorf("%s = %#v, want %#v", k, info[k], v)
		}
	}
	if readOSRelease(filepath.Join(t.TempDir(), "none"), info) {
		t.Error("a missing file was read")
	}
}

func TestEnvironMap(t *testing.T) {
	t.Setenv("STARFORGE_TEST_VAR", "a=b")
	env := environMap()
	if env["STARFORGE_TEST_VAR"] != "a=b" {
		t.Fatalf("STARFORGE_TEST_VAR = %q", env["STARFORGE_TEST_VAR"])
	}
}

func TestWorkerInfoWithoutOSRelease(t *testing.T) {
	old := osReleasePath
	osReleasePath = filepath.Join(t.TempDir(), "none")
	defer func() { osReleasePath = old }()
	a := &Agent{Master: "h:1", Name: "w", Basedir: t.TempDir()}
	if err := a.init(); err != nil {
		t.Fatal(err)
	}
	info := a.workerInfo()
	if info["os_id"] == "" || info["os_id"] == nil {
		t.Fatalf("os_id = %#v", info["os_id"])
	}
	if _, ok := info["environ"].(map[string]string); !ok {
		t.Fatalf("environ is %T", info["environ"])
	}
}
