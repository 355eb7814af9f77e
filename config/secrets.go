package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
)

// SecretProvider finds secrets at build time. Loading a configuration
// never consults one: secret(name) only records the name.
type SecretProvider interface {
	// LookupSecret returns the secret called name; ok is false if this
	// provider does not have it.
	LookupSecret(name string) (value string, ok bool, err error)
	// String describes the provider, e.g. `secrets_dir("/etc/sf/secrets")`.
	String() string
}

// SecretsDir is secrets_dir(path): one file per secret, named after it.
// The value is the file's content less one trailing newline.
type SecretsDir struct {
	Dir string // absolute
	Pos Pos
}

// LookupSecret implements SecretProvider.
func (d *SecretsDir) LookupSecret(name string) (string, bool, error) {
	if checkSecretName(name) != nil {
		return "", false, nil
	}
	b, err := os.ReadFile(filepath.Join(d.Dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("secret %s: %w", name, err)
	}
	s := string(b)
	if strings.HasSuffix(s, "\r\n") {
		s = s[:len(s)-2]
	} else {
		s = strings.TrimSuffix(s, "\n")
	}
	return s, true, nil
}

func (d *SecretsDir) String() string { return "secrets_dir(" + strconv.Quote(d.Dir) + ")" }

// SecretsEnv is secrets_env(prefix=""): the environment variable
// Prefix+NAME of the master process.
type SecretsEnv struct {
	Prefix string
	Pos    Pos
}

// LookupSecret implements SecretProvider.
func (e *SecretsEnv) LookupSecret(name string) (string, bool, error) {
	v, ok := os.LookupEnv(e.Prefix + name)
	return v, ok, nil
}

func (e *SecretsEnv) String() string { return "secrets_env(" + strconv.Quote(e.Prefix) + ")" }

// Secret returns the secret called name from the first provider, in
// declaration order, that has it.
func (c *Config) Secret(name string) (string, error) {
	for _, p := range c.SecretProviders {
		v, ok, err := p.LookupSecret(name)
		if err != nil {
			return "", err
		}
		if ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("secret %s not found in any provider", name)
}

// checkSecretName accepts names that are safe as file names and
// environment variable suffixes.
func checkSecretName(name string) error {
	if name == "" {
		return fmt.Errorf("empty secret name")
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || (r == '.' && i > 0)
		if !ok {
			return fmt.Errorf("invalid secret name %q: want letters, digits, _, - and . (not first)", name)
		}
	}
	return nil
}

// --- builtins ---

var secretParams = []param{{name: "name", required: true, positional: true}}

// builtinSecret implements secret(name).
func builtinSecret(c *call) (starlark.Value, error) {
	name := c.nonEmptyStr("name", "")
	if name != "" {
		if err := checkSecretName(name); err != nil {
			c.argErrorf("name", "%v", err)
		}
	}
	return &renderValue{typ: "secret", r: &secretRenderer{name: name}}, nil
}

var secretsDirParams = []param{{name: "path", required: true, positional: true}}

// builtinSecretsDir implements secrets_dir(path). A relative path is
// relative to the directory of the file that calls it. The directory is
// not read until a build needs a secret.
func builtinSecretsDir(c *call) (starlark.Value, error) {
	p := c.nonEmptyStr("path", "")
	if p != "" && !filepath.IsAbs(p) {
		p = filepath.Join(c.l.baseDir(), p)
	}
	d := &SecretsDir{Dir: filepath.Clean(p), Pos: c.pos}
	if p != "" {
		c.l.secretProviders = append(c.l.secretProviders, d)
	}
	return starlark.None, nil
}

var secretsEnvParams = []param{{name: "prefix", positional: true}}

// builtinSecretsEnv implements secrets_env(prefix="").
func builtinSecretsEnv(c *call) (starlark.Value, error) {
	e := &SecretsEnv{Prefix: c.str("prefix", ""), Pos: c.pos}
	if strings.ContainsAny(e.Prefix, "=\x00") {
		c.argErrorf("prefix", "invalid environment variable prefix %q", e.Prefix)
	}
	c.l.secretProviders = append(c.l.secretProviders, e)
	return starlark.None, nil
}

// baseDir returns the directory of the local file being executed, or of
// the main file when a library file is executing.
func (l *loader) baseDir() string {
	for i := len(l.stack) - 1; i >= 0; i-- {
		if m := l.stack[i]; m.libPath == "" {
			return filepath.Dir(m.key)
		}
	}
	return "."
}
