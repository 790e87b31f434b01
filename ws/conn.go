package ws

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
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
	netConn     net.Conn
	subprotocol string
	opts        ConnOptions
	readLimit   int64
	deflate     *deflateParams // nil without permessage-deflate
	laddr       net.Addr
	raddr       net.Addr

	lastRead atomic.Int64 // unix nanoseconds of the last bytes read

	// Reading. In blocking mode readMu is held by the one active reader;
	// in event mode these fields belong to the poller's handler calls,
	// which never run concurrently for one connection.
	readMu    sync.Mutex
	parser    frameParser
	rbuf      *[]byte        // pooled read buffer; nil while no read is in progress
	rdata     []byte         // bytes read but not parsed yet
	msg       *messageReader // allocated by the first Reader
	readDict  []byte         // inflate window kept between messages (read context takeover)
	readDictN int            // its size limit

	// Writing. wlock keeps the frames of one message together and
	// protects the compressor and the stream writer.
	//
	// In blocking mode the lock is wlock, a channel of capacity 1 that a
	// context can stop waiting for, created on first use. In event mode
	// nothing waits for the network under the lock, so it is wmu.
	wlock    atomic.Pointer[chan struct{}]
	wmu      sync.Mutex
	wdeflate *deflateWriter // owned compressor when write context takeover is on
	wstream  *messageWriter // allocated by the first Writer

	// Closing.
	closeMu    sync.Mutex
	closeSent  bool // our close frame was sent (or is being sent)
	closed     bool // the socket is closed
	doneClosed bool // closeSocket has closed the socket
	// Flags of the other groups, kept here so that the struct packs
	// without padding (a server holds one Conn per idle connection):
	isServer bool // immutable
	rdlSet   bool // a read deadline is set on netConn; reading group
	wdlSet   bool // a write deadline is set on netConn; writing group

	closeErr error         // what reads report once the connection has ended
	closedCh chan struct{} // closed with the socket; created by the first waiter

	// Pings waiting for their pong.
	pingMu  sync.Mutex
	pingSeq uint64
	pings   []*pendingPing

	ev *eventState // non-nil in event mode
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
		netConn:     cfg.netConn,
		isServer:    cfg.isServer,
		subprotocol: cfg.subprotocol,
		opts:        cfg.opts.withDefaults(),
		readLimit:   limit,
		deflate:     cfg.deflate,
		laddr:       cfg.netConn.LocalAddr(),
		raddr:       cfg.netConn.RemoteAddr(),
		rdata:       cfg.buffered,
	}
	c.parser = newFrameParser(cfg.isServer, cfg.deflate != nil, limit)
	if d := c.deflate; d != nil {
		if d.threshold <= 0 {
			d.threshold = defaultCompressionThreshold
		}
		d.level, d.writeWindowBits = normalizeDeflate(d.level, d.writeWindowBits)
		_, d.readWindowBits = normalizeDeflate(1, d.readWindowBits)
		if !d.writeNoContextTakeover {
			c.wdeflate = newDeflateWriter(d.level, d.writeWindowBits)
		}
		if !d.readNoContextTakeover {
			c.readDictN = 1 << d.readWindowBits
		}
	}
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// Subprotocol returns the subprotocol selected by the handshake, or "".
func (c *Conn) Subprotocol() string { return c.subprotocol }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// LastRead reports when bytes last arrived from the peer (any frame,
// including pings and pongs), or when the connection was established.
// Heartbeat sweeps use it to find dead peers without a timer per
// connection.
func (c *Conn) LastRead() time.Time { return time.Unix(0, c.lastRead.Load()) }

// Compressed reports whether permessage-deflate was negotiated.
func (c *Conn) Compressed() bool { return c.deflate != nil }

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
	if c.closeErr != nil {
		return c.closeErr
	}
	return ErrClosed
}

// setEndErr records why the connection ends, unless a reason is known.
func (c *Conn) setEndErr(err error) {
	c.closeMu.Lock()
	if c.closeErr == nil {
		c.closeErr = err
	}
	c.closeMu.Unlock()
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
	if c.closeErr == nil {
		c.closeErr = err
	}
	c.closeMu.Unlock()
	if c.ev != nil {
		c.ev.closeNow()
	} else {
		_ = c.netConn.Close()
	}
	c.closeMu.Lock()
	if c.closedCh != nil {
		close(c.closedCh)
	}
	c.doneClosed = true
	c.closeMu.Unlock()
	c.failPings()
}

// done returns a channel closed once the socket is closed. Only goroutines
// that wait (Close, Ping, blocked writers) create it, so idle connections
// do not carry one.
func (c *Conn) done() <-chan struct{} {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closedCh == nil {
		c.closedCh = make(chan struct{})
		if c.doneClosed {
			close(c.closedCh)
		}
	}
	return c.closedCh
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
