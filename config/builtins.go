package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"unicode"

	"go.starlark.net/starlark"
)

// builtin is one predeclared function of master.star.
type builtin struct {
	sig *signature
	// fn does the work once the arguments are bound. It reports problems in
	// the user's arguments through c and still returns a value, so that
	// execution goes on and later mistakes are found too. A non-nil error
	// stops execution like a Starlark runtime error; it is for failures that
	// make going on pointless.
	fn func(c *call) (starlark.Value, error)
}

// builtins is the table of predeclared functions: the declarations below,
// then one constructor per step kind. It is built once and never modified.
var builtins = append([]*builtin{
	{newSignature("master", masterParams, masterExtraParams, webAuthMasterParams), builtinMaster},
	{newSignature("worker", workerParams, workerExtraParams, donateWorkerParams), builtinWorker},
	{newSignature("builder", builderParams, builderExtraParams, donateBuilderParams), builtinBuilder},
	{newSignature("force_scheduler", forceSchedulerParams), builtinForceScheduler},
	{newSignature("single_branch_scheduler", schedulerParams, []param{{name: "branch"}}, changeSchedulerParams), builtinSingleBranchScheduler},
	{newSignature("any_branch_scheduler", schedulerParams, changeSchedulerParams), builtinAnyBranchScheduler},
	{newSignature("periodic", schedulerParams, periodicParams), builtinPeriodic},
	{newSignature("nightly", schedulerParams, nightlyParams), builtinNightly},
	{newSignature("triggerable", schedulerParams), builtinTriggerable},
	{newSignature("dependent", dependentParams), builtinDependent},
	{newSignature("try_scheduler", schedulerParams), builtinTryScheduler},
	{newSignature("change_filter", changeFilterParams), builtinChangeFilter},
	{newSignature("master_lock", masterLockParams), builtinMasterLock},
	{newSignature("worker_lock", workerLockParams), builtinWorkerLock},
	{newSignature("user", userParams, userWebParams), builtinUser},
	{newSignature("role", roleParams, roleWebParams), builtinRole},
	{newSignature("latent_worker", latentWorkerParams), builtinLatentWorker},
	{newSignature("process_driver", processDriverParams), builtinProcessDriver},
	{newSignature("command_driver", commandDriverParams), builtinCommandDriver},
	{newSignature("qemu_driver", qemuDriverParams), builtinQEMUDriver},
	{newSignature("ec2_driver", ec2DriverParams), builtinEC2Driver},
	{newSignature("openstack_driver", openStackDriverParams), builtinOpenStackDriver},
	{varKwSignature("worker_filter"), builtinWorkerFilter},
	{varKwSignature("interpolate", interpolateParams), builtinInterpolate},
	{newSignature("prop", propParams), builtinProp},
	{newSignature("secret", secretParams), builtinSecret},
	{newSignature("env", envParams), builtinEnv},
	{newSignature("secrets_dir", secretsDirParams), builtinSecretsDir},
	{newSignature("secrets_env", secretsEnvParams), builtinSecretsEnv},
	{newSignature("change_hook", changeHookParams), builtinChangeHook},
	{newSignature("git_poller", gitPollerParams), builtinGitPoller},
	{newSignature("http_reporter", httpReporterParams, reporterCommonParams), builtinHTTPReporter},
	{newSignature("artifact_retention", artifactRetentionParams), builtinArtifactRetention},
	{newSignature("github_status", statusReporterParams, reporterCommonParams), builtinGitHubStatus},
	{newSignature("gitea_status", statusReporterParams, reporterCommonParams), builtinGiteaStatus},
	{newSignature("gitlab_status", statusReporterParams, reporterCommonParams), builtinGitLabStatus},
	{newSignature("mail_reporter", mailReporterParams, reporterCommonParams), builtinMailReporter},
	{newSignature("package_farm", packageFarmParams), builtinPackageFarm},
	{newSignature("publish_copy", publishCopyParams), builtinPublishCopy},
	{newSignature("publish_command", publishCommandParams), builtinPublishCommand},
}, append(stepBuiltins(), forceParamBuiltins()...)...)

// predeclare returns the predeclared names of master.star for this load.
func (l *loader) predeclare() starlark.StringDict {
	d := make(starlark.StringDict, len(builtins))
	for _, b := range builtins {
		d[b.sig.fn] = starlark.NewBuiltin(b.sig.fn, func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if thread != l.thread {
				// A function of the build calls it (see buildtime.go).
				return callAtBuildTime(l, b, thread, args, kwargs)
			}
			c := &call{
				l:      l,
				thread: thread,
				sig:    b.sig,
				pos:    callerPos(thread),
			}
			c.bind(args, kwargs)
			return b.fn(c)
		})
	}
	return d
}

