package config

import (
	"fmt"
	"strconv"

	"go.starlark.net/starlark"
)

// decls holds the declarations of one load that the loader struct has no
// field for: latent workers, locks, users and roles. It lives in a thread
// local of the loader's thread, so it goes away with the load.
type decls struct {
	latent []*LatentWorker
	locks  []*Lock
	users  []*User
	roles  []*Role
}

const declsKey = "starforge/config.decls"

// decls returns the extra declarations of l, creating them on first use.
func (l *loader) decls() *decls {
	if d, ok := l.thread.Local(declsKey).(*decls); ok {
		return d
	}
	d := &decls{}
	l.thread.SetLocal(declsKey, d)
	return d
}

// LockKind tells where a lock's count is kept.
type LockKind string

// Lock kinds.
const (
	MasterLock LockKind = "master" // one count for the whole master
	WorkerLock LockKind = "worker" // one count per worker
)

// Lock is a lock declared with master_lock() or worker_lock().
type Lock struct {
	Name string
	Kind LockKind
	// MaxCount is how many holders may take the lock in counting mode at
	// once (at least 1). For a worker lock it is per worker.
	MaxCount int
	// MaxCountForWorker overrides MaxCount on some workers (worker locks
	// only; nil when none was given).
	MaxCountForWorker map[string]int
	Pos               Pos
}

// LockMode is how a lock is taken.
type LockMode string

// Lock modes.
const (
	Exclusive LockMode = "exclusive" // alone: no other holder at all
	Counting  LockMode = "counting"  // shared with up to MaxCount holders
)

// LockAccess is a use of a lock by a builder, a worker or a step.
type LockAccess struct {
	Lock *Lock
	Mode LockMode
}

var masterLockParams = []param{
	{name: "name", required: true, positional: true},
	{name: "max_count"},
}

var workerLockParams = []param{
	{name: "name", required: true, positional: true},
	{name: "max_count"},
	{name: "max_count_for_worker"},
}

// accessSigs are the signatures of the access method of locks, by kind.
var accessSigs = map[LockKind]*signature{
	MasterLock: newSignature("master_lock.access", []param{{name: "mode", required: true, positional: true}}),
	WorkerLock: newSignature("worker_lock.access", []param{{name: "mode", required: true, positional: true}}),
}

// builtinMasterLock implements master_lock(name, max_count=1).
func builtinMasterLock(c *call) (starlark.Value, error) {
	return newLock(c, MasterLock), nil
}

// builtinWorkerLock implements worker_lock(name, max_count=1,
// max_count_for_worker={}).
func builtinWorkerLock(c *call) (starlark.Value, error) {
	return newLock(c, WorkerLock), nil
}

func newLock(c *call, kind LockKind) starlark.Value {
	lk := &Lock{Kind: kind, Pos: c.pos}
	lk.Name = c.nonEmptyStr("name", "")
	lk.MaxCount = c.int("max_count", 1)
	if lk.MaxCount < 1 {
		c.argErrorf("max_count", "must be at least 1, got %d", lk.MaxCount)
		lk.MaxCount = 1
	}
	if kind == WorkerLock {
		lk.MaxCountForWorker = c.countDict("max_count_for_worker")
	}
	if lk.Name != "" {
		d := c.l.decls()
		d.locks = append(d.locks, lk)
	}
	typ := string(kind) + "_lock"
	o := &object{
		typ:  typ,
		repr: reprCall(typ, starlark.String(lk.Name)),
		item: lk,
		ok:   c.ok(),
	}
	l := c.l
	o.attrs = starlark.StringDict{
		"name": starlark.String(lk.Name),
		"access": starlark.NewBuiltin("access", func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			cl := l
			if thread != l.thread {
				// A function of the build calls it: report problems as a
				// Starlark error, never into the finished load.
				cl = &loader{opts: l.opts, thread: thread}
			}
			ac := &call{l: cl, thread: thread, sig: accessSigs[kind], pos: callerPos(thread)}
			ac.bind(args, kwargs)
			mode := LockMode(ac.str("mode", string(Exclusive)))
			if mode != Exclusive && mode != Counting {
				ac.argErrorf("mode", "want \"exclusive\" or \"counting\", got %q%s", mode, didYouMean(string(mode), []string{string(Exclusive), string(Counting)}))
				mode = Exclusive
			}
			if cl != l && len(cl.errs.errs) > 0 {
				return nil, fmt.Errorf("%s", cl.errs.errs[0].Msg)
			}
			return &object{
				typ:   "lock_access",
				repr:  fmt.Sprintf("%s.access(%q)", o.repr, mode),
				attrs: starlark.StringDict{"name": starlark.String(lk.Name), "mode": starlark.String(mode)},
				item:  LockAccess{Lock: lk, Mode: mode},
				ok:    o.ok && ac.ok(),
			}, nil
		}),
	}
	return o
}

