package command

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/starforge/starforge/worker/proto"
)

// The file transfers: upload_file, upload_directory and download_file, with
// Buildbot's camelCase aliases. Data moves in requests of at most blocksize
// bytes, each sent only after the master answered the previous one: that
// round trip is the protocol's flow control. Like Buildbot's worker, a
// transfer reports its outcome as rc 0 or 1 (with a stderr line saying why)
// in one final update, and keeps complete's args nil unless the protocol
// itself failed (the master refused a request).

func init() {
	register(newUploadFile, proto.CmdUploadFile, "uploadFile")
	register(newUploadDirectory, proto.CmdUploadDirectory, "uploadDirectory")
	register(newDownloadFile, proto.CmdDownloadFile, "downloadFile")
}

// maxBlockSize caps the chunk size whatever blocksize the master asks for,
// so that one chunk always fits in a frame the peer accepts (proto's
// default limit is 16 MiB). Smaller chunks are always acceptable.
const maxBlockSize = 4 << 20

// interruptible turns Interrupt into the cancellation of the contexts a
// command derives with bind. Make one with newInterruptible; it is safe for
// concurrent use and may be copied.
type interruptible struct {
	ctx    context.Context // cancelled by Interrupt, with an *interruptError cause
	cancel context.CancelCauseFunc
}

type interruptError struct{ why string }

func (e *interruptError) Error() string { return "interrupted: " + e.why }

func newInterruptible() interruptible {
	ctx, cancel := context.WithCancelCause(context.Background())
	return interruptible{ctx: ctx, cancel: cancel}
}

// Interrupt implements Command. The first reason given is kept.
func (in interruptible) Interrupt(why string) { in.cancel(&interruptError{why: why}) }

// interrupted returns the reason of the interrupt, if there was one.
func (in interruptible) interrupted() (string, bool) {
	var ie *interruptError
	if errors.As(context.Cause(in.ctx), &ie) {
		return ie.why, true
	}
	return "", false
}

// interruptedWhile reports whether a failure under a context from bind(ctx)
// is due to an interrupt rather than to ctx's own end.
func (in interruptible) interruptedWhile(ctx context.Context) (string, bool) {
	if ctx.Err() != nil {
		return "", false
	}
	return in.interrupted()
}

// bind returns a context that ends when ctx does or when the command is
// interrupted, so that an interrupt also abandons a request the master is
// slow to answer. The CancelFunc releases it.
func (in interruptible) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	bctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(in.ctx, func() { cancel(context.Cause(in.ctx)) })
	return bctx, func() { stop(); cancel(context.Canceled) }
}

// transferArgs are the arguments every transfer has.
type transferArgs struct {
	path      string // absolute
	blocksize int    // 1..maxBlockSize
	maxsize   int64  // negative: unlimited
}

// parseTransferArgs reads path, blocksize and maxsize (which must be present
// but may be nil), and checks that the keys in extra are present too.
func parseTransferArgs(name string, args proto.Args, env Env, extra ...string) (transferArgs, error) {
	var t transferArgs
	if err := requireArgs(name, args, append([]string{"path", "blocksize", "maxsize"}, extra...)...); err != nil {
		return t, err
	}
	path, err := requiredPath(name, args, env)
	if err != nil {
		return t, err
	}
	bs, err := args.Int("blocksize", 0)
	if err != nil {
		return t, err
	}
	if bs <= 0 {
		return t, fmt.Errorf("%s: blocksize must be positive, got %d", name, bs)
	}
	ms, set, err := args.OptInt("maxsize")
	if err != nil {
		return t, err
	}
	if !set {
		ms = -1
	} else if ms < 0 {
		return t, fmt.Errorf("%s: maxsize must not be negative, got %d", name, ms)
	}
	return transferArgs{path: path, blocksize: int(min(bs, maxBlockSize)), maxsize: ms}, nil
}

// transferResult collects how a transfer ended, for its final update.
type transferResult struct {
	start  time.Time
	header string // whole lines
	rc     int
	stderr string
}

// fail records a failure; the first reason is the one reported, as in
// Buildbot ("if self.stderr is None").
func (r *transferResult) fail(format string, a ...any) {
	r.rc = 1
	if r.stderr == "" {
		r.stderr = fmt.Sprintf(format, a...)
	}
}

func (r *transferResult) interrupt(why string) {
	r.rc = 1
	r.header += fmt.Sprintf("transfer interrupted: %s\n", why)
}

