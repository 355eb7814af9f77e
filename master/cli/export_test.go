package cli

import "time"

// SetSubmitPollInterval sets how often submit --wait polls, until the
// returned function restores it.
func SetSubmitPollInterval(d time.Duration) (restore func()) {
	old := submitPollInterval
	submitPollInterval = d
	return func() { submitPollInterval = old }
}
