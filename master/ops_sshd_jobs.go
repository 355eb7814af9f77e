package master

import (
	"context"
	"io"
	"net/http"

	"github.com/starforge/starforge/master/store"
)

// SubmitJob implements sshd.Backend: `ssh master submit < job.tar`.
//
// Until the master has a job accepter (package job), it refuses: the lead
// wiring issue 10 replaces this body with a call to the accepter's Submit.
func (b sshBackend) SubmitJob(ctx context.Context, r io.Reader, submitter string) (store.Job, error) {
	return store.Job{}, &statusError{http.StatusConflict, "this master accepts no jobs: no package_farm() is configured"}
}
