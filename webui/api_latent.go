package webui

import (
	"context"
	"fmt"
	"net/http"
)

// setLatentJSON sets j's latent worker fields from l, if j is a slot of
// a latent worker.
func setLatentJSON(j *workerJSON, l *LatentState) {
	if l == nil {
		return
	}
	j.LatentWorker = nullString(l.Worker)
	j.LatentState = nullString(l.State)
	j.LatentStopReason = nullString(l.Why)
	j.LatentInstance = nullString(l.Instance)
	j.LatentSince = unixTime(l.Since)
	j.LatentFailures = l.Failures
	j.LatentLastError = nullString(l.LastError)
	j.LatentQuarantinedUntil = unixTime(l.QuarantinedUntil)
	j.LatentDisabled = l.Disabled != ""
	j.LatentDisabledReason = nullString(l.Disabled)
}

// LatentController is what the "enable" action needs of the master,
// besides Controller; without it the action answers 501.
type LatentController interface {
	// EnableWorker enables a latent worker that failures disabled; name
	// may be one of its slots. Errors are as for Master.
	EnableWorker(ctx context.Context, name, reason string) error
}

// enableWorker runs the "enable" action of a worker.
func (s *Server) enableWorker(ctx context.Context, name, reason string) error {
	c, ok := s.m.(LatentController)
	if !ok {
		return rpcErrorf(http.StatusNotImplemented, rpcInternalError, "this master has no latent workers to enable")
	}
	if err := c.EnableWorker(ctx, name, reason); err != nil {
		return fmt.Errorf("enable worker %s: %w", name, err)
	}
	return nil
}