// updates is the final update: header, rc, stderr and elapsed, in
// Buildbot's order.
func (r *transferResult) updates() []proto.Update {
	var us []proto.Update
	if r.header != "" {
		us = append(us, headerUpdate(r.header, r.start))
	}
	us = append(us, proto.Update{Key: proto.UpdRC, Value: r.rc})
	if r.stderr != "" {
		us = append(us, proto.Update{Key: proto.UpdStderr, Value: proto.NewLogChunk(r.stderr, epoch(time.Now()))})
	}
	return append(us, elapsedUpdate(r.start))
}

// finishTransfer sends res and returns Run's result. perr is a protocol
// failure (a request the master refused, or the connection's end): it is
// reported as rc 1 with its text and returned, so that complete carries it.
func finishTransfer(ctx context.Context, s Sender, name string, res *transferResult, perr error) error {
	if err := ctx.Err(); err != nil {
		// The connection or the worker is going away; nobody would hear.
		if perr == nil {
			perr = err
		}
		return fmt.Errorf("%s: %w", name, perr)
	}
	if perr != nil {
		res.fail("%s failed: %v", name, perr)
	}
	if err := SendUpdates(ctx, s, res.updates()...); err != nil && perr == nil {
		perr = err
	}
	if perr != nil {
		return fmt.Errorf("%s: %w", name, perr)
	}
	return nil
}

// sendChunks streams r to the master as op requests ({"args": bin}) of at
// most blocksize bytes, stopping at maxsize bytes (negative: unlimited).
// Interrupts and an over-size source are recorded in res; a read failure is
// returned as readErr and a refused or failed request as sendErr. Each
// chunk is a fresh slice, so a Sender may keep it (to resend it later).
func (in interruptible) sendChunks(ctx, ictx context.Context, s Sender, op string, r io.Reader, t transferArgs, res *transferResult) (readErr, sendErr error) {
	remaining := t.maxsize
	for {
		if why, ok := in.interrupted(); ok {
			res.interrupt(why)
			return nil, nil
		}
		n := t.blocksize
		if remaining >= 0 && int64(n) > remaining {
			n = int(remaining)
		}
		if n == 0 {
			// At maxsize. Unlike Buildbot, a source of exactly maxsize bytes
			// is not "truncated": look for one more byte.
			var one [1]byte
			k, err := io.ReadFull(r, one[:])
			switch {
			case k > 0:
				res.fail("Maximum filesize reached, truncating file '%s'", t.path)
				return nil, nil
			case err == io.EOF:
				return nil, nil
			}
			return err, nil
		}
		buf := make([]byte, n)
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			if _, serr := s.Send(ictx, op, map[string]any{"args": buf[:k]}); serr != nil {
				if why, ok := in.interruptedWhile(ctx); ok {
					res.interrupt(why)
					return nil, nil
				}
				return nil, serr
			}
			if remaining >= 0 {
				remaining -= int64(k)
			}
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return nil, nil
		case err != nil:
			// A producer reading under ictx fails when interrupted: that
			// is the interrupt, not a read error.
			if why, ok := in.interruptedWhile(ctx); ok {
				res.interrupt(why)
				return nil, nil
			}
			return err, nil
		}
	}
}

// uploadFile sends a worker file to the master: upload_file {path,
// blocksize, maxsize, keepstamp}.
type uploadFile struct {
	interruptible
	transferArgs
	keepstamp bool
}

func newUploadFile(args proto.Args, env Env) (Command, error) {
	t, err := parseTransferArgs(proto.CmdUploadFile, args, env)
	if err != nil {
		return nil, err
	}
	keepstamp, err := args.Bool("keepstamp", false)
	if err != nil {
		return nil, err
	}
	return &uploadFile{interruptible: newInterruptible(), transferArgs: t, keepstamp: keepstamp}, nil
}

