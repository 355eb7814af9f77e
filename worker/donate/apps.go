//go:build linux || darwin || windows

package donate

import "strings"

// matchApp returns the entry of apps that names the process called comm,
// or "". Names compare case-insensitively and without ".exe"; Linux cuts
// process names to 15 bytes, so a longer app name matches its first 15.
func matchApp(comm string, apps []string) string {
	c := strings.TrimSuffix(strings.ToLower(comm), ".exe")
	if c == "" {
		return ""
	}
	for _, a := range apps {
		n := strings.TrimSuffix(strings.ToLower(a), ".exe")
		if c == n || (len(c) == 15 && len(n) > 15 && strings.HasPrefix(n, c)) {
			return a
		}
	}
	return ""
}
