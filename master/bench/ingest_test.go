package bench

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starforge/starforge/worker/proto"
)

// replayWorker is a protocol peer that answers the master's handshake and
// answers every shell command by sending one pre-encoded update frame n
// times (patching only its seq_number), waiting for each answer as a real
// worker does, then rc 0 and complete. Sending costs it almost nothing, so
// the figure is the master's: reading, decoding, splitting, storing. A
// real worker runs on another machine.
type replayWorker struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	text string // the update's text
	n    int    // updates per command

	mu      sync.Mutex
	seq     uint32
	waiting map[uint32]chan struct{}
}

// seqMarker is a seq_number whose msgpack form (uint32) is easy to find.
const seqMarker = 0xfeedbeef

func newReplayWorker(ws *websocket.Conn, text string, n int) *replayWorker {
	return &replayWorker{ws: ws, text: text, n: n, waiting: map[uint32]chan struct{}{}}
}

// template encodes the update for command id once, and returns it with
// the offset of its seq_number's four bytes.
func (w *replayWorker) template(id string) ([]byte, int, error) {
	frame, err := proto.Encode(proto.Message{
		"op": proto.OpUpdate, "seq_number": uint32(seqMarker), "command_id": id,
		"args": proto.EncodeUpdates([]proto.Update{{Key: proto.UpdStdout, Value: proto.NewLogChunk(w.text, 1.795e9)}}),
	})
	if err != nil {
		return nil, 0, err
	}
	at := bytes.Index(frame, []byte{0xce, 0xfe, 0xed, 0xbe, 0xef})
	if at < 0 {
		return nil, 0, fmt.Errorf("seq_number marker not found")
	}
	return frame, at + 1, nil
}

func (w *replayWorker) send(frame []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.ws.WriteMessage(websocket.BinaryMessage, frame)
}

// call sends a request frame built by mk(seq) and waits for its response.
func (w *replayWorker) call(mk func(seq uint32) []byte) error {
	w.mu.Lock()
	seq := w.seq
	w.seq++
	ch := make(chan struct{})
	w.waiting[seq] = ch
	w.mu.Unlock()
	if err := w.send(mk(seq)); err != nil {
		return err
	}
	<-ch
	return nil
}

func (w *replayWorker) request(op, id string, args any) func(uint32) []byte {
	return func(seq uint32) []byte {
		b, _ := proto.Encode(proto.Message{"op": op, "seq_number": seq, "command_id": id, "args": args})
		return b
	}
}

func (w *replayWorker) serve() {
	for {
		_, data, err := w.ws.ReadMessage()
		if err != nil {
			return
		}
		m, err := proto.Decode(data)
		if err != nil {
			return
		}
		seq, _ := m.Seq()
		if m.Op() == proto.OpResponse {
			w.mu.Lock()
			ch := w.waiting[uint32(seq)]
			delete(w.waiting, uint32(seq))
			w.mu.Unlock()
			if ch != nil {
				close(ch)
			}
			continue
		}
		var result any
		switch m.Op() {
		case proto.OpGetWorkerInfo:
			result = map[string]any{"basedir": "/replay", "system": "posix", "version": "replay", "numcpus": 2}
		case proto.OpStartCommand:
			id, _ := m["command_id"].(string)
			go w.replay(id)
		}
		resp, _ := proto.Encode(proto.Message{"op": proto.OpResponse, "seq_number": seq, "result": result})
		if w.send(resp) != nil {
			return
		}
	}
}

func (w *replayWorker) replay(id string) {
	frame, seqAt, err := w.template(id)
	if err != nil {
		return
	}
	for i := 0; i < w.n; i++ {
		err := w.call(func(seq uint32) []byte {
			binary.BigEndian.PutUint32(frame[seqAt:], seq)
			return frame
		})
		if err != nil {
			return
		}
	}
	w.call(w.request(proto.OpUpdate, id, proto.EncodeUpdates([]proto.Update{{Key: proto.UpdRC, Value: 0}})))
	w.call(w.request(proto.OpComplete, id, nil))
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
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("replay:pw")))
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+f.m.WorkerAddr()+"/", h)
	if err != nil {
		b.Fatal(err)
	}
	rw := newReplayWorker(ws, text, 64)
	go rw.serve()
	b.Cleanup(func() { ws.Close() })
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
