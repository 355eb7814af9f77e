package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// LibraryPrefix starts the load() names that Options.Library serves, as in
// load("@starforge//latent.star", "qemu").
const LibraryPrefix = "@starforge//"

// DefaultMaxSteps is the Starlark computation budget of one load when
// Options.MaxSteps is 0. A 1,000-builder config uses well under 1% of it.
const DefaultMaxSteps = 100_000_000

// Options configures LoadWith. The zero value is valid.
type Options struct {
	// Library is the file tree that load("@starforge//x.star") reads x.star
	// from, normally the embedded plugins/star. If nil, such loads fail with
	// an error saying the library is not available.
	Library fs.FS

	// Print receives the output of print() in master.star together with the
	// position ("file:line:col") of the print call. If nil, the output is
	// discarded: loading never writes to stdout or stderr.
	Print func(pos, msg string)

	// MaxSteps bounds the Starlark computation of one load, so that a
	// runaway loop fails with an error instead of hanging checkconfig or
	// reconfig. 0 means DefaultMaxSteps.
	MaxSteps uint64

	// LookupEnv answers env() in master.star; nil means os.LookupEnv,
	// the master's own environment.
	LookupEnv func(name string) (string, bool)
}

// Load reads the master.star file at path, executes it, validates the
// result and returns the configuration. load() statements in it read files
// relative to the loading file's directory.
//
// On failure the error is of type Errors and lists every problem found: all
// problems reported by builtins up to the end of execution (or up to the
// first Starlark runtime error, which stops execution), and, if execution
// completed, every problem found by cross-checking the declarations.
//
// Positions in errors name files the way path names them: relative to the
// current directory if path is relative, absolute otherwise.
func Load(path string) (*Config, error) {
	return LoadWith(path, Options{})
}

// LoadWith is Load with options. It is safe to call concurrently.
func LoadWith(path string, opts Options) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, Errors{{Pos: Pos{File: path}, Msg: err.Error(), cause: err}}
	}
	l := newLoader(opts)
	main := &module{key: abs, name: filepath.Clean(path)}
	if _, err := l.exec(main); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && len(l.files) == 0 {
			// The main file itself could not be read.
			l.errs.add(&Error{Pos: Pos{File: main.name}, Msg: pe.Err.Error(), cause: err})
		} else {
			l.errs.addStarlark(err, Pos{File: main.name})
		}
		return nil, l.errs.result()
	}
	cfg := l.config(abs)
	l.validate(cfg)
	if err := l.errs.result(); err != nil {
		return nil, err
	}
	cfg.index()
	return cfg, nil
}

// fileOptions returns the Starlark dialect of master.star: top-level if and
// for (configs often loop over platforms), reassignable globals, and sets;
// no while loops and no recursion, so that evaluation always terminates
// for reasons other than the step budget too.
func fileOptions() *syntax.FileOptions {
	return &syntax.FileOptions{
		Set:             true,
		TopLevelControl: true,
		GlobalReassign:  true,
	}
}

// loader holds the state of one Load: the Starlark thread, the modules
// loaded so far, the declarations made by builtins and the problems found.
// Nothing in it outlives the Load call except the Config it builds.
type loader struct {
	opts        Options
	errs        errorList
	thread      *starlark.Thread
	predeclared starlark.StringDict
	modules     map[string]*module // by module key
	stack       []*module          // modules being executed, innermost last
	files       []string           // absolute paths of local files read

	// Declarations, in the order they were made.
	master     *MasterSettings // nil until master() is called
	workers    []*Worker
	builders   []*Builder
	schedulers []Scheduler

	secretProviders []SecretProvider
}

// module is one Starlark file, executed at most once per Load.
type module struct {
	key     string // absolute path, or LibraryPrefix + slash-separated path in Library
	name    string // the file name shown in positions
	libPath string // path in Options.Library; "" for local files
	globals starlark.StringDict
	err     error
	done    bool // false while executing: loading it again is a cycle
}

func newLoader(opts Options) *loader {
	l := &loader{
		opts:    opts,
		modules: make(map[string]*module),
	}
	l.thread = &starlark.Thread{
		Name:  "master.star",
		Load:  l.load,
		Print: l.print,
	}
	steps := opts.MaxSteps
	if steps == 0 {
		steps = DefaultMaxSteps
	}
	l.thread.SetMaxExecutionSteps(steps)
	l.predeclared = l.predeclare()
	return l
}

// print implements the Starlark print builtin for thread.
func (l *loader) print(thread *starlark.Thread, msg string) {
	if l.opts.Print != nil {
		l.opts.Print(callerPos(thread).String(), msg)
	}
}

