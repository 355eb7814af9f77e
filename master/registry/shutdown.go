package registry

import (
	"context"

	"github.com/starforge/starforge/worker/proto"
)

// Shutdown asks the worker process to shut down (Buildbot's
// remote_shutdown) and returns once it answered. The worker then stops
// its commands and closes the connection; it does not reconnect.
func (s *Session) Shutdown(ctx context.Context) error {
	_, err := s.conn.Call(ctx, proto.OpShutdown, nil)
	return err
}

// Kill asks the worker process to shut down and closes the connection at
// once, without waiting for the answer: the commands it runs are lost
// (their builds end RETRY), not reported as interrupted. The worker reads
// the shutdown before the close, so it does not reconnect.
func (s *Session) Kill(reason error) {
	// A cancelled context makes Call send the request and return at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _ = s.conn.Call(ctx, proto.OpShutdown, nil)
	s.conn.Close(reason)
}
