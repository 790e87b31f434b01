// Package netpoll holds many long-lived stream connections at almost no cost
// while they are idle, and writes to them without blocking the writer.
//
// # Model
//
// A Poller owns a few event loops and a bounded pool of worker goroutines.
// Register hands a net.Conn to the Poller and returns a *Conn. On Linux a
// plain TCP or Unix stream socket is taken out of Go's runtime poller and
// watched with epoll: while the connection is idle it has no goroutine, no
// read buffer and no write buffer, only its Conn (addresses included) and
// a table entry (about 170 bytes of Go heap in all, measured by
// TestIdleConnMemory) plus the kernel's socket and epoll entry. When the socket becomes
// readable a worker borrows a pooled buffer, reads, calls Handler.OnData
// and returns the buffer.
//
// # Light traffic
//
// Handing a ready connection from the loop to a worker costs a goroutine
// wake-up per event, which nothing amortises when one connection has one
// message in flight. So when the loop finds exactly one ready connection
// while every worker is idle and none is queued, it runs that connection's
// turn itself (same per-turn bounds; what is left goes to the work queue)
// and then goes back to epoll_wait: a lone request costs one wake-up, as
// with a goroutine blocked in Read. Any larger batch, or any batch while a
// worker is busy, is dispatched as usual, so busy connections are still
// served in parallel. A Handler that blocks in such an inline turn does
// not hold up the loop's other connections for long: a watch, armed only
// while inline turns happen, gives the loop to a stand-in goroutine after
// one to two milliseconds, and the blocked goroutine ends when the
// Handler returns (at most one per loop: the loop runs nothing inline
// until it has).
//
// Any other net.Conn (a *tls.Conn, net.Pipe, a wrapped connection), and every
// connection on systems other than Linux, gets the portable fallback: one
// goroutine per connection blocked in Read, and a flusher goroutine that
// exists only while the outbound queue is not empty. The Handler contract
// and the queue limits are the same on both paths.
//
// # Writing
//
// Conn.Write never blocks and never copies: it appends a reference to the
// caller's bytes to the connection's bounded outbound queue and schedules a
// flush. The flush hands everything queued at that moment to one writev, so
// frames queued by many publishers in the meantime leave in one system call.
// A queue over its byte or message limit rejects the write with
// ErrQueueFull; what to do about a slow consumer is the caller's policy.
// A Handler that also implements WriteObserver learns after every write how
// many bytes reached the socket; with Conn.Totals that tells when a given
// message left (for byte counters and write latency, at the cost of one
// method call per write system call, not per message).
//
// # Write pacing
//
// A write system call costs the same for one small frame as for several,
// so a connection that receives a steady stream (a subscriber of a busy
// channel) is cheaper to serve in batches. With Options.WriteDelay (or
// SetWriteDelay) D > 0, a message queued on an empty queue less than 2/3
// of D after the connection's previous write is held until D has passed
// since that write, and everything queued meanwhile leaves in the same
// writev. Time runs from when that write was due (its first message was
// queued, or its hold ended), not from when a busy worker got to it: the
// time a write waits in the work queue (a subscriber near the end of a
// large fan-out) never turns into a hold of the next message. A message
// queued later than 2/3 of D is written at once: holding it would seldom
// batch it with the next one, and at such rates holds would only grow.
// A connection that receives fewer than 1.5 messages per D sees no added
// latency at all (its messages are written as soon as a worker gets to
// them); a busier one gets at most D added to a message's latency, and
// about rate x D messages per system call, at least two. Holds cost no goroutine and no
// timer per connection: each epoll loop (and the fallback path) has one
// hold wheel, a ring of half-millisecond slots with one timer that is
// armed only while some connection is held; an idle connection pays 8
// bytes for the time of its last write. Pacing is for pushes: what a
// Handler queues while handling the connection's own data (a reply the
// peer may be waiting for) leaves at the end of that turn as without
// pacing, taking held messages along, so request/response traffic is
// never delayed. Close drops held messages like any other queued ones;
// CloseAfterFlush and the reply written before a peer's EOF are flushed
// at once; held messages count against the queue limits.
//
// # Closing
//
// Peer EOF, a reset, or any read or write error closes the socket at once
// (connections never sit in CLOSE_WAIT; half-open connections are not
// supported), and Handler.OnClose runs exactly once, after the socket is
// closed. On the epoll path, bytes queued when the peer's EOF arrives (a
// reply to its last message) get one non-blocking write before the close.
// Conn.Close and Poller.Close are idempotent and safe from any goroutine,
// including from inside OnData. CloseAfterFlush writes what is queued,
// half-closes, and closes when the peer does or when its timeout expires:
// closing with unread input would make the kernel send a reset, which can
// destroy the last bytes before the peer reads them.
//
// # Goroutines and locks
//
// A Poller owns its goroutines: Options.Loops goroutines blocked in
// epoll_wait (plus, per loop, at most one that a stand-in replaced while
// it runs a blocked Handler), Options.Workers workers, and per fallback
// connection a reader (for its whole life) and a flusher (while its queue
// is non-empty).
// Poller.Close closes every connection, waits for every OnClose, then stops
// and waits for all of them. The hold wheels' timers run their function on
// a goroutine of their own (time.AfterFunc) only while connections are
// held; Close stops them.
//
// One worker (or the loop, inline) at a time serves a connection: a
// per-connection scheduled flag
// keeps it in the work queue at most once, so the queue is bounded by the
// number of connections. Handler methods run without any netpoll lock held,
// so they may call any Conn method. The locks a caller of Conn.Write can
// wait on are the connection's queue lock and, under it, with write
// pacing, its hold wheel's lock; each is held for a few slice operations,
// never during a system call or a Handler call, and they are the last
// locks in herald's lock order.
package netpoll

