package ws

import (
	"errors"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/netpoll"
)

// MessageType is the type of a data message (RFC 6455 §5.6).
type MessageType int

// Data message types.
const (
	MessageText   MessageType = 1
	MessageBinary MessageType = 2
)

func (t MessageType) String() string {
	switch t {
	case MessageText:
		return "text"
	case MessageBinary:
		return "binary"
	}
	return "MessageType(" + itoa(int(t)) + ")"
}

func (t MessageType) opcode() (opcode, error) {
	switch t {
	case MessageText:
		return opText, nil
	case MessageBinary:
		return opBinary, nil
	}
	return 0, errors.New("ws: invalid message type " + itoa(int(t)))
}

// Errors returned by Conn methods.
var (
	// ErrClosed is returned by operations on a connection that is closed
	// or closing (after Close, CloseNow, or once the closing handshake has
	// started).
	ErrClosed = errors.New("ws: connection closed")
	// ErrQueueFull is returned by Enqueue (and by writes in event mode)
	// when the message would take the connection's outbound queue over
	// ConnOptions.QueueBytes or QueueMessages. Nothing was queued and the
	// connection stays open: the caller's slow-consumer policy decides.
	ErrQueueFull = errors.New("ws: outbound queue full")
	// ErrNotServed is returned by Enqueue on a connection that is not in
	// event mode (Serve was not called).
	ErrNotServed = errors.New("ws: connection is not in event mode (call Serve first)")
	// ErrServed is returned by Read, Reader and Serve on a connection that
	// is already in event mode: its messages go to the Handler.
	ErrServed = errors.New("ws: connection is in event mode")
	// ErrCloseTimeout is returned by Close when the peer did not answer
	// the close frame within ConnOptions.CloseTimeout; the socket is
	// closed anyway.
	ErrCloseTimeout = errors.New("ws: peer did not complete the closing handshake in time")
)

// Defaults of ConnOptions.
const (
	defaultCloseTimeout  = 5 * time.Second
	defaultQueueBytes    = 4 << 20
	defaultQueueMessages = 4096
)

func (o ConnOptions) withDefaults() ConnOptions {
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = defaultCloseTimeout
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = defaultQueueBytes
	}
	if o.QueueMessages <= 0 {
		o.QueueMessages = defaultQueueMessages
	}
	return o
}

// Conn is an established WebSocket connection, server or client side.
//
// A Conn is used in one of two modes. In blocking mode (the default) the
// application reads with Read or Reader from one goroutine at a time; at
// most one reader may be active. In event mode (after Serve) the
// connection is watched by herald's poller and messages are delivered to a
// Handler; Read and Reader are then unavailable.
//
// In both modes any number of goroutines may write concurrently (Write,
// Writer, WritePrepared, Enqueue, EnqueueMessage, Ping, Close): every
// message goes out whole, frames of different messages never interleave.
// Close and CloseNow are idempotent and safe from any goroutine, including
// from inside Handler methods. Accessors (Subprotocol, LocalAddr,
// RemoteAddr, LastRead) are safe at any time.
type Conn struct {
	// A server holds one Conn per idle connection, so the struct keeps
	// only what an idle event-mode connection needs: state used only by
	// the blocking API, by a message in progress or by a closing
	// connection lives in structs allocated on first use (blocking,
	// extra), and the fields are ordered so that nothing is padded.

	netConn net.Conn // nil once served: the poller owns the socket
	h       Handler  // event mode: set by Serve
	// opts is shared by the connections made with the same options (see
	// internConnOpts). Immutable.
	opts *connOpts
	// rare holds what few connections have (a subprotocol, the
	// permessage-deflate parameters and compression context kept between
	// messages); nil for the others. Set by newConn.
	rare *rareState

	lastRead atomic.Int64                 // unix nanoseconds of the last bytes read
	pc       atomic.Pointer[netpoll.Conn] // event mode: the poller's connection

	// Reading. In event mode the parser and msgBuf belong to the poller's
	// handler calls, which never run concurrently for one connection; in
	// blocking mode to the holder of blocking.readMu.
	parser frameParser
	msgBuf *[]byte // event mode: the fragmented message being assembled

	// wmu keeps the frames of one message together in event mode, where
	// nothing waits for the network under it; blocking mode uses
	// blocking.wlock, which a context can stop waiting for.
	wmu sync.Mutex

	// blocking holds the state of the blocking API, created by its first
	// use; an event-mode server connection never has one.
	blocking atomic.Pointer[blockingState]

	// closeMu guards the closing state below and extra.
	closeMu sync.Mutex
	extra   *connExtra // created by the first waiter, pending Ping, close timer or end

	isServer   bool // immutable
	served     bool // event mode; set by Serve before the poller starts
	closeSent  bool // our close frame was sent (or is being sent)
	closed     bool // the socket is closed
	doneClosed bool // closeSocket has closed the socket
	// Event mode, owned by the handler calls: no more input is processed
	// (a close frame arrived or the connection failed), and the opcode and
	// compression of the message in msgBuf.
	stop          bool
	msgOp         opcode
	msgCompressed bool
}

