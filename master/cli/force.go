package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/starforge/starforge/master/result"
)

// defaultMasterURL is where the admin commands look for the master when
// neither --master nor STARFORGE_URL says otherwise.
const defaultMasterURL = "http://127.0.0.1:8010/"

// pollInterval is how often --wait asks the master for progress.
const pollInterval = 250 * time.Millisecond

func runForce(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("force", "[--master URL] [--param NAME=VALUE]... [--prop NAME=VALUE]... [--reason TEXT] [--wait] BUILDER", errOut)
	masterURL := fs.String("master", envOr("STARFORGE_URL", defaultMasterURL), "the master's web URL; env STARFORGE_URL")
	reason := fs.String("reason", "forced from the command line", "why the build is forced")
	owner := fs.String("owner", envOr("USER", "cli"), "who forces the build")
	wait := fs.Bool("wait", false, "follow the build, print its steps, and exit non-zero unless it succeeded")
	props := propFlag{}
	fs.Var(props, "prop", "a free-form build property NAME=VALUE (repeatable)")
	params := paramFlag{}
	fs.Var(params, "param", "a value for the force scheduler's parameter NAME: its name, or a codebase field such as branch or lib_revision;\nrepeat NAME for a multiple choice")
	// Allow flags after the builder name, as people type them.
	ordered, err := reorderFlags(args)
	if err != nil {
		fmt.Fprintf(errOut, "starforge force: %v\n", err)
		fs.Usage()
		return ExitUsage
	}
	if code, ok := parse(fs, ordered); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return ExitUsage
	}
	builder := fs.Arg(0)
	for k := range props {
		switch k {
		case "reason", "owner":
			fmt.Fprintf(errOut, "starforge force: --prop %s: that is the force request's own field; use --%s\n", k, k)
			return ExitUsage
		case "username", "builderNames":
			fmt.Fprintf(errOut, "starforge force: --prop %s: that name is reserved by the force request; choose another property name\n", k)
			return ExitUsage
		}
	}
	for k := range params {
		switch k {
		case "reason", "owner", "username":
			// The built-in fields fill a parameter named "reason" and the
			// username parameter.
			flag := k
			if k == "username" {
				flag = "owner"
			}
			fmt.Fprintf(errOut, "starforge force: --param %s: use --%s\n", k, flag)
			return ExitUsage
		case "builderNames":
			fmt.Fprintf(errOut, "starforge force: --param %s: that name is reserved by the force request\n", k)
			return ExitUsage
		}
		if _, dup := props[k]; dup {
			fmt.Fprintf(errOut, "starforge force: %s is given both as --param and as --prop\n", k)
			return ExitUsage
		}
	}
	c, err := newClient(*masterURL)
	if err != nil {
		fmt.Fprintf(errOut, "starforge force: --master: %v\n", err)
		return ExitUsage
	}
	sched, err := c.forceSchedulerFor(ctx, builder)
	if err != nil {
		fmt.Fprintf(errOut, "starforge force: %v\n", err)
		return ExitProblem
	}
	rpcParams := map[string]any{"builderNames": []string{builder}, "reason": *reason, "owner": *owner}
	for k, v := range props {
		rpcParams[k] = v
	}
	for k, vs := range params {
		if len(vs) == 1 {
			rpcParams[k] = vs[0]
		} else {
			rpcParams[k] = vs
		}
	}
	var res []json.RawMessage
	if err := c.rpc(ctx, "forceschedulers/"+url.PathEscape(sched), "force", rpcParams, &res); err != nil {
		fmt.Fprintf(errOut, "starforge force: %v\n", err)
		return ExitProblem
	}
	var bsid int64
	reqs := map[string]int64{}
	if len(res) != 2 || json.Unmarshal(res[0], &bsid) != nil || json.Unmarshal(res[1], &reqs) != nil {
		fmt.Fprintf(errOut, "starforge force: unexpected answer from the master: %s\n", joinRaw(res))
		return ExitProblem
	}
	var reqIDs []int64
	for _, id := range reqs {
		reqIDs = append(reqIDs, id)
	}
	sort.Slice(reqIDs, func(i, j int) bool { return reqIDs[i] < reqIDs[j] })
	fmt.Fprintf(out, "queued buildset %d: build request %s for %s\n", bsid, joinIDs(reqIDs), builder)
	if !*wait {
		return ExitOK
	}
	code := ExitOK
	for _, id := range reqIDs {
		r, err := c.follow(ctx, id, out)
		if err != nil {
			fmt.Fprintf(errOut, "starforge force: %v\n", err)
			return ExitProblem
		}
		// Skipped: collapsed into another build, which covers it.
		if r != result.Success && r != result.Warnings && r != result.Skipped {
			code = ExitFailed
		}
	}
	return code
}

