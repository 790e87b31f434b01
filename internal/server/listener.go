package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Accept backoff bounds when the process or the system runs out of file
// descriptors.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// listen opens a TCP listener on addr. backlog > 0 replaces the accept
// queue length Go chose (net.core.somaxconn) by calling listen(2) again on
// the bound socket, which Linux allows; the kernel still caps it at
// net.core.somaxconn.
func listen(ctx context.Context, addr string, backlog int) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if backlog > 0 {
		if err := setBacklog(ln, backlog); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %s: backlog %d: %w", addr, backlog, err)
		}
	}
	return ln, nil
}

func setBacklog(ln net.Listener, backlog int) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return errors.New("not a TCP listener")
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		lerr = syscall.Listen(int(fd), backlog)
	}); err != nil {
		return err
	}
	return lerr
}

// fdLimitListener wraps a listener so that running out of file descriptors
// (EMFILE, ENFILE) does not end the accept loop or flood the log: Accept
// logs the first failure of an episode, retries with exponential backoff up
// to acceptBackoffMax while existing connections keep being served, and
// logs once more when an accept succeeds again. Pending connections wait in
// the kernel's accept queue meanwhile.
//
// Accept must be called from one goroutine at a time (as http.Server and
// every accept loop do); Close may be called from any goroutine and
// interrupts a backoff wait.
type fdLimitListener struct {
	net.Listener
	log *slog.Logger

	closeOnce sync.Once
	closed    chan struct{}

	exhausted bool // in an episode of EMFILE/ENFILE; touched by Accept only
	failures  int
}

func newFDLimitListener(ln net.Listener, log *slog.Logger) *fdLimitListener {
	return &fdLimitListener{Listener: ln, log: log, closed: make(chan struct{})}
}

// isFDExhausted reports whether err is the process (EMFILE) or the system
// (ENFILE) running out of file descriptors.
func isFDExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

func (l *fdLimitListener) Accept() (net.Conn, error) {
	backoff := acceptBackoffMin
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			if l.exhausted {
				l.exhausted = false
				l.log.Warn("accepting connections again: file descriptors available",
					"addr", l.Addr().String(), "failed_accepts", l.failures)
				l.failures = 0
			}
			return c, nil
		}
		if !isFDExhausted(err) {
			return nil, err
		}
		l.failures++
		if !l.exhausted {
			l.exhausted = true
			l.log.Error("accept failed: out of file descriptors; existing connections keep being served, "+
				"new ones wait in the accept queue (raise the open file limit)",
				"addr", l.Addr().String(), "error", err)
		}
		if timer == nil {
			timer = time.NewTimer(backoff)
		} else {
			timer.Reset(backoff)
		}
		select {
		case <-timer.C:
		case <-l.closed:
			return nil, net.ErrClosed
		}
		backoff = min(backoff*2, acceptBackoffMax)
	}
}

// Close closes the listener once; later calls return nil, so that the
// HTTP server closing it again during its own shutdown is not an error.
func (l *fdLimitListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.Listener.Close()
	})
	return err
}

// raiseFDLimit raises the soft RLIMIT_NOFILE to the hard limit, so that the
// number of client connections is bounded by the hard limit the operator
// set rather than by the (often 1024) soft default, and returns both.
func raiseFDLimit() (soft, hard uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, 0, fmt.Errorf("setrlimit: %w", err)
		}
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, 0, fmt.Errorf("getrlimit: %w", err)
		}
	}
	return rl.Cur, rl.Max, nil
}

// wsFront is the listener the HTTP server serves: for every new
// connection it reads the start of the first request itself and, when
// that is a WebSocket upgrade of the WebSocket path, completes the
// handshake without net/http (serveWS: one pooled head buffer and a short
// goroutine, instead of net/http's per-connection buffers, request,
// response and contexts, which would otherwise linger as garbage after a
// burst of connections). Every other connection is handed to the HTTP
// server through Accept, with the bytes already read replayed, so the
// HTTP server sees exactly what the client sent: the API, the demo,
// keep-alive, pipelining and net/http's own limits and errors are
// unchanged, and a request to the WebSocket path that is not an upgrade
// (or whose head does not fit frontHeadSize) still reaches the WebSocket
// handler through net/http.
//
// Goroutines: one accept loop, and one per connection while its head is
// read (bounded by headTimeout); Close ends them all and waits for them.
// Accept must be called from one goroutine at a time; Close is idempotent
// and safe from any goroutine.
type wsFront struct {
	inner       net.Listener
	path        string // the WebSocket path, "/ws"
	serveWS     func(nc net.Conn, read []byte)
	headTimeout time.Duration

	conns      chan net.Conn // connections for the HTTP server
	closed     chan struct{}
	acceptDone chan struct{} // the accept loop ended; acceptErr says why
	acceptErr  error
	closeOnce  sync.Once
	closeErr   error
	wg         sync.WaitGroup

	mu       sync.Mutex
	sniffing map[net.Conn]struct{} // connections whose head is being read
	isClosed bool
}