import (
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Handler receives a connection's events.
//
// For one Conn, OnData and OnClose are never called concurrently and are
// called in order. Different connections are served in parallel by
// different workers. A handler that blocks holds a worker (or, on an idle
// Poller, the loop goroutine until a stand-in replaces it, see "Light
// traffic"); with the epoll path the worker pool is bounded
// (Options.Workers), so handlers should hand long work to their own
// goroutines.
type Handler interface {
	// OnData is called with bytes read from c, in order. data is a pooled
	// buffer valid only during the call: copy what must outlive it.
	OnData(c *Conn, data []byte)
	// OnClose is called exactly once, after the socket is closed: on peer
	// EOF (err is io.EOF), on a read or write error (wrapped, prefixed
	// "netpoll: read:" or "netpoll: write:"), or after a local Conn.Close,
	// CloseAfterFlush or Poller.Close (err is nil, except ErrFlushTimeout
	// when CloseAfterFlush gave up on unsent bytes). No OnData follows it.
	OnClose(c *Conn, err error)
}

// WriteObserver may be implemented by a Handler that wants to know when
// queued bytes reach the socket (for byte counters and write latency).
// OnWritten runs after every write that moved bytes to the socket, on the
// goroutine that flushed them (a worker, or the fallback's flusher), never
// concurrently for one Conn and without any netpoll lock held. n is the bytes of that write and written the
// connection's running total, comparable with the queued total
// Conn.Totals reports. It must be fast and must not block.
type WriteObserver interface {
	OnWritten(c *Conn, n int, written uint64)
}

var (
	// ErrQueueFull is returned by Write when the message would take the
	// connection's outbound queue over its byte or message limit. Nothing
	// is queued. The connection stays open.
	ErrQueueFull = errors.New("netpoll: outbound queue full")
	// ErrClosed is returned by operations on a closed (or closing) Conn or
	// Poller.
	ErrClosed = errors.New("netpoll: closed")
	// ErrFlushTimeout is passed to OnClose when CloseAfterFlush's timeout
	// expired before the queued bytes were written.
	ErrFlushTimeout = errors.New("netpoll: close timed out with unsent data")
)

// Defaults of Options and ConnOptions.
const (
	DefaultReadBufferSize = 4 << 10
	DefaultMaxReadPerTurn = 64 << 10
	DefaultQueueBytes     = 4 << 20
	DefaultQueueMessages  = 4096
	// maxIovecs bounds the buffers handed to one writev. Linux's IOV_MAX is
	// 1024.
	maxIovecs = 1024
)

// Options configure a Poller. The zero value is a sensible default.
type Options struct {
	// Loops is the number of epoll instances, each with one goroutine that
	// waits (parked in Go's runtime poller, holding no OS thread) until
	// the instance has ready connections and hands them to the workers.
	// A loop serves a connection itself only when it is the only ready
	// one and every worker is idle (see "Light traffic"), so under load
	// it does no I/O on connections and one keeps up with several hundred
	// thousand events per second. Default: 1 per 8 GOMAXPROCS, at least 1.
	Loops int
	// Workers bounds the goroutines that read, write and run Handler
	// methods for epoll connections. Default: 4 per GOMAXPROCS, at least 8.
	// A Handler that blocks holds a worker; if every worker is blocked, no
	// epoll connection makes progress.
	Workers int
	// ReadBufferSize is the size of the pooled buffers reads go into, and
	// so the largest data slice OnData sees. Default 4 KiB.
	ReadBufferSize int
	// MaxReadPerTurn bounds the bytes one worker reads from one connection
	// before serving others (fairness under a flood). Default 64 KiB;
	// never less than ReadBufferSize.
	MaxReadPerTurn int
	// QueueBytes is the default outbound queue limit in bytes of every
	// connection. Default 4 MiB.
	QueueBytes int
	// QueueMessages is the default outbound queue limit in messages (one
	// Write or one WriteBuffers call is one message). Default 4096.
	QueueMessages int
	// WriteDelay paces each connection's writes (see "Write pacing"): a
	// message queued less than 2/3 of WriteDelay after the connection's
	// previous write (counted from when that write was due) waits until
	// WriteDelay has passed since that write, and everything queued
	// meanwhile leaves in the same write. A connection that receives
	// fewer than 1.5 messages per WriteDelay never waits; a busier one
	// gets at most WriteDelay added to a message's latency and about
	// rate x WriteDelay messages per system call.
	// Default 0: every message is flushed as soon as a worker gets to it.
	// Values above MaxWriteDelay are reduced to it. SetWriteDelay changes
	// it later.
	WriteDelay time.Duration
}

func (o Options) withDefaults() Options {
	procs := runtime.GOMAXPROCS(0)
	if o.Loops <= 0 {
		o.Loops = max(1, procs/8)
	}
	if o.Workers <= 0 {
		o.Workers = max(8, 4*procs)
	}
	if o.ReadBufferSize <= 0 {
		o.ReadBufferSize = DefaultReadBufferSize
	}
	if o.MaxReadPerTurn <= 0 {
		o.MaxReadPerTurn = DefaultMaxReadPerTurn
	}
	o.MaxReadPerTurn = max(o.MaxReadPerTurn, o.ReadBufferSize)
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.QueueMessages <= 0 {
		o.QueueMessages = DefaultQueueMessages
	}
	o.WriteDelay = clampWriteDelay(o.WriteDelay)
	return o
}

func clampWriteDelay(d time.Duration) time.Duration {
	return min(max(d, 0), MaxWriteDelay)
}

// ConnOptions configure one connection at Register. The zero value takes
// the Poller's defaults.
type ConnOptions struct {
	// QueueBytes overrides Options.QueueBytes for this connection. A
	// message larger than the limit is always rejected.
	QueueBytes int
	// QueueMessages overrides Options.QueueMessages for this connection.
	QueueMessages int
	// Buffered holds bytes already read from the connection (for example
	// past an HTTP handshake). They are delivered to OnData, on a worker,
	// before anything read from the socket. netpoll does not modify them.
	Buffered []byte
	// UserData is the initial value of Conn.UserData, set before any
	// Handler method can run.
	UserData any
}

// Stats are a Poller's cumulative counters.
type Stats struct {
	// Registered counts Register calls that succeeded; Fallback counts
	// those that got the portable fallback.
	Registered, Fallback uint64
	// Open is the number of connections whose OnClose has not run yet.
	Open int64
	// Reads counts read calls that returned data; Writes counts write
	// calls (writev system calls on the epoll path).
	Reads, Writes uint64
	// WriteBlocked counts flushes that found the socket full and waited
	// for EPOLLOUT (epoll path only).
	WriteBlocked uint64
	// WriteMessages counts messages accepted by Write/WriteBuffers;
	// QueueFull counts messages rejected with ErrQueueFull.
	WriteMessages, QueueFull uint64
}

// Poller watches registered connections. All methods are safe for
// concurrent use. It owns its loop, worker and fallback goroutines; Close
// ends them and waits for them.
type Poller struct {
	opts Options

	// life is held shared by every Register for its whole duration and
	// exclusively by Close to set closed, so no registration is half done
	// when Close looks for connections or releases the engine.
	life sync.RWMutex

	mu       sync.Mutex
	closed   bool               // written under life and mu
	fallback map[*Conn]struct{} // open fallback connections
	open     sync.WaitGroup     // one per Conn until its OnClose returned

	wg        sync.WaitGroup // loops, workers and fallback goroutines
	closeOnce sync.Once

	readBufs sync.Pool // *[]byte of opts.ReadBufferSize

	// locals are the distinct local addresses of packed connections
	// (see connAddrs), at most maxLocalAddrs; list[i-1] is number i.
	locals struct {
		mu    sync.Mutex
		index map[tcpAddrValue]uint16
		list  []tcpAddrValue
	}

	sys poller // epoll engine; nil when unavailable

	// writeDelay is the pacing delay in nanoseconds (0: none); clk is
	// its time source and fbWheel holds paced fallback connections.
	writeDelay atomic.Int64
	clk        clock
	fbWheel    holdWheel
	_          cacheLinePad
	recent     atomic.Int64 // see recentNow; written on every hold
	_          cacheLinePad

	// The counters bumped per system call (by workers) and per message
	// (by the goroutines calling Write) sit on separate cache lines, so
	// the fan-out goroutine and the workers do not contend for one line.
	stats struct {
		registered, fallback atomic.Uint64
		open                 atomic.Int64
		_                    cacheLinePad
		reads, writes        atomic.Uint64
		writeBlocked         atomic.Uint64
		_                    cacheLinePad
		writeMsgs, queueFull atomic.Uint64
		_                    cacheLinePad
	}
}

// cacheLinePad keeps the fields around it on different cache lines.
type cacheLinePad [64]byte

// New starts a Poller: on Linux its epoll loops and its workers.
func New(opts Options) (*Poller, error) {
	p := newPoller(opts)
	sys, err := newSysPoller(p)
	if err != nil {
		return nil, fmt.Errorf("netpoll: start: %w", err)
	}
	p.sys = sys
	return p, nil
}

func newPoller(opts Options) *Poller {
	p := &Poller{opts: opts.withDefaults(), fallback: make(map[*Conn]struct{})}
	p.clk = monoClock{epoch: time.Now()}
	p.writeDelay.Store(int64(p.opts.WriteDelay))
	p.fbWheel = holdWheel{p: p, flush: flushFallbackHeld}
	size := p.opts.ReadBufferSize
	p.readBufs.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return p
}

// poller is the platform's readiness engine (epoll on Linux).
type poller interface {
	// register moves nc to the engine and fills in c; false with a nil
	// error means nc needs the fallback.
	register(c *Conn, nc net.Conn) (bool, error)
	// appendConns appends every open connection of the engine.
	appendConns(dst []*Conn) []*Conn
	// stop ends the engine's goroutines and waits for them; every
	// connection is closed by then.
	stop()
}

var (
	defaultOnce   sync.Once
	defaultPoller *Poller
)

// Default returns the process-wide Poller, started with default Options on
// first use. It lives as long as the process; do not Close it. If the epoll
// engine cannot start, every connection of the default Poller gets the
// portable fallback.
func Default() *Poller {
	defaultOnce.Do(func() {
		p, err := New(Options{})
		if err != nil {
			p = newPoller(Options{})
		}
		defaultPoller = p
	})
	return defaultPoller
}

// Register takes ownership of nc and starts watching it: h receives its
// data and its close. nc must not be used by the caller afterwards, also
// when Register fails (nc is then closed). opts, if given, must be a single
// ConnOptions.
//
// On Linux, a *net.TCPConn or a stream *net.UnixConn is moved to epoll: its
// descriptor is duplicated, the original net.Conn is closed (so the runtime
// poller forgets it) and the duplicate is made non-blocking. Any other
// net.Conn gets the portable fallback. Either way deadlines set on nc no
// longer apply (the fallback clears them): only Close, an error or the peer
// ends the connection.
func (p *Poller) Register(nc net.Conn, h Handler, opts ...ConnOptions) (*Conn, error) {
	if h == nil {
		nc.Close()
		return nil, errors.New("netpoll: register: nil Handler")
	}
	if len(opts) > 1 {
		nc.Close()
		return nil, errors.New("netpoll: register: more than one ConnOptions")
	}
	var o ConnOptions
	if len(opts) == 1 {
		o = opts[0]
	}
	c := &Conn{
		h:        h,
		fd:       -1,
		maxBytes: queueLimit(o.QueueBytes, p.opts.QueueBytes),
		maxMsgs:  queueLimit(o.QueueMessages, p.opts.QueueMessages),
	}
	local, remote := nc.LocalAddr(), nc.RemoteAddr()
	var packed bool
	if c.addrs, packed = p.packConnAddrs(local, remote); !packed {
		c.coldState().addrs = [2]net.Addr{local, remote}
	}
	if o.Buffered != nil {
		// A copy of the slice header of its own: taking o's address
		// would move o to the heap for every registration.
		buffered := o.Buffered
		c.coldState().pendingIn = &buffered
	}
	if o.UserData != nil {
		c.SetUserData(o.UserData)
	}
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closed { // written under life and mu
		nc.Close()
		return nil, fmt.Errorf("netpoll: register: %w", ErrClosed)
	}
	if p.sys != nil {
		ok, err := p.sys.register(c, nc)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("netpoll: register: %w", err)
		}
		if ok {
			return c, nil
		}
	}
	if err := p.registerFallback(c, nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("netpoll: register: %w", err)
	}
	return c, nil
}

