package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/starforge/starforge/worker/proto"
)

// fakeMaster is a Sender that answers like a Buildbot master. Every request
// goes through the real msgpack encoding first, so values arrive with the
// types a master would decode. It records requests, appends upload chunks
// to upload, and serves update_read_file from download. Safe for
// concurrent use.
type fakeMaster struct {
	upload   io.Writer         // receives update_upload_*_write data; nil discards
	download io.Reader         // served by update_read_file
	nilEOF   bool              // answer end of file with nil, as Buildbot 3.7 does
	refuse   map[string]string // op → exception text to answer with
	// hook, if set, runs before each request is answered, with the number
	// of requests of that op seen so far (1 for the first).
	hook func(op string, n int)

	mu      sync.Mutex
	reqs    []fakeReq
	counts  map[string]int
	updates []proto.Update
}

// fakeReq is one recorded request; bin args are recorded by size only, so
// that large transfers don't stay in memory.
type fakeReq struct {
	op     string
	fields map[string]any
	size   int
}

func (m *fakeMaster) Send(ctx context.Context, op string, fields map[string]any) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	msg := proto.Message{"op": op, "seq_number": 1}
	maps.Copy(msg, fields)
	b, err := proto.Encode(msg)
	if err != nil {
		return nil, err
	}
	got, err := proto.Decode(b)
	if err != nil {
		return nil, err
	}
	delete(got, "op")
	delete(got, "seq_number")

	m.mu.Lock()
	if m.counts == nil {
		m.counts = map[string]int{}
	}
	m.counts[op]++
	n := m.counts[op]
	req := fakeReq{op: op, fields: got}
	if data, ok := got["args"].([]byte); ok {
		req.size = len(data)
		req.fields = maps.Clone(got)
		req.fields["args"] = nil
	}
	m.reqs = append(m.reqs, req)
	m.mu.Unlock()

	if m.hook != nil {
		m.hook(op, n)
	}
	if text, ok := m.refuse[op]; ok {
		return nil, &proto.RemoteError{Op: op, Msg: text}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	switch op {
	case proto.OpUpdate:
		us, err := proto.DecodeUpdates(got["args"])
		if err != nil {
			return nil, &proto.RemoteError{Op: op, Msg: err.Error()}
		}
		m.updates = append(m.updates, us...)
	case proto.OpUploadFileWrite, proto.OpUploadDirectoryWrite:
		data, ok := got["args"].([]byte)
		if !ok {
			return nil, &proto.RemoteError{Op: op, Msg: fmt.Sprintf("args is %T, not bin", got["args"])}
		}
		if m.upload != nil {
			if _, err := m.upload.Write(data); err != nil {
				return nil, &proto.RemoteError{Op: op, Msg: err.Error()}
			}
		}
	case proto.OpReadFile:
		length, err := proto.Args(got).Int("length", -1)
		if err != nil || length < 0 {
			return nil, &proto.RemoteError{Op: op, Msg: "bad length"}
		}
		buf := make([]byte, length)
		k, err := io.ReadFull(m.download, buf)
		if k == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, &proto.RemoteError{Op: op, Msg: err.Error()}
			}
			if m.nilEOF {
				return nil, nil
			}
			return []byte{}, nil
		}
		return buf[:k], nil
	}
	return nil, nil
}

// ops returns the ops of the recorded requests, in order.
func (m *fakeMaster) ops() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, len(m.reqs))
	for i, r := range m.reqs {
		out[i] = r.op
	}
	return out
}

// requests returns the recorded requests with op.
func (m *fakeMaster) requests(op string) []fakeReq {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []fakeReq
	for _, r := range m.reqs {
		if r.op == op {
			out = append(out, r)
		}
	}
	return out
}

// update returns the value of the last update entry with key.
func (m *fakeMaster) update(key string) (any, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.updates) - 1; i >= 0; i-- {
		if m.updates[i].Key == key {
			return m.updates[i].Value, true
		}
	}
	return nil, false
}

// updateKeys returns the keys of all update entries, in order.
func (m *fakeMaster) updateKeys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, len(m.updates))
	for i, u := range m.updates {
		out[i] = u.Key
	}
	return out
}

// text returns the concatenated text of the update entries with key
// (header, stdout, stderr).
func (m *fakeMaster) text(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s string
	for _, u := range m.updates {
		if c, ok := u.Value.(proto.LogChunk); ok && u.Key == key {
			s += c.Text
		}
	}
	return s
}

// rc returns the reported rc, failing the test if there is none.
func (m *fakeMaster) rc(t *testing.T) int64 {
	t.Helper()
	v, ok := m.update(proto.UpdRC)
	if !ok {
		t.Fatalf("no rc update; updates: %v", m.updateKeys())
	}
	n, ok := proto.AsInt(v)
	if !ok {
		t.Fatalf("rc is %T", v)
	}
	return n
}

func fakeEnv(t *testing.T) Env {
	return Env{Basedir: t.TempDir(), Environ: map[string]string{}, Settings: DefaultSettings(), Logger: slog.New(slog.DiscardHandler)}
}

// runCommand builds name with args and runs it against m.
func runOnFake(t *testing.T, env Env, m *fakeMaster, name string, args proto.Args) error {
	t.Helper()
	cmd, err := New(name, args, env)
	if err != nil {
		t.Fatalf("New(%s, %v): %v", name, args, err)
	}
	return cmd.Run(context.Background(), m)
}

func TestSendUpdates(t *testing.T) {
	m := &fakeMaster{}
	ctx := context.Background()
	if err := SendUpdates(ctx, m); err != nil || len(m.ops()) != 0 {
		t.Fatalf("no updates: err %v, sent %v", err, m.ops())
	}
	err := SendUpdates(ctx, m,
		proto.Update{Key: proto.UpdHeader, Value: proto.NewLogChunk("hi\n", 1.5)},
		proto.Update{Key: proto.UpdRC, Value: 0},
		proto.Update{Key: proto.UpdElapsed, Value: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.ops(); !slices.Equal(got, []string{proto.OpUpdate}) {
		t.Fatalf("ops = %v, want one update", got)
	}
	if got := m.updateKeys(); !slices.Equal(got, []string{"header", "rc", "elapsed"}) {
		t.Fatalf("keys = %v", got)
	}
	if m.text("header") != "hi\n" {
		t.Fatalf("header = %q", m.text("header"))
	}

	m = &fakeMaster{refuse: map[string]string{proto.OpUpdate: "no such command"}}
	err = SendUpdates(ctx, m, proto.Update{Key: proto.UpdRC, Value: 0})
	var re *proto.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("refused update: err = %v, want RemoteError", err)
	}
}
