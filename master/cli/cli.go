// Package cli implements the starforge command's subcommands: the master
// daemon and the admin tools that talk to it.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master"
	"github.com/starforge/starforge/plugins/star"
)

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// Exit codes.
const (
	ExitOK      = 0
	ExitFailed  = 1 // the operation ran and failed (a build did not succeed, a config is invalid)
	ExitUsage   = 2
	ExitProblem = 3 // could not do what was asked (master unreachable, refused)
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, out, errOut io.Writer) int
}

var commands = []command{
	{"master", "run the master daemon", runMaster},
	{"checkconfig", "check a master.star and summarise it", runCheckconfig},
	{"force", "queue a build through the REST API", runForce},
	{"sendchange", "send a change to the master through the REST API", runSendchange},
	{"submit", "submit a package job (a directory with job.json) to the master", runSubmit},
	{"reconfig", "make a running master load its configuration again", runReconfig},
	{"stop", "stop a running master, letting running builds finish", runStop},
	{"version", "print the version", runVersion},
}

// Main runs the command line args (without the program name) and returns
// the exit code.
func Main(ctx context.Context, args []string, out, errOut io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(errOut)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], out, errOut)
		}
	}
	fmt.Fprintf(errOut, "starforge: unknown command %q\n\n", args[0])
	usage(errOut)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: starforge COMMAND [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'starforge COMMAND --help' for a command's flags.")
}

// newFlags returns a FlagSet that reports to errOut and does not exit.
func newFlags(name, args string, errOut io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() {
		fmt.Fprintf(errOut, "usage: starforge %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; it returns an exit code and false when the command
// must stop (help asked, or a usage error).
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK, false
		}
		return ExitUsage, false
	}
	return 0, true
}

func runCheckconfig(_ context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("checkconfig", "FILE", errOut)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return ExitUsage
	}
	cfg, err := config.LoadWith(fs.Arg(0), config.Options{Library: star.Library})
	if err != nil {
		fmt.Fprintln(errOut, err)
		var errs config.Errors
		if errors.As(err, &errs) && len(errs) > 1 {
			fmt.Fprintf(errOut, "%d errors\n", len(errs))
		}
		return ExitFailed
	}
	fmt.Fprintf(out, "%s: OK: %s\n", fs.Arg(0), cfg.Summary())
	return ExitOK
}

func runMaster(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("master", "--basedir DIR [--config FILE]", errOut)
	basedir := fs.String("basedir", os.Getenv("STARFORGE_BASEDIR"), "the master's base directory (database, uploads); env STARFORGE_BASEDIR")
	cfgPath := fs.String("config", "", "the configuration file (default BASEDIR/master.star)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *basedir == "" {
		fmt.Fprintln(errOut, "starforge master: --basedir is required (or set STARFORGE_BASEDIR)")
		return ExitUsage
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(errOut, "starforge master: --log-level: %v\n", err)
		return ExitUsage
	}
	log := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: lvl}))
	m, err := master.New(master.Options{Basedir: *basedir, ConfigPath: *cfgPath, Logger: log})
	if err != nil {
		fmt.Fprintln(errOut, err)
		return ExitFailed
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if _, err := m.Reconfig(ctx); err != nil {
					log.Error("reconfig refused; the running configuration is unchanged", "err", err)
				}
			}
		}
	}()
	go func() {
		select {
		case <-m.Ready():
			ssh := ""
			if a := m.SSHAddr(); a != "" {
				ssh = " , ssh at " + a
			}
			fmt.Fprintf(out, "Starforge master running: web UI at http://%s/ , workers connect to %s%s\n", m.HTTPAddr(), m.WorkerAddr(), ssh)
		case <-ctx.Done():
		}
	}()
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(errOut, err)
		return ExitFailed
	}
	return ExitOK
}

// propFlag collects repeated --prop k=v flags.
type propFlag map[string]string

func (p propFlag) String() string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k+"="+p[k])
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (p propFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", s)
	}
	p[k] = v
	return nil
}

func runVersion(_ context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("version", "", errOut)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return ExitUsage
	}
	fmt.Fprintln(out, "starforge", Version)
	return ExitOK
}

func runReconfig(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("reconfig", "[--basedir DIR]", errOut)
	basedir := fs.String("basedir", envOr("STARFORGE_BASEDIR", "."), "the running master's base directory; env STARFORGE_BASEDIR")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	reply, err := master.SendControl(ctx, *basedir, master.ControlRequest{Command: "reconfig"})
	if err != nil {
		fmt.Fprintf(errOut, "starforge reconfig: %v\n", err)
		return ExitProblem
	}
	if !reply.OK {
		fmt.Fprintf(errOut, "starforge reconfig: the configuration was not changed:\n%s\n", reply.Error)
		return ExitFailed
	}
	fmt.Fprintln(out, reply.Message)
	return ExitOK
}

func runStop(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("stop", "[--basedir DIR] [--timeout DURATION | --now]", errOut)
	basedir := fs.String("basedir", envOr("STARFORGE_BASEDIR", "."), "the running master's base directory; env STARFORGE_BASEDIR")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long running builds may take to finish before they are interrupted (RETRY) and requeued")
	now := fs.Bool("now", false, "interrupt running builds at once (they end RETRY and are requeued)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 || *timeout < 0 {
		fs.Usage()
		return ExitUsage
	}
	grace := *timeout
	if *now {
		grace = 0
	}
	reply, err := master.SendControl(ctx, *basedir, master.ControlRequest{Command: "stop", GraceSeconds: grace.Seconds()})
	if err != nil {
		fmt.Fprintf(errOut, "starforge stop: %v\n", err)
		return ExitProblem
	}
	if !reply.OK {
		fmt.Fprintf(errOut, "starforge stop: %s\n", reply.Error)
		return ExitProblem
	}
	fmt.Fprintln(out, reply.Message)
	return ExitOK
}