// --- master ---

var masterParams = []param{
	{name: "title"},
	{name: "url"},
	{name: "http_addr"},
	{name: "worker_addr"},
	{name: "log_max_size"},
	{name: "upload_max_size"},
}

func defaultMasterSettings() MasterSettings {
	return MasterSettings{
		Title:      DefaultTitle,
		URL:        defaultURL(DefaultHTTPAddr),
		HTTPAddr:   DefaultHTTPAddr,
		WorkerAddr: DefaultWorkerAddr,
		LogMaxSize: DefaultLogMaxSize,

		UploadMaxSize: DefaultUploadMaxSize,

		DB:             DefaultDB,
		WebAuth:        "none",
		WorkerProtocol: DefaultWorkerProtocol,
		Web:            defaultWebAuth(),
	}
}

// builtinMaster implements master(title=, url=, http_addr=, worker_addr=),
// which may be called at most once.
func builtinMaster(c *call) (starlark.Value, error) {
	m := defaultMasterSettings()
	m.Pos = c.pos
	m.Title = c.nonEmptyStr("title", DefaultTitle)
	m.HTTPAddr = c.hostPort("http_addr", DefaultHTTPAddr)
	m.WorkerAddr = c.hostPort("worker_addr", DefaultWorkerAddr)
	m.URL = defaultURL(m.HTTPAddr)
	if v, ok := c.given("url"); ok {
		s, isStr := starlark.AsString(v)
		if !isStr {
			c.argErrorf("url", "want string, got %s", v.Type())
		} else if u, err := checkURL(s); err != nil {
			c.argErrorf("url", "%v", err)
		} else {
			m.URL = u
		}
	}
	m.LogMaxSize = c.byteSize("log_max_size", DefaultLogMaxSize)
	m.UploadMaxSize = c.byteSize("upload_max_size", DefaultUploadMaxSize)
	masterExtras(c, &m)
	webAuthMaster(c, &m) // webauth.go
	if prev := c.l.master; prev != nil {
		c.errorf("called more than once (first call at %s)", prev.Pos)
	} else {
		c.l.master = &m
	}
	return starlark.None, nil
}

// hostPort returns the host:port argument for name, or def.
func (c *call) hostPort(name, def string) string {
	s := c.str(name, def)
	if err := checkHostPort(s); err != nil {
		c.argErrorf(name, "%v", err)
		return def
	}
	return s
}

// checkHostPort checks a listen address. The host may be empty (all
// interfaces); the port must be numeric, and may be 0 (any free port).
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port such as %q, got %q", DefaultHTTPAddr, s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("invalid port %q in %q: want a number from 0 to 65535", port, s)
	}
	return nil
}

// defaultURL returns the web UI URL for a listen address.
func defaultURL(httpAddr string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "http://" + httpAddr + "/"
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// checkURL checks the master's external URL and returns it ending in "/",
// which is how links are built from it.
func checkURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("want an absolute http:// or https:// URL such as \"https://ci.example.org/\", got %q", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("want a URL without query or fragment, got %q", s)
	}
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return s, nil
}

// --- worker ---

var workerParams = []param{
	{name: "name", required: true, positional: true},
	{name: "password", required: true, positional: true},
	{name: "max_builds"},
	{name: "properties"},
}

// builtinWorker implements worker(name, password, max_builds=None, properties={}).
func builtinWorker(c *call) (starlark.Value, error) {
	w := &Worker{Pos: c.pos}
	w.Name = c.nonEmptyStr("name", "")
	if err := checkWorkerName(w.Name); err != nil {
		c.argErrorf("name", "%v", err)
	}
	w.Password = c.nonEmptyStr("password", "")
	w.MaxBuilds = c.int("max_builds", 0)
	if w.MaxBuilds < 0 {
		c.argErrorf("max_builds", "must not be negative, got %d (use None or 0 for no limit)", w.MaxBuilds)
		w.MaxBuilds = 0
	}
	w.Properties = c.jsonDict("properties")
	workerExtras(c, w)
	workerDonate(c, w) // donate.go

	// Register even a worker with problems, so that builders naming it do
	// not report it as unknown as well.
	if w.Name != "" {
		c.l.workers = append(c.l.workers, w)
	}
	return c.named("worker", w.Name, w), nil
}

