package poller

import (
	"container/heap"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Walk flags.
const (
	seen     = 1 << iota // queued at least once
	known                // reachable from a known head
	expanded             // its parents were queued as new
	marked               // its parents were queued as known
)

// newCommits returns the commits reachable from head and from none of the
// known commits, parents before children, and how many commits it
// examined. It is git rev-list head --not known... : both sides are walked
// together, newest commit first, until nothing new is left in the queue, so
// the cost is that of the new commits and of the recent history around
// them, not of the whole history. It examines at most maxWalk commits.
func newCommits(repo *git.Repository, head *object.Commit, knownHeads []plumbing.Hash) ([]*object.Commit, int, error) {
	w := &walk{repo: repo, flags: map[plumbing.Hash]uint8{}, commits: map[plumbing.Hash]*object.Commit{}}
	w.push(head, false)
	for _, h := range knownHeads {
		c, err := repo.CommitObject(h)
		if err != nil {
			continue // the caller checked; a vanished object only loosens the bound
		}
		w.push(c, true)
	}
	// As git does, go on a few steps after only known commits are queued:
	// with a committer's clock set wrong, a commit can be reached as known
	// only after one of its descendants was taken for new.
	slop := 5
	examined := 0
	for w.q.Len() > 0 && examined < maxWalk {
		if !w.anyNew() {
			if slop == 0 {
				break
			}
			slop--
		}
		c := heap.Pop(&w.q).(*object.Commit)
		examined++
		f := w.flags[c.Hash]
		switch {
		case f&known != 0 && f&marked == 0:
			w.flags[c.Hash] |= marked
			if err := w.pushParents(c, true); err != nil {
				return nil, examined, err
			}
		case f&known == 0 && f&expanded == 0:
			w.flags[c.Hash] |= expanded
			if err := w.pushParents(c, false); err != nil {
				return nil, examined, err
			}
		}
	}
	return w.order(head), examined, nil
}

type walk struct {
	repo    *git.Repository
	q       commitQueue
	flags   map[plumbing.Hash]uint8
	commits map[plumbing.Hash]*object.Commit
}

// push queues c, as known or as new. A commit already queued as new that
// turns out to be known is queued again, so that its parents are marked
// known too.
func (w *walk) push(c *object.Commit, isKnown bool) {
	f := w.flags[c.Hash]
	switch {
	case f&seen == 0:
	case isKnown && f&known == 0:
	default:
		return
	}
	f |= seen
	if isKnown {
		f |= known
	}
	w.flags[c.Hash] = f
	w.commits[c.Hash] = c
	heap.Push(&w.q, c)
}

func (w *walk) pushParents(c *object.Commit, isKnown bool) error {
	for _, ph := range c.ParentHashes {
		if f := w.flags[ph]; f&seen != 0 && (!isKnown || f&known != 0) {
			continue // nothing new to learn; spares reading the object
		}
		pc := w.commits[ph]
		if pc == nil {
			var err error
			if pc, err = w.repo.CommitObject(ph); err != nil {
				return err
			}
		}
		w.push(pc, isKnown)
	}
	return nil
}

// anyNew reports whether a queued commit may still be new.
func (w *walk) anyNew() bool {
	for _, c := range w.q {
		if w.flags[c.Hash]&known == 0 {
			return true
		}
	}
	return false
}

// order returns the new commits that head reaches through new commits,
// parents before children (first parents first).
func (w *walk) order(head *object.Commit) []*object.Commit {
	// A commit queued but never taken from the queue is new only as far
	// as the walk knows: it stopped at maxWalk before seeing whether a
	// known commit reaches it. Those are left out.
	isNew := func(h plumbing.Hash) bool {
		f := w.flags[h]
		return f&expanded != 0 && f&known == 0
	}
	if !isNew(head.Hash) {
		return nil
	}
	type frame struct {
		c    *object.Commit
		next int
	}
	var out []*object.Commit
	done := map[plumbing.Hash]bool{head.Hash: true}
	stack := []frame{{c: head}}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.next < len(top.c.ParentHashes) {
			ph := top.c.ParentHashes[top.next]
			top.next++
			if pc := w.commits[ph]; pc != nil && isNew(ph) && !done[ph] {
				done[ph] = true
				stack = append(stack, frame{c: pc})
			}
			continue
		}
		out = append(out, top.c)
		stack = stack[:len(stack)-1]
	}
	return out
}

// commitQueue is a max-heap of commits by committer time.
type commitQueue []*object.Commit

func (q commitQueue) Len() int           { return len(q) }
func (q commitQueue) Less(i, j int) bool { return byCommitTime(q[i], q[j]) < 0 }
func (q commitQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *commitQueue) Push(x any)        { *q = append(*q, x.(*object.Commit)) }
func (q *commitQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}
