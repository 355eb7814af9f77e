package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starforge/starforge/worker"
	"github.com/starforge/starforge/worker/donate"
	"github.com/starforge/starforge/worker/proto"
)

// owner is the donated desktop's owner, moved by the test.
type owner struct {
	mu   sync.Mutex
	idle time.Duration
}

func (o *owner) Name() string { return "test owner" }
func (o *owner) Idle(time.Time) (time.Duration, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.idle, nil
}
func (o *owner) set(d time.Duration) { o.mu.Lock(); o.idle = d; o.mu.Unlock() }

type quiet struct{}

func (quiet) Processes([]int, []string) (donate.ProcStats, error) { return donate.ProcStats{}, nil }
func (quiet) Power() (donate.Power, error)                        { return donate.Power{Charge: -1}, nil }
func (quiet) FreeDisk(string) (int64, error)                      { return 1 << 40, nil }

type pauseEvent struct {
	paused bool
	reason string
}

// pauseRegistry is a registry whose Paused hook reports to a channel.
func pauseRegistry(t *testing.T) (*httptest.Server, events, chan pauseEvent) {
	t.Helper()
	ev := events{attached: make(chan *Session, 10), detached: make(chan *Session, 10)}
	pauses := make(chan pauseEvent, 100)
	r := New(Options{
		Credentials: func(name string) (string, bool) { return "pw", name == "desk" },
		Hooks: Hooks{
			Attached: func(s *Session) { ev.attached <- s },
			Detached: func(s *Session, _ error) { ev.detached <- s },
			Paused: func(s *Session, paused bool, reason string) {
				// The hook may read the session's pause.
				if p, why, _ := s.Paused(); p != paused || why != reason {
					t.Errorf("Paused() = %v %q inside the hook for %v %q", p, why, paused, reason)
				}
				pauses <- pauseEvent{paused, reason}
			},
		},
	})
	srv := httptest.NewServer(r)
	t.Cleanup(func() { r.Close(); srv.Close() })
	return srv, ev, pauses
}

func startDonor(t *testing.T, srv *httptest.Server, o *owner, s donate.Settings) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &worker.Agent{
		Master: strings.TrimPrefix(srv.URL, "http://"), Name: "desk", Password: "pw",
		Basedir: t.TempDir(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Donation: &worker.Donation{Policy: s, Limits: donate.Limits{ThrottleCores: 1}, Idle: o, System: quiet{},
			Fast: 10 * time.Millisecond, Slow: 20 * time.Millisecond},
	}
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitPause(t *testing.T, ch chan pauseEvent) pauseEvent {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(20 * time.Second):
		t.Fatal("no Paused hook call")
	}
	return pauseEvent{}
}

func TestPausedWorkerReportsAtAttachAndOnChange(t *testing.T) {
	srv, ev, pauses := pauseRegistry(t)
	o := &owner{} // at the keyboard when the worker starts
	s := donate.DefaultSettings()
	s.ResumeDelay = 0
	startDonor(t, srv, o, s)
	sess := waitSession(t, ev.attached)
	if !sess.HasExtension(proto.ExtPause) {
		t.Fatalf("extensions %v", sess.Extensions())
	}
	if p := waitPause(t, pauses); !p.paused || p.reason != "owner active" {
		t.Fatalf("first pause event %+v", p)
	}
	o.set(time.Hour)
	if p := waitPause(t, pauses); p.paused {
		t.Fatalf("second pause event %+v", p)
	}
	if paused, _, since := sess.Paused(); paused || since.IsZero() {
		t.Fatalf("Paused() = %v since %v", paused, since)
	}
}

