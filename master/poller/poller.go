// Package poller watches git repositories for new commits and turns each
// into a change, as Buildbot's GitPoller does, with go-git on the master.
//
// A Poller polls one repository: it lists the remote's refs, fetches what
// is new into a bare cache repository, walks the new commits and hands the
// changes, together with the revisions it has now seen, to a Sink that
// stores both in one transaction. A Manager runs the pollers of a
// configuration on their intervals.
//
// Remotes over https, http, ssh and git:// need nothing but go-git. Local
// paths and file:// URLs need the git program: go-git's file transport runs
// git-upload-pack.
package poller

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// Sink stores changes and the poller state that goes with them in one
// transaction: either both are stored or neither. *store.Store implements
// it; the master wraps it to wake the schedulers.
type Sink interface {
	AddChanges(ctx context.Context, cs []store.Change, state ...store.StateValue) ([]store.Change, error)
}

// State reads what a poller stored. *store.Store implements it.
type State interface {
	ObjectState(ctx context.Context, object string) (map[string]json.RawMessage, error)
}

// MaxNewCommits is how many changes one ref yields in one poll at most. A
// branch that brings more (a new branch with a long unrelated history, a
// force-push onto an old base) yields its newest MaxNewCommits commits,
// and the poller logs that it left the others out.
const MaxNewCommits = 100

// maxWalk bounds the commits examined to find a ref's new commits, so that
// a new branch with an unrelated history of a million commits costs a
// bounded time.
const maxWalk = 100 * MaxNewCommits

// stateRepo is the name, in a poller's object state, of the repository URL
// its revisions belong to; the other names are ref names ("refs/heads/main")
// whose values are the last revisions seen.
const stateRepo = "repo"

// StateObject returns the object under which the poller called name keeps
// its state in the store.
func StateObject(name string) string { return "poller:" + name }

// CacheDir returns the bare cache repository of repo under dir: one per
// repository URL, shared by the pollers that watch it.
func CacheDir(dir, repo string) string {
	sum := sha256.Sum256([]byte(repo))
	base := strings.TrimSuffix(filepath.Base(strings.TrimRight(repo, "/")), ".git")
	base = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, base)
	if len(base) > 40 {
		base = base[:40]
	}
	return filepath.Join(dir, base+"-"+hex.EncodeToString(sum[:8])+".git")
}

// cacheLocks serializes the use of each cache repository within the
// process: two pollers of the same URL share it, and go-git's repositories
// are not safe for concurrent writers.
var cacheLocks sync.Map // directory → *sync.Mutex

