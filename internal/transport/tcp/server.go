// Package tcptransport serves herald's client protocol over TCP, plain or
// inside TLS: a 6-byte client hello choosing the JSON or binary encoding,
// a 7-byte server hello, then length-prefixed frames in both directions
// (docs/protocol.md, "TCP transport").
//
// # Connections
//
// Server.Serve accepts connections. Each new connection gets a short-lived
// goroutine that performs the TLS handshake (when configured) and reads
// the client hello, both within Options.HelloTimeout; the hello is checked
// byte by byte, so a stray HTTP request or TLS handshake is refused on its
// first bytes without an answer. After a successful hello the socket is
// handed to a netpoll.Poller and the goroutine ends: a plain TCP
// connection then has no goroutine and no buffer while idle (it is watched
// by epoll); a TLS connection uses netpoll's portable fallback (one
// reading goroutine). Bytes are fed to a wire.FrameDecoder as they arrive,
// split or glued arbitrarily, and every complete frame goes to the
// connection's session.Session.
//
// # Writing
//
// Replies and per-session pushes are queued as a 4-byte header plus the
// session's message, without copying it. Publications are encoded once
// per node and codec: the first TCP subscriber to receive a hub.Delivery
// builds the complete frame (header and payload) and every other
// subscriber queues a reference to the same bytes. Each connection's
// queue is bounded (Options.QueueBytes, Options.QueueMessages); when a
// publication does not fit, the session disconnects the client as a slow
// consumer (3001). A small reserve above those limits keeps room for the
// replies and the final disconnect push.
//
// With Options.Metrics, bytes are counted as sent when the poller writes
// them (netpoll.WriteObserver), and one TCP recipient per publication is
// timed from the delivery's creation to the write that completes its frame.
//
// # Liveness
//
// TCP has no transport-level ping: the session.Manager sends ping pushes
// and closes connections from which nothing arrived for ping +
// pong_timeout (3002), which is how half-open connections (a client that
// vanished without a FIN) are found. TCP keepalive is enabled as well, so
// the kernel eventually reaps such sockets even before that.
//
// # Goroutines and locks
//
// Serve runs on the caller's goroutine. The Server owns one goroutine per
// connection in the hello phase (bounded by HelloTimeout); Shutdown waits
// for them. Established connections belong to the Poller's workers. The
// Server's mutex guards its listener and connection sets and is never held
// while calling into a session or netpoll.
package tcptransport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/netpoll"
	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/wire"
)

// TransportName is the name sessions of this transport report to metrics.
const TransportName = "tcp"

// Delivery formats: a complete frame ([length][payload]) per codec.
var (
	formatJSONFrame   = hub.NewFormat("tcp/json")
	formatBinaryFrame = hub.NewFormat("tcp/binary")
)

