package master

import (
	"context"
	"io"

	"github.com/starforge/starforge/master/store"
)

// SubmitJob implements sshd.Backend: `ssh master submit < job.tar` goes to
// the same accepter as `starforge submit` and the incoming directories.
func (b sshBackend) SubmitJob(ctx context.Context, r io.Reader, submitter string) (store.Job, error) {
	return b.m.accept.Submit(ctx, r, submitter)
}
