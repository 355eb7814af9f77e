package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// PythonModule returns the path of a python3 that can import module,
// trying the python3 on PATH and then the system's /usr/bin/python3 (a
// virtualenv or pyenv python3 earlier on PATH does not see Debian's
// python3-* packages). It skips the test, or fails it when NoSkipVar is
// set, with a message naming the Debian package to install.
func PythonModule(t testing.TB, module, debianPackage string) string {
	t.Helper()
	var tried []string
	for _, cand := range []string{"python3", "/usr/bin/python3"} {
		p, err := exec.LookPath(cand)
		if err != nil {
			continue
		}
		tried = append(tried, p)
		if exec.Command(p, "-c", "import "+module).Run() == nil {
			return p
		}
	}
	msg := "no python3 can import " + module + ": apt-get install " + debianPackage
	if len(tried) == 0 {
		msg = "python3 not found: apt-get install " + debianPackage
	}
	if os.Getenv(NoSkipVar) != "" {
		t.Fatalf("%s (%s is set, so this is a failure; tried %v)", msg, NoSkipVar, tried)
	}
	t.Skip(msg)
	return ""
}