// queueLimit returns v, or def when v is not positive, as an int32 (a
// larger limit is no limit in practice).
func queueLimit(v, def int) int32 {
	if v <= 0 {
		v = def
	}
	return int32(min(v, math.MaxInt32))
}

// track counts a new connection as open unless the Poller is closed. fb
// marks a fallback connection, which Close finds in p.fallback (epoll
// connections are found in their loop's table).
func (p *Poller) track(c *Conn, fb bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.open.Add(1)
	if fb {
		p.fallback[c] = struct{}{}
		p.stats.fallback.Add(1)
	} else {
		c.sysAdd()
	}
	p.stats.registered.Add(1)
	p.stats.open.Add(1)
	return nil
}

// untrack is called once per tracked connection, after its OnClose.
func (p *Poller) untrack(c *Conn) {
	if c.fd < 0 {
		p.mu.Lock()
		delete(p.fallback, c)
		p.mu.Unlock()
	}
	p.stats.open.Add(-1)
	p.open.Done()
}

// Close closes every connection (each gets its OnClose with a nil error),
// waits for their OnClose calls, then stops the Poller's goroutines and
// waits for them. Register fails with ErrClosed afterwards. Close is
// idempotent; every call returns after the Poller has stopped. Calling it
// from a Handler method deadlocks.
func (p *Poller) Close() error {
	p.closeOnce.Do(func() {
		p.life.Lock()
		p.mu.Lock()
		p.closed = true
		p.life.Unlock()
		conns := make([]*Conn, 0, len(p.fallback))
		for c := range p.fallback {
			conns = append(conns, c)
		}
		p.mu.Unlock()
		if p.sys != nil {
			conns = p.sys.appendConns(conns)
		}
		for _, c := range conns {
			c.Close()
		}
		p.open.Wait()
		if p.sys != nil {
			p.sys.stop()
		}
		p.fbWheel.stop()
		p.wg.Wait()
	})
	p.wg.Wait()
	return nil
}

