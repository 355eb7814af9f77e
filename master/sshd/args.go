package sshd

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// parseArgs parses args with fs and returns the positional arguments.
// Flags may come after positional arguments, as people type them
// ("force proj --wait"); "--" ends the flags. A value flag may be given
// as "--name value" or "--name=value".
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBoolFlag(f) {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag needs an argument: %s", a)
			}
			flags = append(flags, args[i+1])
			i++
		}
	}
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return append(pos, fs.Args()...), nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// newFlagSet returns a flag set that neither prints nor exits: the
// caller reports errors its own way.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// printFlags writes fs's flags as "--name VALUE  usage", sorted.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	var fl []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { fl = append(fl, f) })
	if len(fl) == 0 {
		return
	}
	sort.Slice(fl, func(i, j int) bool { return fl[i].Name < fl[j].Name })
	fmt.Fprintln(w, "\nflags:")
	for _, f := range fl {
		arg, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if arg != "" && !isBoolFlag(f) {
			left += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  %-22s %s\n", left, usage)
	}
}

// propFlag collects repeated --prop NAME=VALUE flags.
type propFlag map[string]string

func (p propFlag) String() string { return "" }

func (p propFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", s)
	}
	if _, dup := p[k]; dup {
		return fmt.Errorf("property %q given twice", k)
	}
	p[k] = v
	return nil
}

// buildRef is a BUILD argument: an id, or BUILDER/NUMBER.
type buildRef struct {
	id      int64
	builder string
	number  int
}

func (r buildRef) String() string {
	if r.builder != "" {
		return fmt.Sprintf("%s/%d", r.builder, r.number)
	}
	return strconv.FormatInt(r.id, 10)
}

// parseBuildRef reads "123" (a build id) or "BUILDER/NUMBER" (the
// builder's build number NUMBER; the builder's name may contain "/").
func parseBuildRef(s string) (buildRef, error) {
	if id, err := strconv.ParseInt(s, 10, 64); err == nil {
		if id <= 0 {
			return buildRef{}, fmt.Errorf("build id %d: want a positive number", id)
		}
		return buildRef{id: id}, nil
	}
	i := strings.LastIndexByte(s, '/')
	if i > 0 {
		n, err := strconv.Atoi(s[i+1:])
		if err == nil && n > 0 {
			return buildRef{builder: s[:i], number: n}, nil
		}
	}
	return buildRef{}, fmt.Errorf("want a build id (123) or BUILDER/NUMBER (proj/12), got %q", s)
}

// parseID reads a positive id such as a build request's.
func parseID(what, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("want a %s id (a positive number), got %q", what, s)
	}
	return id, nil
}
