// Package result defines build and step results with Buildbot's numeric
// values, which the REST API, the store and reporters all share.
package result

import "fmt"

// Result is the outcome of a step, build, build request or buildset.
type Result int

// Buildbot's result codes; the numbers are part of the REST API.
const (
	Success   Result = 0
	Warnings  Result = 1
	Failure   Result = 2
	Skipped   Result = 3
	Exception Result = 4
	Retry     Result = 5
	Cancelled Result = 6
)

// None marks something not finished yet (stored as NULL, shown as -1).
const None Result = -1

var names = [...]string{"success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"}

// String returns the lower-case name Buildbot uses ("success", ...).
func (r Result) String() string {
	if r >= 0 && int(r) < len(names) {
		return names[r]
	}
	if r == None {
		return "pending"
	}
	return fmt.Sprintf("result(%d)", int(r))
}

// Parse returns the Result named s, as String prints it.
func Parse(s string) (Result, error) {
	for i, n := range names {
		if n == s {
			return Result(i), nil
		}
	}
	return None, fmt.Errorf("unknown result %q", s)
}

// worseness orders results from best to worst for Worst, following
// Buildbot's worst_status: SKIPPED < SUCCESS < WARNINGS < FAILURE < EXCEPTION < RETRY < CANCELLED.
var worseness = map[Result]int{Skipped: 0, Success: 1, Warnings: 2, Failure: 3, Exception: 4, Retry: 5, Cancelled: 6}

// Worst returns the worse of a and b. None counts as better than anything.
func Worst(a, b Result) Result {
	if a == None {
		return b
	}
	if b == None {
		return a
	}
	if worseness[b] > worseness[a] {
		return b
	}
	return a
}