func lockCache(dir string) func() {
	mu, _ := cacheLocks.LoadOrStore(dir, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}

// Poller polls one repository. Its methods are safe for concurrent use;
// polls are serialized.
type Poller struct {
	cfg    *config.GitPoller
	cache  string // the bare cache repository
	sink   Sink
	state  State
	secret func(string) (string, error)
	log    *slog.Logger
	list   time.Duration // bound on listing the remote's refs

	mu sync.Mutex // held during a poll
}

// NewPoller returns a poller of cfg that keeps its cache under o.Dir and
// its state in o.State and o.Sink. Only those, o.Secret, o.Logger and
// o.ListTimeout are used.
func NewPoller(cfg *config.GitPoller, o Options) *Poller {
	o.defaults()
	return &Poller{
		cfg:    cfg,
		cache:  CacheDir(o.Dir, cfg.Repo),
		sink:   o.Sink,
		state:  o.State,
		secret: o.Secret,
		log:    o.Logger.With("poller", cfg.Name),
		list:   o.ListTimeout,
	}
}

// Result is what one poll found.
type Result struct {
	// Changes are the changes stored, with their IDs, oldest first.
	Changes []store.Change
	// Refs are the watched refs and their revisions, as stored.
	Refs map[string]string
}

// Poll polls the repository once: it lists the remote's refs, fetches
// those that changed, and stores a change per new commit together with the
// new revisions. When it returns an error nothing was stored, and the next
// poll finds the same commits again.
func (p *Poller) Poll(ctx context.Context) (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, recorded, err := p.loadState(ctx)
	if err != nil {
		return Result{}, err
	}
	auth, err := p.auth()
	if err != nil {
		return Result{}, err
	}
	remote, err := p.listRemote(ctx, auth)
	if err != nil {
		return Result{}, err
	}
	watched, err := p.selectRefs(remote)
	if err != nil {
		return Result{}, err
	}

	var changed []string // watched refs whose revision is not the stored one
	for _, ref := range slices.Sorted(maps.Keys(watched)) {
		if old[ref] != watched[ref] {
			changed = append(changed, ref)
		}
	}
	var removed []string
	for _, ref := range slices.Sorted(maps.Keys(old)) {
		if _, ok := watched[ref]; !ok {
			removed = append(removed, ref)
		}
	}
	if recorded && len(changed) == 0 && len(removed) == 0 {
		return Result{Refs: watched}, nil // the common case: nothing to fetch or store
	}

	unlock := lockCache(p.cache)
	defer unlock()
	repo, err := p.openCache()
	if err != nil {
		return Result{}, err
	}
	fetch := changed
	if !recorded {
		// A new repository URL has a new cache, which lacks even the
		// revisions that did not change.
		fetch = slices.Sorted(maps.Keys(watched))
	}
	if err := p.fetch(ctx, repo, auth, fetch, watched); err != nil {
		return Result{}, err
	}
	changed = nil // fetch may have moved some
	for _, ref := range slices.Sorted(maps.Keys(watched)) {
		if old[ref] != watched[ref] {
			changed = append(changed, ref)
		}
	}

	var changes []store.Change
	if !recorded {
		changes, err = p.firstPoll(repo, watched, changed)
	} else {
		changes, err = p.newChanges(ctx, repo, old, watched, changed)
	}
	if err != nil {
		return Result{}, err
	}

	state := []store.StateValue{}
	obj := StateObject(p.cfg.Name)
	if !recorded {
		state = append(state, store.StateValue{Object: obj, Name: stateRepo, Value: p.cfg.Repo})
	}
	for _, ref := range changed {
		state = append(state, store.StateValue{Object: obj, Name: ref, Value: watched[ref]})
	}
	for _, ref := range removed {
		if recorded {
			if _, onRemote := remote[ref]; onRemote {
				p.log.Info("git poller: ref no longer watched", "ref", ref, "revision", old[ref])
			} else {
				p.log.Info("git poller: ref deleted on the remote", "ref", ref, "revision", old[ref])
			}
		}
		state = append(state, store.StateValue{Object: obj, Name: ref})
	}
	stored, err := p.sink.AddChanges(ctx, changes, state...)
	if err != nil {
		return Result{}, fmt.Errorf("git poller %s: store %d changes: %w", p.cfg.Name, len(changes), err)
	}
	p.keepHeads(repo, watched, removed)
	p.tidyCache(ctx, repo, removed)
	return Result{Changes: stored, Refs: watched}, nil
}

// keepRef is the cache ref that keeps the revision the poller stored for
// ref, and its history, in the cache. The fetched refs are the remote's,
// shared by the pollers of the repository: one poller's fetch of a
// force-push, or a fetch whose changes were not stored, leaves another's
// (or the same's) stored revision unreachable from them, and a repack
// would drop it; the next walk would then take the old history for new.
func (p *Poller) keepRef(ref string) plumbing.ReferenceName {
	sum := sha256.Sum256([]byte(p.cfg.Name))
	return plumbing.ReferenceName("refs/starforge/" + hex.EncodeToString(sum[:8]) + "/" + strings.TrimPrefix(ref, "refs/"))
}

// keepHeads points the poller's keep refs (see keepRef) at the revisions
// it has just stored, and drops those of the refs it no longer watches. It
// only logs problems: they loosen a later walk's bound, no more.
func (p *Poller) keepHeads(repo *git.Repository, stored map[string]string, removed []string) {
	for _, ref := range slices.Sorted(maps.Keys(stored)) {
		name, h := p.keepRef(ref), plumbing.NewHash(stored[ref])
		if cur, err := repo.Storer.Reference(name); err == nil && cur.Hash() == h {
			continue
		}
		if repo.Storer.HasEncodedObject(h) != nil {
			continue // not in the cache (made anew since): no ref may name it
		}
		if err := repo.Storer.SetReference(plumbing.NewHashReference(name, h)); err != nil {
			p.log.Warn("git poller: keep the stored revision in the cache", "ref", ref, "err", err)
		}
	}
	for _, ref := range removed {
		if err := repo.Storer.RemoveReference(p.keepRef(ref)); err != nil {
			p.log.Debug("git poller: remove keep ref from cache", "ref", ref, "err", err)
		}
	}
}

// loadState returns the revisions stored for each ref, and whether the
// poller has a record of this repository at all. A record made for another
// repository (the poller's repo= changed) counts as none; its refs are
// returned so that they are deleted.
func (p *Poller) loadState(ctx context.Context) (map[string]string, bool, error) {
	vals, err := p.state.ObjectState(ctx, StateObject(p.cfg.Name))
	if err != nil {
		return nil, false, fmt.Errorf("git poller %s: %w", p.cfg.Name, err)
	}
	refs := make(map[string]string, len(vals))
	var repo string
	for name, raw := range vals {
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, false, fmt.Errorf("git poller %s: stored state %s: %w", p.cfg.Name, name, err)
		}
		if name == stateRepo {
			repo = v
		} else {
			refs[name] = v
		}
	}
	if repo != p.cfg.Repo {
		if repo != "" {
			p.log.Info("git poller: repository changed; recording its heads afresh", "was", repo, "repo", p.cfg.Repo)
		}
		return refs, false, nil
	}
	return refs, true, nil
}