// connOpts is ConnOptions after defaults, packed.
type connOpts struct {
	closeTimeout  time.Duration
	queueBytes    int32
	queueMessages int32
}

func packConnOptions(o ConnOptions) connOpts {
	o = o.withDefaults()
	return connOpts{
		closeTimeout:  o.CloseTimeout,
		queueBytes:    int32(min(o.QueueBytes, math.MaxInt32)),
		queueMessages: int32(min(o.QueueMessages, math.MaxInt32)),
	}
}

// connOptsCache shares one connOpts among the connections made with the
// same options (a server's are all alike), which keeps 8 bytes rather than
// 16 in every Conn. It holds at most maxCachedConnOpts distinct values;
// connections with others get a copy of their own.
var connOptsCache struct {
	mu sync.Mutex
	m  map[connOpts]*connOpts
}

const maxCachedConnOpts = 64

// internConnOpts returns a shared, immutable copy of o.
func internConnOpts(o connOpts) *connOpts {
	connOptsCache.mu.Lock()
	defer connOptsCache.mu.Unlock()
	if p, ok := connOptsCache.m[o]; ok {
		return p
	}
	p := &o
	if len(connOptsCache.m) < maxCachedConnOpts {
		if connOptsCache.m == nil {
			connOptsCache.m = make(map[connOpts]*connOpts)
		}
		connOptsCache.m[o] = p
	}
	return p
}

// blockingState is what the blocking API needs beyond the Conn: it is
// created by the first blocking read or write (or by Writer in either
// mode), so that connections served in event mode never carry it.
type blockingState struct {
	// readMu is held by the one active reader.
	readMu sync.Mutex
	rbuf   *[]byte       // pooled read buffer; nil while no read is in progress
	rdata  []byte        // bytes read but not parsed yet
	msg    messageReader // the message being read
	// wlock is the blocking write lock: a channel of capacity 1 that a
	// context can stop waiting for.
	wlock   chan struct{}
	wstream messageWriter // the message of Writer, in either mode
	rdlSet  bool          // a read deadline is set on netConn; reading group
	wdlSet  bool          // a write deadline is set on netConn; writing group
}

// rareState is the part of a connection's negotiated state that most
// connections do without: the subprotocol, and with context takeover the
// connection's own compressor and the window the next message is
// inflated with.
type rareState struct {
	subprotocol string
	deflate     *deflateParams // nil without permessage-deflate
	wdeflate    *deflateWriter // nil when this side resets its compressor
	readDict    []byte
	readDictN   int // its size limit; 0 when the peer resets its compressor
}

// connExtra holds what only some connections need, guarded by closeMu:
// why the connection ended, a channel closed with the socket (for
// goroutines that wait), the Pings waiting for their pong, and the timer
// bounding an event-mode closing handshake.
type connExtra struct {
	closeErr     error // what reads report once the connection has ended
	closedCh     chan struct{}
	pings        []*pendingPing
	timer        *time.Timer
	timerStopped bool // the connection ended: no timer needed
}

// extraLocked returns c.extra, creating it; the caller holds closeMu.
func (c *Conn) extraLocked() *connExtra {
	if c.extra == nil {
		c.extra = new(connExtra)
	}
	return c.extra
}

// blockingState returns the blocking API's state, creating it on first
// use.
func (c *Conn) blockingState() *blockingState {
	if b := c.blocking.Load(); b != nil {
		return b
	}
	b := &blockingState{wlock: make(chan struct{}, 1)}
	if c.blocking.CompareAndSwap(nil, b) {
		return b
	}
	return c.blocking.Load()
}