// checkWorkerName checks that name can serve as the user name of HTTP Basic
// authentication and as a URL path segment.
func checkWorkerName(name string) error {
	for _, r := range name {
		if r == ':' || r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%q contains %q; worker names cannot contain whitespace, control characters, \":\" or \"/\"", name, r)
		}
	}
	return nil
}

// --- builder ---

var builderParams = []param{
	{name: "name", required: true, positional: true},
	{name: "workers", required: true, positional: true},
	{name: "steps", required: true, positional: true},
	{name: "tags"},
	{name: "description"},
	{name: "env"},
	{name: "properties"},
	{name: "workerbuilddir"},
	{name: "default_properties"},
}

// builtinBuilder implements builder(name, workers, steps, tags=[],
// description="", env={}, properties={}, workerbuilddir=None).
func builtinBuilder(c *call) (starlark.Value, error) {
	b := &Builder{Pos: c.pos}
	b.Name = c.nonEmptyStr("name", "")
	builderWorkers(c, b)
	if v, ok := c.given("steps"); ok {
		if fn, isFn := v.(starlark.Callable); isFn {
			b.StepsFn = &StepsFunc{Fn: fn, Pos: c.pos}
		} else {
			b.Steps = c.steps("steps")
		}
	}
	b.Tags = c.strList("tags")
	b.Description = c.str("description", "")
	b.Env = c.strDict("env")
	b.Properties = c.jsonDict("properties")
	b.DefaultProperties = c.jsonDict("default_properties")
	b.WorkerBuildDir = c.str("workerbuilddir", "")
	if _, given := c.given("workerbuilddir"); given {
		if err := checkWorkerBuildDir(b.WorkerBuildDir); err != nil {
			c.argErrorf("workerbuilddir", "%v", err)
		}
	} else {
		b.WorkerBuildDir = safeDirName(b.Name)
	}
	builderExtras(c, b)
	builderDonate(c, b) // donate.go

	if b.Name != "" {
		c.l.builders = append(c.l.builders, b)
	}
	return c.named("builder", b.Name, b), nil
}

// nameList returns the argument for name as a non-empty list of distinct
// strings naming things of the given kind, such as the workers of a
// builder. Whether each exists is checked after execution, when all are
// declared.
func (c *call) nameList(name, kind string) []string {
	v, _ := c.given(name)
	names := c.strList(name)
	if seq, ok := asSequence(v); ok && seq.Len() == 0 {
		c.argErrorf(name, "empty list; want at least one %s name", kind)
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			c.argErrorf(name, "%s %q listed twice", kind, n)
		}
		seen[n] = true
	}
	return names
}

// checkWorkerBuildDir checks a workerbuilddir given by the user: it is
// joined to the worker's base directory and must stay inside it.
func checkWorkerBuildDir(dir string) error {
	slash := strings.ReplaceAll(dir, `\`, "/")
	switch {
	case dir == "":
		return fmt.Errorf("must not be empty")
	case path.IsAbs(slash) || (len(slash) > 1 && slash[1] == ':'):
		return fmt.Errorf("%q is absolute; want a path relative to the worker's base directory", dir)
	case path.Clean(slash) == "." || path.Clean(slash) == ".." || strings.HasPrefix(path.Clean(slash), "../"):
		return fmt.Errorf("%q is outside the worker's base directory", dir)
	}
	return nil
}

// safeDirName returns name with every rune outside [A-Za-z0-9._-] replaced
// by "_", for use as a directory name on any worker OS. A result made only
// of dots would name the current or parent directory, so its dots become
// underscores too.
func safeDirName(name string) string {
	dots := true
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			dots = false
			return r
		case r == '.':
			return r
		}
		dots = false
		return '_'
	}, name)
	if dots {
		s = strings.Repeat("_", len(s))
	}
	return s
}

// --- force_scheduler ---

var forceSchedulerParams = []param{
	{name: "name", required: true, positional: true},
	{name: "builders", required: true, positional: true},
	{name: "label"},
	{name: "params"},
}

// builtinForceScheduler implements force_scheduler(name, builders, label=None).
func builtinForceScheduler(c *call) (starlark.Value, error) {
	s := &ForceScheduler{Pos: c.pos}
	s.Name = c.nonEmptyStr("name", "")
	s.Builders = c.nameList("builders", "builder")
	s.Label = c.nonEmptyStr("label", s.Name)
	s.Params = c.forceParams("params")
	if s.Name != "" {
		c.l.schedulers = append(c.l.schedulers, s)
	}
	return c.named("force_scheduler", s.Name, s), nil
}