// Run implements Command: header "sending <path>", the data in
// update_upload_file_write requests, update_upload_file_close (sent even
// after a failure, so that the master releases its writer), then
// update_upload_file_utime when keepstamp is set and all went well.
func (c *uploadFile) Run(ctx context.Context, s Sender) error {
	res := &transferResult{start: time.Now(), header: fmt.Sprintf("sending %s\n", c.path)}
	ictx, cancel := c.bind(ctx)
	defer cancel()

	var perr error
	f, fi, err := openRegular(c.path)
	if err != nil {
		res.fail("Cannot open file '%s' for upload: %s", c.path, strerror(err))
	} else {
		readErr, sendErr := c.sendChunks(ctx, ictx, s, proto.OpUploadFileWrite, f, c.transferArgs, res)
		f.Close()
		if readErr != nil {
			res.fail("Cannot read file '%s' for upload: %s", c.path, strerror(readErr))
		}
		perr = sendErr
	}
	if ctx.Err() == nil {
		if _, err := s.Send(ctx, proto.OpUploadFileClose, nil); err != nil && perr == nil {
			perr = err
		}
	}
	if c.keepstamp && fi != nil && res.rc == 0 && perr == nil {
		_, perr = s.Send(ctx, proto.OpUploadFileUtime, map[string]any{
			"access_time":   epoch(accessTime(fi)),
			"modified_time": epoch(fi.ModTime()),
		})
	}
	return finishTransfer(ctx, s, proto.CmdUploadFile, res, perr)
}

// openRegular opens path for reading and refuses directories (which open
// fine on Unix but fail on the first read).
func openRegular(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.IsDir() {
		err = &fs.PathError{Op: "open", Path: path, Err: syscall.EISDIR}
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// uploadDirectory sends a worker directory to the master as a tar archive:
// upload_directory {path, blocksize, maxsize, compress}.
type uploadDirectory struct {
	interruptible
	transferArgs
	compress string // "", "gz" or "bz2"
	log      *slog.Logger
}

func newUploadDirectory(args proto.Args, env Env) (Command, error) {
	t, err := parseTransferArgs(proto.CmdUploadDirectory, args, env, "compress")
	if err != nil {
		return nil, err
	}
	compress, err := args.String("compress", "")
	if err != nil {
		return nil, err
	}
	switch compress {
	case "", "gz", "bz2":
	default:
		return nil, fmt.Errorf("%s: unsupported compress %q (want nil, \"gz\" or \"bz2\")", proto.CmdUploadDirectory, compress)
	}
	return &uploadDirectory{interruptible: newInterruptible(), transferArgs: t, compress: compress, log: env.Logger}, nil
}

// Run implements Command: header "sending <path>", the archive in
// update_upload_directory_write requests, then
// update_upload_directory_unpack. The archive is produced while it is
// sent, never stored. Unlike Buildbot's worker, a transfer that failed
// (interrupted, over maxsize, unreadable file) is not unpacked: the master
// would extract a truncated archive.
func (c *uploadDirectory) Run(ctx context.Context, s Sender) error {
	res := &transferResult{start: time.Now()}
	ictx, cancel := c.bind(ctx)
	defer cancel()

	root, err := directoryRoot(c.path)
	if err != nil {
		res.fail("Cannot read directory '%s' for upload: %s", c.path, strerror(err))
		return finishTransfer(ctx, s, proto.CmdUploadDirectory, res, nil)
	}
	stream, err := startTarStream(ictx, root, c.compress, c.log)
	if err != nil {
		res.fail("Cannot upload directory '%s': %v", c.path, err)
		return finishTransfer(ctx, s, proto.CmdUploadDirectory, res, nil)
	}
	res.header = fmt.Sprintf("sending %s\n", c.path)
	readErr, perr := c.sendChunks(ctx, ictx, s, proto.OpUploadDirectoryWrite, stream, c.transferArgs, res)
	stream.Close()
	if readErr != nil {
		res.fail("Cannot read directory '%s' for upload: %v", c.path, readErr)
	}
	if res.rc == 0 && perr == nil {
		_, perr = s.Send(ctx, proto.OpUploadDirectoryUnpack, nil)
	}
	return finishTransfer(ctx, s, proto.CmdUploadDirectory, res, perr)
}

// directoryRoot returns the directory to archive for path: path itself, or
// its target when it is a symlink to a directory.
func directoryRoot(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", &fs.PathError{Op: "open", Path: path, Err: syscall.ENOTDIR}
	}
	if lfi, err := os.Lstat(path); err == nil && lfi.Mode()&fs.ModeSymlink != 0 {
		return filepath.EvalSymlinks(path)
	}
	return path, nil
}

// tarStream is a directory being archived by a producer goroutine (and,
// for bz2, a bzip2 process). Reading it returns the archive's bytes, then
// io.EOF, or the producer's error if archiving failed.
type tarStream struct {
	*io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
}

// errStreamAbandoned stops a producer whose archive is no longer read.
var errStreamAbandoned = errors.New("archive no longer read")

// startTarStream starts archiving dir, compressed with compress ("", "gz"
// or "bz2"). The producer stops when ctx ends or Close is called.
func startTarStream(ctx context.Context, dir, compress string, log *slog.Logger) (*tarStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	var produce func() error
	switch compress {
	case "":
		produce = func() error { return writeTar(ctx, dir, pw, log) }
	case "gz":
		produce = func() error {
			zw := gzip.NewWriter(pw)
			if err := writeTar(ctx, dir, zw, log); err != nil {
				return err
			}
			return zw.Close()
		}
	case "bz2":
		// The standard library only decompresses bzip2; Python's worker
		// uses libbz2, so the bzip2 program gives the master the same
		// format it asked for (a Buildbot master opens the archive with
		// mode "r|bz2" and cannot read anything else).
		bin, err := exec.LookPath("bzip2")
		if err != nil {
			cancel()
			return nil, fmt.Errorf("bz2 compression needs the bzip2 program: %w", err)
		}
		cmd := exec.CommandContext(ctx, bin, "-c")
		cmd.Stdout = pw // os/exec copies into pw and Wait waits for that copy
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		in, err := cmd.StdinPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			cancel()
			return nil, fmt.Errorf("start bzip2: %w", err)
		}
		produce = func() error {
			err := writeTar(ctx, dir, in, log)
			in.Close() // EOF for bzip2, which then flushes and exits
			werr := cmd.Wait()
			if err != nil {
				return err
			}
			if werr != nil {
				return fmt.Errorf("bzip2: %w: %s", werr, strings.TrimSpace(stderr.String()))
			}
			return nil
		}
	default:
		cancel()
		return nil, fmt.Errorf("unsupported compression %q", compress)
	}
	t := &tarStream{PipeReader: pr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		pw.CloseWithError(produce()) // nil closes with io.EOF
	}()
	return t, nil
}