// listRemote returns the remote's refs: every ref by name with its
// revision, and "HEAD" with the name of the ref it points to.
func (p *Poller) listRemote(ctx context.Context, auth transportAuth) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.list)
	defer cancel()
	r := git.NewRemote(memory.NewStorage(), &gitconfig.RemoteConfig{Name: "origin", URLs: []string{p.cfg.Repo}})
	refs, err := r.ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.IgnorePeeled})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return map[string]string{}, nil
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("no answer within %v: %w", p.list, err)
		}
		return nil, fmt.Errorf("git poller %s: list refs of %s: %w", p.cfg.Name, p.cfg.Repo, err)
	}
	out := make(map[string]string, len(refs))
	for _, ref := range refs {
		switch ref.Type() {
		case plumbing.SymbolicReference:
			out[ref.Name().String()] = ref.Target().String()
		case plumbing.HashReference:
			out[ref.Name().String()] = ref.Hash().String()
		}
	}
	return out, nil
}

// selectRefs returns the refs the poller watches, with their revisions.
func (p *Poller) selectRefs(remote map[string]string) (map[string]string, error) {
	watched := map[string]string{}
	if p.cfg.DefaultBranchOnly() {
		head, err := defaultBranch(remote)
		if err != nil {
			return nil, fmt.Errorf("git poller %s: %s: %w", p.cfg.Name, p.cfg.Repo, err)
		}
		watched[head] = remote[head]
	}
	for ref, rev := range remote {
		if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok && p.cfg.WatchesBranch(b) {
			watched[ref] = rev
		} else if strings.HasPrefix(ref, "refs/tags/") && p.cfg.Tags && !strings.HasSuffix(ref, "^{}") {
			watched[ref] = rev
		}
	}
	return watched, nil
}

// defaultBranch returns the ref the remote's HEAD names. Servers that do
// not say (old or dumb ones) get git's guess: the one branch with HEAD's
// revision, preferring main and master.
func defaultBranch(remote map[string]string) (string, error) {
	head, ok := remote["HEAD"]
	if !ok {
		if len(remote) == 0 {
			return "", errors.New("the repository is empty; give branches= to watch branches that do not exist yet")
		}
		return "", errors.New("the remote does not say which branch is its default; give branches=")
	}
	if strings.HasPrefix(head, "refs/") {
		if _, exists := remote[head]; !exists {
			return "", fmt.Errorf("the remote's HEAD names %s, which does not exist; give branches=", head)
		}
		return head, nil
	}
	var match []string
	for ref, rev := range remote {
		if rev == head && strings.HasPrefix(ref, "refs/heads/") {
			match = append(match, ref)
		}
	}
	for _, pref := range []string{"refs/heads/main", "refs/heads/master"} {
		if slices.Contains(match, pref) {
			return pref, nil
		}
	}
	if len(match) == 1 {
		return match[0], nil
	}
	return "", errors.New("the remote does not say which branch is its default; give branches=")
}

