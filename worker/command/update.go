package command

import (
	"context"
	"fmt"

	"github.com/starforge/starforge/worker/proto"
)

// SendUpdates sends us to the master as one "update" request through s and
// waits for the master's response, which is flow control: a command that
// sends its next update only after the previous one was answered cannot
// outrun a slow master. Sending no updates sends nothing.
//
// SendUpdates is safe for concurrent use if s is; the entries of one call
// stay together and in order on the wire.
func SendUpdates(ctx context.Context, s Sender, us ...proto.Update) error {
	if len(us) == 0 {
		return nil
	}
	if _, err := s.Send(ctx, proto.OpUpdate, map[string]any{"args": proto.EncodeUpdates(us)}); err != nil {
		return fmt.Errorf("send update: %w", err)
	}
	return nil
}
