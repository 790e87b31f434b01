// Package udptransport serves herald's client protocol over UDP
// (docs/protocol.md, "UDP transport"): one binary-encoded message per
// datagram after a small header carrying the session id, its secret and a
// sequence number.
//
// # Model
//
// The package is split in two layers. The datagram layer (Server.Serve,
// writeDatagram) reads datagrams from sockets, parses their headers and
// writes datagrams with a per-recipient header; it knows nothing about
// commands. The session layer (sessionTable, udpSession) authenticates
// datagrams against their session's secret, drops replays
// (wire.ReplayWindow), tracks the client's current address, remembers the
// replies to the last ReplyCacheSize command ids, and presents each
// client to a session.Session as a session.Transport. A future reliable
// datagram transport can reuse the session layer with its own I/O.
//
// # Sessions
//
// A connect datagram (at least 1200 bytes) creates a session with a
// random id and secret, answered by an accept datagram once the session
// has processed the connect command; the accept is never larger than the
// connect that caused it, and a repeated connect (same address and
// nonce) gets the same accept again. Datagrams whose secret does not
// match are dropped without an answer, so a spoofed source address can
// neither inject commands nor redirect the session's traffic: the
// session follows the source address of its newest authenticated
// datagram (roaming clients keep their session). Data or close datagrams
// for an unknown session get a 10-byte reset. Silent sessions are closed
// by the session.Manager's heartbeat with 3002.
//
// # Sending
//
// Each publication is encoded once per node (hub.Delivery.Encoded); every
// recipient's datagram is written with one sendmsg of two buffers, its
// own 26-byte header and the shared payload, so the payload is never
// copied per subscriber. Writes never block: when the socket's send
// buffer is full the datagram is dropped and counted, which UDP clients
// handle like any loss (gaps in offsets, command retries). Messages larger
// than Options.MaxDatagramSize are not sent: publications are counted in
// Stats.TooLarge, replies are replaced by error 106. With Options.Metrics
// every datagram the kernel takes is counted, and the first recipient of
// each publication is timed from the delivery's creation to its sendmsg.
//
// # Goroutines and locks
//
// Serve runs one reader on the caller's goroutine per socket. New starts
// Options.Workers worker goroutines that run the sessions' commands (so a
// slow broker call never stalls the reader); each session is served by
// one worker at a time, in arrival order, through a bounded inbox.
// Shutdown stops the readers, ends every session and waits for the
// workers. Lock order: sessionTable.mu -> udpSession.mu; neither is held
// while calling into a session.Session or writing to a socket.
package udptransport

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/wire"
)

// TransportName is the name sessions of this transport report to metrics.
const TransportName = "udp"

// formatBinaryPayload is a binary push without any datagram header: the
// header is per recipient.
var formatBinaryPayload = hub.NewFormat("udp/binary")

// Defaults of Options.
const (
	// DefaultMaxDatagramSize is safe on every path (the IPv6 minimum MTU
	// minus headers); larger values rely on IP fragmentation.
	DefaultMaxDatagramSize = 1200
	DefaultMaxSessions     = 100_000
	DefaultInboxSize       = 32
	// ReplyCacheSize is how many command ids per session have their reply
	// remembered, so that a retried command is answered again instead of
	// executed twice.
	ReplyCacheSize = 16
)

// maxReadFailures is how many consecutive read errors Serve tolerates.
const maxReadFailures = 100

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("udptransport: server closed")

// Options configure a Server. Sessions is required; every other field's
// zero value is a sensible default.
type Options struct {
	// Sessions creates the clients' sessions and owns heartbeats (ping
	// pushes, 3002 for silent clients) and draining.
	Sessions *session.Manager
	// MaxDatagramSize is the largest datagram the server sends, in bytes.
	// Default DefaultMaxDatagramSize (1200); at most wire.MaxDatagramSize.
	// Publications that do not fit are not sent (Stats.TooLarge).
	MaxDatagramSize int
	// MaxSessions bounds the number of sessions; connects beyond it are
	// dropped. Default DefaultMaxSessions.
	MaxSessions int
	// Workers is the number of goroutines running commands. Default
	// 4 × GOMAXPROCS.
	Workers int
	// InboxSize bounds the commands waiting for one session's worker;
	// beyond it datagrams are dropped (the client retries). Default
	// DefaultInboxSize.
	InboxSize int
	// Logger receives socket errors. Default: discard.
	Logger *slog.Logger
	// Metrics receives this transport's traffic counts (messages and
	// bytes read, datagram bytes written) and the publish-to-write
	// latency of one UDP recipient per publication. Default nil: not
	// counted.
	Metrics *metrics.Transport
}

