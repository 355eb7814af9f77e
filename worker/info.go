package worker

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/starforge/starforge/worker/command"
	"github.com/starforge/starforge/worker/proto"
)

// maxInfoFileSize bounds one BASEDIR/info file in get_worker_info, so that
// a stray large file cannot make the answer exceed the master's frame limit.
const maxInfoFileSize = 1 << 20

// osReleasePath is the file Buildbot's worker reads os_* keys from.
var osReleasePath = "/etc/os-release"

// workerInfo builds get_worker_info's answer as Buildbot's worker does:
// every regular file in BASEDIR/info by name, /etc/os-release's fields as
// os_<key>, then environ, system, basedir, numcpus, version,
// worker_commands and delete_leftover_dirs (which win over same-named info
// files). Text is made valid UTF-8, since a Python master decodes every
// msgpack str strictly and would reject the whole frame otherwise.
func (a *Agent) workerInfo() map[string]any {
	info := map[string]any{}
	a.readInfoDir(filepath.Join(a.basedir, "info"), info)
	if !readOSRelease(osReleasePath, info) {
		// Not Linux (or a minimal container): say at least which OS.
		info["os_id"] = runtime.GOOS
	}
	env := make(map[string]string, len(a.environ))
	for k, v := range a.environ {
		env[validUTF8(k)] = validUTF8(v)
	}
	info["environ"] = env
	info["system"] = pythonOSName()
	info["basedir"] = a.basedir
	info["numcpus"] = runtime.NumCPU()
	info["version"] = "starforge-worker " + a.version()
	info["worker_commands"] = command.Names()
	info["delete_leftover_dirs"] = 0
	var exts []string
	if a.donor != nil {
		exts = append(exts, proto.ExtPause)
	}
	if g := a.resumeGrace(); g > 0 {
		exts = append(exts, proto.ExtResume)
		info[proto.KeyResumeGrace] = g.Seconds()
	}
	if exts != nil {
		info[proto.KeyExtensions] = proto.ExtensionList(exts)
	}
	return info
}

// readInfoDir adds each regular file (or symlink to one) in dir to info.
// A missing directory is not an error: create-worker makes it, but an
// admin may have removed it.
func (a *Agent) readInfoDir(dir string, info map[string]any) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			a.log.Warn("cannot read worker info directory", "dir", dir, "err", err)
		}
		return
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > maxInfoFileSize {
			a.log.Warn("skipping large worker info file", "path", p, "size", fi.Size(), "limit", maxInfoFileSize)
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			a.log.Warn("cannot read worker info file", "path", p, "err", err)
			continue
		}
		info[validUTF8(e.Name())] = validUTF8(string(b))
	}
}

// readOSRelease adds path's KEY=value lines as os_<key>, as Buildbot's
// worker parses them (double quotes stripped, empty values and comments
// skipped), and reports whether the file was there.
func readOSRelease(path string, info map[string]any) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || value == "" {
			continue
		}
		info["os_"+strings.ToLower(validUTF8(key))] = validUTF8(strings.Trim(value, `"`))
	}
	return true
}

// environMap returns the process environment as a map, for commands to
// inherit. Windows' hidden per-drive entries ("=C:=C:\\dir") keep their
// leading "=".
func environMap() map[string]string {
	env := os.Environ()
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv[1:], "=")
		if !ok {
			continue
		}
		m[kv[:1]+k] = v
	}
	return m
}

// pythonOSName is Python's os.name, which a Buildbot master uses to choose
// between POSIX and Windows path rules.
func pythonOSName() string {
	if runtime.GOOS == "windows" {
		return "nt"
	}
	return "posix"
}

func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