// frontHeadSize is the buffer a new connection's first bytes are read
// into. A WebSocket upgrade whose head is larger goes through net/http.
const frontHeadSize = 4 << 10

var frontBufPool = sync.Pool{New: func() any {
	b := make([]byte, frontHeadSize)
	return &b
}}

// newWSFront starts accepting on inner. WebSocket upgrades of path go to
// serveWS, which owns the connection from then on; read is the bytes
// read so far (the whole head), in a pooled buffer serveWS may use as its
// own until it returns.
func newWSFront(inner net.Listener, path string, serveWS func(nc net.Conn, read []byte), headTimeout time.Duration) *wsFront {
	f := &wsFront{
		inner:       inner,
		path:        path,
		serveWS:     serveWS,
		headTimeout: headTimeout,
		conns:       make(chan net.Conn),
		closed:      make(chan struct{}),
		acceptDone:  make(chan struct{}),
		sniffing:    make(map[net.Conn]struct{}),
	}
	f.wg.Add(1)
	go f.acceptLoop()
	return f
}

// Accept returns the next connection for the HTTP server.
func (f *wsFront) Accept() (net.Conn, error) {
	select {
	case c := <-f.conns:
		return c, nil
	case <-f.closed:
		return nil, net.ErrClosed
	case <-f.acceptDone:
		return nil, f.acceptErr
	}
}

// Addr returns the inner listener's address.
func (f *wsFront) Addr() net.Addr { return f.inner.Addr() }

// Close stops accepting, closes the inner listener, interrupts the heads
// being read and waits for the front's goroutines. A connection being
// upgraded finishes its handshake (its head is complete).
func (f *wsFront) Close() error {
	f.closeOnce.Do(func() {
		close(f.closed)
		f.closeErr = f.inner.Close()
		f.mu.Lock()
		f.isClosed = true
		for nc := range f.sniffing {
			_ = nc.SetReadDeadline(aLongTimeAgo)
		}
		f.mu.Unlock()
	})
	f.wg.Wait()
	return f.closeErr
}

// aLongTimeAgo is a deadline in the past: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

func (f *wsFront) acceptLoop() {
	defer f.wg.Done()
	backoff := acceptBackoffMin
	for {
		nc, err := f.inner.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// As http.Server does for temporary accept errors.
				select {
				case <-time.After(backoff):
				case <-f.closed:
					f.endAccept(net.ErrClosed)
					return
				}
				backoff = min(2*backoff, acceptBackoffMax)
				continue
			}
			f.endAccept(err)
			return
		}
		backoff = acceptBackoffMin
		f.mu.Lock()
		if f.isClosed {
			f.mu.Unlock()
			nc.Close()
			continue // the next Accept fails
		}
		// The head's deadline is set here, under mu, not in route: set
		// there it could overwrite the past deadline a concurrent Close
		// gives every registered connection, and Close would then wait
		// for the head timeout.
		if err := nc.SetReadDeadline(time.Now().Add(f.headTimeout)); err != nil {
			f.mu.Unlock()
			nc.Close()
			continue
		}
		f.sniffing[nc] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go f.route(nc)
	}
}

func (f *wsFront) endAccept(err error) {
	f.acceptErr = err
	close(f.acceptDone)
}

