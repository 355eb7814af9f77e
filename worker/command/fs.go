package command

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/starforge/starforge/worker/proto"
)

// The file-system commands: mkdir, rmfile, stat, glob and listdir. Each does
// one quick operation and reports it the way Buildbot's worker does: a
// single update with the result (files, stat), rc 0 and elapsed, or with a
// header line "<command>: <strerror>: <path>", rc = the errno and elapsed.
// A failed operation is not a command error: complete carries nil.

func init() {
	register(newMkdir, proto.CmdMkdir)
	register(newRmfile, proto.CmdRmfile)
	register(newStat, proto.CmdStat)
	register(newGlob, proto.CmdGlob)
	register(newListdir, proto.CmdListdir)
}

// fsCommand runs one quick file-system operation. The operation itself is
// not interruptible (it takes microseconds); an interrupt or a cancelled
// context that arrives before it started prevents it.
type fsCommand struct {
	interruptible
	name string
	// do performs the operation and returns the updates that describe its
	// outcome, ending with rc.
	do func() []proto.Update
}

func newFSCommand(name string, do func() []proto.Update) *fsCommand {
	return &fsCommand{interruptible: newInterruptible(), name: name, do: do}
}

// Run implements Command.
func (c *fsCommand) Run(ctx context.Context, s Sender) error {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s not started: %w", c.name, err)
	}
	var us []proto.Update
	if why, ok := c.interrupted(); ok {
		us = []proto.Update{
			headerUpdate(fmt.Sprintf("%s interrupted before it started: %s", c.name, why), start),
			{Key: proto.UpdRC, Value: 1},
		}
	} else {
		us = c.do()
	}
	us = append(us, elapsedUpdate(start))
	return SendUpdates(ctx, s, us...)
}

func newMkdir(args proto.Args, env Env) (Command, error) {
	if err := requireArgs(proto.CmdMkdir, args, "paths"); err != nil {
		return nil, err
	}
	paths, err := args.Strings("paths")
	if err != nil {
		return nil, err
	}
	for i, p := range paths {
		paths[i] = absPath(env, p)
	}
	return newFSCommand(proto.CmdMkdir, func() []proto.Update {
		for _, p := range paths {
			if err := mkdirAll(p); err != nil {
				env.Logger.Info("mkdir failed", "path", p, "err", err)
				return fsFailure(proto.CmdMkdir, p, err)
			}
		}
		return rcOK()
	}), nil
}

// mkdirAll is os.MkdirAll with Python's os.makedirs errors: an existing
// non-directory at path is EEXIST, not ENOTDIR.
func mkdirAll(path string) error {
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return nil
		}
		return &fs.PathError{Op: "mkdir", Path: path, Err: syscall.EEXIST}
	}
	return os.MkdirAll(path, 0o777)
}

func newRmfile(args proto.Args, env Env) (Command, error) {
	path, err := requiredPath(proto.CmdRmfile, args, env)
	if err != nil {
		return nil, err
	}
	return newFSCommand(proto.CmdRmfile, func() []proto.Update {
		if err := removeFile(path); err != nil {
			env.Logger.Info("rmfile failed", "path", path, "err", err)
			return fsFailure(proto.CmdRmfile, path, err)
		}
		return rcOK()
	}), nil
}

// removeFile removes a file or symlink but, unlike os.Remove and like
// Python's os.remove, never a directory (even an empty one).
func removeFile(path string) error {
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return &fs.PathError{Op: "remove", Path: path, Err: syscall.EISDIR}
	}
	return os.Remove(path)
}

func newStat(args proto.Args, env Env) (Command, error) {
	path, err := requiredPath(proto.CmdStat, args, env)
	if err != nil {
		return nil, err
	}
	return newFSCommand(proto.CmdStat, func() []proto.Update {
		st, err := statValues(path)
		if err != nil {
			env.Logger.Info("stat failed", "path", path, "err", err)
			return fsFailure(proto.CmdStat, path, err)
		}
		return []proto.Update{{Key: proto.UpdStat, Value: st}, {Key: proto.UpdRC, Value: 0}}
	}), nil
}

func newListdir(args proto.Args, env Env) (Command, error) {
	path, err := requiredPath(proto.CmdListdir, args, env)
	if err != nil {
		return nil, err
	}
	return newFSCommand(proto.CmdListdir, func() []proto.Update {
		names, err := listDir(path)
		if err != nil {
			env.Logger.Info("listdir failed", "path", path, "err", err)
			return fsFailure(proto.CmdListdir, path, err)
		}
		return []proto.Update{{Key: proto.UpdFiles, Value: stringsToAny(names)}, {Key: proto.UpdRC, Value: 0}}
	}), nil
}

