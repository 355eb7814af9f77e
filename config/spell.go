package config

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// nearest returns the candidate closest to x, ignoring case, or "" if none
// is close enough to be a likely typo: at most a third of x's runes (and at
// least one) may differ, and not all of them. It powers the "did you mean
// …?" hints.
func nearest(x string, candidates []string) string {
	lx := strings.ToLower(x)
	n := utf8.RuneCountInString(x)
	limit := min(max(1, n/3), n-1)
	best, bestD := "", limit+1
	for _, c := range candidates {
		if c == x {
			continue
		}
		if d := editDistance(lx, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance returns the optimal string alignment distance between a and
// b, in runes: the Levenshtein distance, with swapping two adjacent runes
// (the commonest typo, "nmae") counting as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// d[i][j] is the distance between ra[:i] and rb[:j]; three rows suffice.
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// didYouMean returns ` (did you mean "y"?)` for the nearest candidate to x,
// or "" if there is none.
func didYouMean(x string, candidates []string) string {
	if n := nearest(x, candidates); n != "" {
		return fmt.Sprintf(" (did you mean %q?)", n)
	}
	return ""
}

// DidYouMean is didYouMean for the master's other checkers of user input
// (job.json, say), so that all of them suggest alike.
func DidYouMean(x string, candidates []string) string { return didYouMean(x, candidates) }