// Defaults of Options.
const (
	DefaultQueueBytes    = 1 << 20
	DefaultQueueMessages = 1024
	DefaultCloseTimeout  = 5 * time.Second
	DefaultKeepAlive     = 30 * time.Second
	// controlReserveBytes and controlReserveMessages are queue room kept
	// above the publication limits for replies and the disconnect push.
	controlReserveBytes    = 64 << 10
	controlReserveMessages = 64
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("tcptransport: server closed")

// Options configure a Server. Sessions is required; every other field's
// zero value is a sensible default.
type Options struct {
	// Sessions creates the connections' sessions and owns heartbeats,
	// connect timeouts and draining.
	Sessions *session.Manager
	// Poller watches established connections. Default netpoll.Default().
	Poller *netpoll.Poller
	// TLS, when set, makes every connection start with a TLS handshake
	// (use a tlsreload.Reloader's GetCertificate for certificates that
	// can be replaced without a restart). TLS connections cost one
	// goroutine each while open.
	TLS *tls.Config
	// MaxFrameSize is the largest frame payload (one command) a client may
	// send, in bytes; a larger frame header closes the connection with
	// 1009 before any of the payload is buffered. Default
	// wire.DefaultMaxFrameSize (64 KiB).
	MaxFrameSize int
	// HelloTimeout bounds the TLS handshake plus the client hello.
	// Default: the Manager's ConnectTimeout.
	HelloTimeout time.Duration
	// QueueBytes and QueueMessages bound one connection's outbound queue
	// of publications; beyond them the client is disconnected as a slow
	// consumer (3001). Defaults DefaultQueueBytes (1 MiB) and
	// DefaultQueueMessages (1024). Memory per slow client grows with them.
	QueueBytes    int
	QueueMessages int
	// CloseTimeout bounds how long a closing connection may take to
	// flush its queue (including the disconnect push) to a client that
	// does not read. Default DefaultCloseTimeout (5 s).
	CloseTimeout time.Duration
	// KeepAlive is the TCP keepalive idle time and probe interval.
	// Default DefaultKeepAlive (30 s); negative disables keepalive.
	KeepAlive time.Duration
	// Logger receives accept errors. Default: discard.
	Logger *slog.Logger
	// Metrics receives this transport's traffic counts (messages and
	// bytes read, bytes written when they reach the socket) and the
	// publish-to-write latency of one TCP recipient per publication.
	// Default nil: not counted.
	Metrics *metrics.Transport
}

// Stats are a Server's cumulative counters.
type Stats struct {
	// Accepted counts accepted sockets; Established counts those that
	// completed the hello and got a session.
	Accepted, Established uint64
	// HelloFailed counts connections closed during the hello (bad magic,
	// unsupported version or encoding, timeout, TLS failure).
	HelloFailed uint64
	// Overflows counts publications refused because a connection's queue
	// was full (each disconnects a slow consumer).
	Overflows uint64
	// Open is the number of connections not yet closed.
	Open int64
}

// Server accepts TCP connections and runs the client protocol on them.
// All methods are safe for concurrent use.
type Server struct {
	opts   Options
	poller *netpoll.Poller
	codecs [2]wire.Codec // by wire.Encoding

	mu        sync.Mutex
	shutdown  bool
	listeners map[net.Listener]struct{}
	hello     map[net.Conn]struct{} // connections in the hello phase
	live      map[*conn]struct{}    // registered connections
	liveGone  chan struct{}         // closed when live empties during Shutdown
	wg        sync.WaitGroup        // hello goroutines

	accepted, established, helloFailed, overflows atomic.Uint64
	open                                          atomic.Int64
}

// New validates opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Sessions == nil {
		return nil, errors.New("tcptransport: Options.Sessions is required")
	}
	if opts.Poller == nil {
		opts.Poller = netpoll.Default()
	}
	if opts.MaxFrameSize <= 0 {
		opts.MaxFrameSize = wire.DefaultMaxFrameSize
	}
	if opts.HelloTimeout <= 0 {
		opts.HelloTimeout = opts.Sessions.Config().ConnectTimeout
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.QueueMessages <= 0 {
		opts.QueueMessages = DefaultQueueMessages
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = DefaultCloseTimeout
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:      opts,
		poller:    opts.Poller,
		listeners: map[net.Listener]struct{}{},
		hello:     map[net.Conn]struct{}{},
		live:      map[*conn]struct{}{},
	}
	s.codecs[wire.EncodingJSON] = wire.JSONCodec{MaxMessageSize: opts.MaxFrameSize}
	s.codecs[wire.EncodingBinary] = wire.BinaryCodec{MaxMessageSize: opts.MaxFrameSize}
	return s, nil
}

// Stats returns a snapshot of the Server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Accepted:    s.accepted.Load(),
		Established: s.established.Load(),
		HelloFailed: s.helloFailed.Load(),
		Overflows:   s.overflows.Load(),
		Open:        s.open.Load(),
	}
}

// Serve accepts connections on l until l fails or Shutdown is called; it
// then returns ErrServerClosed (after Shutdown) or the accept error. Serve
// closes l when it returns. Several listeners may be served at once.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isShutdown() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("tcptransport: accept: %w", err)
			}
			// Out of descriptors and the like: back off instead of
			// spinning, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.opts.Logger.Warn("tcp accept failed; retrying", "err", err, "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.accepted.Add(1)
		s.mu.Lock()
		if s.shutdown {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.hello[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handshake(nc)
	}
}

func (s *Server) isShutdown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdown
}

// handshake is the goroutine of one connection in the hello phase.
func (s *Server) handshake(nc net.Conn) {
	defer s.wg.Done()
	nc, enc, rest, ok := s.readHello(nc)
	s.mu.Lock()
	delete(s.hello, nc)
	down := s.shutdown
	s.mu.Unlock()
	if !ok || down {
		s.helloFailed.Add(1)
		nc.Close()
		return
	}
	s.establish(nc, enc, rest)
}

