//go:build linux || windows

package donate

import (
	"fmt"
	"strings"
)

// pickCPUs returns n CPUs of allowed (the last ones: the first are where
// interrupts and the owner's programs tend to run), or all of them when n
// is 0 or too large.
func pickCPUs(allowed []int, n int) []int {
	if n <= 0 || n >= len(allowed) {
		return allowed
	}
	return allowed[len(allowed)-n:]
}

func formatCPUs(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = fmt.Sprint(c)
	}
	return strings.Join(s, ",")
}