// exec reads and executes m and caches the result.
//
// All modules run on the one thread, so that a runtime error in a loaded
// file carries the full stack, load statements included, and the step
// budget covers the whole configuration.
func (l *loader) exec(m *module) (starlark.StringDict, error) {
	l.modules[m.key] = m
	defer func() { m.done = true }()

	var src []byte
	if m.libPath != "" {
		src, m.err = fs.ReadFile(l.opts.Library, m.libPath)
	} else {
		src, m.err = os.ReadFile(m.key)
		if m.err == nil {
			l.files = append(l.files, m.key)
		}
	}
	if m.err != nil {
		var pe *fs.PathError
		if errors.As(m.err, &pe) {
			// The *PathError names the file as opened; show it as the user
			// wrote it instead, keeping the cause for errors.Is.
			m.err = &fs.PathError{Op: "read", Path: m.name, Err: pe.Err}
		}
		return nil, m.err
	}

	l.stack = append(l.stack, m)
	m.globals, m.err = starlark.ExecFileOptions(fileOptions(), l.thread, m.name, src, l.predeclared)
	l.stack = l.stack[:len(l.stack)-1]
	return m.globals, m.err
}

// load implements Starlark's load statement for the current module, the
// innermost one being executed.
func (l *loader) load(_ *starlark.Thread, name string) (starlark.StringDict, error) {
	from := l.stack[len(l.stack)-1]
	m, err := l.resolve(from, name)
	if err != nil {
		return nil, err
	}
	if prev, ok := l.modules[m.key]; ok {
		if !prev.done {
			return nil, l.cycle(prev)
		}
		return prev.globals, prev.err
	}
	return l.exec(m)
}

// cycle returns the error for loading m while it is being executed.
func (l *loader) cycle(m *module) error {
	var chain []string
	for i, s := range l.stack {
		if s == m {
			for _, s := range l.stack[i:] {
				chain = append(chain, s.name)
			}
			break
		}
	}
	chain = append(chain, m.name)
	return fmt.Errorf("load cycle: %s", strings.Join(chain, " -> "))
}

// resolve returns the module that load(name) means in from. It does not
// execute or cache it.
func (l *loader) resolve(from *module, name string) (*module, error) {
	switch {
	case name == "":
		return nil, errors.New("empty file name")
	case strings.HasPrefix(name, LibraryPrefix):
		return l.libModule(strings.TrimPrefix(name, LibraryPrefix))
	case strings.HasPrefix(name, "@") || strings.HasPrefix(name, "//"):
		return nil, fmt.Errorf("unknown repository; only %s and file paths relative to the loading file can be loaded", LibraryPrefix)
	case from.libPath != "":
		// Library files load each other by relative path and nothing else:
		// what they do must not depend on the user's files.
		if path.IsAbs(name) {
			return nil, fmt.Errorf("a %s file cannot load an absolute path", LibraryPrefix)
		}
		return l.libModule(path.Join(path.Dir(from.libPath), name))
	}
	rel := filepath.FromSlash(name)
	if filepath.IsAbs(rel) {
		rel = filepath.Clean(rel)
		return &module{key: rel, name: rel}, nil
	}
	return &module{
		key:  filepath.Join(filepath.Dir(from.key), rel),
		name: filepath.Join(filepath.Dir(from.name), rel),
	}, nil
}

// libModule returns the module for path p in Options.Library.
func (l *loader) libModule(p string) (*module, error) {
	clean := path.Clean(p)
	if !fs.ValidPath(clean) || clean == "." {
		return nil, fmt.Errorf("invalid %s path %q", LibraryPrefix, p)
	}
	if l.opts.Library == nil {
		return nil, fmt.Errorf("the %s library is not available", LibraryPrefix)
	}
	return &module{key: LibraryPrefix + clean, name: LibraryPrefix + clean, libPath: clean}, nil
}

// config assembles the Config from the declarations, with defaults applied.
func (l *loader) config(abs string) *Config {
	cfg := &Config{
		Path:       abs,
		Workers:    l.workers,
		Builders:   l.builders,
		Schedulers: l.schedulers,
		Files:      l.files,

		SecretProviders: l.secretProviders,
		ChangeHooks:     l.changeHooks(),
		Reporters:       l.reporters(),
	}
	if l.master != nil {
		cfg.Master = *l.master
	} else {
		cfg.Master = defaultMasterSettings()
	}
	return cfg
}

// callerPos returns the position of the Starlark code that called the
// running builtin. That is usually frame 1, but a builtin may be called by
// another builtin (for example as the key function of sorted), which has no
// position of its own.
func callerPos(thread *starlark.Thread) Pos {
	for depth := 1; depth < thread.CallStackDepth(); depth++ {
		if fr := thread.CallFrame(depth); fr.Pos.Line > 0 {
			return posOf(fr.Pos)
		}
	}
	return Pos{File: "<builtin>"}
}
