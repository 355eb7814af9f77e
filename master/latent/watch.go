package latent

// Watcher is implemented by drivers that learn by themselves, at once,
// when an instance ends (a child process exits), so that the Manager need
// not wait for the next Check or for the connection's loss to be noticed.
type Watcher interface {
	// Exited returns a channel closed when the named instance has ended,
	// for whatever reason, or nil if the driver does not know it.
	Exited(name string) <-chan struct{}
}
