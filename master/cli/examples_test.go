package cli_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/starforge/starforge/master/cli"
)

// examplesDir holds the complete configurations users start from.
const examplesDir = "../../examples"

// TestExamplesPassCheckconfig: every example in examples/ is a directory
// with a master.star that `starforge checkconfig` accepts.
func TestExamplesPassCheckconfig(t *testing.T) {
	entries, err := os.ReadDir(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		n++
		path := filepath.Join(examplesDir, e.Name(), "master.star")
		t.Run(e.Name(), func(t *testing.T) {
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("example %s has no master.star: %v", e.Name(), err)
			}
			stdout, stderr, code := run(t, "checkconfig", path)
			if code != cli.ExitOK {
				t.Fatalf("starforge checkconfig %s: exit code %d, want 0\n%s%s", path, code, stdout, stderr)
			}
			if want := regexp.MustCompile(`^` + regexp.QuoteMeta(path) + `: OK: [1-9]\d* workers?, [1-9]\d* builders?, \d+ schedulers?\n$`); !want.MatchString(stdout) {
				t.Errorf("stdout = %q; want %s", stdout, want)
			}
			if stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
		})
	}
	if n == 0 {
		t.Fatalf("no examples found in %s", examplesDir)
	}
}

// TestDocExamplesTestedByConfigPackage: the configuration examples in
// docs/config.md are checked by a test of the config package (which also
// compares the errors the docs show). This test does not run them again; it
// fails if that test disappears or stops reading docs/config.md, so that
// the docs' examples cannot silently become untested.
func TestDocExamplesTestedByConfigPackage(t *testing.T) {
	const doc = "../../docs/config.md"
	body, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "```python\n") {
		t.Fatalf("%s has no ```python example; this test assumes it does", doc)
	}

	files, err := filepath.Glob("../../config/*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var found []string
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Body == nil {
				continue
			}
			if readsDoc(fn.Body) && loadsConfig(fn.Body) {
				found = append(found, filepath.Base(f)+": "+fn.Name.Name)
			}
		}
	}
	if len(found) == 0 {
		t.Fatalf("no test in config/*_test.go reads ../docs/config.md and loads its examples; docs/config.md's examples are untested")
	}
	t.Logf("docs/config.md's examples are tested by %s", strings.Join(found, ", "))
}

// readsDoc reports whether body mentions the path of docs/config.md, as
// seen from the config package.
func readsDoc(body *ast.BlockStmt) bool {
	var yes bool
	ast.Inspect(body, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil && filepath.Clean(s) == filepath.Clean("../docs/config.md") {
				yes = true
			}
		}
		return !yes
	})
	return yes
}

// loadsConfig reports whether body calls Load or LoadWith.
func loadsConfig(body *ast.BlockStmt) bool {
	var yes bool
	ast.Inspect(body, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok {
			if id, ok := call.Fun.(*ast.Ident); ok && (id.Name == "Load" || id.Name == "LoadWith") {
				yes = true
			}
		}
		return !yes
	})
	return yes
}

// TestReadmeConfigPassesCheckconfig: the README's master.star examples
// pass `starforge checkconfig`.
func TestReadmeConfigPassesCheckconfig(t *testing.T) {
	body, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```python\n(.*?)```").FindAllStringSubmatch(string(body), -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```python example; this test assumes it does")
	}
	for i, b := range blocks {
		path := filepath.Join(t.TempDir(), "master.star")
		if err := os.WriteFile(path, []byte(b[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		if stdout, stderr, code := run(t, "checkconfig", path); code != cli.ExitOK {
			t.Errorf("README example %d: checkconfig exit %d\n%s%s", i+1, code, stdout, stderr)
		}
	}
}