// Stats returns a snapshot of the Poller's counters.
func (p *Poller) Stats() Stats {
	return Stats{
		Registered:    p.stats.registered.Load(),
		Fallback:      p.stats.fallback.Load(),
		Open:          p.stats.open.Load(),
		Reads:         p.stats.reads.Load(),
		Writes:        p.stats.writes.Load(),
		WriteBlocked:  p.stats.writeBlocked.Load(),
		WriteMessages: p.stats.writeMsgs.Load(),
		QueueFull:     p.stats.queueFull.Load(),
	}
}

// SetWriteDelay changes Options.WriteDelay for every connection of the
// Poller (clamped to [0, MaxWriteDelay]); connections already waiting keep
// the time they were given. It may be called at any time, from any
// goroutine.
func (p *Poller) SetWriteDelay(d time.Duration) {
	p.writeDelay.Store(int64(clampWriteDelay(d)))
}

// WriteDelay returns the current write pacing delay.
func (p *Poller) WriteDelay() time.Duration {
	return time.Duration(p.writeDelay.Load())
}

func (p *Poller) getReadBuf() *[]byte  { return p.readBufs.Get().(*[]byte) }
func (p *Poller) putReadBuf(b *[]byte) { p.readBufs.Put(b) }

// Close request states of Conn.closeReq.
const (
	closeNone       = 0
	closeAfterFlush = 1 // flush, half-close, wait for the peer or the timer
	closeNow        = 2
)

