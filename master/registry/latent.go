package registry

import "errors"

// Instances checks the one-time password of an instance of a latent
// worker (master/latent): name is the latent worker's, as the instance
// logs in. It returns the name the session takes (the instance's slot),
// and false if password is not that of a live instance of name.
type Instances func(name, password string) (session string, ok bool)

// login checks a connection's credentials and returns the name of its
// session: Instances first, then Credentials.
func (r *Registry) login(name, password string) (string, bool) {
	if f := r.opts.Instances; f != nil {
		if session, ok := f(name, password); ok {
			return session, true
		}
	}
	want, ok := r.opts.Credentials(name)
	return name, ok && equalSecret(password, want)
}

// GiveUp ends the hold on the named worker's session, if its connection
// was lost and the registry holds its commands for a reconnect (the resume
// extension): they fail now with ErrWorkerLost, for reason, and their
// builds end RETRY. For a worker known to be gone (a latent instance its
// driver says has ended). It reports whether a session was held.
func (r *Registry) GiveUp(name string, reason error) bool {
	s := r.takeAway(name)
	if s == nil {
		return false
	}
	if reason == nil {
		reason = errors.New("given up")
	}
	r.log.Info("worker gone: its held commands are lost", "worker", name, "reason", reason)
	s.endHold(nil, reason, true)
	return true
}
