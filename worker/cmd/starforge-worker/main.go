// Command starforge-worker connects a build worker to a Starforge master
// (or a Buildbot master's msgpack_experimental_v7 port) and runs the
// commands it is given until it is stopped with SIGINT or SIGTERM or the
// master shuts it down.
//
// Usage:
//
//	starforge-worker --master HOST:PORT --name NAME --password PASS --basedir DIR [--donate ...]
//	starforge-worker status [--basedir DIR]
//
// With --donate the worker is a donated desktop: it builds only while its
// owner is away (see package donate and `starforge-worker --donate
// --help`), and `starforge-worker status` says what it does and why.
//
// Each setting may come from the environment instead (flags win):
// STARFORGE_MASTER, STARFORGE_WORKER_NAME, STARFORGE_WORKER_PASSWORD,
// STARFORGE_WORKER_BASEDIR. --password-file FILE reads the password from
// a file, which keeps it out of the process list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/starforge/starforge/worker"
	"github.com/starforge/starforge/worker/donate"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// setting is a required value that a flag or an environment variable
// gives.
type setting struct {
	flag, env string
	value     *string
}

// run is main with its dependencies passed in; it returns the exit code.
func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 && args[0] == "status" {
		return runStatus(args[1:], stdout, stderr, getenv)
	}
	fs := flag.NewFlagSet("starforge-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		master       = fs.String("master", "", "the master's worker port, `HOST:PORT` (or a ws:// or wss:// URL); env STARFORGE_MASTER")
		name         = fs.String("name", "", "the worker's `NAME` as the master knows it; env STARFORGE_WORKER_NAME")
		password     = fs.String("password", "", "the worker's `PASSWORD`; env STARFORGE_WORKER_PASSWORD")
		passwordFile = fs.String("password-file", "", "read the password from `FILE` (its first line)")
		basedir      = fs.String("basedir", "", "the worker's base directory `DIR`, created if needed; env STARFORGE_WORKER_BASEDIR")
		showVersion  = fs.Bool("version", false, "print the version and exit")
		logLevel     = fs.String("log-level", "info", "log `LEVEL`: debug, info, warn or error")
		donating     = fs.Bool("donate", false, "donate this desktop: build only while its owner is away (see --donate --help)")
		donateConf   = fs.String("donate-config", "", "read donation settings from `FILE` (default BASEDIR/donate.conf if present)")
		resumeGrace  = fs.Duration("resume-grace", worker.DefaultResumeGrace, "keep running commands for `DURATION` after the connection to the master is lost, for a reconnect to take them up (0: cancel them at once)")
	)
	dc := donate.DefaultConfig()
	dc.Flags(fs)
	fs.Usage = func() { usage(fs, hasDonate(args)) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usageError := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "starforge-worker: "+format+"\n", a...)
		fmt.Fprintln(stderr, "Run 'starforge-worker --help' for usage.")
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q", fs.Arg(0))
	}
	if *showVersion {
		fmt.Fprintln(stdout, "starforge-worker", worker.Version)
		return exitOK
	}

	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !*donating {
		for n := range given {
			if donate.IsFlag(n) || n == "donate-config" {
				return usageError("--%s needs --donate", n)
			}
		}
	}
	if given["password-file"] {
		if given["password"] {
			return usageError("--password and --password-file are mutually exclusive")
		}
		p, err := readPasswordFile(*passwordFile)
		if err != nil {
			return usageError("--password-file: %v", err)
		}
		*password = p
		given["password"] = true
	}
	settings := []setting{
		{"master", "STARFORGE_MASTER", master},
		{"name", "STARFORGE_WORKER_NAME", name},
		{"password", "STARFORGE_WORKER_PASSWORD", password},
		{"basedir", "STARFORGE_WORKER_BASEDIR", basedir},
	}
	for _, s := range settings {
		if !given[s.flag] {
			*s.value = getenv(s.env)
		}
		if *s.value == "" {
			also := ""
			if s.flag == "password" {
				also = "--password-file, or "
			}
			return usageError("missing --%s (or %s%s)", s.flag, also, s.env)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	dir, err := prepareBasedir(*basedir)
	if err != nil {
		log.Error("cannot prepare the base directory", "basedir", *basedir, "err", err)
		return exitError
	}
	var donation *worker.Donation
	if *donating {
		path, optional := *donateConf, false
		if path == "" {
			path, optional = filepath.Join(dir, "donate.conf"), true
		}
		if err := donate.ReadFile(path, fs, given, optional); err != nil {
			return usageError("%v", err)
		}
		if err := dc.Check(); err != nil {
			return usageError("%v", err)
		}
		donation = newDonation(dc, getenv, log)
	}

	if *resumeGrace < 0 {
		return usageError("--resume-grace %v: must not be negative", *resumeGrace)
	}
	if *resumeGrace == 0 {
		*resumeGrace = -1 // the Agent's zero means the default
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &worker.Agent{
		Master:   *master,
		Name:     *name,
		Password: *password,
		Basedir:  dir,
		Logger:   log,
		Donation: donation,

		ResumeGrace: *resumeGrace,
	}
	log.Info("starforge-worker starting", "version", worker.Version, "master", *master, "name", *name, "basedir", dir)
	if err := a.Run(ctx); err != nil {
		log.Error("starforge-worker cannot run", "err", err)
		return exitError
	}
	log.Info("starforge-worker stopped")
	return exitOK
}

// readPasswordFile returns the first line of the file at path.
func readPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSuffix(line, "\r"), nil
}

// Default info files, as `buildbot-worker create-worker` writes them; the
// master shows them on the worker's page.
var defaultInfo = map[string]string{
	"admin": "Your Name Here <admin@youraddress.invalid>\n",
	"host":  "Please put a description of this build host here\n",
}

// prepareBasedir creates the base directory, and its info directory with
// the default files when there is none yet, and returns its absolute path.
func prepareBasedir(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	info := filepath.Join(dir, "info")
	if _, err := os.Stat(info); !errors.Is(err, os.ErrNotExist) {
		return dir, err // present (nil), or unreadable
	}
	if err := os.Mkdir(info, 0o755); err != nil {
		return "", err
	}
	for name, content := range defaultInfo {
		if err := os.WriteFile(filepath.Join(info, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}