// Conn is one registered connection. All methods are safe for concurrent
// use by any goroutine, including from inside the Conn's own Handler.
//
// An idle connection is mostly its Conn, so the struct keeps only what
// every connection uses (160 bytes, a size class; fields are ordered to
// leave no padding). What few connections need, or only once they close,
// lives in a connCold allocated on first use.
type Conn struct {
	h     Handler
	addrs connAddrs

	maxBytes, maxMsgs int32
	fd                int32 // -1 on the fallback path

	// closeReq is closeNone, closeAfterFlush or closeNow; it only grows.
	// It is written under mu (with connCold.closeErr).
	closeReq atomic.Uint32
	// suspended pauses reading (SuspendRead).
	suspended atomic.Bool

	// mu guards the outbound queue and the fields after it. It is never
	// held during a system call or a Handler call.
	mu        sync.Mutex
	wclosed   bool // Write fails with ErrClosed
	lingering bool // CloseAfterFlush half-closed; waiting for the peer
	done      bool // finished: the socket is closed, the queue dropped
	held      bool // on a hold wheel: its release schedules the flush
	out       outQueue
	// queuedTotal and writtenTotal count every byte ever accepted by
	// WriteBuffers and written to the socket (see Totals).
	queuedTotal, writtenTotal uint64
	// lastWrite is when the last write that moved bytes was due (see
	// outQueue.due; never later than when it ended), by Poller.recentNow
	// (0: none yet, or pacing was off). Write pacing measures from it.
	lastWrite int64

	epoll epollState // epoll path only

	// cold is set at Register for connections that need it, or by the
	// first SetUserData, Close or CloseAfterFlush (see coldState).
	cold atomic.Pointer[connCold]
}

