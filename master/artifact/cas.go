package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Dir is where blobs live, relative to the master's base directory.
const Dir = "artifacts"

// CAS is the content-addressed blob store of one master base directory.
//
// Adding a blob and recording the row that references it must not
// interleave with the janitor's check that a blob is unreferenced, or the
// janitor could delete a blob a moment before its row appears. Writers
// therefore hold Hold's read lock from Put until their rows are stored,
// and the janitor holds the write lock while it checks and removes a
// blob. A CAS is safe for concurrent use; Open returns the same CAS for
// the same directory, so that the build runner and the janitor share its
// lock without being wired to each other.
type CAS struct {
	basedir string
	mu      sync.RWMutex
}

var (
	casMu sync.Mutex
	cases = map[string]*CAS{}
)

// Open returns the blob store of basedir (which need not exist yet).
func Open(basedir string) *CAS {
	abs, err := filepath.Abs(basedir)
	if err != nil {
		abs = filepath.Clean(basedir)
	}
	casMu.Lock()
	defer casMu.Unlock()
	c := cases[abs]
	if c == nil {
		c = &CAS{basedir: abs}
		cases[abs] = c
	}
	return c
}

// RelPath is the path of the blob of sum relative to the base directory,
// with forward slashes on every system: what artifact rows store.
func RelPath(sum string) string {
	return Dir + "/sha256/" + sum[:2] + "/" + sum
}

// Path is the absolute path of the blob of sum.
func (c *CAS) Path(sum string) string {
	return filepath.Join(c.basedir, filepath.FromSlash(RelPath(sum)))
}

// ValidSum reports whether sum is a lowercase hex SHA-256.
func ValidSum(sum string) bool {
	if len(sum) != sha256.Size*2 {
		return false
	}
	for _, r := range sum {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// Hold takes the lock writers share (see CAS) and returns its release.
func (c *CAS) Hold() (release func()) {
	c.mu.RLock()
	return c.mu.RUnlock
}

// Put makes the blob of sum hold the content of the file src, whose
// SHA-256 the caller computed: by a hard link when src is on the same
// file system, else by a copy written to a temporary file and renamed.
// An existing blob is reused as it is. The copy is hashed again and
// refused if it does not match sum (src changed since it was hashed). The
// caller holds Hold's lock until the row naming the blob is stored.
func (c *CAS) Put(src, sum string) (string, error) {
	if !ValidSum(sum) {
		return "", fmt.Errorf("artifact store: %q is not a sha256", sum)
	}
	dst := c.Path(sum)
	if _, err := os.Lstat(dst); err == nil {
		return RelPath(sum), nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("artifact store: %w", err)
	}
	// A hard link shares the inode: uploads replace their destination by
	// renaming a new file over it, so the blob keeps the old content.
	if err := os.Link(src, dst); err == nil || errors.Is(err, fs.ErrExist) {
		return RelPath(sum), nil
	}
	if err := copyVerified(src, dst, sum); err != nil {
		return "", fmt.Errorf("artifact store: keep %s: %w", src, err)
	}
	return RelPath(sum), nil
}

func copyVerified(src, dst, sum string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("its content changed while it was stored (sha256 %s, recorded %s)", got, sum)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
