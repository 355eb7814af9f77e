package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/starforge/starforge/worker/proto"
)

// cpdir copies a directory tree. Buildbot's worker runs
// `cp -R -P -p -v FROM TO` on POSIX (shutil.copytree on Windows); we copy
// natively with cp's semantics on every platform:
//
//   - -R: recursively; if TO is an existing directory the copy goes to
//     TO/basename(FROM), otherwise it becomes TO (whose parent is created,
//     as Buildbot does);
//   - -P: symlinks are copied as symlinks, never followed;
//   - -p: modes (including setuid, setgid and sticky bits), modification
//     times and, where permitted, ownership are preserved (access times
//     are not: Go has no portable way to read them);
//   - -v: each copied entry is listed on stdout as 'src' -> 'dst'.
//
// Failures do not stop the copy; each is reported on stderr ("cp: ...")
// and rc is 1, as cp does. FIFOs, devices and sockets are reported as
// failures rather than recreated.

func init() {
	register(newCpdir, proto.CmdCpdir)
}

type cpdirCommand struct {
	*interruptFlag
	env      Env
	logger   *slog.Logger
	from, to string
	limits   nativeLimits
	environ  map[string]string
}

func newCpdir(args proto.Args, env Env) (Command, error) {
	if err := args.Require("from_path", "to_path"); err != nil {
		return nil, fmt.Errorf("cpdir: %w", err)
	}
	c := &cpdirCommand{interruptFlag: newInterruptFlag(), env: env, logger: loggerOr(env.Logger)}
	var err error
	if c.from, err = args.String("from_path", ""); err != nil {
		return nil, fmt.Errorf("cpdir: %w", err)
	}
	if c.to, err = args.String("to_path", ""); err != nil {
		return nil, fmt.Errorf("cpdir: %w", err)
	}
	if c.from == "" || c.to == "" {
		return nil, errors.New("cpdir: from_path and to_path must not be empty")
	}
	if !filepath.IsAbs(c.from) {
		c.from = filepath.Join(env.Basedir, c.from)
	}
	if !filepath.IsAbs(c.to) {
		c.to = filepath.Join(env.Basedir, c.to)
	}
	if c.limits, c.environ, err = parseNativeArgs(args, env); err != nil {
		return nil, fmt.Errorf("cpdir: %w", err)
	}
	return c, nil
}

// Run implements Command.
func (c *cpdirCommand) Run(ctx context.Context, s Sender) error {
	out, err := newOutput(ctx, s, c.env.Settings, c.logger)
	if err != nil {
		return fmt.Errorf("cpdir: %w", err)
	}
	start := time.Now()
	if notStarted(out, c.interruptFlag) {
		return closeOutput(ctx, out, "cpdir")
	}
	argv := []string{"cp", "-R", "-P", "-p", "-v", c.from, c.to}
	out.Write(proto.UpdHeader, []byte(c.limits.header(shellQuote(argv), c.env.Basedir, argv, c.environ)))
	run := nativeRun{out: out, limits: c.limits, argvRepr: pyArgv(argv), intr: c.interruptFlag, logger: c.logger}
	cp := &treeCopier{out: out}
	killed := run.do(ctx, func(ctx context.Context, touch func()) {
		cp.ctx, cp.touch = ctx, touch
		cp.run(c.from, c.to)
	})
	rc := 0
	switch {
	case killed:
		rc = -1
	case len(cp.errs) > 0:
		out.Write(proto.UpdStderr, []byte(errorLines("cp", "cannot copy", cp.errs)))
		rc = 1
	}
	out.EndLines()
	out.Write(proto.UpdHeader, fmt.Appendf(nil, "elapsedTime=%0.6f\n", time.Since(start).Seconds()))
	out.Add(proto.UpdRC, rc)
	out.Add(proto.UpdElapsed, time.Since(start).Seconds())
	return closeOutput(ctx, out, "cpdir")
}

// treeCopier copies one tree; it is used by one goroutine.
type treeCopier struct {
	ctx   context.Context
	touch func()
	out   *Output
	errs  []error
	buf   []byte
}

func (c *treeCopier) fail(err error) { c.errs = append(c.errs, err) }

