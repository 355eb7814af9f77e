package build

import (
	"archive/tar"
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/starforge/starforge/worker/proto"
)

// maxReadChunk caps what one update_read_file answer carries, whatever
// length the worker asks for.
const maxReadChunk = 1 << 20

func (r *Runner) masterPath(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(r.Basedir, p)
}

// upload receives a file from the worker into dest. Data goes to a
// temporary file beside dest, renamed over it only when the transfer
// succeeded, so a failed upload never leaves a partial file at dest.
type upload struct {
	dest string
	mode int
	spool
	closed bool
	mtime  time.Time
}

func newUpload(dest string, mode int, max int64) (*upload, error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return nil, fmt.Errorf("upload: create master directory: %w", err)
	}
	return &upload{dest: dest, mode: mode, spool: spool{dest: dest, suffix: ".upload-*", sum: sha256.New(), max: max}}, nil
}

// spool collects a transfer's bytes in a hidden temporary file beside
// dest, counting them (and hashing them when sum is set). Whoever owns it
// renames or removes tmp when the transfer ends.
type spool struct {
	dest   string
	suffix string // of the temporary file's name pattern
	tmp    *os.File
	n      int64
	sum    hash.Hash // may be nil
	max    int64     // the most it takes (master(upload_max_size)); 0: no cap
}

func (s *spool) write(data []byte) error {
	if s.max > 0 && s.n+int64(len(data)) > s.max {
		return fmt.Errorf("the upload is larger than the master accepts (upload_max_size %d bytes); nothing was kept", s.max)
	}
	if s.tmp == nil {
		f, err := os.CreateTemp(filepath.Dir(s.dest), "."+filepath.Base(s.dest)+s.suffix)
		if err != nil {
			return fmt.Errorf("open %s: %w", s.dest, err)
		}
		s.tmp = f
	}
	if _, err := s.tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", s.tmp.Name(), err)
	}
	if s.sum != nil {
		s.sum.Write(data)
	}
	s.n += int64(len(data))
	return nil
}

func (u *upload) handle(op string, msg proto.Message) (any, error) {
	switch op {
	case proto.OpUploadFileWrite:
		data, err := proto.Args(msg).Bytes("args")
		if err != nil {
			return nil, err
		}
		if u.closed {
			return nil, errors.New("upload already closed")
		}
		return nil, u.write(data)
	case proto.OpUploadFileClose:
		u.closed = true
		return nil, nil
	case proto.OpUploadFileUtime:
		mt, err := proto.Args(msg).Float("modified_time", 0)
		if err != nil {
			return nil, err
		}
		sec, frac := int64(mt), mt-float64(int64(mt))
		u.mtime = time.Unix(sec, int64(frac*1e9))
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected %s during a file upload", op)
}

func (u *upload) finish(ok bool) (string, error) {
	if u.tmp == nil {
		// An empty file sends no write at all.
		if !ok {
			return "", nil
		}
		if err := u.write(nil); err != nil {
			return "", err
		}
	}
	name := u.tmp.Name()
	err := u.tmp.Close()
	if !ok {
		os.Remove(name)
		return "", nil
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("write %s: %w", u.dest, err)
	}
	mode := os.FileMode(0o644)
	if u.mode >= 0 {
		mode = os.FileMode(u.mode)
	}
	if err := os.Chmod(name, mode); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("chmod %s: %w", u.dest, err)
	}
	if err := os.Rename(name, u.dest); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("store %s: %w", u.dest, err)
	}
	if !u.mtime.IsZero() {
		_ = os.Chtimes(u.dest, u.mtime, u.mtime)
	}
	return fmt.Sprintf("uploaded %s: %d bytes, sha256 %s", u.dest, u.n, hex.EncodeToString(u.sum.Sum(nil))), nil
}

// download serves a master file to the worker.
type download struct {
	src string
	f   *os.File
	sum hash.Hash
	n   int64
	eof bool
}

func newDownload(src string) (*download, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("download: %s is a directory", src)
	}
	return &download{src: src, f: f, sum: sha256.New()}, nil
}

