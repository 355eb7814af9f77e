package proto

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/gorilla/websocket"
)

// ExtResume ("resume") keeps a worker's running commands through a short
// disconnect, so that a build goes on where a Buildbot worker's would be
// retried. Negotiated like every extension (see KeyExtensions):
//
//   - The worker's get_worker_info answer says, under KeyResumeGrace, how
//     many seconds it keeps its commands running after losing the
//     connection.
//   - Once the master agreed, every message the worker sends about a
//     command (update, complete, the transfer ops, starforge_abandon)
//     carries KeySeq: 1 for the command's first message, then 2, 3 and so
//     on. The worker has at most one such message per command awaiting its
//     answer, so when a connection drops only that last one can be in
//     doubt; it sends it again on the next connection, and the master,
//     which remembers each command's last number and its answer, answers a
//     repeat from memory instead of handling it twice. Nothing is lost and
//     nothing is counted twice.
//   - When a connection ends without a close frame (a network failure, a
//     silent peer), both sides keep the commands: the worker for its grace
//     period (the commands run on; their next messages wait), the master a
//     little longer (its builds wait too). A close frame (a worker
//     stopping, a master shutting down) ends the commands at once, as
//     without the extension.
//   - On every connection where the extension was agreed, the master sends
//     OpResume right after set_worker_settings and before any
//     start_command, with {"commands": [{"command_id": id, "received": n},
//     ...]}: the commands it holds for this worker and how many messages of
//     each it has handled (an empty list when it holds none). The worker
//     goes on with those it still has (their waiting messages go out on
//     this connection, possibly before the answer), cancels those the
//     master did not list, and answers {"commands": [{"command_id": id,
//     "sent": n}, ...]}: the commands it goes on with and how many messages
//     of each it has numbered. The master fails the commands the worker did
//     not list as lost (the build is retried), and those whose counts
//     disagree (sent must be received or received+1).
const (
	ExtResume      = "resume"
	OpResume       = "starforge_resume"
	KeySeq         = "starforge_seq"
	KeyResumeGrace = "starforge_resume_grace"
)

// Count keys of OpResume's request (the master's) and answer (the worker's).
const (
	ResumeReceived = "received"
	ResumeSent     = "sent"
)

// ResumeCommand is one command in an OpResume request or answer.
type ResumeCommand struct {
	ID    string // its command_id
	Count int64  // messages handled (request) or numbered (answer)
}

// ResumeFields encodes cmds as OpResume's fields or answer, with each
// count under countKey (ResumeReceived or ResumeSent).
func ResumeFields(countKey string, cmds []ResumeCommand) map[string]any {
	list := make([]any, len(cmds))
	for i, c := range cmds {
		list[i] = map[string]any{"command_id": c.ID, countKey: c.Count}
	}
	return map[string]any{"commands": list}
}

// DecodeResume reads an OpResume request (a Message) or answer (a map),
// with each count under countKey. A missing list reads as none; anything
// malformed is an error naming the entry.
func DecodeResume(v any, countKey string) ([]ResumeCommand, error) {
	var m map[string]any
	switch t := v.(type) {
	case Message:
		m = t
	case map[string]any:
		m = t
	case nil:
		return nil, errors.New("starforge_resume: no payload")
	default:
		return nil, fmt.Errorf("starforge_resume: want a map, got %T", v)
	}
	raw, ok := m["commands"]
	if !ok || raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("starforge_resume: commands is %T, not a list", raw)
	}
	out := make([]ResumeCommand, 0, len(list))
	for i, e := range list {
		em, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("starforge_resume: commands[%d] is %T, not a map", i, e)
		}
		id := idString(em["command_id"])
		if id == "" {
			return nil, fmt.Errorf("starforge_resume: commands[%d]: missing command_id", i)
		}
		n, err := Args(em).Int(countKey, -1)
		if err != nil {
			return nil, fmt.Errorf("starforge_resume: commands[%d]: %w", i, err)
		}
		if n < 0 {
			return nil, fmt.Errorf("starforge_resume: commands[%d]: missing or negative %q", i, countKey)
		}
		out = append(out, ResumeCommand{ID: id, Count: n})
	}
	return out, nil
}

// idString reads a command_id as a string ("" when absent or not an id).
func idString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case []byte:
		return string(t)
	}
	if n, ok := AsInt(v); ok {
		return fmt.Sprint(n)
	}
	return ""
}

// Transient reports whether a connection that ended for reason err was
// lost to the network (it ended without a close frame, was reset, or its
// peer went silent past the ping deadline) rather than closed on purpose
// by either side or for a protocol error. Only such a loss keeps commands
// for a reconnect under ExtResume.
func Transient(err error) bool {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code == websocket.CloseAbnormalClosure
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
