package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from its own address on 127.0.0.1 to a
// target, until the test cuts them: a network failure between two real
// processes, made on purpose. Its methods are safe for concurrent use.
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu       sync.Mutex
	down     bool
	conns    map[net.Conn]bool // both ends of every forwarded connection
	accepted int
	changed  chan struct{} // closed and replaced on every accept
}

// NewProxy starts a proxy to target ("host:port"); it stops when the test
// ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &Proxy{t: t, ln: ln, target: target, conns: map[net.Conn]bool{}, changed: make(chan struct{})}
	done := make(chan struct{})
	go func() { defer close(done); p.serve() }()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		<-done
	})
	return p
}

// Addr is the proxy's "host:port", to give the client instead of target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every forwarded connection at once (both sides see the TCP
// connection end, with no WebSocket close frame) and, until Restore,
// closes each new connection as soon as it is accepted.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.down = true
	conns := p.conns
	p.conns = map[net.Conn]bool{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// Restore forwards new connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// Accepted returns how many connections the proxy accepted so far
// (refused ones included) and a channel closed at the next accept.
func (p *Proxy) Accepted() (int, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.changed
}

func (p *Proxy) serve() {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		close(p.changed)
		p.changed = make(chan struct{})
		down := p.down
		p.mu.Unlock()
		if down {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer wg.Done()
			_, _ = io.Copy(dst, src)
			// One direction ended: end the other too, as a dead link would.
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(out, in)
		go pipe(in, out)
	}
}