// reorderFlags moves flags after positional arguments to the front, so
// "force proj --wait" works like "force --wait proj". A value flag at the
// end with no value is an error (moved to the front it would take the
// builder's name as its value).
func reorderFlags(args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue(name) {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("flag %s needs a value", a)
				}
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...), nil
}

func takesValue(name string) bool {
	switch name {
	case "master", "reason", "owner", "prop", "param", "token":
		return true
	}
	return false
}

// paramFlag collects repeated --param NAME=VALUE flags; a name given more
// than once gets a list (a multiple choice).
type paramFlag map[string][]string

func (p paramFlag) String() string {
	var s []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		for _, v := range p[k] {
			s = append(s, k+"="+v)
		}
	}
	return strings.Join(s, ",")
}

func (p paramFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", s)
	}
	p[k] = append(p[k], v)
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func joinIDs(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ", ")
}

func joinRaw(r []json.RawMessage) string {
	s := make([]string, len(r))
	for i, m := range r {
		s[i] = string(m)
	}
	return "[" + strings.Join(s, ",") + "]"
}

// client talks to the master's REST API.
type client struct {
	base  *url.URL
	http  *http.Client
	token string // an API token; "" for env STARFORGE_TOKEN
	// tokenHint is added to a 401 when no token was given: how to give
	// one; "" for the environment variable.
	tokenHint string
}

func newClient(raw string) (*client, error) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("want an http:// or https:// URL, got %q", raw)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return &client{base: u, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (c *client) url(path string) string {
	return c.base.ResolveReference(&url.URL{Path: "api/v2/" + path}).String()
}

// get fetches api/v2/path (with query) into v.
func (c *client) get(ctx context.Context, path string, query url.Values, v any) error {
	u := c.url(path)
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	return c.do(req, v)
}

func (c *client) do(req *http.Request, v any) error {
	if token := c.authToken(); token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the master: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", req.URL, err)
	}
	if resp.StatusCode >= 300 {
		return c.answerError(req, resp, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode answer from %s: %w", req.URL, err)
	}
	return nil
}

// authToken is the API token to send: --token's, or env STARFORGE_TOKEN
// (for masters with logins).
func (c *client) authToken() string {
	if c.token != "" {
		return c.token
	}
	return os.Getenv("STARFORGE_TOKEN")
}

// answerError describes an answer that is not the one hoped for.
func (c *client) answerError(req *http.Request, resp *http.Response, body []byte) error {
	// {"error": "..."}, or a JSON-RPC {"error": {"message": "..."}} from
	// the authentication in front of every POST.
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 {
		var rpc struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(e.Error, &msg) != nil && json.Unmarshal(e.Error, &rpc) == nil {
			msg = rpc.Message
		}
	}
	if msg != "" {
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized && c.authToken() == "" {
			hint = " (" + cmp.Or(c.tokenHint, "set STARFORGE_TOKEN to one of your API tokens") + ")"
		}
		return fmt.Errorf("master refused: %s%s", msg, hint)
	}
	return fmt.Errorf("%s %s: %s", req.Method, req.URL, resp.Status)
}

// rpc calls a Buildbot-style JSON-RPC control endpoint.
func (c *client) rpc(ctx context.Context, path, method string, params map[string]any, result any) error {
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "id": 1, "params": params})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(path), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	var resp struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := c.do(req, &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return fmt.Errorf("master refused: %s", resp.Error.Message)
	}
	return json.Unmarshal(resp.Result, result)
}