func (d *download) handle(op string, msg proto.Message) (any, error) {
	switch op {
	case proto.OpReadFile:
		n, err := proto.Args(msg).Int("length", transferBlockSize)
		if err != nil {
			return nil, err
		}
		if n <= 0 || n > maxReadChunk {
			n = maxReadChunk
		}
		buf := make([]byte, n)
		k, err := io.ReadFull(d.f, buf)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("read %s: %w", d.src, err)
		}
		if k == 0 {
			d.eof = true
		}
		d.sum.Write(buf[:k])
		d.n += int64(k)
		// An empty bin (not nil) tells the worker the file ended.
		return buf[:k], nil
	case proto.OpReadFileClose:
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected %s during a file download", op)
}

func (d *download) finish(ok bool) (string, error) {
	d.f.Close()
	if !ok {
		return "", nil
	}
	return fmt.Sprintf("downloaded %s: %d bytes, sha256 %s", d.src, d.n, hex.EncodeToString(d.sum.Sum(nil))), nil
}

// stringDownload serves a string to the worker (download_string).
type stringDownload struct {
	r   *strings.Reader
	n   int
	sum [32]byte
}

func newStringDownload(s string) *stringDownload {
	return &stringDownload{r: strings.NewReader(s), n: len(s), sum: sha256.Sum256([]byte(s))}
}

func (d *stringDownload) handle(op string, msg proto.Message) (any, error) {
	switch op {
	case proto.OpReadFile:
		n, err := proto.Args(msg).Int("length", transferBlockSize)
		if err != nil {
			return nil, err
		}
		if n <= 0 || n > maxReadChunk {
			n = maxReadChunk
		}
		buf := make([]byte, n)
		k, _ := io.ReadFull(d.r, buf)
		return buf[:k], nil
	case proto.OpReadFileClose:
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected %s during a download", op)
}

func (d *stringDownload) finish(ok bool) (string, error) {
	if !ok {
		return "", nil
	}
	return fmt.Sprintf("downloaded a string: %d bytes, sha256 %s", d.n, hex.EncodeToString(d.sum[:])), nil
}

// uploadDir receives a directory from the worker as a tar stream
// (upload_dir). The stream goes to a temporary file; once the worker says
// unpack and the command succeeded, it is unpacked into a new directory
// beside dest, which then replaces dest. Unpacking refuses absolute
// names, names with "..", links that point outside the tree, hard links
// and device files, and writes through an os.Root so that nothing lands
// outside the new directory.
type uploadDir struct {
	dest     string
	compress string
	spool
	unpack bool
}

func newUploadDir(dest, compress string, max int64) (*uploadDir, error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return nil, fmt.Errorf("upload_dir: create master directory: %w", err)
	}
	return &uploadDir{dest: dest, compress: compress, spool: spool{dest: dest, suffix: ".tar-*", max: max}}, nil
}

func (u *uploadDir) handle(op string, msg proto.Message) (any, error) {
	switch op {
	case proto.OpUploadDirectoryWrite:
		data, err := proto.Args(msg).Bytes("args")
		if err != nil {
			return nil, err
		}
		if u.unpack {
			return nil, errors.New("upload_dir: data after unpack")
		}
		return nil, u.write(data)
	case proto.OpUploadDirectoryUnpack:
		u.unpack = true
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected %s during a directory upload", op)
}

func (u *uploadDir) finish(ok bool) (string, error) {
	if u.tmp != nil {
		defer os.Remove(u.tmp.Name())
		defer u.tmp.Close()
	}
	if !ok {
		return "", nil
	}
	if u.tmp == nil || !u.unpack {
		return "", fmt.Errorf("upload_dir: the worker sent no complete archive for %s", u.dest)
	}
	if _, err := u.tmp.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("upload_dir: %w", err)
	}
	var r io.Reader = bufio.NewReader(u.tmp)
	switch u.compress {
	case "gz":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return "", fmt.Errorf("upload_dir: %w", err)
		}
		defer zr.Close()
		r = zr
	case "bz2":
		r = bzip2.NewReader(r)
	}
	stage, err := os.MkdirTemp(filepath.Dir(u.dest), "."+filepath.Base(u.dest)+".unpack-*")
	if err != nil {
		return "", fmt.Errorf("upload_dir: %w", err)
	}
	files, size, err := untar(r, stage)
	if err != nil {
		os.RemoveAll(stage)
		return "", fmt.Errorf("upload_dir: unpack into %s: %w", u.dest, err)
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		os.RemoveAll(stage)
		return "", fmt.Errorf("upload_dir: %w", err)
	}
	if err := os.RemoveAll(u.dest); err != nil {
		os.RemoveAll(stage)
		return "", fmt.Errorf("upload_dir: replace %s: %w", u.dest, err)
	}
	if err := os.Rename(stage, u.dest); err != nil {
		os.RemoveAll(stage)
		return "", fmt.Errorf("upload_dir: store %s: %w", u.dest, err)
	}
	return fmt.Sprintf("uploaded directory %s: %d files, %d bytes (%d bytes transferred)", u.dest, files, size, u.n), nil
}

