package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

func runSendchange(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("sendchange", "--who AUTHOR [--repository URL] [--branch B] [--revision R] [--comments TEXT] [flags] [FILE...]", errOut)
	masterURL := fs.String("master", "", "the master's web URL (default: env STARFORGE_URL, else the address in BASEDIR/run/http.addr, else "+defaultMasterURL+")")
	basedir := fs.String("basedir", envOr("STARFORGE_BASEDIR", "."), "the running master's base directory, to find its address when --master is not given; env STARFORGE_BASEDIR")
	who := fs.String("who", "", "who made the change, e.g. \"Ann Dev <ann@example.org>\" (required)")
	repository := fs.String("repository", "", "the repository URL")
	branch := fs.String("branch", "", "the branch")
	revision := fs.String("revision", "", "the revision (commit id)")
	comments := fs.String("comments", "", "the commit message")
	logfile := fs.String("logfile", "", "read the commit message from this file (- for stdin)")
	project := fs.String("project", "", "the project")
	codebase := fs.String("codebase", "", "the codebase")
	category := fs.String("category", "", "the category")
	revlink := fs.String("revlink", "", "a URL that shows the revision")
	when := fs.String("when", "", "when the change was made: unix seconds or RFC 3339 (default: now)")
	props := propFlag{}
	fs.Var(props, "property", "a change property NAME=VALUE (repeatable)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(errOut, "starforge sendchange: "+format+"\n", args...)
		return code
	}
	if strings.TrimSpace(*who) == "" {
		return fail(ExitUsage, "--who is required: who made the change")
	}
	files := fs.Args()
	if !slices.Contains(args, "--") {
		for _, f := range files {
			if strings.HasPrefix(f, "-") {
				return fail(ExitUsage, "%s after the files: put flags first, or -- before files whose names start with -", f)
			}
		}
	}
	if *logfile != "" {
		if *comments != "" {
			return fail(ExitUsage, "give --comments or --logfile, not both")
		}
		text, err := readLogfile(*logfile)
		if err != nil {
			return fail(ExitUsage, "--logfile: %v", err)
		}
		*comments = text
	}
	change := map[string]any{"author": *who}
	for k, v := range map[string]string{"repository": *repository, "branch": *branch, "revision": *revision,
		"comments": *comments, "project": *project, "codebase": *codebase, "category": *category, "revlink": *revlink} {
		if v != "" {
			change[k] = v
		}
	}
	if *when != "" {
		t, err := parseWhen(*when)
		if err != nil {
			return fail(ExitUsage, "--when: %v", err)
		}
		change["when_timestamp"] = t
	}
	if len(files) > 0 {
		change["files"] = files
	}
	if len(props) > 0 {
		change["properties"] = map[string]string(props)
	}
	raw, explicit := *masterURL, true
	if raw == "" {
		var err error
		if raw, explicit, err = masterAddress(fs, *basedir); err != nil {
			return fail(ExitProblem, "%v", err)
		}
	}
	c, err := newClient(raw)
	if err != nil {
		if explicit {
			return fail(ExitUsage, "--master: %v", err)
		}
		return fail(ExitProblem, "master address %q: %v", raw, err)
	}
	var resp struct {
		Changes []struct {
			ID int64 `json:"changeid"`
		} `json:"changes"`
	}
	if err := c.postJSON(ctx, "changes", change, &resp); err != nil {
		return fail(ExitProblem, "%v", err)
	}
	if len(resp.Changes) == 0 {
		return fail(ExitProblem, "the master created no change")
	}
	for _, ch := range resp.Changes {
		fmt.Fprintf(out, "created change %d\n", ch.ID)
	}
	return ExitOK
}

// masterAddress finds the master when --master is not given: STARFORGE_URL,
// else the address the master in basedir wrote to run/http.addr, else the
// default. explicit reports whether the user chose it (env or --basedir).
func masterAddress(flags *flag.FlagSet, basedir string) (addr string, explicit bool, err error) {
	if u := os.Getenv("STARFORGE_URL"); u != "" {
		return u, true, nil
	}
	basedirGiven := os.Getenv("STARFORGE_BASEDIR") != ""
	flags.Visit(func(f *flag.Flag) { basedirGiven = basedirGiven || f.Name == "basedir" })
	path := filepath.Join(basedir, "run", "http.addr")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !basedirGiven:
		return defaultMasterURL, false, nil
	case errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("no running master in %s (%s does not exist); give --master URL", basedir, path)
	case err != nil:
		return "", false, fmt.Errorf("reading the master's address: %w", err)
	}
	host, port, err := net.SplitHostPort(strings.TrimSpace(string(b)))
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", path, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every address: this machine's is one of them
	}
	return "http://" + net.JoinHostPort(host, port) + "/", false, nil
}

func readLogfile(name string) (string, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// parseWhen reads unix seconds or an RFC 3339 time.
func parseWhen(s string) (float64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("want unix seconds or an RFC 3339 time, got %q", s)
		}
		return f, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, fmt.Errorf("want unix seconds or an RFC 3339 time such as 2024-05-01T12:00:00Z, got %q", s)
	}
	return float64(t.UnixNano()) / 1e9, nil
}

// postJSON POSTs body as JSON to api/v2/path and decodes the reply into v.
func (c *client) postJSON(ctx context.Context, path string, body, v any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(path), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, v)
}
