// Package wstransport serves herald's client protocol over WebSocket: one
// JSON command or reply or push per text frame (docs/protocol.md).
//
// Handler is the http.Handler mounted at /ws. For each request it performs
// the opening handshake (origin check, optional permessage-deflate),
// creates a session.Session, and switches the connection to the ws
// engine's event mode, so an idle connection holds no goroutine and no
// read buffer: messages are handed to the session by the engine's worker
// pool as they arrive.
//
// Outgoing publications are encoded once per node, not once per
// subscriber: a hub.Delivery is turned into a ws.PreparedMessage (JSON
// text frame, its deflated form built lazily once per compression
// parameter set) the first time any WebSocket subscriber needs it, and
// every subscriber's queue holds a reference to the same frame. Queues are
// bounded (ws.ConnOptions.QueueBytes and QueueMessages); a full queue
// makes the session disconnect the client as a slow consumer (3001).
//
// With Options.Metrics the handler counts messages and bytes read, bytes
// written to the sockets (when the poller writes them, not when they are
// queued), and the publish-to-write latency of one WebSocket recipient per
// publication.
//
// Heartbeats, connect timeouts and draining belong to the session.Manager
// the Handler is given: the Manager's single goroutine pings every
// connection (a ping push and a WebSocket ping frame), and Manager.Drain
// closes every connection with 1001 spread over a window.
package wstransport

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/ws"
)

// TransportName is the name sessions of this transport report to metrics.
const TransportName = "websocket"

// formatJSONText is the delivery format of this transport: a JSON push in
// an unmasked server text frame (*ws.PreparedMessage).
var formatJSONText = hub.NewFormat("websocket/json-text")

// Options configure a Handler. Sessions is required; the zero value of
// every other field is a sensible default.
type Options struct {
	// Sessions creates the connections' sessions and owns their
	// heartbeats and draining.
	Sessions *session.Manager
	// Accept configures the handshake and the connections: OriginPatterns
	// (browser origins allowed besides the server's own host),
	// Compression (nil: off), and Conn.QueueBytes / Conn.QueueMessages
	// (the per-connection outbound queue whose overflow means slow
	// consumer). Accept.ReadLimit defaults to MaxMessageSize.
	Accept ws.AcceptOptions
	// MaxMessageSize is the largest command a client may send, in bytes;
	// larger ones close the connection with 1009. Default
	// wire.DefaultMaxMessageSize (64 KiB).
	MaxMessageSize int
	// Logger receives handshake failures at debug level. Default: discard.
	Logger *slog.Logger
	// Metrics receives this transport's traffic counts and
	// publish-to-write latency samples. Default nil: not counted.
	Metrics *metrics.Transport
}

// Handler accepts WebSocket connections and runs the client protocol on
// them. It is safe for concurrent use; it owns no goroutine (connections
// are served by the ws engine's poller and ended by session.Manager.Drain
// or by the peer).
type Handler struct {
	sessions *session.Manager
	accept   ws.AcceptOptions
	codec    wire.JSONCodec
	log      *slog.Logger
	metrics  *metrics.Transport

	// setup is held, for a connection whose stripe it is, from Serve until
	// its session exists: the engine may deliver messages before that,
	// and those handler calls wait on it. Striped rather than one lock
	// per connection, which every idle connection would carry; a
	// connection waits at most for the setups of its stripe's neighbours
	// (a few microseconds each).
	setup    [setupStripes]sync.Mutex
	setupKey maphash.Seed
}

// setupStripes is the number of setup locks of a Handler.
const setupStripes = 64

// setupLock returns the setup lock of t.
func (h *Handler) setupLock(t *transport) *sync.Mutex {
	return &h.setup[maphash.Comparable(h.setupKey, t)%setupStripes]
}

