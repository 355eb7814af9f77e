package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func loadSchedulers(t *testing.T, src string) map[string]Scheduler {
	t.Helper()
	file := filepath.Join(t.TempDir(), "m.star")
	if err := os.WriteFile(file, []byte("worker(\"w\", \"p\")\nbuilder(\"b\", [\"w\"], [shell(\"x\")])\n"+src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Scheduler{}
	for _, s := range cfg.Schedulers {
		out[s.SchedulerName()] = s
	}
	return out
}

func TestChangeFilterMatch(t *testing.T) {
	s := loadSchedulers(t, `
def big(change):
    return len(change.files) > 1 or change.properties.get("force", False)
any_branch_scheduler("fields", ["b"], change_filter = change_filter(
    project = ["p", "q"], repository = "r", category = "c", codebase = "cb", files = ["src/*", "Makefile"]))
any_branch_scheduler("branches", ["b"], change_filter = change_filter(branch = ["main", "dev"], branch_re = "^ma"))
any_branch_scheduler("fn", ["b"], change_filter = change_filter(branch_re = "^release/", fn = big))
`)
	base := ChangeInfo{Project: "p", Repository: "r", Category: "c", Codebase: "cb", Branch: "main", Files: []string{"doc/x", "src/a.go"}}
	with := func(f func(c *ChangeInfo)) ChangeInfo {
		c := base
		f(&c)
		return c
	}
	for _, tc := range []struct {
		sched string
		c     ChangeInfo
		want  bool
	}{
		{"fields", base, true},
		{"fields", with(func(c *ChangeInfo) { c.Project = "q" }), true},
		{"fields", with(func(c *ChangeInfo) { c.Project = "x" }), false},
		{"fields", with(func(c *ChangeInfo) { c.Repository = "" }), false},
		{"fields", with(func(c *ChangeInfo) { c.Category = "d" }), false},
		{"fields", with(func(c *ChangeInfo) { c.Codebase = "" }), false},
		{"fields", with(func(c *ChangeInfo) { c.Files = []string{"src/sub/a.go"} }), false}, // * stops at /
		{"fields", with(func(c *ChangeInfo) { c.Files = []string{"Makefile"} }), true},
		{"fields", with(func(c *ChangeInfo) { c.Files = nil }), false},
		{"branches", base, true},
		{"branches", with(func(c *ChangeInfo) { c.Branch = "dev" }), false}, // branch_re must match too
		{"branches", with(func(c *ChangeInfo) { c.Branch = "master" }), false},
		{"fn", with(func(c *ChangeInfo) { c.Branch = "release/1" }), true},
		{"fn", with(func(c *ChangeInfo) { c.Branch = "release/1"; c.Files = []string{"a"} }), false},
		{"fn", with(func(c *ChangeInfo) {
			c.Branch = "release/1"
			c.Files = nil
			c.Properties = map[string]any{"force": true}
		}), true},
		{"fn", base, false}, // fn is not asked: branch_re fails first
	} {
		f := s[tc.sched].(*AnyBranchScheduler).ChangeFilter
		got, err := f.Match(tc.c)
		if err != nil || got != tc.want {
			t.Errorf("%s.Match(%+v) = %v, %v; want %v", tc.sched, tc.c, got, err, tc.want)
		}
	}
}

func TestChangeFuncErrors(t *testing.T) {
	s := loadSchedulers(t, `
def bad(change):
    return change.files
def boom(change):
    return 1 // 0
single_branch_scheduler("s", ["b"], change_filter = change_filter(fn = bad), file_is_important = boom)
`)
	sb := s["s"].(*SingleBranchScheduler)
	if ok, err := sb.ChangeFilter.Match(ChangeInfo{}); ok || err == nil || err.Error() != "bad: returned list; want True or False" {
		t.Errorf("filter fn returning a list: %v, %v", ok, err)
	}
	ok, err := sb.FileIsImportant.CallFileIsImportant(ChangeInfo{}, 0)
	fe, isFE := err.(*FuncError)
	if ok || !isFE || !strings.Contains(err.Error(), "division by zero") || !strings.Contains(fe.Backtrace(), "in boom") {
		t.Errorf("file_is_important raising: %v, %v (%T)", ok, err, err)
	}
}

func TestFileIsImportantSeesTheChange(t *testing.T) {
	s := loadSchedulers(t, `
def important(change):
    want = {
        "id": 7, "number": 7, "author": "A <a@x>", "committer": "C", "comments": "fix",
        "branch": "main", "revision": "abc", "revlink": "http://x/abc", "category": "cat",
        "repository": "https://r", "codebase": "cb", "project": "p", "when": 1000.5,
    }
    for k, v in want.items():
        if getattr(change, k) != v:
            fail(k, getattr(change, k))
    if change.files != ["a.go", "README"] or change.properties != {"n": 1, "s": "x"}:
        fail(change.files, change.properties)
    return not all([f.endswith(".md") for f in change.files])
single_branch_scheduler("s", ["b"], branch = "main", file_is_important = important)
`)
	c := ChangeInfo{ID: 7, Author: "A <a@x>", Committer: "C", Comments: "fix", Branch: "main", Revision: "abc",
		Revlink: "http://x/abc", When: time.Unix(1000, 500e6), Category: "cat", Repository: "https://r",
		Codebase: "cb", Project: "p", Files: []string{"a.go", "README"}, Properties: map[string]any{"n": int64(1), "s": "x"}}
	ok, err := s["s"].(*SingleBranchScheduler).FileIsImportant.CallFileIsImportant(c, 0)
	if err != nil || !ok {
		t.Fatalf("file_is_important = %v, %v", ok, err)
	}
}
