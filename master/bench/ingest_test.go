package bench

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starforge/starforge/worker/proto"
)

// replayWorker is a protocol peer that answers the master's handshake and
// answers every shell command by sending the same pre-built update n
// times, then rc 0. It costs the sending side almost nothing, so the
// figure is the master's: decoding, splitting and storing.
type replayWorker struct {
	conn   *proto.Conn
	update []proto.Update
	n      int
}

func (w *replayWorker) HandleRequest(op string, msg proto.Message) (any, error) {
	switch op {
	case proto.OpGetWorkerInfo:
		return map[string]any{"basedir": "/replay", "system": "posix", "version": "replay", "numcpus": 2}, nil
	case proto.OpSetWorkerSettings, proto.OpPrint, proto.OpKeepalive, proto.OpInterruptCommand:
		return nil, nil
	case proto.OpStartCommand:
		id := msg["command_id"]
		go func() {
			ctx := context.Background()
			args := proto.EncodeUpdates(w.update)
			for i := 0; i < w.n; i++ {
				if _, err := w.conn.Call(ctx, proto.OpUpdate, map[string]any{"command_id": id, "args": args}); err != nil {
					return
				}
			}
			w.conn.Call(ctx, proto.OpUpdate, map[string]any{"command_id": id, "args": proto.EncodeUpdates([]proto.Update{{Key: proto.UpdRC, Value: 0}})})
			w.conn.Call(ctx, proto.OpComplete, map[string]any{"command_id": id, "args": nil})
		}()
		return nil, nil
	}
	return nil, fmt.Errorf("Command %s does not exist.", op)
}

// BenchmarkMasterLogIngest: 64 MiB of 100-byte lines per build, sent as
// 1 MiB updates by a replaying peer. Target: ≥ 200 MB/s.
func BenchmarkMasterLogIngest(b *testing.B) {
	f := startFarm(b, 0, `
worker("replay", password="pw")
builder("log", workers=["replay"], steps=[shell("cat", log_environ=False)])
force_scheduler("force", builders=["log"])
`)
	text := strings.Repeat(strings.Repeat("x", 99)+"\n", 10486) // 1 MiB
	rw := &replayWorker{update: []proto.Update{{Key: proto.UpdStdout, Value: proto.NewLogChunk(text, 1.795e9)}}, n: 64}
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("replay:pw")))
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+f.m.WorkerAddr()+"/", h)
	if err != nil {
		b.Fatal(err)
	}
	rw.conn = proto.NewConn(ws, rw, proto.Options{})
	go rw.conn.Serve()
	b.Cleanup(func() { rw.conn.Close(nil) })
	for len(f.m.WorkerStates()) == 0 {
		time.Sleep(5 * time.Millisecond) // setup only
	}
	size := int64(len(text)) * int64(rw.n)
	b.SetBytes(size)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		f.force(b, "log")
		f.waitFinished(b, 1)
	}
	b.ReportMetric(float64(size)*float64(b.N)/time.Since(start).Seconds()/1e6, "log-MB/s")
}