func (c *client) forceSchedulerFor(ctx context.Context, builder string) (string, error) {
	var resp struct {
		Schedulers []struct {
			Name     string   `json:"name"`
			Builders []string `json:"builder_names"`
		} `json:"forceschedulers"`
	}
	if err := c.get(ctx, "forceschedulers", nil, &resp); err != nil {
		return "", err
	}
	var names []string
	for _, s := range resp.Schedulers {
		for _, b := range s.Builders {
			if b == builder {
				return s.Name, nil
			}
			names = append(names, b)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("the master has no force_scheduler, so no builder can be forced")
	}
	sort.Strings(names)
	return "", fmt.Errorf("no force_scheduler lists builder %q (forceable: %s)", builder, strings.Join(names, ", "))
}

type apiBuild struct {
	ID          int64    `json:"buildid"`
	Number      int      `json:"number"`
	Builder     string   `json:"builder_name"`
	Worker      string   `json:"worker_name"`
	Complete    bool     `json:"complete"`
	Results     *int     `json:"results"`
	StateString string   `json:"state_string"`
	StartedAt   *float64 `json:"started_at"`
	CompleteAt  *float64 `json:"complete_at"`
}

type apiStep struct {
	ID          int64    `json:"stepid"`
	Number      int      `json:"number"`
	Name        string   `json:"name"`
	Complete    bool     `json:"complete"`
	Results     *int     `json:"results"`
	StateString string   `json:"state_string"`
	StartedAt   *float64 `json:"started_at"`
	CompleteAt  *float64 `json:"complete_at"`
}

// follow prints the progress of the builds of one request until one ends
// with a result other than RETRY, and returns that result.
func (c *client) follow(ctx context.Context, reqID int64, out io.Writer) (result.Result, error) {
	seen := map[int64]bool{}  // builds announced
	done := map[int64]bool{}  // steps printed
	ended := map[int64]bool{} // builds whose end was printed
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		var resp struct {
			Builds []apiBuild `json:"builds"`
		}
		q := url.Values{"buildrequestid": {strconv.FormatInt(reqID, 10)}}
		if err := c.get(ctx, "builds", q, &resp); err != nil {
			return result.None, err
		}
		sort.Slice(resp.Builds, func(i, j int) bool { return resp.Builds[i].ID < resp.Builds[j].ID })
		// A request can end without a build of its own: cancelled (its
		// builder removed by a reconfig) or collapsed into another build.
		if n := len(resp.Builds); n == 0 || (resp.Builds[n-1].Complete && resp.Builds[n-1].Results != nil &&
			result.Result(*resp.Builds[n-1].Results) == result.Retry) {
			if r, done, err := c.requestEnded(ctx, reqID, out); err != nil || done {
				return r, err
			}
		}
		for _, b := range resp.Builds {
			if ended[b.ID] {
				continue
			}
			if !seen[b.ID] {
				seen[b.ID] = true
				fmt.Fprintf(out, "build %s #%d started on %s\n", b.Builder, b.Number, b.Worker)
			}
			var steps struct {
				Steps []apiStep `json:"steps"`
			}
			if err := c.get(ctx, fmt.Sprintf("builds/%d/steps", b.ID), nil, &steps); err != nil {
				return result.None, err
			}
			for _, s := range steps.Steps {
				if s.Complete && !done[s.ID] {
					done[s.ID] = true
					fmt.Fprintf(out, "  %-9s %-20s %8s  %s\n", resultName(s.Results), s.Name, duration(s.StartedAt, s.CompleteAt), s.StateString)
				}
			}
			if b.Complete && !ended[b.ID] {
				ended[b.ID] = true
				r := result.Result(*b.Results)
				fmt.Fprintf(out, "build %s #%d: %s (%s) in %s\n", b.Builder, b.Number, r, b.StateString, duration(b.StartedAt, b.CompleteAt))
				if r != result.Retry && b.ID == resp.Builds[len(resp.Builds)-1].ID {
					return r, nil
				}
				if r == result.Retry && b.ID == resp.Builds[len(resp.Builds)-1].ID {
					fmt.Fprintln(out, "the build will be retried")
				}
			}
		}
		select {
		case <-ctx.Done():
			return result.None, errors.New("interrupted while waiting for the build")
		case <-t.C:
		}
	}
}

// requestEnded reports whether request id completed, printing how and
// why, and with what result.
func (c *client) requestEnded(ctx context.Context, id int64, out io.Writer) (result.Result, bool, error) {
	var resp struct {
		Requests []struct {
			Complete     bool    `json:"complete"`
			Results      *int    `json:"results"`
			CancelReason *string `json:"cancel_reason"`
		} `json:"buildrequests"`
	}
	if err := c.get(ctx, fmt.Sprintf("buildrequests/%d", id), nil, &resp); err != nil {
		return result.None, false, err
	}
	if len(resp.Requests) != 1 || !resp.Requests[0].Complete || resp.Requests[0].Results == nil {
		return result.None, false, nil
	}
	r := result.Result(*resp.Requests[0].Results)
	why := ""
	if p := resp.Requests[0].CancelReason; p != nil {
		why = ": " + *p
	}
	fmt.Fprintf(out, "build request %d ended %s without a build of its own%s\n", id, r, why)
	return r, true, nil
}

func resultName(r *int) string {
	if r == nil {
		return "-"
	}
	return result.Result(*r).String()
}

func duration(start, end *float64) string {
	if start == nil || end == nil {
		return ""
	}
	d := time.Duration((*end - *start) * float64(time.Second))
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
