package proto

import (
	"errors"
	"fmt"
	"slices"
)

// Starforge's extensions of the protocol. A plain Buildbot peer never sees
// them: each side announces the extensions it offers, and an extension is
// used only when both did.
//
//   - The worker lists its extensions under KeyExtensions in its
//     get_worker_info answer (a Buildbot master stores the list with the
//     rest of the info and ignores it).
//   - A master that knows the key answers, in set_worker_settings' args,
//     with the list of those it accepts under the same key. A Buildbot
//     master sends no such key, so the worker uses none.
//
// ExtPause ("pause") is for donated desktops:
//
//   - worker → master OpPause {"paused": bool, "reason": str}: the worker
//     takes no new builds (paused) or takes them again, and says why
//     ("owner active", "on battery", ...). It is sent after the handshake
//     and on every change; the master answers nil.
//   - worker → master OpAbandon {"command_id": id, "reason": str}, instead
//     of complete: the worker killed the command because its owner came
//     back. The master ends the build RETRY and queues its request again
//     at the head of the queue, as for a lost worker, while the worker's
//     other builds go on.
//   - master → worker, in start_command: KeyBuild, the id of the build the
//     command belongs to, so that the worker can tell a running build's
//     next step (which it lets in) from a new build (which it hands back
//     while paused). Absent when the master does not know.
const (
	KeyExtensions = "starforge_extensions"
	ExtPause      = "pause"
	OpPause       = "starforge_pause"
	OpAbandon     = "starforge_abandon"
	KeyBuild      = "starforge_build"
)

// Extensions reads an extension list (a get_worker_info or
// set_worker_settings value); anything but a list of strings reads as none.
func Extensions(v any) []string {
	list, ok := v.([]any)
	if !ok {
		return nil
	}
	var out []string
	for _, e := range list {
		switch s := e.(type) {
		case string:
			out = append(out, s)
		case []byte:
			out = append(out, string(s))
		}
	}
	return out
}

// Agree returns the extensions of offered that supported contains, in
// offered's order: those both sides use.
func Agree(offered, supported []string) []string {
	var out []string
	for _, e := range offered {
		if slices.Contains(supported, e) && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// ExtensionList encodes exts for the wire ([]any of strings).
func ExtensionList(exts []string) []any {
	out := make([]any, len(exts))
	for i, e := range exts {
		out[i] = e
	}
	return out
}

// Pause is OpPause's payload.
type Pause struct {
	Paused bool
	Reason string
}

// Fields returns the message fields of p.
func (p Pause) Fields() map[string]any {
	return map[string]any{"paused": p.Paused, "reason": p.Reason}
}

// DecodePause reads an OpPause request. "paused" is required.
func DecodePause(m Message) (Pause, error) {
	a := Args(m)
	if !a.Has("paused") {
		return Pause{}, errors.New(`starforge_pause: missing "paused"`)
	}
	paused, err := a.Bool("paused", false)
	if err != nil {
		return Pause{}, fmt.Errorf("starforge_pause: %w", err)
	}
	reason, err := a.String("reason", "")
	if err != nil {
		return Pause{}, fmt.Errorf("starforge_pause: %w", err)
	}
	return Pause{Paused: paused, Reason: reason}, nil
}

// DecodeAbandon reads an OpAbandon request: the command's id (as a string)
// and the reason.
func DecodeAbandon(m Message) (id, reason string, err error) {
	a := Args(m)
	switch v := a["command_id"].(type) {
	case string:
		id = v
	case []byte:
		id = string(v)
	default:
		if n, ok := AsInt(v); ok {
			id = fmt.Sprint(n)
		}
	}
	if id == "" {
		return "", "", errors.New("starforge_abandon: missing command_id")
	}
	if reason, err = a.String("reason", ""); err != nil {
		return "", "", fmt.Errorf("starforge_abandon: %w", err)
	}
	return id, reason, nil
}