// countDict returns the argument for name as a dict of names to counts of
// at least 1, or nil if it is absent, None or empty.
func (c *call) countDict(name string) map[string]int {
	v, ok := c.given(name)
	if !ok {
		return nil
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		c.argErrorf(name, "want dict of worker names to ints, got %s", v.Type())
		return nil
	}
	if d.Len() == 0 {
		return nil
	}
	out := make(map[string]int, d.Len())
	for _, kv := range d.Items() {
		k, ok := starlark.AsString(kv[0])
		if !ok {
			c.argErrorf(name, "want string keys, got %s key %s", kv[0].Type(), kv[0])
			continue
		}
		at := name + "[" + strconv.Quote(k) + "]"
		n, isInt := kv[1].(starlark.Int)
		i, err := starlark.AsInt32(n)
		switch {
		case !isInt:
			c.argErrorf(at, "want int, got %s", kv[1].Type())
		case err != nil || i < 1:
			c.argErrorf(at, "must be at least 1, got %s", n)
		default:
			out[k] = i
		}
	}
	return out
}

// lockList returns the argument for name as lock accesses: each element is
// a lock (taken exclusively, as in Buildbot) or lock.access(mode). Nil if
// absent, None or empty.
func (c *call) lockList(name string) []LockAccess {
	v, ok := c.given(name)
	if !ok {
		return nil
	}
	seq, ok := asSequence(v)
	if !ok {
		c.argErrorf(name, "want list of locks, got %s", v.Type())
		return nil
	}
	var out []LockAccess
	seen := make(map[*Lock]bool, seq.Len())
	for i := range seq.Len() {
		e := seq.Index(i)
		at := name + "[" + strconv.Itoa(i) + "]"
		o, isObj := e.(*object)
		var a LockAccess
		switch {
		case !isObj:
			c.argErrorf(at, "want master_lock, worker_lock or lock.access(mode), got %s", e.Type())
			continue
		case o.typ == "lock_access":
			a = o.item.(LockAccess)
		case o.typ == "master_lock" || o.typ == "worker_lock":
			a = LockAccess{Lock: o.item.(*Lock), Mode: Exclusive}
		default:
			c.argErrorf(at, "want master_lock, worker_lock or lock.access(mode), got %s", e.Type())
			continue
		}
		if !o.ok {
			continue // its constructor reported the problem
		}
		if seen[a.Lock] {
			c.argErrorf(at, "lock %q listed twice", a.Lock.Name)
			continue
		}
		seen[a.Lock] = true
		out = append(out, a)
	}
	return out
}

// validateLocks checks that lock names are unique and that the workers of
// max_count_for_worker are declared.
func (l *loader) validateLocks(cfg *Config, isWorker func(string) bool, workerNames []string) {
	byName := make(map[string]*Lock, len(cfg.Locks))
	for _, lk := range cfg.Locks {
		for _, w := range sortedStrings(lk.MaxCountForWorker) {
			if !isWorker(w) {
				l.errs.addf(lk.Pos, "worker_lock %q: max_count_for_worker: unknown worker %q%s", lk.Name, w, didYouMean(w, workerNames))
			}
		}
		if first, dup := byName[lk.Name]; dup {
			l.errs.addf(lk.Pos, "%s_lock: duplicate name %q (first declared at %s)", lk.Kind, lk.Name, first.Pos)
			continue
		}
		byName[lk.Name] = lk
	}
}
