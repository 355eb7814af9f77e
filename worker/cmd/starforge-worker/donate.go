package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/starforge/starforge/worker"
	"github.com/starforge/starforge/worker/donate"
)

// idleFileEnv points the owner's idle time at a file's modification time
// instead of the machine's input (touching the file is input). It is for
// tests, which must drive the owner without a keyboard.
const idleFileEnv = "STARFORGE_DONATE_IDLE_FILE"

// newDonation turns the donation settings into the agent's Donation: it
// finds the idle sources that work here and says which do not.
func newDonation(c *donate.Config, getenv func(string) string, log *slog.Logger) *worker.Donation {
	d := &worker.Donation{Policy: c.Settings, Limits: c.Limits}
	if f := getenv(idleFileEnv); f != "" {
		d.Idle = donate.FileIdle{Path: f}
		log.Warn("donate: the owner's idle time comes from a file (" + idleFileEnv + "), not from the machine's input")
	} else {
		works, notes := donate.DetectIdle(time.Now(), strings.Fields(c.IdleCommand))
		for _, n := range notes {
			log.Info("donate: idle source does not work here", "source", n)
		}
		if len(works) == 0 {
			msg := "no way to see the owner's keyboard and mouse here; going by the CPU load alone"
			log.Warn("donate: " + msg)
			d.Notes = append(d.Notes, msg)
		} else {
			d.Idle = donate.CombineIdle(works...)
			log.Info("donate: watching the owner's input", "sources", d.Idle.Name())
		}
	}
	s := c.Settings
	log.Info("donate: policy",
		"idle_threshold", s.IdleThreshold, "max_foreign_load", s.ForeignLoad, "allow_battery", s.AllowBattery,
		"windows", len(s.Windows), "on_owner", s.ActionFor(""), "max_freeze", s.MaxFreeze,
		"disk_floor", donate.FormatSize(s.DiskFloor), "exclusive_apps", strings.Join(s.ExclusiveApps, ","))
	return d
}

// hasDonate reports whether args ask for donation, for the help text.
func hasDonate(args []string) bool {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--donate" || a == "-donate" || strings.HasPrefix(a, "--donate=") || strings.HasPrefix(a, "-donate=") {
			return !strings.HasSuffix(a, "=false")
		}
	}
	return false
}

// usage prints the flags; the donation settings only with --donate.
func usage(fs *flag.FlagSet, donating bool) {
	out := fs.Output()
	fmt.Fprintf(out, "Usage: starforge-worker --master HOST:PORT --name NAME --password PASS --basedir DIR [--donate ...]\n")
	fmt.Fprintf(out, "       starforge-worker status [--basedir DIR]\n\n")
	printFlags(fs, func(f *flag.Flag) bool { return !donate.IsFlag(f.Name) })
	if !donating {
		fmt.Fprintf(out, "\nRun 'starforge-worker --donate --help' for the settings of a donated desktop.\n")
		return
	}
	fmt.Fprintf(out, "\nDonation settings (with --donate). Each may also be set in the config file\n"+
		"(--donate-config, default BASEDIR/donate.conf) as \"name = value\" lines;\n"+
		"the command line wins. Defaults in parentheses.\n\n")
	printFlags(fs, func(f *flag.Flag) bool { return donate.IsFlag(f.Name) })
}

// printFlags prints the flags keep accepts, as flag.PrintDefaults does.
func printFlags(fs *flag.FlagSet, keep func(*flag.Flag) bool) {
	sub := flag.NewFlagSet("", flag.ContinueOnError)
	sub.SetOutput(fs.Output())
	fs.VisitAll(func(f *flag.Flag) {
		if keep(f) {
			sub.Var(f.Value, f.Name, f.Usage)
			sub.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	sub.PrintDefaults()
}

// runStatus implements `starforge-worker status [--basedir DIR]`.
func runStatus(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("starforge-worker status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	basedir := fs.String("basedir", "", "the worker's base directory `DIR`; env STARFORGE_WORKER_BASEDIR, default the current directory")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: starforge-worker status [--basedir DIR]\n\nSays what a donating worker does and why.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "starforge-worker status: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	dir := *basedir
	if dir == "" {
		dir = getenv("STARFORGE_WORKER_BASEDIR")
	}
	if dir == "" {
		dir = "."
	}
	path := filepath.Join(dir, worker.StatusFileName)
	r, err := donate.ReadStatus(path)
	if os.IsNotExist(err) {
		fmt.Fprintf(stderr, "starforge-worker status: no donating worker has run in %s (no %s); start one with --donate\n", dir, worker.StatusFileName)
		return exitError
	}
	if err != nil {
		fmt.Fprintf(stderr, "starforge-worker status: %v\n", err)
		return exitError
	}
	fmt.Fprint(stdout, r.Format(time.Now()))
	if r.Stopped || time.Since(r.Updated) > 3*donate.StatusEvery {
		return exitError
	}
	return exitOK
}