// connCold is the part of a Conn that idle connections on the epoll path
// do without. Once set, Conn.cold never changes.
type connCold struct {
	user atomic.Pointer[any] // SetUserData
	// addrs are the addresses as given when they could not be packed
	// (Conn.addrs is then empty). Immutable.
	addrs [2]net.Addr
	// fallback is the fallback path's state, set at Register. Immutable.
	fallback *fallbackState
	// pendingIn is ConnOptions.Buffered until delivered. Owned by whoever
	// runs the Handler (a worker turn, or the fallback reader).
	pendingIn *[]byte

	// Under Conn.mu:
	closeErr error       // what OnClose reports for a requested close
	timer    *time.Timer // CloseAfterFlush deadline
}

// poller returns the Poller c is registered with. A field would cost
// every idle connection 8 bytes (and the next size class); the epoll path
// finds it through the connection's loop, the fallback through its state.
func (c *Conn) poller() *Poller {
	if c.fd >= 0 {
		return c.epoll.loop.ep.p
	}
	return c.fb().p
}

// coldState returns c.cold, creating it on first use.
func (c *Conn) coldState() *connCold {
	if k := c.cold.Load(); k != nil {
		return k
	}
	c.cold.CompareAndSwap(nil, new(connCold))
	return c.cold.Load()
}

// fb returns the fallback path's state; only for fallback connections.
func (c *Conn) fb() *fallbackState { return c.cold.Load().fallback }

// pendingInput returns where ConnOptions.Buffered waits to be delivered,
// nil when it has been (or there was none). Only the Handler's goroutine
// calls it.
func (c *Conn) pendingInput() **[]byte {
	if k := c.cold.Load(); k != nil && k.pendingIn != nil {
		return &k.pendingIn
	}
	return nil
}

// timerLocked returns the CloseAfterFlush timer, if any. Called with c.mu
// held.
func (c *Conn) timerLocked() *time.Timer {
	if k := c.cold.Load(); k != nil {
		return k.timer
	}
	return nil
}

// Write queues b as one message and schedules a flush. It never blocks and
// does not copy b: the caller must not modify b afterwards (sharing one b
// among many connections is the intended use). It fails with ErrQueueFull
// when the message would take the queue over its limits (nothing is queued)
// and with ErrClosed once the Conn is closing. An empty b is a no-op.
func (c *Conn) Write(b []byte) error {
	return c.WriteBuffers(b)
}

// WriteBuffers queues bs as one message (for example a frame header and a
// shared payload): the limit check covers all of them, and they are queued
// together or not at all. Like Write, it keeps references to bs.
func (c *Conn) WriteBuffers(bs ...[]byte) error {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	if n == 0 {
		if c.closeReq.Load() != closeNone {
			return ErrClosed
		}
		return nil
	}
	c.mu.Lock()
	if c.wclosed {
		c.mu.Unlock()
		return ErrClosed
	}
	if int(c.out.bytes)+n > int(c.maxBytes) || c.out.msgs+1 > c.maxMsgs {
		c.mu.Unlock()
		c.poller().stats.queueFull.Add(1)
		return ErrQueueFull
	}
	wasEmpty := c.out.msgs == 0
	c.out.push(bs, n)
	c.queuedTotal += uint64(n)
	// A non-empty queue already has a flush scheduled (or a flusher
	// running), is waiting for EPOLLOUT, or is held by pacing.
	kick := wasEmpty && !c.holdLocked()
	if wasEmpty && c.out.due == 0 && c.poller().writeDelay.Load() > 0 {
		c.out.due = c.poller().recentNow() // no new hold set it: due now
	}
	startFlusher := kick && c.fd < 0 && c.fallbackClaimFlusher()
	c.mu.Unlock()
	c.poller().stats.writeMsgs.Add(1)
	if c.fd >= 0 {
		if kick {
			c.notify(evFlush)
		}
	} else if startFlusher {
		c.startFlusher()
	}
	return nil
}

// Totals reports how many bytes the connection has accepted for writing
// and how many it has written, since Register. A message whose Write
// returned when queued was Q is on the wire once written reaches Q
// (WriteObserver reports written as it grows).
func (c *Conn) Totals() (queued, written uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queuedTotal, c.writtenTotal
}

// wrote accounts n bytes written to the socket (they must have been
// consumed from the queue already, with written the new total) and tells
// the WriteObserver. The handler is asserted on each call rather than
// stored a second time: a field would cost every idle connection 16 bytes
// (and the next size class), the assertion a few nanoseconds per write.
func (c *Conn) wrote(n int, written uint64) {
	if wo, ok := c.h.(WriteObserver); ok {
		wo.OnWritten(c, n, written)
	}
}