// Stats are a Server's cumulative counters (Sessions is a gauge).
type Stats struct {
	Sessions int64 // live sessions
	// Accepted counts sessions created by a connect datagram.
	Accepted uint64
	// Malformed counts datagrams that failed to parse; BadSecret those
	// whose secret did not match their session; Replayed duplicates and
	// datagrams older than the replay window.
	Malformed, BadSecret, Replayed uint64
	// Resets counts reset datagrams sent for unknown sessions.
	Resets uint64
	// TooLarge counts messages not sent because they exceed
	// MaxDatagramSize (publications) — replies are replaced by error 106.
	TooLarge uint64
	// WriteDrops counts datagrams the socket refused (send buffer full or
	// an error); InboxDrops commands dropped because a session's inbox
	// was full; SessionLimit connects refused by MaxSessions.
	WriteDrops, InboxDrops, SessionLimit uint64
	// ReplyResends counts retried commands answered from the reply cache.
	ReplyResends uint64
}

type counters struct {
	accepted, malformed, badSecret, replayed, resets, tooLarge atomic.Uint64
	writeDrops, inboxDrops, sessionLimit, replyResends         atomic.Uint64
}

// Server runs UDP sessions. All methods are safe for concurrent use.
type Server struct {
	opts  Options
	codec wire.BinaryCodec
	table sessionTable
	work  workQueue
	c     counters

	mu       sync.Mutex
	shutdown bool
	sockets  map[*net.UDPConn]struct{}
	readers  sync.WaitGroup
	workers  sync.WaitGroup
}

// New validates opts, applies defaults and starts the worker goroutines;
// Shutdown stops them.
func New(opts Options) (*Server, error) {
	if opts.Sessions == nil {
		return nil, errors.New("udptransport: Options.Sessions is required")
	}
	if opts.MaxDatagramSize <= 0 {
		opts.MaxDatagramSize = DefaultMaxDatagramSize
	}
	if opts.MaxDatagramSize > wire.MaxDatagramSize {
		return nil, fmt.Errorf("udptransport: MaxDatagramSize %d over %d", opts.MaxDatagramSize, wire.MaxDatagramSize)
	}
	if opts.MaxDatagramSize < wire.DataHeaderSize+64 {
		return nil, fmt.Errorf("udptransport: MaxDatagramSize %d is too small", opts.MaxDatagramSize)
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.Workers <= 0 {
		opts.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	if opts.InboxSize <= 0 {
		opts.InboxSize = DefaultInboxSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts: opts,
		// Commands arrive in one datagram.
		codec:   wire.BinaryCodec{MaxMessageSize: wire.MaxDatagramSize},
		sockets: map[*net.UDPConn]struct{}{},
	}
	s.table.init()
	s.work.init()
	for range opts.Workers {
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			s.work.run()
		}()
	}
	return s, nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Sessions:     int64(s.table.len()),
		Accepted:     s.c.accepted.Load(),
		Malformed:    s.c.malformed.Load(),
		BadSecret:    s.c.badSecret.Load(),
		Replayed:     s.c.replayed.Load(),
		Resets:       s.c.resets.Load(),
		TooLarge:     s.c.tooLarge.Load(),
		WriteDrops:   s.c.writeDrops.Load(),
		InboxDrops:   s.c.inboxDrops.Load(),
		SessionLimit: s.c.sessionLimit.Load(),
		ReplyResends: s.c.replyResends.Load(),
	}
}

// Serve reads datagrams from pc until Shutdown (it then returns
// ErrServerClosed) or a socket error. Several sockets may be served at
// once (for example SO_REUSEPORT sockets, or IPv4 and IPv6); a session
// answers through the socket its newest datagram arrived on. Serve closes
// pc when it returns.
func (s *Server) Serve(pc *net.UDPConn) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		pc.Close()
		return ErrServerClosed
	}
	s.sockets[pc] = struct{}{}
	s.readers.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sockets, pc)
		s.mu.Unlock()
		pc.Close()
		s.readers.Done()
	}()
	sock := newSocket(pc)
	buf := make([]byte, wire.MaxDatagramSize+1)
	var d wire.Datagram
	failures := 0
	for {
		n, addr, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.isShutdown() {
				return ErrServerClosed
			}
			// ICMP errors surface as read errors on some systems: skip a
			// few, but do not spin on a broken socket.
			failures++
			if errors.Is(err, net.ErrClosed) || failures > maxReadFailures {
				return fmt.Errorf("udptransport: read: %w", err)
			}
			s.opts.Logger.Debug("udp read failed", "err", err)
			continue
		}
		failures = 0
		if err := wire.ParseDatagram(buf[:n], &d); err != nil {
			s.c.malformed.Add(1)
			continue
		}
		s.handleDatagram(sock, addr, &d, n)
	}
}

// write sends one datagram of hdr and payload to addr and counts it: in
// the traffic metrics when the kernel took it, as a drop when not. It
// reports whether it was sent.
func (s *Server) write(sock *socket, addr netip.AddrPort, hdr, payload []byte) bool {
	if err := sock.write(addr, hdr, payload); err != nil {
		s.c.writeDrops.Add(1)
		return false
	}
	s.opts.Metrics.Wrote(len(hdr) + len(payload))
	return true
}

func (s *Server) isShutdown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdown
}

