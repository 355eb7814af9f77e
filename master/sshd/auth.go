package sshd

import (
	"bufio"
	"bytes"
	"fmt"
	"os"

	"github.com/starforge/starforge/config"
	gossh "golang.org/x/crypto/ssh"
)

// maxAuthorizedKeys bounds how much of an authorized_keys file is read.
const maxAuthorizedKeys = 1 << 20

// userKeys returns the public keys user u may log in with: those of
// user(keys=...) and those of its authorized_keys file, which is read
// now, at each login, so that editing it needs no reconfig. problems
// says what was skipped and why, for the log. Lines with options
// (from=, command=, restrict...) are skipped: the server cannot honour
// them, and ignoring them would let the key do more than the file says.
func userKeys(u *config.User) (keys []gossh.PublicKey, problems []string) {
	for i, k := range u.Keys {
		pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			// config checked it; a key x/crypto cannot read is still worth saying.
			problems = append(problems, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		keys = append(keys, pk)
	}
	if u.AuthorizedKeys == "" {
		return keys, problems
	}
	f, err := os.Open(u.AuthorizedKeys)
	if err != nil {
		return keys, append(problems, fmt.Sprintf("authorized_keys: %v", err))
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 16<<10), maxAuthorizedKeys)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		pk, _, opts, _, err := gossh.ParseAuthorizedKey(line)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s:%d: %v", u.AuthorizedKeys, n, err))
		case len(opts) > 0:
			problems = append(problems, fmt.Sprintf("%s:%d: key options (%s) are not supported; the key is ignored", u.AuthorizedKeys, n, opts[0]))
		default:
			keys = append(keys, pk)
		}
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, fmt.Sprintf("%s: %v", u.AuthorizedKeys, err))
	}
	return keys, problems
}

// keyAllowed reports whether key is one of u's keys.
func keyAllowed(u *config.User, key gossh.PublicKey) (ok bool, problems []string) {
	keys, problems := userKeys(u)
	want := key.Marshal()
	for _, k := range keys {
		if bytes.Equal(k.Marshal(), want) {
			return true, problems
		}
	}
	return false, problems
}