// consumeLocked drops n written bytes from the queue and, with write
// pacing on (now is then Poller.recentNow), records when this write was
// due as the connection's last write: pacing measures from it, so the
// time a write waited for a worker does not delay the next one. It
// reports whether the queue is now empty. Called with c.mu held.
func (c *Conn) consumeLocked(n int, now int64) (empty bool) {
	due := c.out.due
	c.out.consume(n)
	c.writtenTotal += uint64(n)
	switch {
	case now == 0:
		c.lastWrite = 0
	case due == 0:
		c.lastWrite = now
	default:
		// A reply's turn may write a held message before its hold ends.
		c.lastWrite = min(due, now)
	}
	if c.out.msgs == 0 {
		return true
	}
	if now != 0 {
		// What is left was queued during the write, or is the rest of
		// a partial one: due now, unless pacing holds it.
		c.out.due = now
	}
	return false
}

// Queued reports the bytes and messages waiting in the outbound queue.
func (c *Conn) Queued() (bytes, msgs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.out.bytes), int(c.out.msgs)
}

// Close closes the connection now, dropping anything still queued. It
// returns at once; OnClose(c, nil) follows on the Handler's goroutine after
// the socket is closed. Close is idempotent and may be called from inside
// OnData.
func (c *Conn) Close() error {
	c.requestClose(nil)
	return nil
}

// CloseAfterFlush closes the connection gracefully: Write fails with
// ErrClosed from now on, the queued bytes are written, then the sending side
// is shut down and the connection closes when the peer closes its side
// (reads still reach OnData meanwhile, so a closing handshake can complete).
// If that has not happened within timeout, the connection is closed anyway:
// OnClose gets ErrFlushTimeout if bytes were still unsent, nil otherwise. A
// timeout <= 0 waits only for the flush and does not wait for the peer (a
// peer that never reads then keeps the connection until Close). Later
// Close calls still close at once.
func (c *Conn) CloseAfterFlush(timeout time.Duration) error {
	c.mu.Lock()
	if c.closeReq.Load() != closeNone {
		c.mu.Unlock()
		return nil
	}
	c.closeReq.Store(closeAfterFlush)
	c.wclosed = true
	if timeout > 0 {
		// Set before any flush can see closeAfterFlush: its presence is
		// what makes the flush half-close and wait rather than close.
		c.coldState().timer = time.AfterFunc(timeout, c.flushTimedOut)
	}
	// On the fallback path the flusher carries out the close; start one
	// if none is running (the close may block, the caller must not).
	startFlusher := c.fd < 0 && c.fallbackClaimFlusher()
	c.mu.Unlock()
	if c.fd >= 0 {
		c.notify(evFlush)
	} else if startFlusher {
		c.startFlusher()
	}
	return nil
}

// flushTimedOut runs on a timer's goroutine when CloseAfterFlush's timeout
// expires.
func (c *Conn) flushTimedOut() {
	c.mu.Lock()
	var err error
	if c.out.msgs > 0 {
		err = ErrFlushTimeout
	}
	c.mu.Unlock()
	c.requestClose(err)
}

// requestClose asks for an immediate close reporting err, unless one was
// already asked for. On the epoll path the connection's next worker turn
// carries it out; on the fallback path the reader goroutine does.
func (c *Conn) requestClose(err error) {
	c.mu.Lock()
	if c.closeReq.Load() == closeNow {
		c.mu.Unlock()
		return
	}
	c.closeReq.Store(closeNow)
	if err != nil {
		c.coldState().closeErr = err // a plain Close allocates nothing
	}
	c.wclosed = true
	c.mu.Unlock()
	if c.fd >= 0 {
		c.notify(evClose)
	} else {
		c.fallbackCloseNow()
	}
}

// closeRequestErr returns the error a requested close reports.
func (c *Conn) closeRequestErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.cold.Load(); k != nil {
		return k.closeErr
	}
	return nil
}

// finish runs once per connection after its socket is closed: it drops the
// queue, stops the timer, calls OnClose and releases the connection.
func (c *Conn) finish(err error) {
	c.mu.Lock()
	c.wclosed = true
	c.done = true
	c.held = false // a wheel that still lists c releases nothing
	c.out.reset()
	k := c.cold.Load()
	if k != nil && k.timer != nil {
		k.timer.Stop()
		k.timer = nil
	}
	c.mu.Unlock()
	if k != nil {
		k.pendingIn = nil
	}
	c.h.OnClose(c, err)
	c.poller().untrack(c)
}

// SuspendRead stops delivering data: once the current OnData (if any)
// returns, the connection is not read until ResumeRead, so the kernel's
// receive buffer fills and TCP flow control slows the peer down. A peer
// close is noticed only after ResumeRead.
func (c *Conn) SuspendRead() {
	c.suspended.Store(true)
}

