package sshd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// Exit codes of the commands.
const (
	ExitOK      = 0 // done
	ExitFailed  = 1 // a build waited for (--wait, --follow) did not succeed
	ExitUsage   = 2 // bad command, flag or argument; unknown builder, build, request or worker
	ExitRefused = 3 // the user's roles do not allow it, or the master refuses it now
	ExitError   = 4 // anything else: an invalid master.star on reconfig, the master stopping, a database error
)

// command is one command of the SSH interface.
type command struct {
	name     string
	synopsis string // after the name, for usage lines
	summary  string // one line, for help
	detail   string // more, for COMMAND --help; may be ""
	perm     string // the permission it needs; "" for any user
	minArgs  int    // positional arguments
	maxArgs  int    // -1: any number
	// define adds the command's flags to fs and returns the function that
	// runs it with the positional arguments, once fs is parsed.
	define func(fs *flag.FlagSet) func(c *cmdCtx, args []string) int
}

// commands is set by init: help refers to it.
var commands []*command

func init() {
	commands = []*command{
		helpCmd, whoamiCmd,
		buildersCmd, workersCmd, statusCmd, queueCmd, logsCmd,
		forceCmd, tryCmd, rebuildCmd, cancelCmd, stopCmd,
		pauseCmd, unpauseCmd, reconfigCmd, submitCmd,
	}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// cmdCtx is what a running command has.
type cmdCtx struct {
	ctx    context.Context
	s      *Server
	b      Backend
	cfg    *config.Config // in force when the command started
	user   string
	cmd    *command
	in     io.Reader
	out    io.Writer
	errOut io.Writer
}

// errorf reports a problem on stderr and returns code.
func (c *cmdCtx) errorf(code int, format string, args ...any) int {
	fmt.Fprintf(c.errOut, "starforge %s: %s\n", c.cmd.name, fmt.Sprintf(format, args...))
	return code
}

// fail reports err and returns the exit code it stands for.
func (c *cmdCtx) fail(err error) int {
	switch {
	case c.ctx.Err() != nil && c.s.base.Err() != nil:
		return c.errorf(ExitError, "the master is stopping; the command was interrupted")
	case c.ctx.Err() != nil:
		return ExitError // the client went away: nobody to tell
	}
	return c.errorf(exitCode(err), "%v", err)
}

// exitCode maps an error of the Backend to an exit code.
func exitCode(err error) int {
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		switch hs.HTTPStatus() {
		case http.StatusBadRequest, http.StatusNotFound:
			return ExitUsage
		case http.StatusForbidden, http.StatusConflict:
			return ExitRefused
		}
		return ExitError
	}
	if errors.Is(err, store.ErrNotFound) {
		return ExitUsage
	}
	return ExitError
}

// printJSON writes v as indented JSON.
func (c *cmdCtx) printJSON(v any) int {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail(err)
	}
	return ExitOK
}