// readHello configures the socket, runs the TLS handshake if any, reads
// the client hello and answers it. It returns the connection to use from
// now on (the TLS wrapper, if any) and, on success, the encoding and the
// bytes read past the hello; the connection's deadline is cleared by
// netpoll.Register.
func (s *Server) readHello(raw net.Conn) (net.Conn, wire.Encoding, []byte, bool) {
	if tc, ok := raw.(*net.TCPConn); ok {
		if s.opts.KeepAlive > 0 {
			_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true,
				Idle: s.opts.KeepAlive, Interval: s.opts.KeepAlive, Count: 4})
		} else {
			_ = tc.SetKeepAlive(false)
		}
	}
	nc := raw
	if err := nc.SetDeadline(time.Now().Add(s.opts.HelloTimeout)); err != nil {
		return nc, 0, nil, false
	}
	if s.opts.TLS != nil {
		tc := tls.Server(raw, s.opts.TLS)
		if err := tc.Handshake(); err != nil {
			return nc, 0, nil, false
		}
		nc = tc
		s.swapHello(raw, nc)
	}
	var buf [512]byte
	n := 0
	var h wire.Hello
	for {
		m, err := nc.Read(buf[n:])
		n += m
		if n > 0 {
			var perr error
			h, perr = wire.ParseClientHello(buf[:n])
			if perr == nil {
				break
			}
			if !errors.Is(perr, wire.ErrHelloIncomplete) {
				return nc, 0, nil, false // not our protocol: no answer
			}
		}
		if err != nil {
			return nc, 0, nil, false
		}
	}
	status := wire.AnswerHello(h)
	answer := wire.AppendServerHello(nil, wire.ProtocolVersion, h.Encoding, status)
	if _, err := nc.Write(answer); err != nil || status != wire.HelloOK {
		if status != wire.HelloOK {
			closeWrite(nc)
		}
		return nc, 0, nil, false
	}
	var rest []byte
	if n > wire.ClientHelloSize {
		rest = append([]byte(nil), buf[wire.ClientHelloSize:n]...)
	}
	return nc, h.Encoding, rest, true
}

// closeWrite half-closes nc so that the refused client reads the server
// hello and then EOF rather than a reset.
func closeWrite(nc net.Conn) {
	switch c := nc.(type) {
	case *net.TCPConn:
		_ = c.CloseWrite()
	case *tls.Conn:
		_ = c.CloseWrite()
	}
}

// swapHello replaces the tracked raw socket by its TLS wrapper, so that
// Shutdown closes the wrapper.
func (s *Server) swapHello(raw, wrapped net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.hello[raw]; ok {
		delete(s.hello, raw)
		s.hello[wrapped] = struct{}{}
	}
}

// establish registers nc with the poller and gives it a session.
func (s *Server) establish(nc net.Conn, enc wire.Encoding, rest []byte) {
	c := newConn(s, s.codecs[enc], nc.RemoteAddr().String())
	pc, err := s.poller.Register(nc, c, netpoll.ConnOptions{
		QueueBytes:    s.opts.QueueBytes + controlReserveBytes,
		QueueMessages: s.opts.QueueMessages + controlReserveMessages,
		Buffered:      rest,
	})
	if err != nil {
		c.abandon()
		s.helloFailed.Add(1)
		return
	}
	s.mu.Lock()
	if s.shutdown || c.gone {
		s.mu.Unlock()
		c.abandon()
		_ = pc.Close()
		return
	}
	c.out = pc
	s.live[c] = struct{}{}
	s.open.Add(1)
	s.mu.Unlock()
	sess, err := s.opts.Sessions.NewSession(c, c.codec)
	if err != nil {
		// Draining: tell the client to come back elsewhere.
		p := &wire.Push{Type: wire.PushDisconnect, Disconnect: &wire.Disconnect{
			Code: wire.DisconnectShutdown, Reason: "server is shutting down", Reconnect: true}}
		_ = pc.Write(c.frame(c.codec.AppendPush(nil, p)))
		c.abandon()
		_ = pc.CloseAfterFlush(s.opts.CloseTimeout)
		return
	}
	s.established.Add(1)
	c.start(sess)
}

// forget removes a closed connection.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.gone = true
	if _, ok := s.live[c]; !ok {
		return
	}
	delete(s.live, c)
	s.open.Add(-1)
	if len(s.live) == 0 && s.liveGone != nil {
		close(s.liveGone)
		s.liveGone = nil
	}
}

// Shutdown stops accepting (closing every listener), drops connections
// still in the hello phase and waits for their goroutines, then waits
// until every established connection has ended (normally through
// session.Manager.Drain, which the caller runs first or concurrently).
// When ctx ends first, the remaining connections are closed at once and
// Shutdown returns ctx's error after their sessions ended. Idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	for l := range s.listeners {
		l.Close()
	}
	for nc := range s.hello {
		nc.Close()
	}
	var gone chan struct{}
	if len(s.live) > 0 {
		if s.liveGone == nil {
			s.liveGone = make(chan struct{})
		}
		gone = s.liveGone
	}
	s.mu.Unlock()
	s.wg.Wait()
	if gone == nil {
		return nil
	}
	select {
	case <-gone:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	rest := make([]writer, 0, len(s.live))
	for c := range s.live {
		rest = append(rest, c.out)
	}
	gone = s.liveGone
	s.mu.Unlock()
	for _, w := range rest {
		_ = w.Close()
	}
	if gone != nil {
		<-gone
	}
	return fmt.Errorf("tcptransport: shutdown: %w", ctx.Err())
}
