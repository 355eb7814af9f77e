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
