package sshd

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args    []string
		pos     []string
		wait    bool
		reason  string
		props   map[string]string
		wantErr string
	}{
		{args: nil, pos: nil},
		{args: []string{"proj"}, pos: []string{"proj"}},
		{args: []string{"proj", "--wait"}, pos: []string{"proj"}, wait: true},
		{args: []string{"--wait", "proj"}, pos: []string{"proj"}, wait: true},
		{args: []string{"proj", "--reason", "fix it", "--wait"}, pos: []string{"proj"}, wait: true, reason: "fix it"},
		{args: []string{"proj", "--reason=x"}, pos: []string{"proj"}, reason: "x"},
		{args: []string{"-reason", "x", "a", "b"}, pos: []string{"a", "b"}, reason: "x"},
		{args: []string{"a", "--prop", "k=v", "--prop=k2=v=2"}, pos: []string{"a"}, props: map[string]string{"k": "v", "k2": "v=2"}},
		{args: []string{"a", "--", "--wait"}, pos: []string{"a", "--wait"}},
		{args: []string{"-", "a"}, pos: []string{"-", "a"}}, // "-" is an argument
		{args: []string{"a", "--reason"}, wantErr: "flag needs an argument: --reason"},
		{args: []string{"a", "--nope"}, wantErr: "flag provided but not defined: -nope"},
		{args: []string{"a", "--prop", "novalue"}, wantErr: `want NAME=VALUE, got "novalue"`},
		{args: []string{"a", "--prop", "k=1", "--prop", "k=2"}, wantErr: `property "k" given twice`},
		{args: []string{"a", "--wait=maybe"}, wantErr: "invalid boolean value"},
		{args: []string{"--help"}, wantErr: flag.ErrHelp.Error()},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := newFlagSet("x")
			wait := fs.Bool("wait", false, "")
			reason := fs.String("reason", "", "")
			props := propFlag{}
			fs.Var(props, "prop", "")
			pos, err := parseArgs(fs, tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.pos) || *wait != tt.wait || *reason != tt.reason {
				t.Errorf("got %q wait=%v reason=%q", pos, *wait, *reason)
			}
			if tt.props != nil && fmt.Sprint(map[string]string(props)) != fmt.Sprint(tt.props) {
				t.Errorf("props %v, want %v", props, tt.props)
			}
		})
	}
}