func TestAbandonedCommandEndsAsWorkerLost(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses sh")
	}
	srv, ev, pauses := pauseRegistry(t)
	o := &owner{idle: time.Hour}
	s := donate.DefaultSettings()
	s.OnOwner = donate.Abandon
	startDonor(t, srv, o, s)
	sess := waitSession(t, ev.attached)
	h := &recorder{}
	rc, err := sess.Start(WithBuild(context.Background(), 41), "proj", proto.CmdShell,
		map[string]any{"workdir": sess.Basedir(), "command": "sleep 1000", "logEnviron": false}, h)
	if err != nil {
		t.Fatal(err)
	}
	o.set(0)
	if p := waitPause(t, pauses); !p.paused {
		t.Fatalf("pause event %+v", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = rc.Wait(ctx)
	var ab *AbandonedError
	if !errors.Is(err, ErrWorkerLost) || !errors.As(err, &ab) || ab.Reason != "owner active" || ab.Worker != "desk" {
		t.Fatalf("Wait = %v, want an AbandonedError that is ErrWorkerLost", err)
	}
	// The session lives on for the worker's other builds.
	select {
	case <-sess.Done():
		t.Fatal("abandoning a build closed the connection")
	default:
	}
	if err := sess.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// rawWorker dials srv as a hand-written worker and serves requests with h.
func rawWorker(t *testing.T, srv *httptest.Server, h proto.HandlerFunc) *proto.Conn {
	t.Helper()
	hdr := http.Header{}
	hdr.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("desk:pw")))
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/", hdr)
	if err != nil {
		t.Fatal(err)
	}
	c := proto.NewConn(ws, h, proto.Options{})
	go c.Serve()
	t.Cleanup(func() { c.Close(nil) })
	return c
}

func TestExtensionOnlyForWorkersThatAnnounceIt(t *testing.T) {
	tests := []struct {
		name     string
		announce any // the worker's info value; nil: no key at all
		want     []string
	}{
		{"plain buildbot worker", nil, nil},
		{"pause", []any{"pause"}, []string{"pause"}},
		{"unknown extensions are ignored", []any{"teleport", "pause"}, []string{"pause"}},
		{"garbage", "pause", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, ev, _ := pauseRegistry(t)
			settings := make(chan map[string]any, 1)
			conn := rawWorker(t, srv, func(op string, msg proto.Message) (any, error) {
				switch op {
				case proto.OpGetWorkerInfo:
					info := map[string]any{"basedir": "/w", "system": "posix"}
					if tt.announce != nil {
						info[proto.KeyExtensions] = tt.announce
					}
					return info, nil
				case proto.OpSetWorkerSettings:
					settings <- msg["args"].(map[string]any)
				}
				return nil, nil
			})
			s := waitSession(t, ev.attached)
			got := <-settings
			v, has := got[proto.KeyExtensions]
			switch {
			case tt.want == nil && has:
				t.Fatalf("a worker that announced nothing got %v", v)
			case tt.want != nil && strings.Join(proto.Extensions(v), ",") != strings.Join(tt.want, ","):
				t.Fatalf("settings offer %v, want %v", v, tt.want)
			}
			if strings.Join(s.Extensions(), ",") != strings.Join(tt.want, ",") {
				t.Fatalf("session extensions %v", s.Extensions())
			}
			// Without the extension the ops do not exist, as in Buildbot.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := conn.Call(ctx, proto.OpPause, map[string]any{"paused": true, "reason": "owner active"})
			if len(tt.want) == 0 {
				var re *proto.RemoteError
				if !errors.As(err, &re) || re.Msg != "Command starforge_pause does not exist." {
					t.Fatalf("pause without the extension: %v", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Call(ctx, proto.OpPause, map[string]any{"reason": "no flag"}); len(tt.want) > 0 && (err == nil || !strings.Contains(err.Error(), `missing "paused"`)) {
				t.Fatalf("malformed pause: %v", err)
			}
		})
	}
}

func TestStartCommandCarriesTheBuildOnlyWithTheExtension(t *testing.T) {
	for _, announce := range []bool{false, true} {
		srv, ev, _ := pauseRegistry(t)
		starts := make(chan proto.Message, 1)
		rawWorker(t, srv, func(op string, msg proto.Message) (any, error) {
			switch op {
			case proto.OpGetWorkerInfo:
				info := map[string]any{"basedir": "/w", "system": "posix"}
				if announce {
					info[proto.KeyExtensions] = []any{"pause"}
				}
				return info, nil
			case proto.OpStartCommand:
				starts <- msg
			}
			return nil, nil
		})
		s := waitSession(t, ev.attached)
		if _, err := s.Start(WithBuild(context.Background(), 99), "proj", "mkdir", map[string]any{"paths": []any{"/w/x"}}, &recorder{}); err != nil {
			t.Fatal(err)
		}
		msg := <-starts
		id, has := proto.AsInt(msg[proto.KeyBuild])
		if announce != has || (has && id != 99) {
			t.Fatalf("announce=%v: start_command %v", announce, msg)
		}
	}
}