// NewHandler validates opts and returns a Handler.
func NewHandler(opts Options) (*Handler, error) {
	if opts.Sessions == nil {
		return nil, errors.New("wstransport: Options.Sessions is required")
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = wire.DefaultMaxMessageSize
	}
	if opts.Accept.ReadLimit <= 0 {
		opts.Accept.ReadLimit = int64(opts.MaxMessageSize)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{
		sessions: opts.Sessions,
		accept:   opts.Accept,
		codec:    wire.JSONCodec{MaxMessageSize: opts.MaxMessageSize},
		log:      opts.Logger,
		metrics:  opts.Metrics,
		setupKey: maphash.MakeSeed(),
	}, nil
}

// ServeHTTP upgrades the request to a WebSocket connection and hands it to
// a new session. While the node drains it answers 503 instead.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.sessions.Draining() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, drainingBody, http.StatusServiceUnavailable)
		return
	}
	c, err := ws.Accept(w, r, &h.accept)
	if err != nil {
		// Accept has answered the request.
		h.log.Debug("websocket handshake failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	// Nothing derived from r is kept (the remote address is the Conn's),
	// so the request, its headers and the server's buffers become garbage
	// once this call returns.
	h.serve(c)
}

// ServeConn is ServeHTTP for a connection accepted without net/http: nc
// is a freshly accepted connection from which the caller has already read
// the first bytes of its request (read: not retained, but its memory may
// be overwritten; see ws.AcceptConnBuffered). The handshake is checked exactly as ServeHTTP
// checks it and refused with the same statuses, 503 while the node
// drains. ServeConn returns once the connection is handed to its session,
// or closed.
func (h *Handler) ServeConn(nc net.Conn, read []byte) {
	if h.sessions.Draining() {
		writeDraining(nc)
		return
	}
	c, _, err := ws.AcceptConnBuffered(nc, read, &h.accept)
	if err != nil {
		// AcceptConnBuffered has answered the request and closed nc.
		h.log.Debug("websocket handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		return
	}
	h.serve(c)
}

// drainingBody is the body of the 503 a draining node answers with.
const drainingBody = "server is shutting down"

// drainingResponse is what ServeConn writes while the node drains: what
// ServeHTTP answers then (http.Error with Retry-After), and no keep-alive.
var drainingResponse = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"X-Content-Type-Options: nosniff\r\n" +
	"Retry-After: 1\r\n" +
	"Content-Length: " + strconv.Itoa(len(drainingBody)+1) + "\r\n" +
	"Connection: close\r\n\r\n" +
	drainingBody + "\n")

// drainingWriteTimeout bounds writing the 503 to a client that does not
// read.
const drainingWriteTimeout = time.Second

func writeDraining(nc net.Conn) {
	_ = nc.SetWriteDeadline(time.Now().Add(drainingWriteTimeout))
	_, _ = nc.Write(drainingResponse) // the client may be gone; nothing to do
	_ = nc.Close()
}

// serve switches an accepted connection to event mode and hands it to a
// new session.
func (h *Handler) serve(c *ws.Conn) {
	t := &transport{c: c, h: h}
	setup := h.setupLock(t)
	setup.Lock() // handler calls wait until the session exists
	if err := c.Serve(t); err != nil {
		t.setup.Store(setupFailed)
		setup.Unlock() // no session: any handler call is a no-op
		h.log.Debug("websocket serve failed", "remote", c.RemoteAddr().String(), "err", err)
		_ = c.CloseNow()
		return
	}
	if err := h.sessions.StartSession(&t.sess, t, h.codec); err != nil {
		t.setup.Store(setupFailed)
		setup.Unlock()
		_ = c.Close(ws.StatusCode(wire.DisconnectShutdown), "server is shutting down")
		return
	}
	t.setup.Store(setupDone)
	setup.Unlock()
}

// States of transport.setup.
const (
	setupPending = iota // serve has not finished
	setupDone           // sess is the connection's session
	setupFailed         // there is no session
)

// transport is one connection: the session's Transport and the ws
// engine's Handler. Every idle connection holds one, so it keeps only
// what differs between connections, and holds the connection's session
// itself: one allocation of 208 bytes (a size class) rather than two
// (a 32-byte transport would share its size class with much short-lived
// garbage, whose spans idle connections would then keep mostly empty).
type transport struct {
	// sess is valid once setup is setupDone. Handler methods that find
	// setup pending wait for the connection's setup lock (at most the
	// time StartSession takes) because Serve starts delivering before
	// the session exists.
	sess  session.Session
	c     *ws.Conn
	h     *Handler
	setup atomic.Uint32
	// sample times a publication's write; allocated by the first
	// delivery that is sampled, so idle connections do without it.
	sample atomic.Pointer[metrics.WriteSample]
}

// writeSample returns the connection's sample, creating it on first use.
func (t *transport) writeSample() *metrics.WriteSample {
	if smp := t.sample.Load(); smp != nil {
		return smp
	}
	t.sample.CompareAndSwap(nil, new(metrics.WriteSample))
	return t.sample.Load()
}

var (
	_ session.Transport      = (*transport)(nil)
	_ session.TransportNamer = (*transport)(nil)
	_ ws.Handler             = (*transport)(nil)
	_ ws.WriteObserver       = (*transport)(nil)
)

func (t *transport) session() *session.Session {
	st := t.setup.Load()
	if st == setupPending {
		setup := t.h.setupLock(t)
		setup.Lock()
		st = t.setup.Load()
		setup.Unlock()
	}
	if st != setupDone {
		return nil
	}
	return &t.sess
}

// OnMessage implements ws.Handler: one text frame is one command.
func (t *transport) OnMessage(_ *ws.Conn, typ ws.MessageType, data []byte) {
	s := t.session()
	if s == nil {
		return
	}
	t.h.metrics.Received(len(data))
	if typ != ws.MessageText {
		s.Disconnect(wire.Disconnect{Code: wire.DisconnectBadRequest, Reason: "binary messages are not supported"})
		return
	}
	s.HandleMessage(data)
}

// OnWritten implements ws.WriteObserver: bytes reached the socket.
func (t *transport) OnWritten(_ *ws.Conn, n int, written uint64) {
	m := t.h.metrics
	if m == nil {
		return
	}
	m.Wrote(n)
	if smp := t.sample.Load(); smp != nil {
		smp.Written(m, written)
	}
}

// OnClose implements ws.Handler.
func (t *transport) OnClose(_ *ws.Conn, err error) {
	if s := t.session(); s != nil {
		s.HandleClose(err)
	}
}

// queueErr maps the engine's errors to the session's overflow contract.
func queueErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ws.ErrQueueFull):
		return fmt.Errorf("wstransport: %w: %w", session.ErrOverflow, err)
	}
	return fmt.Errorf("wstransport: %w", err)
}

