package master

import (
	"context"

	"github.com/starforge/starforge/internal/clock"
	"github.com/starforge/starforge/master/artifact"
)

// startArtifactJanitor runs the artifact retention janitor (see package
// artifact) until the returned function is called, which waits for a
// sweep in progress to end. It is called before the store can close.
func (m *Master) startArtifactJanitor() (stop func()) {
	j := &artifact.Janitor{Store: m.store, Basedir: m.opts.Basedir, Config: m.Config, Clock: clock.Real,
		Logger: m.log.With("component", "artifacts")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { j.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}
