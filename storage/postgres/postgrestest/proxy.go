package postgrestest

import (
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy is a TCP proxy in front of the test server that a test can cut or
// hang, to see what wxidp does when its database goes away, without
// touching the shared server: Down refuses new connections and cuts the
// open ones, as a stopped server or a failed network does; Hang accepts
// connections and holds every byte, as a server whose processes are
// stopped (SIGSTOP) or a network that drops packets does; Up restores it.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  proxyMode
	conns map[net.Conn]struct{}
	wake  chan struct{} // closed when the proxy leaves Hang
}

type proxyMode int

const (
	modeUp proxyMode = iota
	modeDown
	modeHang
)

// NewProxy starts a proxy to the host and port of dsn and returns it with
// dsn rewritten to go through it. It stops when t ends.
func NewProxy(t testing.TB, dsn string) (*Proxy, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("postgrestest: proxy: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("postgrestest: proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}, wake: make(chan struct{})}
	go p.serve()
	t.Cleanup(p.close)
	u.Host = ln.Addr().String()
	return p, u.String()
}

// Up lets traffic through again; held bytes are delivered.
func (p *Proxy) Up() { p.set(modeUp) }

// Down refuses new connections and cuts every open one.
func (p *Proxy) Down() { p.set(modeDown) }

// Hang holds every byte in both directions until Up or Down.
func (p *Proxy) Hang() { p.set(modeHang) }

func (p *Proxy) set(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == modeHang && m != modeHang {
		close(p.wake)
		p.wake = make(chan struct{})
	}
	p.mode = m
	if m == modeDown {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *Proxy) close() {
	p.ln.Close()
	p.Down()
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		if mode != modeDown {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		if mode == modeDown {
			c.Close()
			continue
		}
		go p.pipe(c)
	}
}

// pipe connects c to the target (once the proxy is not hung: a stopped
// server's kernel accepts connections but nothing answers) and copies both
// ways.
func (p *Proxy) pipe(c net.Conn) {
	defer p.forget(c)
	if !p.gate() {
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(s) {
		return
	}
	defer p.forget(s)
	done := make(chan struct{}, 2)
	go func() { p.copy(s, c); done <- struct{}{} }()
	go func() { p.copy(c, s); done <- struct{}{} }()
	<-done
}

// copy forwards src to dst, holding each chunk while the proxy hangs.
func (p *Proxy) copy(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// gate waits while the proxy hangs and reports whether traffic may pass.
func (p *Proxy) gate() bool {
	for {
		p.mu.Lock()
		mode, wake := p.mode, p.wake
		p.mu.Unlock()
		switch mode {
		case modeUp:
			return true
		case modeDown:
			return false
		}
		<-wake
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == modeDown {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