// run copies from to to with cp -R's rules for the destination.
func (c *treeCopier) run(from, to string) {
	sfi, err := os.Lstat(from)
	if err != nil {
		c.fail(err)
		return
	}
	dst := to
	if dfi, err := os.Stat(to); err == nil && dfi.IsDir() {
		dst = filepath.Join(to, filepath.Base(from))
	} else if err == nil && sfi.IsDir() {
		c.fail(fmt.Errorf("cannot overwrite non-directory '%s' with directory '%s'", to, from))
		return
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o777); err != nil {
		c.fail(err)
		return
	}
	c.copy(from, dst, sfi)
}

func (c *treeCopier) copy(src, dst string, fi fs.FileInfo) {
	if c.ctx.Err() != nil {
		return
	}
	c.touch()
	var err error
	switch mode := fi.Mode(); {
	case mode&fs.ModeSymlink != 0:
		err = c.copySymlink(src, dst)
	case mode.IsDir():
		c.copyDir(src, dst, fi)
		return
	case mode.IsRegular():
		err = c.copyFile(src, dst, fi)
	default:
		err = &fs.PathError{Op: "copy", Path: src, Err: errors.New("special files are not copied")}
	}
	if err != nil {
		c.fail(err)
		return
	}
	c.verbose(src, dst)
}

func (c *treeCopier) verbose(src, dst string) {
	c.out.Write(proto.UpdStdout, []byte("'"+src+"' -> '"+dst+"'\n"))
}

func (c *treeCopier) copySymlink(src, dst string) error {
	target, err := os.Readlink(src)
	if err != nil {
		return err
	}
	if dfi, err := os.Lstat(dst); err == nil && !dfi.IsDir() {
		// Replace an existing non-directory, as cp does for files.
		if err := os.Remove(dst); err != nil {
			return err
		}
	}
	if err := os.Symlink(target, dst); err != nil {
		return err
	}
	if fi, err := os.Lstat(src); err == nil {
		preserveOwner(dst, fi, true)
	}
	return nil
}

func (c *treeCopier) copyDir(src, dst string, fi fs.FileInfo) {
	if dfi, err := os.Lstat(dst); err != nil {
		// Writable while we fill it; the source's mode comes last.
		if err := os.Mkdir(dst, 0o700); err != nil {
			c.fail(err)
			return
		}
		c.verbose(src, dst)
	} else if !dfi.IsDir() {
		c.fail(fmt.Errorf("cannot overwrite non-directory '%s' with directory '%s'", dst, src))
		return
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		c.fail(err)
	}
	for _, e := range entries {
		if c.ctx.Err() != nil {
			return
		}
		efi, err := e.Info()
		if err != nil {
			c.fail(err)
			continue
		}
		c.copy(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), efi)
	}
	preserveOwner(dst, fi, false)
	if err := os.Chmod(dst, chmodBits(fi.Mode())); err != nil {
		c.fail(err)
	}
	if err := os.Chtimes(dst, time.Time{}, fi.ModTime()); err != nil {
		c.fail(err)
	}
}

func (c *treeCopier) copyFile(src, dst string, fi fs.FileInfo) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if c.buf == nil {
		c.buf = make([]byte, 1<<20)
	}
	for {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		n, rerr := in.Read(c.buf)
		if n > 0 {
			if _, err := out.Write(c.buf[:n]); err != nil {
				return err
			}
			c.touch() // a big file is progress, not silence
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	// Owner first: chown may clear setuid/setgid bits that chmod then sets.
	preserveOwner(dst, fi, false)
	if err := out.Chmod(chmodBits(fi.Mode())); err != nil {
		return err
	}
	return os.Chtimes(dst, time.Time{}, fi.ModTime())
}

// chmodBits are the mode bits cp -p preserves.
func chmodBits(m fs.FileMode) fs.FileMode {
	return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// preserveOwner copies fi's owner to path where permitted; like cp -p, a
// refusal (not root, foreign owner) is not an error.
func preserveOwner(path string, fi fs.FileInfo, symlink bool) {
	uid, gid, ok := fileOwner(fi)
	if !ok {
		return
	}
	if symlink {
		_ = os.Lchown(path, uid, gid)
	} else {
		_ = os.Chown(path, uid, gid)
	}
}