// Send implements session.Transport: msg is copied into the queue as a
// text frame (compressed when negotiated and large enough).
func (t *transport) Send(msg []byte) error {
	return queueErr(t.c.EnqueueMessage(ws.MessageText, msg))
}

var pushBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// pushFrame is the shared encoding of a delivery: its prepared frame, and
// the choice of the one recipient whose write is timed.
type pushFrame struct {
	pm     *ws.PreparedMessage
	sample metrics.SampleOnce
}

// encodePush builds the shared frame of a delivery; it runs once per
// delivery for all WebSocket subscribers of the node.
func encodePush(p *wire.Push) any {
	bp := pushBufPool.Get().(*[]byte)
	b := wire.JSON.AppendPush((*bp)[:0], p)
	pm := ws.NewPreparedMessage(ws.MessageText, b) // copies b
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		pushBufPool.Put(bp)
	}
	return &pushFrame{pm: pm}
}

// SendDelivery implements session.Transport. The first recipient the
// delivery is queued for also times it to the socket.
func (t *transport) SendDelivery(d *hub.Delivery) error {
	pf := d.Encoded(formatJSONText, encodePush).(*pushFrame)
	if err := t.c.Enqueue(pf.pm); err != nil {
		return queueErr(err)
	}
	if m := t.h.metrics; m != nil && pf.sample.Take() {
		smp := t.writeSample()
		queued, _ := t.c.OutboundTotals()
		if smp.Start(d.Created(), queued) {
			_, written := t.c.OutboundTotals() // it may be out already
			smp.Written(m, written)
		}
	}
	return nil
}

// expiredCtx is an already canceled context: Ping with it queues the ping
// frame in event mode and returns without waiting for the pong, which then
// only refreshes LastRead.
var expiredCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// Ping implements session.Transport: a WebSocket ping frame, not waited
// for. Browsers answer it without the application's help.
func (t *transport) Ping() error {
	_, err := t.c.Ping(expiredCtx)
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return queueErr(err)
}

// Close implements session.Transport: the close frame carries the
// disconnect code; queued messages are written before it.
func (t *transport) Close(code uint16, reason string) {
	_ = t.c.Close(ws.StatusCode(code), reason)
}

// LastRead implements session.Transport; it counts pongs and every other
// frame.
func (t *transport) LastRead() time.Time { return t.c.LastRead() }

// TransportName implements session.TransportNamer: the name without the
// formatted remote address Info costs.
func (t *transport) TransportName() string { return TransportName }

// Info implements session.Transport.
func (t *transport) Info() session.TransportInfo {
	return session.TransportInfo{Name: TransportName, RemoteAddr: t.c.RemoteAddr().String()}
}