// ResumeRead undoes SuspendRead.
func (c *Conn) ResumeRead() {
	if !c.suspended.Swap(false) {
		return
	}
	if c.fd >= 0 {
		c.notify(evRead | evDrain)
	} else {
		c.fallbackResume()
	}
}

// SetUserData attaches v to the connection, for the Handler to find it
// again without a map. Prefer ConnOptions.UserData, which is set before any
// Handler call.
func (c *Conn) SetUserData(v any) { c.coldState().user.Store(&v) }

// UserData returns what SetUserData or ConnOptions.UserData attached.
func (c *Conn) UserData() any {
	if k := c.cold.Load(); k != nil {
		if v := k.user.Load(); v != nil {
			return *v
		}
	}
	return nil
}

// LocalAddr returns the local address the connection had at Register.
func (c *Conn) LocalAddr() net.Addr { return c.addr(0) }

// RemoteAddr returns the peer address the connection had at Register.
func (c *Conn) RemoteAddr() net.Addr { return c.addr(1) }

func (c *Conn) addr(i int) net.Addr {
	switch {
	case !c.addrs.packed():
		return c.cold.Load().addrs[i]
	case i == 0:
		return c.poller().localAddr(c.addrs.local)
	}
	return c.addrs.remote.addr()
}

// connAddrs keeps a connection's two TCP addresses packed: the remote one
// as a value (a *net.TCPAddr, with the socket address its IP slice points
// into, would cost an idle connection about 80 heap bytes), the local one
// as an index into its Poller's table of local addresses (a server's
// connections share the few of its listeners). They are turned back into
// a *net.TCPAddr on demand. Any other kind of address, a TCP address with
// an IPv6 zone, and a local address the full table cannot take are kept
// as given, in connCold.addrs, and connAddrs stays empty.
type connAddrs struct {
	remote tcpAddrValue
	local  uint16 // index in Poller.locals plus one; 0 when not packed
}

// packed reports whether a holds the addresses.
func (a *connAddrs) packed() bool { return a.local != 0 }

// tcpAddrValue is a TCP address without a zone, as a comparable value.
type tcpAddrValue struct {
	ip    [16]byte
	port  uint16
	iplen uint8 // 4 or 16: the length of the IP slice given
}

// packTCPAddr packs addr, or reports false when it is not a TCP address
// without a zone.
func packTCPAddr(addr net.Addr) (tcpAddrValue, bool) {
	t, ok := addr.(*net.TCPAddr)
	if !ok || t == nil || t.Zone != "" || (len(t.IP) != net.IPv4len && len(t.IP) != net.IPv6len) ||
		t.Port < 0 || t.Port > 0xffff {
		return tcpAddrValue{}, false
	}
	var v tcpAddrValue
	copy(v.ip[:], t.IP)
	v.port = uint16(t.Port)
	v.iplen = uint8(len(t.IP))
	return v, true
}

// addr returns a new *net.TCPAddr equal to the one packed.
func (v *tcpAddrValue) addr() net.Addr {
	ip := make(net.IP, v.iplen)
	copy(ip, v.ip[:])
	return &net.TCPAddr{IP: ip, Port: int(v.port)}
}

// maxLocalAddrs bounds a Poller's table of local addresses.
const maxLocalAddrs = 1 << 12

// packConnAddrs packs local and remote, or reports false when they cannot
// be packed.
func (p *Poller) packConnAddrs(local, remote net.Addr) (connAddrs, bool) {
	r, ok := packTCPAddr(remote)
	if !ok {
		return connAddrs{}, false
	}
	l, ok := packTCPAddr(local)
	if !ok {
		return connAddrs{}, false
	}
	p.locals.mu.Lock()
	defer p.locals.mu.Unlock()
	i, ok := p.locals.index[l]
	if !ok {
		if len(p.locals.list) == maxLocalAddrs {
			return connAddrs{}, false
		}
		if p.locals.index == nil {
			p.locals.index = make(map[tcpAddrValue]uint16)
		}
		p.locals.list = append(p.locals.list, l)
		i = uint16(len(p.locals.list))
		p.locals.index[l] = i
	}
	return connAddrs{remote: r, local: i}, true
}

// localAddr returns the local address number i of the table.
func (p *Poller) localAddr(i uint16) net.Addr {
	p.locals.mu.Lock()
	v := p.locals.list[i-1]
	p.locals.mu.Unlock()
	return v.addr()
}

// Fallback reports whether the connection uses the portable fallback (one
// goroutine reading) rather than epoll.
func (c *Conn) Fallback() bool { return c.fd < 0 }
