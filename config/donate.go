package config

import (
	"fmt"
	"strings"
)

// Donated desktops: worker(donated = True) marks a worker that runs on a
// developer's desktop (starforge-worker --donate), and builders take such
// workers only with builder(allow_donated = True), so that untrusted code
// (pull requests from strangers, say) never runs on someone's own machine.

var donateWorkerParams = []param{{name: "donated"}}

var donateBuilderParams = []param{{name: "allow_donated"}}

// workerDonate parses worker(donated=).
func workerDonate(c *call, w *Worker) { w.Donated = c.bool("donated", false) }

// builderDonate parses builder(allow_donated=).
func builderDonate(c *call, b *Builder) { b.AllowDonated = c.bool("allow_donated", false) }

// AcceptsWorker reports whether builds of b may run on w: any worker but
// a donated one, which only builders with AllowDonated take. It does not
// check that b names w.
func (b *Builder) AcceptsWorker(w *Worker) bool {
	return w == nil || !w.Donated || b.AllowDonated
}

// validateDonated reports builders that name only donated workers without
// allowing them: they could never run.
func (l *loader) validateDonated(cfg *Config, workers map[string]*Worker) {
	for _, b := range cfg.Builders {
		if b.AllowDonated || len(b.WorkerNames) == 0 {
			continue
		}
		var donated []string
		for _, n := range b.WorkerNames {
			w := workers[n]
			if w == nil || !w.Donated {
				donated = nil
				break
			}
			donated = append(donated, n)
		}
		if donated != nil {
			l.errs.addf(b.Pos, "builder %q: every worker it names is donated (%s) and donated workers need allow_donated = True; the builder could never run",
				b.Name, strings.Join(quoteAll(donated), ", "))
		}
	}
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