// openCache opens the cache repository, creating it if needed. A cache
// that cannot be opened is made anew: it holds nothing that cannot be
// fetched again.
func (p *Poller) openCache() (*git.Repository, error) {
	repo, err := git.PlainOpen(p.cache)
	if err == nil {
		return repo, nil
	}
	if !errors.Is(err, git.ErrRepositoryNotExists) {
		p.log.Warn("git poller: cache repository unusable; making it anew", "dir", p.cache, "err", err)
		if err := os.RemoveAll(p.cache); err != nil {
			return nil, fmt.Errorf("git poller %s: remove cache: %w", p.cfg.Name, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(p.cache), 0o755); err != nil {
		return nil, fmt.Errorf("git poller %s: cache: %w", p.cfg.Name, err)
	}
	repo, err = git.PlainInit(p.cache, true)
	if err != nil {
		return nil, fmt.Errorf("git poller %s: create cache %s: %w", p.cfg.Name, p.cache, err)
	}
	return repo, nil
}

// fetch fetches the changed refs whose revisions the cache lacks. If a ref
// moved on between listing and fetching, watched takes the revision
// fetched: that is the one whose commits become changes.
func (p *Poller) fetch(ctx context.Context, repo *git.Repository, auth transportAuth, changed []string, watched map[string]string) error {
	var specs []gitconfig.RefSpec
	var fetched []string
	for _, ref := range changed {
		if repo.Storer.HasEncodedObject(plumbing.NewHash(watched[ref])) == nil {
			continue // fetched by a poll whose changes were not stored
		}
		specs = append(specs, gitconfig.RefSpec("+"+ref+":"+ref))
		fetched = append(fetched, ref)
	}
	if len(specs) == 0 {
		return nil
	}
	start := time.Now()
	r := git.NewRemote(repo.Storer, &gitconfig.RemoteConfig{Name: "origin", URLs: []string{p.cfg.Repo}})
	err := r.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Auth: auth, Tags: git.NoTags, Force: true})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("git poller %s: fetch %s from %s: %w", p.cfg.Name, strings.Join(fetched, " "), p.cfg.Repo, err)
	}
	p.log.Debug("git poller: fetched", "refs", fetched, "took", time.Since(start))
	for _, ref := range fetched {
		if repo.Storer.HasEncodedObject(plumbing.NewHash(watched[ref])) == nil {
			continue
		}
		local, err := repo.Storer.Reference(plumbing.ReferenceName(ref))
		if err != nil {
			return fmt.Errorf("git poller %s: %s: fetched, but not in the cache: %w", p.cfg.Name, ref, err)
		}
		p.log.Info("git poller: ref moved while fetching; using the revision fetched", "ref", ref, "listed", watched[ref], "fetched", local.Hash())
		watched[ref] = local.Hash().String()
	}
	return nil
}

// firstPoll returns the changes of the first poll: none, or with
// BuildOnFirstPoll one per changed branch head (all of them, unless the
// poller had polled the same revisions under another repository URL).
func (p *Poller) firstPoll(repo *git.Repository, watched map[string]string, changed []string) ([]store.Change, error) {
	var branches []string
	for _, ref := range changed {
		if strings.HasPrefix(ref, "refs/heads/") {
			branches = append(branches, ref)
		}
	}
	p.log.Info("git poller: first poll; recording the heads", "repo", p.cfg.Repo, "refs", len(watched), "build", p.cfg.BuildOnFirstPoll)
	if !p.cfg.BuildOnFirstPoll {
		return nil, nil
	}
	var out []store.Change
	for _, ref := range branches {
		c, err := repo.CommitObject(plumbing.NewHash(watched[ref]))
		if err != nil {
			return nil, fmt.Errorf("git poller %s: %s: %w", p.cfg.Name, ref, err)
		}
		ch, err := p.change(c, branchOf(ref))
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
	return out, nil
}

// newChanges returns the changes of the changed refs: for a branch, a
// change per commit reachable from its new head and from no head stored
// before this poll, parents first; for a tag, one change for the commit it
// names.
func (p *Poller) newChanges(ctx context.Context, repo *git.Repository, old, watched map[string]string, changed []string) ([]store.Change, error) {
	if len(changed) == 0 {
		return nil, nil
	}
	var known []plumbing.Hash
	for ref, rev := range old {
		c, err := peel(repo, plumbing.NewHash(rev))
		if err != nil {
			// The cache lacks it (it was made anew, or the commit was
			// force-pushed away before it was fetched); it cannot bound
			// the walk, and MaxNewCommits does.
			p.log.Debug("git poller: known head not in the cache", "ref", ref, "revision", rev, "err", err)
			continue
		}
		known = append(known, c.Hash)
	}
	var out []store.Change
	for _, ref := range changed {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		head, err := peel(repo, plumbing.NewHash(watched[ref]))
		if err != nil {
			if errors.Is(err, errNotCommit) {
				p.log.Info("git poller: ref does not name a commit; recorded, no change", "ref", ref, "revision", watched[ref])
				continue
			}
			return nil, fmt.Errorf("git poller %s: %s: %w", p.cfg.Name, ref, err)
		}
		branch := branchOf(ref)
		if strings.HasPrefix(ref, "refs/tags/") {
			ch, err := p.change(head, branch)
			if err != nil {
				return nil, err
			}
			p.log.Info("git poller: new tag", "tag", branch, "revision", head.Hash)
			out = append(out, ch)
			continue
		}
		commits, walked, err := newCommits(repo, head, known)
		if err != nil {
			return nil, fmt.Errorf("git poller %s: %s: %w", p.cfg.Name, ref, err)
		}
		if len(commits) > MaxNewCommits {
			p.log.Warn("git poller: too many new commits; keeping the newest", "ref", ref, "new", len(commits), "kept", MaxNewCommits)
			commits = commits[len(commits)-MaxNewCommits:]
		} else if walked >= maxWalk {
			p.log.Warn("git poller: stopped looking for new commits", "ref", ref, "examined", walked, "new", len(commits))
		}
		if old[ref] == "" {
			p.log.Info("git poller: new branch", "branch", branch, "revision", head.Hash, "new_commits", len(commits))
		} else if len(commits) > 0 {
			p.log.Info("git poller: new commits", "branch", branch, "from", old[ref], "to", head.Hash, "count", len(commits))
		} else {
			p.log.Info("git poller: branch moved to known commits; no change", "branch", branch, "from", old[ref], "to", head.Hash)
		}
		for _, c := range commits {
			ch, err := p.change(c, branch)
			if err != nil {
				return nil, err
			}
			out = append(out, ch)
		}
	}
	return out, nil
}

// branchOf returns a change's branch for ref: the branch name for
// refs/heads/NAME, the ref itself for a tag.
func branchOf(ref string) string {
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		return b
	}
	return ref
}