// untar unpacks a tar stream into dir, safely: see uploadDir.
func untar(r io.Reader, dir string) (files int, size int64, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, 0, err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	type dirTime struct {
		name string
		t    time.Time
	}
	var dirTimes []dirTime
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return files, size, err
		}
		name, err := safeTarName(hdr.Name)
		if err != nil {
			return files, size, err
		}
		if name == "." {
			continue
		}
		if err := noSymlinkParents(root, name); err != nil {
			return files, size, err
		}
		perm := os.FileMode(hdr.Mode) & 0o777
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return files, size, err
			}
			if perm != 0 {
				_ = root.Chmod(name, perm|0o700)
			}
			dirTimes = append(dirTimes, dirTime{name, hdr.ModTime})
		case tar.TypeReg:
			if err := mkParent(root, name); err != nil {
				return files, size, err
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm|0o600)
			if err != nil {
				return files, size, err
			}
			n, err := io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return files, size, fmt.Errorf("%s: %w", name, err)
			}
			_ = root.Chmod(name, perm)
			_ = root.Chtimes(name, hdr.ModTime, hdr.ModTime)
			files++
			size += n
		case tar.TypeSymlink:
			if err := safeLinkTarget(name, hdr.Linkname); err != nil {
				return files, size, err
			}
			if err := mkParent(root, name); err != nil {
				return files, size, err
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return files, size, err
			}
			files++
		default:
			return files, size, fmt.Errorf("%s: unsupported entry type %q (only files, directories and symbolic links)", name, hdr.Typeflag)
		}
	}
	for i := len(dirTimes) - 1; i >= 0; i-- {
		_ = root.Chtimes(dirTimes[i].name, dirTimes[i].t, dirTimes[i].t)
	}
	return files, size, nil
}

// safeTarName returns a tar entry's name as a clean relative path, or an
// error if it is absolute or climbs out with "..".
func safeTarName(name string) (string, error) {
	n := strings.ReplaceAll(name, `\`, "/")
	if n == "/" {
		// buildbot-worker archives the directory as "" and tarfile
		// writes its entry as "/": the root itself.
		return ".", nil
	}
	if n == "" || strings.HasPrefix(n, "/") || (len(n) > 1 && n[1] == ':') || strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("refusing entry %q: absolute or empty name", name)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("refusing entry %q: its name contains \"..\"", name)
		}
	}
	return path.Clean(n), nil
}

// safeLinkTarget checks that a symbolic link at name (relative to the
// tree's root) points inside the tree.
func safeLinkTarget(name, target string) error {
	t := strings.ReplaceAll(target, `\`, "/")
	if t == "" || strings.HasPrefix(t, "/") || (len(t) > 1 && t[1] == ':') {
		return fmt.Errorf("refusing link %s -> %s: absolute target", name, target)
	}
	resolved := path.Join(path.Dir(name), t)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("refusing link %s -> %s: points outside the directory", name, target)
	}
	return nil
}

// noSymlinkParents refuses to write name through a symbolic link the
// archive made earlier: link targets are checked as written, which only
// holds if the directories on the way are real.
func noSymlinkParents(root *os.Root, name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := root.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("refusing entry %s: %s is a symbolic link", name, p)
		}
	}
	return nil
}

func mkParent(root *os.Root, name string) error {
	if dir := path.Dir(name); dir != "." {
		return root.MkdirAll(dir, 0o755)
	}
	return nil
}
