package job

import (
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// On-failure policies of a job (see config.FarmOnFailure).
const (
	OnFailureStop  = "stop"
	OnFailureRetry = "retry"
)

// ChainState is where a platform's chain of builds stands.
type ChainState int

const (
	// ChainWaiting: the chain's last buildset has not completed yet.
	ChainWaiting ChainState = iota
	// ChainNext: the step in Decision.Next is to be built.
	ChainNext
	// ChainSucceeded: every package built.
	ChainSucceeded
	// ChainFailed: a package failed for good (Decision.Failed says which).
	ChainFailed
)

// Step is one step of a platform's chain: a package, built for the first
// or the second time.
type Step struct {
	Seq     int // position in the chain, from 0
	Package int // index in the job's packages
	Attempt int // 1, or 2 for a retry at the end of the chain
}

// Failure is a package's failed build.
type Failure struct {
	Package    int
	Attempt    int
	BuildsetID int64
	BuildID    int64 // 0 if the buildset ended before a build started
	Results    result.Result
}

// Decision is what Decide makes of a chain.
type Decision struct {
	State  ChainState
	Next   Step      // for ChainNext
	Failed []Failure // for ChainFailed: the package that failed for good
}

// Succeeded says whether a buildset result means its package is built:
// success or warnings. Anything else (failure, exception, cancelled,
// skipped because collapsed, retry) is a failed package.
func Succeeded(r result.Result) bool { return r == result.Success || r == result.Warnings }

// Decide returns the next step of a platform's chain, a pure function of
// the job's on-failure policy, its number of packages and the chain's
// builds so far (in Seq order, as store.JobPlatform.Builds has them).
//
// Packages build in order, each once. A failed package ends the chain with
// policy "stop" (and any policy other than "retry"); with "retry" it moves
// to the end of the chain, after every package not yet built, and is built
// a second time (attempt 2); if that fails too the chain fails. Retries
// run in the order their first attempts failed.
func Decide(onFailure string, packages int, builds []store.JobBuild) Decision {
	attempted := make([]bool, packages)
	var retries []int // packages whose first attempt failed, in order
	retried := make([]bool, packages)
	for _, b := range builds {
		if !b.Complete {
			return Decision{State: ChainWaiting}
		}
		if b.Package < 0 || b.Package >= packages {
			continue // not a package of this spec: nothing to learn from it
		}
		if b.Attempt >= 2 {
			retried[b.Package] = true
		} else {
			attempted[b.Package] = true
		}
		if Succeeded(b.Results) {
			continue
		}
		if onFailure == OnFailureRetry && b.Attempt < 2 {
			retries = append(retries, b.Package)
			continue
		}
		return Decision{State: ChainFailed, Failed: []Failure{{
			Package: b.Package, Attempt: b.Attempt, BuildsetID: b.BuildsetID, BuildID: b.BuildID, Results: b.Results}}}
	}
	seq := len(builds)
	for p := range packages {
		if !attempted[p] {
			return Decision{State: ChainNext, Next: Step{Seq: seq, Package: p, Attempt: 1}}
		}
	}
	for _, p := range retries {
		if !retried[p] {
			return Decision{State: ChainNext, Next: Step{Seq: seq, Package: p, Attempt: 2}}
		}
	}
	return Decision{State: ChainSucceeded}
}
