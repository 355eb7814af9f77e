package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
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
	dest   string
	mode   int
	tmp    *os.File
	sum    hash.Hash
	n      int64
	closed bool
	mtime  time.Time
}

func newUpload(dest string, mode int) (*upload, error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return nil, fmt.Errorf("upload: create master directory: %w", err)
	}
	return &upload{dest: dest, mode: mode, sum: sha256.New()}, nil
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
		if u.tmp == nil {
			f, err := os.CreateTemp(filepath.Dir(u.dest), "."+filepath.Base(u.dest)+".upload-*")
			if err != nil {
				return nil, fmt.Errorf("open %s: %w", u.dest, err)
			}
			u.tmp = f
		}
		if _, err := u.tmp.Write(data); err != nil {
			return nil, fmt.Errorf("write %s: %w", u.dest, err)
		}
		u.sum.Write(data)
		u.n += int64(len(data))
		return nil, nil
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
		f, err := os.CreateTemp(filepath.Dir(u.dest), "."+filepath.Base(u.dest)+".upload-*")
		if err != nil {
			return "", fmt.Errorf("open %s: %w", u.dest, err)
		}
		u.tmp = f
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