// listDir returns the names in dir, sorted (Python's os.listdir leaves them
// in directory order; sorting costs little and makes logs reproducible).
func listDir(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

func newGlob(args proto.Args, env Env) (Command, error) {
	if err := requireArgs(proto.CmdGlob, args, "path"); err != nil {
		return nil, err
	}
	pattern, err := args.String("path", "")
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(pattern) && env.Basedir != "" {
		// pyJoin, not filepath.Join: a trailing separator is significant.
		pattern = pyJoin(env.Basedir, pattern)
	}
	return newFSCommand(proto.CmdGlob, func() []proto.Update {
		// Python's glob swallows directory read errors, so glob never fails.
		return []proto.Update{{Key: proto.UpdFiles, Value: stringsToAny(pyGlob(pattern))}, {Key: proto.UpdRC, Value: 0}}
	}), nil
}

// requireArgs reports the keys absent from args the way Buildbot's worker
// does ("<command> is missing args: a, b"); a present key may be nil.
func requireArgs(name string, args proto.Args, keys ...string) error {
	var missing []string
	for _, k := range keys {
		if !args.Has(k) {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s is missing args: %s", name, strings.Join(missing, ", "))
	}
	return nil
}

// requiredPath returns the non-empty string argument "path", made absolute.
func requiredPath(name string, args proto.Args, env Env) (string, error) {
	if err := requireArgs(name, args, "path"); err != nil {
		return "", err
	}
	p, err := args.String("path", "")
	if err != nil {
		return "", err
	}
	if p == "" {
		return "", fmt.Errorf("%s: argument \"path\" is empty", name)
	}
	return absPath(env, p), nil
}

// absPath resolves a relative path against the worker's basedir. Masters
// speaking msgpack send absolute paths; a relative one would otherwise
// depend on the worker process's working directory. Absolute paths are
// returned unchanged, so messages echo exactly what the master sent.
func absPath(env Env, p string) string {
	if filepath.IsAbs(p) || env.Basedir == "" {
		return p
	}
	return filepath.Join(env.Basedir, p)
}

func rcOK() []proto.Update { return []proto.Update{{Key: proto.UpdRC, Value: 0}} }

func elapsedUpdate(start time.Time) proto.Update {
	return proto.Update{Key: proto.UpdElapsed, Value: time.Since(start).Seconds()}
}

// headerUpdate is a header entry holding text as whole lines.
func headerUpdate(text string, t time.Time) proto.Update {
	return proto.Update{Key: proto.UpdHeader, Value: proto.NewLogChunk(text, epoch(t))}
}

func epoch(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// fsFailure is Buildbot's report of a failed file-system operation: a
// header "<command>: <strerror>: <path>" and rc = errno.
func fsFailure(name, path string, err error) []proto.Update {
	return []proto.Update{
		headerUpdate(fmt.Sprintf("%s: %s: %s", name, strerror(err), path), time.Now()),
		{Key: proto.UpdRC, Value: errnoOf(err)},
	}
}

// errnoOf returns the errno Python would put in OSError.errno for err (on
// Windows the C runtime's number, see fs_windows.go), or 1 when err carries
// none, so that a failure never reports rc 0.
func errnoOf(err error) int {
	var en syscall.Errno
	if errors.As(err, &en) {
		if n := errnoNumber(en); n != 0 {
			return n
		}
	}
	return 1
}

// strerror is the operating system's message for err without Go's
// "op path:" prefix, capitalised as C's strerror is ("No such file or
// directory").
func strerror(err error) string {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		err = pe.Err
	case errors.As(err, &le):
		err = le.Err
	}
	msg := err.Error()
	r, n := utf8.DecodeRuneInString(msg)
	return string(unicode.ToUpper(r)) + msg[n:]
}

func stringsToAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Python st_mode bits (stat.S_IF*), which differ from Go's fs.FileMode.
const (
	pyIFSOCK = 0o140000
	pyIFLNK  = 0o120000
	pyIFREG  = 0o100000
	pyIFBLK  = 0o060000
	pyIFDIR  = 0o040000
	pyIFCHR  = 0o020000
	pyIFIFO  = 0o010000
	pyISUID  = 0o4000
	pyISGID  = 0o2000
	pyISVTX  = 0o1000
)

// pyMode converts a Go file mode to Python's st_mode, for platforms whose
// stat does not hand us the raw value.
func pyMode(m fs.FileMode) int64 {
	v := int64(m.Perm())
	switch {
	case m&fs.ModeDir != 0:
		v |= pyIFDIR
	case m&fs.ModeSymlink != 0:
		v |= pyIFLNK
	case m&fs.ModeNamedPipe != 0:
		v |= pyIFIFO
	case m&fs.ModeSocket != 0:
		v |= pyIFSOCK
	case m&fs.ModeCharDevice != 0:
		v |= pyIFCHR
	case m&fs.ModeDevice != 0:
		v |= pyIFBLK
	default:
		v |= pyIFREG
	}
	if m&fs.ModeSetuid != 0 {
		v |= pyISUID
	}
	if m&fs.ModeSetgid != 0 {
		v |= pyISGID
	}
	if m&fs.ModeSticky != 0 {
		v |= pyISVTX
	}
	return v
}

// pyGlob is Python's glob.glob(pattern, recursive=True), which Buildbot's
// worker uses: fnmatch syntax per path component ("*", "?", "[seq]",
// "[!seq]", no escapes), a component "**" matches zero or more directories,
// names starting with "." only match a pattern component starting with ".",
// and unreadable directories are skipped silently. Matches come in
// directory-walk order (sorted names, unlike Python's unsorted scandir).
func pyGlob(pattern string) []string {
	var out []string
	pyIGlob(pattern, false, func(p string) { out = append(out, p) })
	return out
}

// pyIGlob mirrors CPython 3.11's glob._iglob.
func pyIGlob(pattern string, dironly bool, yield func(string)) {
	dir, base := pySplit(pattern)
	if !hasMagic(pattern) {
		if base != "" {
			if _, err := os.Lstat(pattern); err == nil {
				yield(pattern)
			}
		} else if isDir(dir) {
			// A pattern ending in a separator matches only directories.
			yield(pattern)
		}
		return
	}
	var dirs []string
	switch {
	case dir == "":
		dirs = []string{""}
	case dir != pattern && hasMagic(dir):
		pyIGlob(dir, true, func(d string) { dirs = append(dirs, d) })
	default:
		dirs = []string{dir}
	}
	for _, d := range dirs {
		var names []string
		switch {
		case base == "**":
			names = append(names, "")
			names = pyRListDir(d, dironly, names)
		case hasMagic(base):
			names = pyGlob1(d, base, dironly)
		default:
			names = pyGlob0(d, base)
		}
		for _, n := range names {
			if d == "" {
				yield(n)
			} else {
				yield(pyJoin(d, n))
			}
		}
	}
}

func pyGlob0(dir, base string) []string {
	if base == "" {
		if isDir(dir) {
			return []string{""}
		}
		return nil
	}
	if _, err := os.Lstat(pyJoin(dir, base)); err == nil {
		return []string{base}
	}
	return nil
}

func pyGlob1(dir, pattern string, dironly bool) []string {
	re := fnmatchRegexp(pattern)
	hidden := strings.HasPrefix(pattern, ".")
	var out []string
	for _, n := range pyListDir(dir, dironly) {
		if (hidden || !strings.HasPrefix(n, ".")) && re.MatchString(n) {
			out = append(out, n)
		}
	}
	return out
}

// pyRListDir appends every non-hidden path below dir, relative to it, in
// depth-first order. Like Python it descends into symlinked directories,
// but never into one that is also an ancestor, where Python would loop
// until the path grew too long.
func pyRListDir(dir string, dironly bool, out []string) []string {
	fi, err := os.Stat(orDot(dir))
	if err != nil {
		return out
	}
	return pyRListDirIn(dir, dironly, out, []fs.FileInfo{fi})
}

func pyRListDirIn(dir string, dironly bool, out []string, ancestors []fs.FileInfo) []string {
	for _, n := range pyListDir(dir, dironly) {
		if strings.HasPrefix(n, ".") {
			continue
		}
		out = append(out, n)
		p := pyJoin(dir, n)
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() || slices.ContainsFunc(ancestors, func(a fs.FileInfo) bool { return os.SameFile(a, fi) }) {
			continue
		}
		for _, sub := range pyRListDirIn(p, dironly, nil, append(ancestors, fi)) {
			out = append(out, pyJoin(n, sub))
		}
	}
	return out
}

// pyListDir lists dir's names (only directories, following symlinks, if
// dironly); errors give an empty list, as in Python.
func pyListDir(dir string, dironly bool) []string {
	dir = orDot(dir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if dironly {
			if e.Type()&fs.ModeSymlink != 0 {
				if !isDir(filepath.Join(dir, e.Name())) {
					continue
				}
			} else if !e.IsDir() {
				continue
			}
		}
		out = append(out, e.Name())
	}
	return out
}

func isDir(p string) bool {
	fi, err := os.Stat(orDot(p))
	return err == nil && fi.IsDir()
}

// orDot is p, or "." for the empty path (the current directory in Python).
func orDot(p string) string {
	if p == "" {
		return "."
	}
	return p
}

func hasMagic(s string) bool { return strings.ContainsAny(s, "*?[") }

// pySplit is Python's os.path.split: unlike filepath.Split, the directory
// part loses its trailing separators unless it is a root.
func pySplit(p string) (dir, base string) {
	dir, base = filepath.Split(p)
	vol := filepath.VolumeName(dir)
	rest := strings.TrimRightFunc(dir[len(vol):], func(r rune) bool { return r < utf8.RuneSelf && os.IsPathSeparator(uint8(r)) })
	if rest != "" {
		dir = vol + rest
	}
	return dir, base
}

// pyJoin is Python's os.path.join for two parts: no cleaning, and joining
// "" adds a trailing separator.
func pyJoin(a, b string) string {
	if a == "" || filepath.IsAbs(b) {
		return b
	}
	if os.IsPathSeparator(a[len(a)-1]) {
		return a + b
	}
	return a + string(filepath.Separator) + b
}

// fnmatchRegexp compiles a Python fnmatch pattern, as fnmatch.translate
// does: "*" any run, "?" any character, "[...]" a set ("[!...]" negated,
// "]" first is literal, "a-z" ranges, reversed ranges match nothing), an
// unclosed "[" is literal, and there is no escape character. Matching is
// case-insensitive on Windows, as fnmatch's normcase makes it.
func fnmatchRegexp(pat string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("(?s)")
	if runtime.GOOS == "windows" {
		b.WriteString("(?i)")
	}
	b.WriteString("^")
	rs := []rune(pat)
	star := false // the last item written was a star: "**" in a name is "*"
	for i := 0; i < len(rs); {
		c := rs[i]
		i++
		if c == '*' {
			if !star {
				b.WriteString(".*")
			}
			star = true
			continue
		}
		star = false
		switch c {
		case '?':
			b.WriteString(".")
		case '[':
			j := i
			if j < len(rs) && rs[j] == '!' {
				j++
			}
			if j < len(rs) && rs[j] == ']' {
				j++
			}
			for j < len(rs) && rs[j] != ']' {
				j++
			}
			if j >= len(rs) {
				b.WriteString(`\[`)
				continue
			}
			b.WriteString(fnmatchSet(rs[i:j]))
			i = j + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// fnmatchSet translates the inside of a "[...]" set into a regexp.
func fnmatchSet(set []rune) string {
	negate := len(set) > 0 && set[0] == '!'
	if negate {
		set = set[1:]
	}
	var items strings.Builder
	for k := 0; k < len(set); k++ {
		lo, hi := set[k], set[k]
		if k+2 < len(set) && set[k+1] == '-' {
			hi = set[k+2]
			k += 2
		}
		if lo > hi {
			continue // an empty range matches nothing, as in Python
		}
		items.WriteString(quoteSetRune(lo))
		if hi != lo {
			items.WriteString("-" + quoteSetRune(hi))
		}
	}
	switch {
	case items.Len() == 0 && negate:
		return "." // "[!]" can't occur (its "]" is literal), but an all-empty-ranges negation matches anything
	case items.Len() == 0:
		return `[^\x00-\x{10FFFF}]` // matches nothing
	case negate:
		return "[^" + items.String() + "]"
	}
	return "[" + items.String() + "]"
}

func quoteSetRune(r rune) string {
	if r < utf8.RuneSelf && strings.ContainsRune(`\^-[]`, r) {
		return `\` + string(r)
	}
	return string(r)
}

// portableStat is the stat tuple from what fs.FileInfo alone says, for a
// file system whose Sys() is not the platform's usual type.
func portableStat(fi fs.FileInfo) []any {
	t := fi.ModTime().Unix()
	return []any{pyMode(fi.Mode()), int64(0), int64(0), int64(1), int64(0), int64(0), fi.Size(), t, t, t}
}