// table returns a writer for aligned columns; call Flush when done.
func (c *cmdCtx) table(header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

// handle runs one session: the command the client sent, or help for a
// plain `ssh host`.
func (s *Server) handle(sess ssh.Session) {
	start := time.Now()
	ctx, cancel := context.WithCancel(s.base)
	defer cancel()
	defer context.AfterFunc(sess.Context(), cancel)()
	c := &cmdCtx{ctx: ctx, s: s, b: s.b, cfg: s.b.Config(), user: sess.User(), in: sess, out: sess, errOut: sess.Stderr()}
	argv := sess.Command()
	var code int
	if c.cfg.User(c.user) == nil {
		// Logged in under an earlier configuration.
		fmt.Fprintf(c.errOut, "starforge: user %q is no longer in the configuration\n", c.user)
		code = ExitRefused
	} else {
		code = s.run(c, argv)
	}
	s.log.Info("ssh: command", "user", c.user, "remote", sess.RemoteAddr().String(), "command", strings.Join(argv, " "),
		"exit", code, "duration", time.Since(start).Round(time.Millisecond))
	sess.Exit(code)
}

// run runs argv (a command and its arguments) for c.user and returns the
// exit code.
func (s *Server) run(c *cmdCtx, argv []string) int {
	if len(argv) == 0 {
		argv = []string{"help"}
	}
	cmd := lookup(argv[0])
	if cmd == nil {
		var names []string
		for _, x := range commands {
			names = append(names, x.name)
		}
		fmt.Fprintf(c.errOut, "starforge: unknown command %q%s; `help` lists the commands\n", argv[0], didYouMean(argv[0], names))
		return ExitUsage
	}
	c.cmd = cmd
	fs := newFlagSet(cmd.name)
	runFn := cmd.define(fs)
	args, perr := parseArgs(fs, argv[1:])
	if errors.Is(perr, flag.ErrHelp) {
		printUsage(c.out, cmd, fs)
		return ExitOK
	}
	if cmd.perm != "" && !c.cfg.AllowedAny(c.user, cmd.perm) {
		roles := "none"
		if u := c.cfg.User(c.user); u != nil && len(u.Roles) > 0 {
			roles = strings.Join(u.Roles, ", ")
		}
		return c.errorf(ExitRefused, "not allowed: %s needs the %q permission, which none of %s's roles (%s) grants",
			cmd.name, cmd.perm, c.user, roles)
	}
	if perr != nil {
		return c.usageError(fs, "%v", perr)
	}
	switch {
	case len(args) < cmd.minArgs:
		return c.usageError(fs, "missing argument")
	case cmd.maxArgs >= 0 && len(args) > cmd.maxArgs:
		return c.usageError(fs, "too many arguments: %s", strings.Join(args[cmd.maxArgs:], " "))
	}
	return runFn(c, args)
}

func (c *cmdCtx) usageError(fs *flag.FlagSet, format string, args ...any) int {
	c.errorf(ExitUsage, format, args...)
	fmt.Fprintf(c.errOut, "usage: %s %s\n(%s --help says more)\n", c.cmd.name, c.cmd.synopsis, c.cmd.name)
	return ExitUsage
}

func printUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s %s\n\n%s\n", cmd.name, cmd.synopsis, cmd.summary)
	if cmd.detail != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.detail))
	}
	if cmd.perm != "" {
		fmt.Fprintf(w, "\nNeeds the %q permission.\n", cmd.perm)
	}
	printFlags(w, fs)
}

var helpCmd = &command{
	name: "help", synopsis: "[COMMAND]", summary: "list the commands, or describe one", maxArgs: 1,
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		return func(c *cmdCtx, args []string) int {
			if len(args) == 1 {
				cmd := lookup(args[0])
				if cmd == nil {
					return c.errorf(ExitUsage, "unknown command %q", args[0])
				}
				fs := newFlagSet(cmd.name)
				cmd.define(fs)
				printUsage(c.out, cmd, fs)
				return ExitOK
			}
			fmt.Fprintf(c.out, "Starforge SSH interface (%s). Run: ssh [-p PORT] %s@HOST COMMAND [ARGS]\n\ncommands:\n", c.cfg.Master.Title, c.user)
			for _, cmd := range commands {
				note := ""
				if cmd.perm != "" && !c.cfg.Allowed(c.user, cmd.perm) {
					note = fmt.Sprintf(" (needs %q: not for you)", cmd.perm)
				}
				fmt.Fprintf(c.out, "  %-9s %s%s\n", cmd.name, cmd.summary, note)
			}
			fmt.Fprint(c.out, "\nCOMMAND --help (or help COMMAND) shows its arguments. BUILD is a build id or BUILDER/NUMBER.\n"+
				"Exit codes: 0 done, 1 build failed, 2 usage, 3 not allowed or refused, 4 other error.\n")
			return ExitOK
		}
	},
}

var whoamiCmd = &command{
	name: "whoami", summary: "show your user name, roles and permissions", maxArgs: 0,
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(c *cmdCtx, _ []string) int {
			u := c.cfg.User(c.user)
			perms := c.cfg.Permissions(c.user)
			if *asJSON {
				return c.printJSON(map[string]any{"user": u.Name, "roles": nonNil(u.Roles), "permissions": nonNil(perms)})
			}
			fmt.Fprintf(c.out, "user: %s\nroles: %s\npermissions: %s\n", u.Name, orNone(strings.Join(u.Roles, ", ")), orNone(strings.Join(perms, ", ")))
			return ExitOK
		}
	},
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// didYouMean suggests the closest of names to x, if one is close.
func didYouMean(x string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(x, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// allowedOn checks, for commands about one builder, that the user's roles
// grant perm on that builder (a role may be limited to some builders: the
// gate before the command only asked for perm somewhere). It reports the
// refusal and returns false if not.
func (c *cmdCtx) allowedOn(perm, builder string) bool {
	if c.cfg.AllowedOn(c.user, perm, builder) {
		return true
	}
	c.errorf(ExitRefused, "not allowed: %s on builder %s needs the %q permission for that builder, which none of %s's roles grants",
		c.cmd.name, builder, perm, c.user)
	return false
}
