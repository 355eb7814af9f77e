package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ControlSocket is the unix socket in the basedir's run/ directory through
// which `starforge reconfig` asks a running master to reconfigure. Access
// is the file system's: only the basedir's owner can connect.
const ControlSocket = "control.sock"

// ControlRequest is one request on the control socket (one per connection).
type ControlRequest struct {
	Command string `json:"command"` // "reconfig" or "stop"
	// GraceSeconds: for "stop", how long running builds may take to end
	// by themselves before they are interrupted (0: at once).
	GraceSeconds float64 `json:"grace_seconds,omitempty"`
}

// ControlReply answers a ControlRequest.
type ControlReply struct {
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"` // what changed, on success
	Error   string `json:"error,omitempty"`   // why not, on failure
}

// serveControl listens on run/control.sock until ctx ends. The basedir lock
// is held, so a socket file left by a crash is stale and may be removed.
func (m *Master) serveControl(ctx context.Context) (stop func(), err error) {
	path := filepath.Join(m.opts.Basedir, "run", ControlSocket)
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	done := make(chan struct{})
	var handlers sync.WaitGroup
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			handlers.Add(1)
			go func() { defer handlers.Done(); m.handleControl(ctx, c) }()
		}
	}()
	// Waiting for the handlers lets a "stop" answer before the process exits.
	return func() { l.Close(); <-done; handlers.Wait(); os.Remove(path) }, nil
}

func (m *Master) handleControl(ctx context.Context, c net.Conn) {
	defer c.Close()
	// Deadlines bound reading the request and writing the answer, not the
	// work between them: a stop may wait for builds for a long time.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var req ControlRequest
	reply := ControlReply{}
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		reply.Error = "bad request: " + err.Error()
	} else {
		switch req.Command {
		case "reconfig":
			res, err := m.Reconfig(ctx)
			if err != nil {
				reply.Error = err.Error()
				m.log.Error("reconfig refused; the running configuration is unchanged", "err", err)
				break
			}
			reply.OK = true
			reply.Message = describeReconfig(res)
		case "stop":
			grace := time.Duration(req.GraceSeconds * float64(time.Second))
			res, err := m.Stop(context.Background(), grace)
			if err != nil {
				reply.Error = err.Error()
				break
			}
			reply.OK = true
			reply.Message = fmt.Sprintf("stopped: %d running build(s) finished, %d interrupted and requeued (RETRY)", res.Finished, res.Requeued)
		default:
			reply.Error = fmt.Sprintf("unknown command %q", req.Command)
		}
	}
	_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_ = json.NewEncoder(c).Encode(reply)
}

func describeReconfig(r ReconfigResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "reconfigured: %s", r.Summary)
	if n := len(r.Cancelled); n > 0 {
		fmt.Fprintf(&b, "; cancelled %d pending request(s) of removed builders", n)
	}
	if len(r.Disconnected) > 0 {
		fmt.Fprintf(&b, "; disconnected %s (removed or password changed)", strings.Join(r.Disconnected, ", "))
	}
	return b.String()
}

// ErrNoMaster is returned by SendControl when no master listens in basedir.
var ErrNoMaster = errors.New("no master is running there")

// SendControl sends req to the master running in basedir and returns its
// reply.
func SendControl(ctx context.Context, basedir string, req ControlRequest) (ControlReply, error) {
	path := filepath.Join(basedir, "run", ControlSocket)
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return ControlReply{}, fmt.Errorf("%w (%s: %v)", ErrNoMaster, path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return ControlReply{}, fmt.Errorf("send to %s: %w", path, err)
	}
	var reply ControlReply
	if err := json.NewDecoder(c).Decode(&reply); err != nil {
		return ControlReply{}, fmt.Errorf("read the master's answer: %w", err)
	}
	return reply, nil
}
