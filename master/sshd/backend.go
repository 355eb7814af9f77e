package sshd

import (
	"context"
	"io"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// Backend is what the SSH server needs from the master. Its methods are
// safe for concurrent use. Errors may implement interface{ HTTPStatus()
// int } (found with errors.As): 400 and 404 become exit code 2 (usage),
// 403 and 409 exit code 3 (refused); store.ErrNotFound is 2 as well.
type Backend interface {
	// Config is the configuration in force; the server reads users, roles
	// and keys from it at every login, so a reconfig applies at once.
	Config() *config.Config
	// Store is the master's database; the server only reads from it.
	Store() *store.Store
	// QueueReasons says why pending requests wait, by request id.
	QueueReasons() map[int64]string
	// Subscribe returns a channel that receives a value after builds
	// progress (one value may stand for several events) and the function
	// that ends the subscription.
	Subscribe() (<-chan struct{}, func())

	Force(ctx context.Context, r ForceRequest) (store.Buildset, []store.BuildRequest, error)
	Try(ctx context.Context, r TryRequest) (store.Buildset, []store.BuildRequest, error)
	Rebuild(ctx context.Context, buildID int64, owner string) (store.Buildset, []store.BuildRequest, error)
	CancelRequest(ctx context.Context, id int64, reason string) error
	StopBuild(ctx context.Context, buildID int64, reason string) error
	PauseWorker(ctx context.Context, name, reason string) error
	UnpauseWorker(ctx context.Context, name, reason string) error
	Reconfig(ctx context.Context) (ReconfigResult, error)
	// SubmitJob accepts a package job for submitter: r is a tar or tar.gz
	// of the job's directory (see job.Accepter.Submit). The job is stored
	// when it returns; for an invalid job the error has a method
	// Problems() []string, and nothing is stored.
	SubmitJob(ctx context.Context, r io.Reader, submitter string) (store.Job, error)
}

// ForceRequest forces a build of one builder through a force scheduler.
type ForceRequest struct {
	Scheduler  string
	Builder    string
	Reason     string
	Owner      string
	Properties map[string]string // never nil
}

// TryRequest is a try job: the base revision with a patch applied after
// checkout. Its fields are those of master.TryRequest.
type TryRequest struct {
	Builders   []string
	BaseRev    string
	Branch     string
	Repository string
	Patch      []byte
	PatchLevel int
	Who        string
	Comment    string
	Properties map[string]string
}

// ReconfigResult says what a reconfig changed, as master.ReconfigResult.
type ReconfigResult struct {
	Summary      string
	Cancelled    []int64
	Disconnected []string
}