// route reads the start of nc's first request and sends nc to serveWS or
// to the HTTP server.
func (f *wsFront) route(nc net.Conn) {
	defer f.wg.Done()
	bp := frontBufPool.Get().(*[]byte)
	n, upgrade, err := f.readStart(nc, *bp)
	f.mu.Lock()
	delete(f.sniffing, nc)
	f.mu.Unlock()
	switch {
	case err != nil:
		// Nothing the HTTP server could answer: the client went away or
		// did not send its request in time (net/http closes such
		// connections without a response too).
		frontBufPool.Put(bp)
		nc.Close()
	case upgrade:
		f.serveWS(nc, (*bp)[:n])
		frontBufPool.Put(bp)
	default:
		if err := nc.SetReadDeadline(time.Time{}); err != nil {
			frontBufPool.Put(bp)
			nc.Close()
			return
		}
		rc := &replayConn{Conn: nc, buf: bp, rest: (*bp)[:n]}
		select {
		case f.conns <- rc:
		case <-f.closed:
			rc.Close()
		case <-f.acceptDone:
			rc.Close()
		}
	}
}

// readStart reads nc's first bytes into buf until it can tell whether
// they start a WebSocket upgrade of f.path (then the whole head is in
// buf[:n]) or anything else (then buf[:n] is what was read so far). A
// head that does not fit buf is not an upgrade for the front: net/http
// applies its own limits to it.
//
// nc's read deadline (the head timeout) was set when it was accepted.
func (f *wsFront) readStart(nc net.Conn, buf []byte) (n int, upgrade bool, err error) {
	for n < len(buf) {
		m, err := nc.Read(buf[n:])
		n += m
		if m > 0 {
			switch wsRequestLine(buf[:n], f.path) {
			case lineOther:
				return n, false, nil
			case lineUpgradePath:
				if end := headEnd(buf[:n]); end >= 0 {
					return n, hasUpgradeWebSocket(buf[:end]), nil
				}
			}
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// requestLineKind is what the start of a request says about its route.
type requestLineKind int

const (
	lineUnknown     requestLineKind = iota // too short to tell
	lineOther                              // not a GET of the WebSocket path
	lineUpgradePath                        // a GET of the WebSocket path, with or without a query
)

// wsRequestLine classifies the start of a request: "GET " followed by
// exactly path, then a space or a query. Anything else (another method,
// path or form, empty lines before the request line) is left to net/http.
func wsRequestLine(b []byte, path string) requestLineKind {
	const method = "GET "
	want := len(method) + len(path)
	for i := 0; i < len(b) && i < want; i++ {
		var c byte
		if i < len(method) {
			c = method[i]
		} else {
			c = path[i-len(method)]
		}
		if b[i] != c {
			return lineOther
		}
	}
	if len(b) <= want {
		return lineUnknown
	}
	if b[want] != ' ' && b[want] != '?' {
		return lineOther
	}
	return lineUpgradePath
}

// headEnd returns the length of the request head in b (through the empty
// line; bare LF line ends accepted, as net/http does), or -1.
func headEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
	return -1
}

// hasUpgradeWebSocket reports whether a request head has an Upgrade
// header field listing the websocket token (case-insensitive). Whether
// the upgrade is acceptable is for the WebSocket handshake to decide; a
// request without it is left to net/http.
func hasUpgradeWebSocket(head []byte) bool {
	const name = "upgrade:"
	for len(head) > 0 {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		if len(line) <= len(name) || !bytes.EqualFold(line[:len(name)], []byte(name)) {
			continue
		}
		for v := range bytes.SplitSeq(line[len(name):], []byte(",")) {
			if bytes.EqualFold(bytes.Trim(v, " \t\r"), []byte("websocket")) {
				return true
			}
		}
	}
	return false
}

// replayConn is a connection handed to the HTTP server after the front
// read its first bytes: reads return those bytes first, then read the
// socket. The pooled buffer holding them goes back to its pool once they
// are consumed or the connection is closed.
type replayConn struct {
	net.Conn
	drained atomic.Bool // rest is consumed and buf released

	mu   sync.Mutex // guards buf and rest
	buf  *[]byte
	rest []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.drained.Load() {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	if c.buf == nil {
		c.mu.Unlock()
		return c.Conn.Read(p)
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	if len(c.rest) == 0 {
		c.releaseLocked()
	}
	c.mu.Unlock()
	return n, nil
}

// releaseLocked returns the buffer; the caller holds mu.
func (c *replayConn) releaseLocked() {
	if c.buf != nil {
		frontBufPool.Put(c.buf)
		c.buf, c.rest = nil, nil
		c.drained.Store(true)
	}
}

func (c *replayConn) Close() error {
	c.mu.Lock()
	c.releaseLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}

// CloseWrite half-closes the socket, which net/http does before closing a
// connection whose request it refused, so the client reads the response.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
