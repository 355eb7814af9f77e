package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/starforge/starforge/plugins/star"
)

// docBlock matches a ```python block of docs/config.md, optionally followed
// by "gives" and a ```text block with the exact errors it produces.
var docBlock = regexp.MustCompile("(?s)```python\n(.*?)```(?:\n\ngives\n\n```text\n(.*?)```)?")

// TestDocExamples keeps docs/config.md honest: every Python example in it is
// a complete configuration that loads, or fails with the errors shown after it.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := docBlock.FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 10 {
		t.Fatalf("found %d python blocks in docs/config.md, want at least 10", len(blocks))
	}
	for _, m := range blocks {
		src, wantErr := m[1], m[2]
		dir := t.TempDir()
		file := filepath.Join(dir, "master.star")
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadWith(file, Options{Library: star.Library}) // the real library the docs describe
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("example does not load:\n%s\nerror:\n%v", src, err)
		case wantErr != "":
			got := ""
			if err != nil {
				got = strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "") + "\n"
			}
			if got != wantErr {
				t.Errorf("example:\n%s\ngives:\n%s\ndocs say:\n%s", src, got, wantErr)
			}
		}
	}
}
