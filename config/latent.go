package config

import (
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// Defaults of the worker and latent worker settings.
const (
	DefaultMissingTimeout   = 20 * time.Minute
	DefaultBuildWaitTimeout = 10 * time.Minute
	DefaultDB               = "state.sqlite"
	// DefaultWorkerProtocol is the only worker protocol there is.
	DefaultWorkerProtocol = "msgpack_experimental_v7"
)

// LatentWorker is a worker the master starts when a build needs it and
// stops when it has been idle, declared with latent_worker(...).
type LatentWorker struct {
	Name   string
	Driver *LatentDriver
	// BuildWaitTimeout is how long an idle instance is kept for the next
	// build (default DefaultBuildWaitTimeout). 0 stops it right after each
	// build; negative (build_wait_timeout=None) never stops it.
	BuildWaitTimeout time.Duration
	// MissingTimeout is how long a started instance may take to connect
	// (default DefaultMissingTimeout); 0 means no limit.
	MissingTimeout time.Duration
	MaxInstances   int            // instances running at once; at least 1, default 1
	Properties     map[string]any // as in Worker.Properties
	Pos            Pos
}

// LatentDriver says how a latent worker is started and stopped. Its Kind
// is the constructor that made it; the drivers themselves come later.
type LatentDriver struct {
	Kind string // "process" or "command"
	// For Kind "command": commands run on the master. Start must start the
	// worker, Stop stop it, Check (optional) exit 0 while it runs.
	Start, Stop, Check *ShellAction
	QEMU               *QEMUDriver      // for Kind "qemu"
	EC2                *EC2Driver       // for Kind "ec2"
	OpenStack          *OpenStackDriver // for Kind "openstack"
	// For Kind "process": the starforge-worker binary to run; "" means the
	// one next to the master's own binary, else starforge-worker on PATH.
	WorkerPath string
	Pos        Pos
}

var latentWorkerParams = []param{
	{name: "name", required: true, positional: true},
	{name: "driver", required: true, positional: true},
	{name: "build_wait_timeout"},
	{name: "missing_timeout"},
	{name: "max_instances"},
	{name: "properties"},
}

// builtinLatentWorker implements latent_worker(name, driver,
// build_wait_timeout="10m", missing_timeout="20m", max_instances=1,
// properties={}).
func builtinLatentWorker(c *call) (starlark.Value, error) {
	w := &LatentWorker{Pos: c.pos}
	w.Name = c.nonEmptyStr("name", "")
	if err := checkWorkerName(w.Name); err != nil {
		c.argErrorf("name", "%v", err)
	}
	if v, ok := c.given("driver"); ok {
		if o, isObj := v.(*object); isObj && o.typ == "latent_driver" {
			if o.ok {
				w.Driver = o.item.(*LatentDriver)
			}
		} else {
			c.argErrorf("driver", "want process_driver(), command_driver(start = ..., stop = ...), qemu_driver(...), ec2_driver(...) or openstack_driver(...), got %s", v.Type())
		}
	}
	w.BuildWaitTimeout = DefaultBuildWaitTimeout
	if v := c.value("build_wait_timeout"); v != nil {
		switch {
		case v == starlark.None:
			w.BuildWaitTimeout = -1
		case isZero(v):
			w.BuildWaitTimeout = 0
		default:
			d, err := parseDuration(v)
			if err != nil {
				c.argErrorf("build_wait_timeout", "%v", buildWaitHint.Replace(err.Error()))
			} else {
				w.BuildWaitTimeout = d
			}
		}
	}
	w.MissingTimeout = c.duration("missing_timeout", DefaultMissingTimeout)
	w.MaxInstances = c.int("max_instances", 1)
	if w.MaxInstances < 1 {
		c.argErrorf("max_instances", "must be at least 1, got %d", w.MaxInstances)
		w.MaxInstances = 1
	}
	w.Properties = c.jsonDict("properties")
	if w.Name != "" {
		d := c.l.decls()
		d.latent = append(d.latent, w)
	}
	return c.named("latent_worker", w.Name, w), nil
}

// buildWaitHint rewrites the hints of parseDuration for build_wait_timeout,
// where 0 and None mean something else.
var buildWaitHint = strings.NewReplacer(
	"or None for no limit", "0 to stop right after each build, or None to never stop",
	"use None for no limit", "use 0 to stop right after each build, or None to never stop",
)

// isZero reports whether v is 0, 0.0 or a zero duration string such as "0s".
func isZero(v starlark.Value) bool {
	switch v := v.(type) {
	case starlark.Int:
		return v.Sign() == 0
	case starlark.Float:
		return v == 0
	case starlark.String:
		d, err := time.ParseDuration(string(v))
		return err == nil && d == 0
	}
	return false
}

var processDriverParams = []param{
	{name: "worker_path"},
}

// builtinProcessDriver implements process_driver(worker_path=None): the
// worker runs as a local process of the master.
func builtinProcessDriver(c *call) (starlark.Value, error) {
	d := &LatentDriver{Kind: "process", Pos: c.pos}
	d.WorkerPath = c.nonEmptyStr("worker_path", "")
	return driverObject(c, d, "process_driver()"), nil
}

var commandDriverParams = []param{
	{name: "start", required: true},
	{name: "stop", required: true},
	{name: "check"},
}

// builtinCommandDriver implements command_driver(start=, stop=, check=None).
func builtinCommandDriver(c *call) (starlark.Value, error) {
	d := &LatentDriver{Kind: "command", Pos: c.pos}
	d.Start = c.command("start")
	d.Stop = c.command("stop")
	d.Check = c.command("check")
	return driverObject(c, d, "command_driver(...)"), nil
}

func driverObject(c *call, d *LatentDriver, repr string) starlark.Value {
	return &object{
		typ:   "latent_driver",
		repr:  repr,
		attrs: starlark.StringDict{"kind": starlark.String(d.Kind)},
		item:  d,
		ok:    c.ok(),
	}
}

// command returns the argument for name as a command, like shell(): a
// string is a script for /bin/sh -c, a list an argv. Nil if absent or None.
func (c *call) command(name string) *ShellAction {
	v, ok := c.given(name)
	if !ok {
		return nil
	}
	a := &ShellAction{}
	switch cmd := v.(type) {
	case starlark.String:
		a.Script = string(cmd)
		if strings.TrimSpace(a.Script) == "" {
			c.argErrorf(name, "empty command")
		}
	case *starlark.List, starlark.Tuple:
		a.Argv = c.strList(name)
		if cmd.(starlark.Sequence).Len() == 0 || (len(a.Argv) > 0 && a.Argv[0] == "") {
			c.argErrorf(name, "empty command")
		}
	default:
		c.argErrorf(name, "want string or list of strings, got %s", v.Type())
	}
	return a
}

// --- arguments added to master() and worker() ---

var masterExtraParams = []param{
	{name: "ssh_addr"},
	{name: "db"},
	{name: "web_auth"},
	{name: "worker_protocol"},
}

// masterExtras parses ssh_addr=, db=, web_auth= and worker_protocol= into m.
func masterExtras(c *call, m *MasterSettings) {
	if s := c.str("ssh_addr", ""); s != "" {
		if err := checkHostPort(s); err != nil {
			c.argErrorf("ssh_addr", "%v", strings.Replace(err.Error(), "want host:port", "want \"\" (off) or host:port", 1))
		} else {
			m.SSHAddr = s
		}
	}
	m.DB = c.nonEmptyStr("db", DefaultDB)
	if strings.Contains(m.DB, "://") && !strings.HasPrefix(m.DB, "sqlite:///") {
		c.argErrorf("db", "want a file path or a \"sqlite:///path\" URL, got %q", m.DB)
		m.DB = DefaultDB
	}
	m.WebAuth = c.str("web_auth", "none")
	if m.WebAuth != "none" && m.WebAuth != "users" {
		c.argErrorf("web_auth", "want \"none\" or \"users\", got %q%s", m.WebAuth, didYouMean(m.WebAuth, []string{"none", "users"}))
		m.WebAuth = "none"
	}
	m.WorkerProtocol = c.str("worker_protocol", DefaultWorkerProtocol)
	if m.WorkerProtocol != DefaultWorkerProtocol {
		c.argErrorf("worker_protocol", "want %q (the only protocol), got %q", DefaultWorkerProtocol, m.WorkerProtocol)
		m.WorkerProtocol = DefaultWorkerProtocol
	}
}

var workerExtraParams = []param{
	{name: "notify_on_missing"},
	{name: "missing_timeout"},
	{name: "locks"},
}

// workerExtras parses notify_on_missing=, missing_timeout= and locks= into w.
func workerExtras(c *call, w *Worker) {
	for _, a := range c.strOrList("notify_on_missing") {
		if i := strings.IndexByte(a, '@'); i <= 0 || i == len(a)-1 || strings.ContainsAny(a, " \t<>") {
			c.argErrorf("notify_on_missing", "want an email address such as \"ops@example.org\", got %q", a)
			continue
		}
		w.NotifyOnMissing = append(w.NotifyOnMissing, a)
	}
	w.MissingTimeout = c.duration("missing_timeout", DefaultMissingTimeout)
	w.Locks = c.lockList("locks")
}

// validateLatent checks latent worker names against each other and the
// workers (one namespace), and returns them by name.
func (l *loader) validateLatent(cfg *Config, workers map[string]*Worker, workerNames *[]string) map[string]*LatentWorker {
	latent := make(map[string]*LatentWorker, len(cfg.LatentWorkers))
	for _, w := range cfg.LatentWorkers {
		if first := workers[w.Name]; first != nil {
			l.errs.addf(w.Pos, "latent_worker: duplicate name %q (first declared at %s by worker)", w.Name, first.Pos)
			continue
		}
		if first := latent[w.Name]; first != nil {
			l.errs.addf(w.Pos, "latent_worker: duplicate name %q (first declared at %s)", w.Name, first.Pos)
			continue
		}
		latent[w.Name] = w
		*workerNames = append(*workerNames, w.Name)
	}
	return latent
}

// LatentWorker returns the latent worker called name, or nil.
func (c *Config) LatentWorker(name string) *LatentWorker {
	for _, w := range c.LatentWorkers {
		if w.Name == name {
			return w
		}
	}
	return nil
}