func TestParseBuildRef(t *testing.T) {
	tests := []struct {
		in   string
		want buildRef
		err  bool
	}{
		{in: "12", want: buildRef{id: 12}},
		{in: "proj/3", want: buildRef{builder: "proj", number: 3}},
		{in: "team/proj/3", want: buildRef{builder: "team/proj", number: 3}},
		{in: "0", err: true},
		{in: "-4", err: true},
		{in: "proj", err: true},
		{in: "proj/", err: true},
		{in: "proj/0", err: true},
		{in: "/3", err: true},
		{in: "proj/x", err: true},
	}
	for _, tt := range tests {
		got, err := parseBuildRef(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseBuildRef(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

type statusErr int

func (e statusErr) Error() string   { return http.StatusText(int(e)) }
func (e statusErr) HTTPStatus() int { return int(e) }

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{statusErr(400), ExitUsage},
		{statusErr(404), ExitUsage},
		{fmt.Errorf("wrapped: %w", statusErr(403)), ExitRefused},
		{statusErr(409), ExitRefused},
		{statusErr(500), ExitError},
		{fmt.Errorf("get: %w", store.ErrNotFound), ExitUsage},
		{errors.New("disk on fire"), ExitError},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestLineWriter(t *testing.T) {
	var b bytes.Buffer
	lw := &lineWriter{w: &b, stream: true}
	lw.Write([]byte("hheader\nostdout\ne"))
	lw.Write([]byte("stderr\n\n"))
	lw.Write([]byte("olast"))
	lw.flush()
	if got, want := b.String(), "header\nstdout\nstderr\n\nlast\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	b.Reset()
	raw := &lineWriter{w: &b}
	raw.Write([]byte("ohtml <b>\n"))
	if b.String() != "ohtml <b>\n" {
		t.Errorf("raw log changed: %q", b.String())
	}
}

// fakeBackend answers from a configuration and a real store; its
// operations record their calls and fail with errReached.
type fakeBackend struct {
	st *store.Store

	mu    sync.Mutex
	cfg   *config.Config
	calls []string
	// submit, if set, answers SubmitJob (submit_test.go).
	submit func(ctx context.Context, r io.Reader, submitter string) (store.Job, error)
}

var errReached = errors.New("reached the backend")

func (f *fakeBackend) Config() *config.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg
}

func (f *fakeBackend) setConfig(c *config.Config) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg = c
}

func (f *fakeBackend) Store() *store.Store                  { return f.st }
func (f *fakeBackend) QueueReasons() map[int64]string       { return nil }
func (f *fakeBackend) Subscribe() (<-chan struct{}, func()) { return make(chan struct{}), func() {} }
func (f *fakeBackend) call(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	return errReached
}
func (f *fakeBackend) Force(_ context.Context, r ForceRequest) (store.Buildset, []store.BuildRequest, error) {
	return store.Buildset{}, nil, f.call("force " + r.Builder)
}
func (f *fakeBackend) Try(_ context.Context, r TryRequest) (store.Buildset, []store.BuildRequest, error) {
	return store.Buildset{}, nil, f.call("try " + strings.Join(r.Builders, " ") + ": " + string(r.Patch))
}
func (f *fakeBackend) Rebuild(_ context.Context, id int64, owner string) (store.Buildset, []store.BuildRequest, error) {
	return store.Buildset{}, nil, f.call(fmt.Sprintf("rebuild %d", id))
}
func (f *fakeBackend) CancelRequest(_ context.Context, id int64, reason string) error {
	return f.call(fmt.Sprintf("cancel %d", id))
}
func (f *fakeBackend) StopBuild(_ context.Context, id int64, reason string) error {
	return f.call(fmt.Sprintf("stop %d", id))
}
func (f *fakeBackend) PauseWorker(_ context.Context, name, reason string) error {
	return f.call("pause " + name)
}
func (f *fakeBackend) UnpauseWorker(_ context.Context, name, reason string) error {
	return f.call("unpause " + name)
}
func (f *fakeBackend) SubmitJob(ctx context.Context, r io.Reader, submitter string) (store.Job, error) {
	if f.submit != nil {
		return f.submit(ctx, r, submitter)
	}
	return store.Job{}, f.call("submit " + submitter)
}
func (f *fakeBackend) Reconfig(context.Context) (ReconfigResult, error) {
	return ReconfigResult{}, f.call("reconfig")
}

// loadConfig loads master.star source written to dir.
func loadConfig(t *testing.T, dir, src string) *config.Config {
	t.Helper()
	file := filepath.Join(dir, "master.star")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newFake(t *testing.T, src string) *fakeBackend {
	t.Helper()
	dir := t.TempDir()
	cfg := loadConfig(t, dir, src)
	st, err := store.Open(filepath.Join(dir, "state.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	for _, b := range cfg.Builders {
		if _, err := st.EnsureBuilder(ctx, store.Builder{Name: b.Name}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := st.GetBuilderByName(ctx, "proj")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddBuild(ctx, store.NewBuild{BuilderID: b.ID}); err != nil {
		t.Fatal(err)
	}
	return &fakeBackend{cfg: cfg, st: st}
}

const authzConfig = `
worker("w1", "pw")
builder("proj", workers = ["w1"], steps = [shell("true")])
force_scheduler("force", builders = ["proj"])
try_scheduler("try", builders = ["proj"])
role("releaser", can = ["view", "rebuild"])
user("ann", roles = ["admin"])
user("dev", roles = ["developer"])
user("vic", roles = ["viewer"])
user("rel", roles = ["releaser"])
user("nobody")
`

// TestAuthorization: every command is allowed or refused by the user's
// roles, before it does anything; help works for everyone.
func TestAuthorization(t *testing.T) {
	f := newFake(t, authzConfig)
	s := &Server{b: f, base: context.Background(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), opts: Options{PollInterval: DefaultPollInterval}}
	commands := [][]string{
		{"help"}, {"whoami"}, {"builders"}, {"workers"}, {"status"}, {"queue"}, {"logs", "1"},
		{"force", "proj"}, {"try", "proj"}, {"rebuild", "1"}, {"cancel", "1"}, {"stop", "1"},
		{"pause", "w1"}, {"unpause", "w1"}, {"reconfig"}, {"submit"},
	}
	allowed := map[string]string{ // user → the commands allowed, besides help and whoami
		"ann":    "builders workers status queue logs force try rebuild cancel stop pause unpause reconfig submit",
		"dev":    "builders workers status queue logs force try rebuild cancel stop submit",
		"vic":    "builders workers status queue logs",
		"rel":    "builders workers status queue logs rebuild",
		"nobody": "",
	}
	for user, list := range allowed {
		for _, argv := range commands {
			want := argv[0] == "help" || argv[0] == "whoami" || slices.Contains(strings.Fields(list), argv[0])
			t.Run(user+" "+argv[0], func(t *testing.T) {
				var out, errOut bytes.Buffer
				f.calls = nil
				c := &cmdCtx{ctx: context.Background(), s: s, b: f, cfg: f.cfg, user: user,
					in: strings.NewReader("--- a/f\n+++ b/f\n"), out: &out, errOut: &errOut}
				code := s.run(c, argv)
				if !want {
					if code != ExitRefused || !strings.Contains(errOut.String(), "not allowed") || len(f.calls) > 0 {
						t.Errorf("code %d, calls %v, stderr %q; want refused", code, f.calls, errOut.String())
					}
					return
				}
				if code == ExitRefused {
					t.Errorf("refused: %s", errOut.String())
				}
				// The operations reach the backend: it answers errReached.
				if code != ExitOK && !strings.Contains(errOut.String(), errReached.Error()) {
					t.Errorf("code %d, stderr %q", code, errOut.String())
				}
			})
		}
	}
	// --help is for everyone, and does nothing.
	var out, errOut bytes.Buffer
	f.calls = nil
	c := &cmdCtx{ctx: context.Background(), s: s, b: f, cfg: f.cfg, user: "nobody", out: &out, errOut: &errOut}
	if code := s.run(c, []string{"reconfig", "--help"}); code != ExitOK || !strings.Contains(out.String(), "usage: reconfig") || len(f.calls) > 0 {
		t.Errorf("reconfig --help: code %d, out %q, calls %v", code, out.String(), f.calls)
	}
}

// TestUsageErrors: bad commands, flags and arguments exit 2 and say what
// is wrong.
func TestUsageErrors(t *testing.T) {
	f := newFake(t, authzConfig)
	s := &Server{b: f, base: context.Background(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	tests := []struct {
		argv []string
		msg  string
	}{
		{[]string{"biulders"}, `unknown command "biulders" (did you mean "builders"?)`},
		{[]string{"force"}, "missing argument"},
		{[]string{"force", "a", "b"}, "too many arguments: b"},
		{[]string{"force", "proj", "--nope"}, "flag provided but not defined"},
		{[]string{"force", "porj"}, `no builder named "porj" (did you mean "proj"?)`},
		{[]string{"force", "proj", "--prop", "owner=x"}, "--prop owner: the force request sets that property itself"},
		{[]string{"force", "proj", "--branch", "b", "--prop", "branch=c"}, "--prop branch and --branch both given"},
		{[]string{"logs", "proj"}, "want a build id (123) or BUILDER/NUMBER"},
		{[]string{"logs", "proj/9"}, "build proj/9 not found"},
		{[]string{"logs", "1", "nostep"}, `has no step "nostep"`},
		{[]string{"cancel", "x"}, "want a build request id"},
		{[]string{"pause", "w9"}, `no worker named "w9"`},
		{[]string{"status", "nope"}, `no builder named "nope"`},
		{[]string{"try", "proj", "--baserev"}, "flag needs an argument"},
		{[]string{"help", "nope"}, `unknown command "nope"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.argv, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			c := &cmdCtx{ctx: context.Background(), s: s, b: f, cfg: f.cfg, user: "ann", in: strings.NewReader(""), out: &out, errOut: &errOut}
			if code := s.run(c, tt.argv); code != ExitUsage || !strings.Contains(errOut.String(), tt.msg) {
				t.Errorf("code %d, stderr %q; want %d with %q", code, errOut.String(), ExitUsage, tt.msg)
			}
		})
	}
	// A try without a patch on stdin is a usage error too.
	var errOut bytes.Buffer
	c := &cmdCtx{ctx: context.Background(), s: s, b: f, cfg: f.cfg, user: "ann", in: strings.NewReader("\n"), out: io.Discard, errOut: &errOut}
	if code := s.run(c, []string{"try", "proj"}); code != ExitUsage || !strings.Contains(errOut.String(), "no patch on standard input") {
		t.Errorf("try without patch: %d %q", code, errOut.String())
	}
}

// TestAuthorizationPerBuilder: a role limited to some builders lets its
// users act on those builders only.
func TestAuthorizationPerBuilder(t *testing.T) {
	f := newFake(t, `
worker("w1", "pw")
builder("proj", workers = ["w1"], steps = [shell("true")])
builder("lib", workers = ["w1"], steps = [shell("true")])
force_scheduler("force", builders = ["proj", "lib"])
try_scheduler("try", builders = ["proj", "lib"])
role("libdev", can = ["force", "stop", "rebuild", "cancel"], builders = ["lib"])
user("lee", roles = ["viewer", "libdev"])
`)
	s := &Server{b: f, base: context.Background(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), opts: Options{PollInterval: DefaultPollInterval}}
	for _, tc := range []struct {
		argv    []string
		allowed bool
	}{
		{[]string{"force", "lib"}, true},
		{[]string{"force", "proj"}, false},
		{[]string{"try", "lib"}, true},
		{[]string{"try", "lib", "proj"}, false},
		{[]string{"stop", "1"}, false}, // build 1 is a build of proj
		{[]string{"rebuild", "proj/1"}, false},
		{[]string{"pause", "w1"}, false},
	} {
		t.Run(strings.Join(tc.argv, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			f.calls = nil
			c := &cmdCtx{ctx: context.Background(), s: s, b: f, cfg: f.cfg, user: "lee",
				in: strings.NewReader("--- a/f\n+++ b/f\n"), out: &out, errOut: &errOut}
			code := s.run(c, tc.argv)
			if tc.allowed {
				if code == ExitRefused || len(f.calls) != 1 {
					t.Errorf("code %d, calls %v, stderr %q; want it to reach the master", code, f.calls, errOut.String())
				}
				return
			}
			if code != ExitRefused || !strings.Contains(errOut.String(), "not allowed") || len(f.calls) > 0 {
				t.Errorf("code %d, calls %v, stderr %q; want refused", code, f.calls, errOut.String())
			}
		})
	}
}