// handleDatagram dispatches one parsed datagram of size bytes.
func (s *Server) handleDatagram(sock *socket, addr netip.AddrPort, d *wire.Datagram, size int) {
	switch d.Kind {
	case wire.DatagramConnect:
		s.handleConnect(sock, addr, d, size)
	case wire.DatagramData, wire.DatagramClose:
		us := s.table.get(d.Session)
		if us == nil {
			// A reset (10 bytes) answers a datagram of at least 26.
			var b [wire.ResetSize]byte
			out, _ := wire.AppendDatagram(b[:0], &wire.Datagram{Kind: wire.DatagramReset, Session: d.Session})
			s.write(sock, addr, out, nil)
			s.c.resets.Add(1)
			return
		}
		us.receive(sock, addr, d)
	default:
		// accept and reset only travel to clients.
		s.c.malformed.Add(1)
	}
}

// handleConnect creates a session for a connect datagram, or answers a
// repeated one with the accept already sent.
func (s *Server) handleConnect(sock *socket, addr netip.AddrPort, d *wire.Datagram, size int) {
	key := connectKey{addr: addr, nonce: d.Nonce}
	if prev := s.table.byConnect(key); prev != nil {
		prev.resendAccept(sock, addr, size)
		return
	}
	if s.table.len() >= s.opts.MaxSessions {
		s.c.sessionLimit.Add(1)
		return
	}
	us := newUDPSession(s, sock, addr, key, size)
	sess, err := s.opts.Sessions.NewSession(us, s.codec)
	if err != nil {
		return // draining: no new sessions; the client retries elsewhere
	}
	us.s = sess
	if !s.table.add(us) {
		// A concurrent reader created the same session first.
		sess.HandleClose(nil)
		return
	}
	s.c.accepted.Add(1)
	us.enqueue(append([]byte(nil), d.Message...))
}

// Shutdown stops reading (closing every socket), ends every remaining
// session (normally Manager.Drain has disconnected them already) and
// waits for the workers to finish their commands and closes. When ctx
// ends first it returns ctx's error; the workers still finish in the
// background. Idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	for pc := range s.sockets {
		pc.Close()
	}
	s.mu.Unlock()
	s.readers.Wait()
	for _, us := range s.table.all() {
		us.terminate()
	}
	s.work.stop()
	done := make(chan struct{})
	go func() {
		s.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("udptransport: shutdown: %w", ctx.Err())
	}
}

// randomID returns a random non-zero 64-bit value.
func randomID() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// connectKey identifies a connection attempt: a repeated connect with the
// same key gets the same accept.
type connectKey struct {
	addr  netip.AddrPort
	nonce uint64
}

// sessionTable finds sessions by id and by connect attempt. Safe for
// concurrent use.
type sessionTable struct {
	mu        sync.RWMutex
	byID      map[uint64]*udpSession
	byAttempt map[connectKey]*udpSession
}

func (t *sessionTable) init() {
	t.byID = map[uint64]*udpSession{}
	t.byAttempt = map[connectKey]*udpSession{}
}

func (t *sessionTable) get(id uint64) *udpSession {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byID[id]
}

func (t *sessionTable) byConnect(k connectKey) *udpSession {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byAttempt[k]
}

func (t *sessionTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byID)
}

// add inserts us under a fresh id; false when its connect attempt is
// already known.
func (t *sessionTable) add(us *udpSession) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.byAttempt[us.attempt]; dup {
		return false
	}
	for {
		if _, taken := t.byID[us.id]; !taken {
			break
		}
		us.id = randomID()
	}
	t.byID[us.id] = us
	t.byAttempt[us.attempt] = us
	return true
}

func (t *sessionTable) remove(us *udpSession) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[us.id] == us {
		delete(t.byID, us.id)
	}
	if t.byAttempt[us.attempt] == us {
		delete(t.byAttempt, us.attempt)
	}
}

func (t *sessionTable) all() []*udpSession {
	t.mu.RLock()
	defer t.mu.RUnlock()
	list := make([]*udpSession, 0, len(t.byID))
	for _, us := range t.byID {
		list = append(list, us)
	}
	return list
}

// workQueue hands sessions with pending work to the workers. A session is
// in the queue at most once (udpSession.scheduled), so the queue is
// bounded by the number of sessions.
type workQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	items   []*udpSession
	stopped bool
}

func (q *workQueue) init() { q.cond.L = &q.mu }

// push queues us; false once the queue is stopped (the caller then runs
// the work itself).
func (q *workQueue) push(us *udpSession) bool {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, us)
	q.mu.Unlock()
	q.cond.Signal()
	return true
}

// stop makes the workers exit once the queue is empty.
func (q *workQueue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// run is a worker's loop.
func (q *workQueue) run() {
	for {
		q.mu.Lock()
		for len(q.items) == 0 && !q.stopped {
			q.cond.Wait()
		}
		if len(q.items) == 0 {
			q.mu.Unlock()
			return
		}
		us := q.items[0]
		q.items[0] = nil
		q.items = q.items[1:]
		if len(q.items) == 0 {
			q.items = nil // let the backing array go
		}
		q.mu.Unlock()
		us.run()
	}
}

// sinceUnix converts unix nanoseconds to a time.
func sinceUnix(ns int64) time.Time { return time.Unix(0, ns) }
