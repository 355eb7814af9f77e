// Package latent starts workers on demand and stops them when idle: the
// lifecycle of latent workers, and the interface their drivers implement.
package latent

import (
	"context"
	"errors"
)

// Instance is one instance of a latent worker that a driver starts.
type Instance struct {
	// Name identifies the instance to the driver, on the machine or cloud
	// it runs in, and in leftover lists after a master crash: the latent
	// worker's name, a dash and a unique suffix ("vm-1-7f3a9c").
	Name string
	// WorkerName is the name the instance logs in with: the latent
	// worker's name in master.star.
	WorkerName string
	// Password is the instance's one-time password: valid for this
	// instance only, so a stale instance cannot pose as another.
	Password string
	// MasterAddr is the master's worker port as host:port, for the
	// instance to dial.
	MasterAddr string
	// Properties are the latent worker's properties from master.star.
	Properties map[string]any
}

// Driver starts and stops instances. Its methods may be called from any
// goroutine; calls for different instances may run at once.
type Driver interface {
	// Start starts inst and returns once the instance is on its way (not
	// once it has connected: the master waits for that, up to the latent
	// worker's missing_timeout). An error means nothing is left running.
	Start(ctx context.Context, inst Instance) error
	// Stop stops the named instance and removes what it leaves behind
	// (an overlay disk, a cloud instance). Stopping an instance that is
	// already gone is not an error.
	Stop(ctx context.Context, name string) error
}

// Checker is implemented by drivers that can tell whether an instance
// still runs (a cloud instance taken back, a VM that crashed).
type Checker interface {
	// Check returns nil while the named instance runs, and an error
	// wrapping ErrGone once it does not.
	Check(ctx context.Context, name string) error
}

// Lister is implemented by drivers that can list the instances they
// started, so that instances left over by a master crash are found by
// name at the next start and stopped.
type Lister interface {
	// List returns the names of the instances whose names start with
	// prefix.
	List(ctx context.Context, prefix string) ([]string, error)
}

// ErrGone says an instance no longer runs.
var ErrGone = errors.New("instance gone")