var errNotCommit = errors.New("not a commit")

// peel returns the commit h names, through annotated tags.
func peel(repo *git.Repository, h plumbing.Hash) (*object.Commit, error) {
	for range 10 {
		obj, err := repo.Object(plumbing.AnyObject, h)
		if err != nil {
			return nil, err
		}
		switch o := obj.(type) {
		case *object.Commit:
			return o, nil
		case *object.Tag:
			h = o.Target
		default:
			return nil, fmt.Errorf("%s is a %s: %w", h, obj.Type(), errNotCommit)
		}
	}
	return nil, fmt.Errorf("%s: tags nested too deep: %w", h, errNotCommit)
}

// change returns the change for commit c on branch.
func (p *Poller) change(c *object.Commit, branch string) (store.Change, error) {
	files, err := changedFiles(c)
	if err != nil {
		return store.Change{}, fmt.Errorf("git poller %s: files of %s: %w", p.cfg.Name, c.Hash, err)
	}
	return store.Change{
		Revision:   c.Hash.String(),
		Branch:     branch,
		Author:     signature(c.Author),
		Committer:  signature(c.Committer),
		Comments:   strings.TrimRight(c.Message, "\n"),
		When:       c.Committer.When,
		Files:      files,
		Repository: p.cfg.Repo,
		Project:    p.cfg.Project,
		Codebase:   p.cfg.Codebase,
		Category:   p.cfg.Category,
	}, nil
}

func signature(s object.Signature) string {
	return s.Name + " <" + s.Email + ">"
}

// changedFiles returns the paths c changed against its first parent, or
// every path of a root commit.
func changedFiles(c *object.Commit) ([]string, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, err
	}
	var parent *object.Tree
	if c.NumParents() > 0 {
		pc, err := c.Parent(0)
		if err != nil {
			return nil, err
		}
		if parent, err = pc.Tree(); err != nil {
			return nil, err
		}
	}
	diff, err := object.DiffTree(parent, tree)
	if err != nil {
		return nil, err
	}
	files := make([]string, 0, len(diff))
	for _, ch := range diff {
		name := ch.To.Name
		if name == "" {
			name = ch.From.Name
		}
		files = append(files, name)
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// tidyCache removes the refs of deleted branches from the cache and, when
// fetches have left many packs, repacks it. It only logs problems: the
// cache stays usable either way.
func (p *Poller) tidyCache(ctx context.Context, repo *git.Repository, removed []string) {
	for _, ref := range removed {
		if err := repo.Storer.RemoveReference(plumbing.ReferenceName(ref)); err != nil {
			p.log.Debug("git poller: remove ref from cache", "ref", ref, "err", err)
		}
	}
	if err := repack(ctx, repo, p.cache); err != nil {
		p.log.Warn("git poller: repack cache", "dir", p.cache, "err", err)
	}
}

// byCommitTime orders commits newest first, then by hash for determinism.
func byCommitTime(a, b *object.Commit) int {
	if c := b.Committer.When.Compare(a.Committer.When); c != 0 {
		return c
	}
	return cmp.Compare(a.Hash.String(), b.Hash.String())
}
