package master

import (
	"context"

	"github.com/starforge/starforge/master/store"
)

// AddChanges implements webui.Master.
//
// TEMPORARY (branch i4-webhook): a stand-in so that this branch builds
// until the lead's AddChanges, which also wakes the schedulers, is merged.
// Delete this file then.
func (m *Master) AddChanges(ctx context.Context, cs []store.Change, state ...store.StateValue) ([]store.Change, error) {
	return m.store.AddChanges(ctx, cs, state...)
}