// newConn builds a connection from a finished opening handshake. It is
// the only constructor: the handshake code calls it, and so do tests that
// pair two sockets without a handshake.
func newConn(cfg connConfig) *Conn {
	limit := cfg.readLimit
	if limit <= 0 {
		limit = 1 << 20
	}
	c := &Conn{
		netConn:  cfg.netConn,
		isServer: cfg.isServer,
		opts:     internConnOpts(packConnOptions(cfg.opts)),
	}
	if cfg.subprotocol != "" || cfg.deflate != nil {
		c.rare = &rareState{subprotocol: cfg.subprotocol, deflate: cfg.deflate}
	}
	c.parser = newFrameParser(cfg.isServer, cfg.deflate != nil, limit)
	if len(cfg.buffered) > 0 {
		c.blockingState().rdata = cfg.buffered
	}
	if d := cfg.deflate; d != nil {
		if d.threshold <= 0 {
			d.threshold = defaultCompressionThreshold
		}
		d.level, d.writeWindowBits = normalizeDeflate(d.level, d.writeWindowBits)
		_, d.readWindowBits = normalizeDeflate(1, d.readWindowBits)
		if !d.writeNoContextTakeover {
			c.rare.wdeflate = newDeflateWriter(d.level, d.writeWindowBits)
		}
		if !d.readNoContextTakeover {
			c.rare.readDictN = 1 << d.readWindowBits
		}
	}
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// readLimit is the largest message (or frame) the connection accepts.
func (c *Conn) readLimit() int64 { return c.parser.readLimit }

// wdeflate is the connection's own compressor (write context takeover),
// or nil.
func (c *Conn) wdeflate() *deflateWriter {
	if c.rare == nil {
		return nil
	}
	return c.rare.wdeflate
}

// Subprotocol returns the subprotocol selected by the handshake, or "".
func (c *Conn) Subprotocol() string {
	if c.rare == nil {
		return ""
	}
	return c.rare.subprotocol
}

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr {
	if pc := c.pc.Load(); pc != nil {
		return pc.LocalAddr()
	}
	return c.netConn.LocalAddr()
}

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr {
	if pc := c.pc.Load(); pc != nil {
		return pc.RemoteAddr()
	}
	return c.netConn.RemoteAddr()
}

// LastRead reports when bytes last arrived from the peer (any frame,
// including pings and pongs), or when the connection was established.
// Heartbeat sweeps use it to find dead peers without a timer per
// connection.
func (c *Conn) LastRead() time.Time { return time.Unix(0, c.lastRead.Load()) }

// Compressed reports whether permessage-deflate was negotiated.
func (c *Conn) Compressed() bool { return c.deflateParams() != nil }

// deflateParams returns the negotiated permessage-deflate parameters, nil
// without compression.
func (c *Conn) deflateParams() *deflateParams {
	if c.rare == nil {
		return nil
	}
	return c.rare.deflate
}

// CloseNow closes the socket at once, without a closing handshake.
// Blocked reads and writes return ErrClosed. It is idempotent.
func (c *Conn) CloseNow() error {
	c.closeSocket(ErrClosed)
	return nil
}

// isClosed reports whether the socket was closed.
func (c *Conn) isClosed() bool {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	return c.closed
}

// endErr is the error operations report once the connection has ended.
func (c *Conn) endErr() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.extra != nil && c.extra.closeErr != nil {
		return c.extra.closeErr
	}
	return ErrClosed
}

// setEndErr records why the connection ends, unless a reason is known.
func (c *Conn) setEndErr(err error) {
	c.closeMu.Lock()
	c.setEndErrLocked(err)
	c.closeMu.Unlock()
}

// setEndErrLocked is setEndErr for a caller holding closeMu.
func (c *Conn) setEndErrLocked(err error) {
	if x := c.extraLocked(); x.closeErr == nil {
		x.closeErr = err
	}
}

// endErrSetLocked reports whether the reason the connection ends is
// known; the caller holds closeMu.
func (c *Conn) endErrSetLocked() bool {
	return c.extra != nil && c.extra.closeErr != nil
}

// closeSocket closes the socket once, recording err as the reason if none
// was recorded, and wakes everyone waiting on the connection.
func (c *Conn) closeSocket(err error) {
	c.closeMu.Lock()
	if c.closed {
		c.closeMu.Unlock()
		return
	}
	c.closed = true
	c.setEndErrLocked(err)
	c.closeMu.Unlock()
	if c.served {
		c.closeNowEvent()
	} else {
		_ = c.netConn.Close()
	}
	c.closeMu.Lock()
	c.doneClosed = true
	if x := c.extra; x != nil {
		if x.closedCh != nil {
			close(x.closedCh)
		}
		// Pending Pings wake on the channel.
		x.pings = nil
	}
	c.closeMu.Unlock()
}

// done returns a channel closed once the socket is closed. Only goroutines
// that wait (Close, Ping, blocked writers) create it, so idle connections
// do not carry one.
func (c *Conn) done() <-chan struct{} {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	x := c.extraLocked()
	if x.closedCh == nil {
		x.closedCh = make(chan struct{})
		if c.doneClosed {
			close(x.closedCh)
		}
	}
	return x.closedCh
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
