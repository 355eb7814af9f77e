package job

import (
	"reflect"
	"testing"

	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// done is a complete build of package pkg (attempt att) with result r.
func done(pkg, att int, r result.Result) store.JobBuild {
	return store.JobBuild{Package: pkg, Attempt: att, Complete: true, Results: r, BuildsetID: int64(10 + pkg), BuildID: int64(100 + pkg)}
}

func TestDecide(t *testing.T) {
	const (
		ok   = result.Success
		warn = result.Warnings
		fail = result.Failure
	)
	next := func(seq, pkg, att int) Decision {
		return Decision{State: ChainNext, Next: Step{Seq: seq, Package: pkg, Attempt: att}}
	}
	failed := func(pkg, att int, r result.Result) Decision {
		return Decision{State: ChainFailed, Failed: []Failure{{Package: pkg, Attempt: att, BuildsetID: int64(10 + pkg), BuildID: int64(100 + pkg), Results: r}}}
	}
	tests := []struct {
		name     string
		policy   string
		packages int
		builds   []store.JobBuild
		want     Decision
	}{
		{"empty chain starts with the first package", "stop", 3, nil, next(0, 0, 1)},
		{"a running build is waited for", "stop", 3, []store.JobBuild{done(0, 1, ok), {Package: 1, Attempt: 1}}, Decision{State: ChainWaiting}},
		{"order kept", "stop", 3, []store.JobBuild{done(0, 1, ok)}, next(1, 1, 1)},
		{"warnings count as success", "stop", 2, []store.JobBuild{done(0, 1, warn)}, next(1, 1, 1)},
		{"all succeed", "stop", 3, []store.JobBuild{done(0, 1, ok), done(1, 1, warn), done(2, 1, ok)}, Decision{State: ChainSucceeded}},
		{"stop at the first failure", "stop", 3, []store.JobBuild{done(0, 1, ok), done(1, 1, fail)}, failed(1, 1, fail)},
		{"exception is a failure", "stop", 2, []store.JobBuild{done(0, 1, result.Exception)}, failed(0, 1, result.Exception)},
		{"cancelled is a failure", "stop", 2, []store.JobBuild{done(0, 1, result.Cancelled)}, failed(0, 1, result.Cancelled)},
		{"skipped (collapsed) is a failure", "stop", 2, []store.JobBuild{done(0, 1, result.Skipped)}, failed(0, 1, result.Skipped)},
		{"unknown policy stops", "", 2, []store.JobBuild{done(0, 1, fail)}, failed(0, 1, fail)},
		{"retry moves the failed package to the end", "retry", 3, []store.JobBuild{done(0, 1, fail)}, next(1, 1, 1)},
		{"retry after the others", "retry", 3, []store.JobBuild{done(0, 1, fail), done(1, 1, ok), done(2, 1, ok)}, next(3, 0, 2)},
		{"retried package succeeds", "retry", 3, []store.JobBuild{done(0, 1, fail), done(1, 1, ok), done(2, 1, ok), done(0, 2, ok)}, Decision{State: ChainSucceeded}},
		{"retried package fails again", "retry", 3, []store.JobBuild{done(0, 1, fail), done(1, 1, ok), done(2, 1, ok), done(0, 2, fail)}, failed(0, 2, fail)},
		{"retries in the order of their failures", "retry", 3, []store.JobBuild{done(1, 1, ok), done(2, 1, fail), done(0, 1, fail)}, next(3, 2, 2)},
		{"second retry after the first", "retry", 3, []store.JobBuild{done(0, 1, fail), done(1, 1, fail), done(2, 1, ok), done(0, 2, ok)}, next(4, 1, 2)},
		{"one package, retried once", "retry", 1, []store.JobBuild{done(0, 1, fail)}, next(1, 0, 2)},
		{"a second failure ends the chain at once", "retry", 3, []store.JobBuild{done(0, 1, fail), done(1, 1, fail), done(2, 1, ok), done(0, 2, fail)}, failed(0, 2, fail)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.builds {
				tt.builds[i].Seq = i
			}
			got := Decide(tt.policy, tt.packages, tt.builds)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decide(%q, %d, ...) = %+v, want %+v", tt.policy, tt.packages, got, tt.want)
			}
		})
	}
}
