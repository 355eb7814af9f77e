package job

import (
	"archive/tar"
	"bufio"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxEntries bounds the entries of a job archive, so that a stream of
// empty files cannot fill the master's inodes while staying under the
// size limit.
const maxEntries = 100_000

// Extract writes the tar stream r, optionally gzip-compressed (told by its
// magic bytes), into dir, which must exist and be empty. It refuses
// absolute paths, paths with "..", links, devices and anything else that
// is not a regular file or a directory, and stops once the files hold more
// than limit bytes (0: no limit). An archive at fault gives an
// *InvalidError; what it already wrote stays in dir, for the caller to
// remove.
//
// It returns the job's top directory: dir, or the one directory the
// archive put everything in when job.json is there and not at the top.
func Extract(r io.Reader, dir string, limit int64) (string, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "", &InvalidError{problems: []string{"archive: " + err.Error()}}
		}
		defer zr.Close()
		src = zr
	}
	var p problems
	tr := tar.NewReader(src)
	var total int64
	seen := make(map[string]bool)
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				p.addf("archive: empty; want a tar of the job directory, %s at its top", SpecFile)
			}
			break
		}
		if err != nil {
			if !archiveFault(err) {
				return "", fmt.Errorf("read the job: %w", err)
			}
			p.addf("archive: %v (want a tar or tar.gz stream)", unwrapTar(err))
			break
		}
		if n >= maxEntries {
			p.addf("archive: more than %d entries", maxEntries)
			break
		}
		name := strings.TrimPrefix(h.Name, "./")
		name = strings.TrimSuffix(name, "/")
		if name == "" || name == "." {
			continue // the archive's own top, as in tar -C dir .
		}
		if bad := badPath(name); bad != "" {
			p.addf("archive: %s", bad)
			continue
		}
		if seen[name] {
			p.addf("archive: %s: appears twice", name)
			continue
		}
		seen[name] = true
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return "", fmt.Errorf("extract %s: %w", name, err)
			}
		case tar.TypeReg: // the reader turns old archives' TypeRegA into TypeReg
			if limit > 0 && total+h.Size > limit {
				p.addf("archive: larger than the master's limit of %d bytes (upload_max_size)", limit)
				return "", p.err()
			}
			total += h.Size
			if err := writeFile(target, tr, h); err != nil {
				var inv *InvalidError
				if errors.As(err, &inv) {
					p = append(p, inv.problems...)
					return "", p.err()
				}
				return "", fmt.Errorf("extract %s: %w", name, err)
			}
		case tar.TypeSymlink, tar.TypeLink:
			p.addf("archive: %s: is a link (to %q); a job holds only files and directories", name, h.Linkname)
		default:
			p.addf("archive: %s: is a %s; a job holds only files and directories", name, tarType(h.Typeflag))
		}
	}
	if err := p.err(); err != nil {
		return "", err
	}
	return jobTop(dir)
}

// writeFile writes the current entry of tr to target.
func writeFile(target string, tr io.Reader, h *tar.Header) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if h.Mode&0o111 != 0 {
		mode = 0o755 // scripts such as debian/rules stay executable
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return &InvalidError{problems: []string{fmt.Sprintf("archive: %s: appears twice", h.Name)}}
		}
		return err
	}
	n, err := io.Copy(f, tr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if n < h.Size && !isWriteError(err) && archiveFault(err) {
			return &InvalidError{problems: []string{fmt.Sprintf("archive: %s: %v", h.Name, unwrapTar(err))}}
		}
		if !isWriteError(err) {
			return fmt.Errorf("read the job: %w", err)
		}
		return err
	}
	return nil
}

// isWriteError tells a failure of the master's disk from a truncated
// archive.
func isWriteError(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe)
}

// archiveFault tells a fault of the archive itself (truncated, not a tar,
// a bad gzip stream) from a failure to read it, such as a body over the
// HTTP server's limit or a dropped connection, which callers must see as
// such (413, say) rather than as a malformed job.
func archiveFault(err error) bool {
	var corrupt flate.CorruptInputError
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrHeader) ||
		errors.Is(err, tar.ErrFieldTooLong) || errors.Is(err, gzip.ErrChecksum) ||
		errors.Is(err, gzip.ErrHeader) || errors.As(err, &corrupt)
}

func unwrapTar(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated archive")
	}
	return err
}

// jobTop returns where job.json is: dir itself, or the one directory in
// it (an archive made with tar -c jobdir).
func jobTop(dir string) (string, error) {
	if _, err := os.Lstat(filepath.Join(dir, SpecFile)); err == nil {
		return dir, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	if len(entries) == 1 && entries[0].IsDir() {
		top := filepath.Join(dir, entries[0].Name())
		if _, err := os.Lstat(filepath.Join(top, SpecFile)); err == nil {
			return top, nil
		}
	}
	return dir, nil // Check reports the missing job.json
}

func tarType(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "named pipe"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}