// Close stops the producer if it is still running and waits for it.
func (t *tarStream) Close() error {
	t.cancel()
	t.PipeReader.CloseWithError(errStreamAbandoned)
	<-t.done
	return nil
}

// writeTar writes dir's tree to w as a tar archive whose names are
// relative to dir ("./" for dir itself, then "f.txt", "sub/", "sub/x"), as
// Python's tarfile.add(dir, "") does: extracting it into the destination
// recreates dir's contents there. Symlinks are stored as links; sockets,
// devices and pipes are skipped.
func writeTar(ctx context.Context, dir string, w io.Writer, log *slog.Logger) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch {
		case fi.Mode().IsRegular(), fi.IsDir():
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			log.Debug("upload_directory: skipping special file", "path", p, "mode", fi.Mode())
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if p == dir {
			hdr.Name = "./"
		} else {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			hdr.Name = filepath.ToSlash(rel)
			if fi.IsDir() {
				hdr.Name += "/"
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		return copyFileInto(tw, p, hdr.Size)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// copyFileInto copies exactly size bytes of the file at p (its size when
// its header was written) into w; a file that shrank since is an error.
func copyFileInto(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, size); err != nil {
		if err == io.EOF {
			return fmt.Errorf("%s: file shrank while it was archived", p)
		}
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// downloadFile writes a file the master sends: download_file {path,
// blocksize, maxsize, mode}.
type downloadFile struct {
	interruptible
	transferArgs
	mode    fs.FileMode
	hasMode bool
	log     *slog.Logger
}

func newDownloadFile(args proto.Args, env Env) (Command, error) {
	t, err := parseTransferArgs(proto.CmdDownloadFile, args, env, "mode")
	if err != nil {
		return nil, err
	}
	mode, hasMode, err := args.OptInt("mode")
	if err != nil {
		return nil, err
	}
	if hasMode && (mode < 0 || mode > 0o7777) {
		return nil, fmt.Errorf("%s: mode %#o is not a permission mode", proto.CmdDownloadFile, mode)
	}
	return &downloadFile{
		interruptible: newInterruptible(),
		transferArgs:  t,
		mode:          pyPermToFileMode(mode),
		hasMode:       hasMode,
		log:           env.Logger,
	}, nil
}

// pyPermToFileMode converts Unix permission bits, including setuid, setgid
// and sticky, to a Go file mode.
func pyPermToFileMode(m int64) fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	if m&pyISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&pyISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&pyISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// Run implements Command: update_read_file {length} until the master
// answers with no bytes (an empty bin, or nil as a Buildbot 3.7 master
// does), then update_read_file_close (sent even after a failure, so that
// the master releases its reader). The data goes to a temporary file
// beside path that replaces path only once it is complete, so path never
// holds a partial file; a failed download leaves path as it was.
func (c *downloadFile) Run(ctx context.Context, s Sender) error {
	res := &transferResult{start: time.Now()}
	ictx, cancel := c.bind(ctx)
	defer cancel()

	var perr error
	// With a mode asked (a private key, say) the data is never readable
	// by others while it arrives; install then sets the mode.
	perm := fs.FileMode(0o666)
	if c.hasMode {
		perm = 0o600
	}
	tmp, err := createTempBeside(c.path, perm)
	if err != nil {
		res.fail("Cannot open file '%s' for download: %s", c.path, strerror(err))
	} else {
		perr = c.receive(ctx, ictx, s, tmp, res)
	}
	if ctx.Err() == nil {
		// The data is in (or the download failed anyway): the reader's
		// close is a courtesy whose failure changes nothing.
		if _, err := s.Send(ctx, proto.OpReadFileClose, nil); err != nil {
			c.log.Info("download_file: master failed to close its reader", "path", c.path, "err", err)
		}
	}
	if tmp != nil {
		if res.rc == 0 && perr == nil && ctx.Err() == nil {
			if err := c.install(tmp); err != nil {
				res.fail("Cannot write file '%s': %s", c.path, strerror(err))
			}
		} else {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}
	return finishTransfer(ctx, s, proto.CmdDownloadFile, res, perr)
}

// receive pulls the file's data into w, recording interrupts and an
// over-size file in res; it returns a refused or failed request.
func (c *downloadFile) receive(ctx, ictx context.Context, s Sender, w io.Writer, res *transferResult) error {
	remaining := c.maxsize
	for {
		if why, ok := c.interrupted(); ok {
			res.interrupt(why)
			return nil
		}
		n, probe := c.blocksize, false
		if remaining >= 0 {
			if remaining == 0 {
				// At maxsize: only more data makes the file too large.
				n, probe = 1, true
			} else if int64(n) > remaining {
				n = int(remaining)
			}
		}
		r, err := s.Send(ictx, proto.OpReadFile, map[string]any{"length": n})
		if err != nil {
			if why, ok := c.interruptedWhile(ctx); ok {
				res.interrupt(why)
				return nil
			}
			return err
		}
		data, err := resultBytes(r)
		if err != nil {
			return fmt.Errorf("%s: %w", proto.OpReadFile, err)
		}
		if len(data) == 0 {
			return nil // EOF
		}
		if probe || (remaining >= 0 && int64(len(data)) > remaining) {
			res.fail("Maximum filesize reached, truncating file '%s'", c.path)
			return nil
		}
		if _, err := w.Write(data); err != nil {
			res.fail("Cannot write file '%s': %s", c.path, strerror(err))
			return nil
		}
		if remaining >= 0 {
			remaining -= int64(len(data))
		}
	}
}

// resultBytes reads an update_read_file result: bin (or str, leniently);
// nil is end of file, which is what a Buildbot 3.7 master always answers.
func resultBytes(r any) ([]byte, error) {
	switch v := r.(type) {
	case nil:
		return nil, nil
	case []byte:
		return v, nil
	case string:
		return []byte(v), nil
	}
	return nil, fmt.Errorf("master answered %T, want bytes", r)
}

// install gives the complete temporary file its mode and final name.
func (c *downloadFile) install(tmp *os.File) error {
	name := tmp.Name()
	err := tmp.Close()
	if err == nil && c.hasMode {
		err = os.Chmod(name, c.mode)
	}
	if err == nil {
		err = os.Rename(name, c.path)
	}
	if err != nil {
		os.Remove(name)
	}
	return err
}

// createTempBeside creates path's directory if needed and an empty
// temporary file in it, with perm less the umask. Downloads without a
// mode use 0666 so that the umask applies, as it does to Python's
// open(path, "wb"); os.CreateTemp would make it 0600.
func createTempBeside(path string, perm fs.FileMode) (*os.File, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EISDIR}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, err
	}
	for {
		name := filepath.Join(dir, fmt.Sprintf(".starforge-download-%016x.part", rand.Uint64()))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue // a 64-bit collision: astronomically rare, just retry
		}
		return f, err
	}
}
