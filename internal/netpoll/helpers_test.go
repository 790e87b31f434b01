package netpoll

import (
	"bytes"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testTimeout = 10 * time.Second

func newTestPoller(t testing.TB, opts Options) *Poller {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// register registers nc with h on p and fails the test if it cannot.
func register(t testing.TB, p *Poller, nc net.Conn, h Handler, opts ...ConnOptions) *Conn {
	t.Helper()
	c, err := p.Register(nc, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// listen returns a loopback TCP listener closed at cleanup.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// tcpPair returns the accepted (server) and dialed (client) ends of a
// loopback TCP connection. The client end is closed at cleanup.
// connPair returns a connected server/client pair for a poller path:
// TCP sockets for "epoll", a net.Pipe served by the goroutine fallback
// otherwise. The fallback pair's client is closed when the test ends.
func connPair(t testing.TB, path string) (server, client net.Conn) {
	t.Helper()
	if path == "epoll" {
		return tcpPair(t, listen(t))
	}
	server, client = net.Pipe()
	t.Cleanup(func() { client.Close() })
	return server, client
}

func tcpPair(t testing.TB, ln net.Listener) (server *net.TCPConn, client *net.TCPConn) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { cc.Close() })
	return r.c.(*net.TCPConn), cc.(*net.TCPConn)
}

// recorder is a Handler that records what it sees and optionally echoes.
type recorder struct {
	echo   bool
	onData func(c *Conn, data []byte)

	mu     sync.Mutex
	data   bytes.Buffer
	calls  int
	closes int
	err    error
	closed chan struct{}
	grew   chan struct{} // signalled (non-blocking) on every OnData
}

func newRecorder(echo bool) *recorder {
	return &recorder{echo: echo, closed: make(chan struct{}), grew: make(chan struct{}, 1)}
}

func (r *recorder) OnData(c *Conn, data []byte) {
	r.mu.Lock()
	r.data.Write(data)
	r.calls++
	r.mu.Unlock()
	if r.echo {
		if err := c.Write(bytes.Clone(data)); err != nil {
			panic(err)
		}
	}
	if r.onData != nil {
		r.onData(c, data)
	}
	select {
	case r.grew <- struct{}{}:
	default:
	}
}

func (r *recorder) OnClose(c *Conn, err error) {
	r.mu.Lock()
	r.closes++
	r.err = err
	n := r.closes
	r.mu.Unlock()
	if n == 1 {
		close(r.closed)
	}
}

func (r *recorder) received() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.data.Bytes())
}

// waitClosed waits for OnClose and returns its error; it fails the test if
// OnClose ran more than once.
func (r *recorder) waitClosed(t testing.TB) error {
	t.Helper()
	select {
	case <-r.closed:
	case <-time.After(testTimeout):
		t.Fatal("OnClose not called")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closes != 1 {
		t.Fatalf("OnClose called %d times", r.closes)
	}
	return r.err
}

// readFull reads exactly n bytes from c with a deadline.
func readFull(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return buf
}

// expectEOF checks that the peer closed c (after any remaining bytes).
func expectEOF(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	rest, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("want EOF, got %v after %d bytes", err, len(rest))
	}
	if len(rest) != 0 {
		t.Fatalf("want EOF, got %d more bytes", len(rest))
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

func readProcFile(name string) ([]byte, error) { return os.ReadFile(name) }
