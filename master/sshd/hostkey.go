package sshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"
)

// HostKeyFile is the host key's file name in the master's basedir. The
// public key is beside it, with ".pub" appended.
const HostKeyFile = "ssh_host_ed25519_key"

// loadHostKey reads the host key in file or, if there is none, creates
// one (ed25519, in OpenSSH format, mode 0600) and its .pub file. The key
// is made once and kept, so that clients' known_hosts entries stay valid
// across restarts. created says whether it was made now.
func loadHostKey(file string) (signer gossh.Signer, created bool, err error) {
	b, err := os.ReadFile(file)
	if err == nil {
		s, err := gossh.ParsePrivateKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("host key %s: %w (move it away to have a new one made, and tell users the new fingerprint)", file, err)
		}
		return s, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("host key: generate: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "starforge master host key")
	if err != nil {
		return nil, false, fmt.Errorf("host key: encode: %w", err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	pub := gossh.MarshalAuthorizedKey(s.PublicKey())
	if err := writeNew(file+".pub", pub, 0o644); err != nil {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	// The private key last: a crash in between leaves no key, and the next
	// start makes both again.
	if err := writeNew(file, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	return s, true, nil
}

// writeNew writes data to path through a temporary file in the same
// directory, so that path never holds a partial file, and syncs it.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
