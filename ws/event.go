package ws

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/heraldhq/herald/internal/netpoll"
)

// Handler receives a connection's messages and its end in event mode
// (Serve).
//
// For one connection the methods are never called concurrently and are
// called in order; different connections are served in parallel by the
// poller's bounded worker pool, so a method that blocks holds a worker and
// should hand long work to its own goroutine.
type Handler interface {
	// OnMessage is called once per complete data message. data is valid
	// only during the call (it may alias a pooled read buffer): copy what
	// must outlive it. Text messages are valid UTF-8.
	OnMessage(c *Conn, typ MessageType, data []byte)
	// OnClose is called exactly once, after the socket is closed. err is
	// a *CloseError when the peer sent a close frame, a *ProtocolError
	// when this side failed the connection, ErrClosed after CloseNow, and
	// another error when the connection was lost.
	OnClose(c *Conn, err error)
}

// WriteObserver may be implemented by a Handler given to Serve that wants
// to know when queued bytes reach the socket, for traffic counters and
// write latency. OnWritten runs after every write to the socket, on the
// connection's worker (never concurrently for one connection), with the
// bytes of that write and the running total written, comparable with the
// queued total of OutboundTotals. It must be fast and must not block.
type WriteObserver interface {
	OnWritten(c *Conn, n int, written uint64)
}

// eventPoller returns the poller event-mode connections are registered
// with.
var eventPoller = netpoll.Default

// eventConn is the netpoll.Handler view of a Conn; keeping the methods
// on a separate type keeps them out of Conn's API.
type eventConn Conn

// Serve switches the connection to event mode: it is handed to herald's
// poller, which delivers each complete message to h.OnMessage and the end
// of the connection to h.OnClose, with no goroutine and no buffer held
// while the connection is idle (on Linux, for plain TCP sockets; TLS
// connections keep one reading goroutine). Pings are answered, pongs
// matched to Ping calls and the closing handshake completed exactly as in
// blocking mode.
//
// Serve returns at once. Call it right after the handshake, before the
// connection is shared with other goroutines and without a Read in
// progress. Bytes already read but not consumed are delivered first.
// Writes work in event mode too and never wait for the network: Write,
// WritePrepared, Enqueue and EnqueueMessage queue the message (a Writer's
// fragments are queued as they are produced) and fail with ErrQueueFull
// when the queue is over ConnOptions.QueueBytes or QueueMessages.
func (c *Conn) Serve(h Handler) error {
	if h == nil {
		return errors.New("ws: serve: nil Handler")
	}
	var buffered []byte
	if b := c.blocking.Load(); b != nil {
		b.readMu.Lock()
		defer b.readMu.Unlock()
		if !c.served && !c.isClosed() && b.msg.active {
			return errors.New("ws: serve: a message is being read")
		}
		if !c.served && len(b.rdata) > 0 {
			buffered = append([]byte(nil), b.rdata...)
			b.rdata = nil
		}
		c.releaseReadBuf(b)
	}
	switch {
	case c.served:
		return ErrServed
	case c.isClosed():
		return ErrClosed
	}
	c.h = h
	c.served = true
	// The blocking API's state is not used in event mode (a later Writer
	// creates it again).
	c.blocking.Store(nil)
	pc, err := eventPoller().Register(c.netConn, (*eventConn)(c), netpoll.ConnOptions{
		QueueBytes:    int(c.opts.queueBytes),
		QueueMessages: int(c.opts.queueMessages),
		Buffered:      buffered,
	})
	if err != nil {
		// Register closed the socket.
		c.closeSocket(ErrClosed)
		return fmt.Errorf("ws: serve: %w", err)
	}
	c.pc.Store(pc)
	// The poller owns a duplicate of the socket and closed this one;
	// dropping it lets its runtime structures go.
	c.netConn = nil
	if c.isClosed() {
		// CloseNow ran while Register did: it could not reach the poller.
		_ = pc.Close()
	}
	return nil
}

// queueFrame queues one complete frame (or message) by reference.
func (c *Conn) queueFrame(b []byte) error {
	pc := c.pc.Load()
	if pc == nil {
		return ErrClosed
	}
	switch err := pc.Write(b); {
	case err == nil:
		return nil
	case errors.Is(err, netpoll.ErrQueueFull):
		return ErrQueueFull
	case errors.Is(err, netpoll.ErrClosed):
		return ErrClosed
	default:
		return fmt.Errorf("ws: queue: %w", err)
	}
}

// mayFit reports whether a message of up to n bytes fits the outbound
// queue now.
func (c *Conn) mayFit(n int) bool {
	pc := c.pc.Load()
	if pc == nil {
		return true // the write reports the real state
	}
	bytes, msgs := pc.Queued()
	return bytes+n <= int(c.opts.queueBytes) && msgs+1 <= int(c.opts.queueMessages)
}

// closeNowEvent closes the socket without flushing.
func (c *Conn) closeNowEvent() {
	if pc := c.pc.Load(); pc != nil {
		_ = pc.Close()
	}
}

// closeAfterFlush writes what is queued (our close frame last), shuts the
// sending side down and closes once the peer does, or after timeout.
func (c *Conn) closeAfterFlush(timeout time.Duration) {
	if pc := c.pc.Load(); pc != nil {
		_ = pc.CloseAfterFlush(timeout)
	}
}

// closeWhenFlushed closes the socket as soon as the queued bytes (our
// close frame last) are written; a peer that stops reading cannot hold
// the socket longer than timeout.
func (c *Conn) closeWhenFlushed(timeout time.Duration) {
	pc := c.pc.Load()
	if pc == nil {
		return
	}
	_ = pc.CloseAfterFlush(0)
	c.closeLater(timeout)
}

// closeLater closes the socket after timeout unless it closed before:
// a client uses it to wait for the server to close TCP first.
func (c *Conn) closeLater(timeout time.Duration) {
	pc := c.pc.Load()
	if pc == nil {
		return
	}
	c.closeMu.Lock()
	x := c.extraLocked()
	if x.timer == nil && !x.timerStopped {
		x.timer = time.AfterFunc(timeout, func() { _ = pc.Close() })
	}
	c.closeMu.Unlock()
}

func (c *Conn) stopTimer() {
	c.closeMu.Lock()
	if x := c.extra; x != nil {
		x.timerStopped = true
		if x.timer != nil {
			x.timer.Stop()
			x.timer = nil
		}
	}
	c.closeMu.Unlock()
}

// closeEvent is Conn.Close in event mode; closeSent is already set.
func (c *Conn) closeEvent(code StatusCode, reason string) error {
	if err := c.writeCloseFrame(code, reason); err != nil {
		c.closeSocket(ErrClosed)
		return fmt.Errorf("ws: close: %w", err)
	}
	if c.isServer {
		c.closeAfterFlush(c.opts.closeTimeout)
	} else {
		// The server closes TCP once it has answered.
		c.closeLater(c.opts.closeTimeout)
	}
	return nil
}

// OnData implements netpoll.Handler: it runs the frame parser over the
// bytes read and dispatches what it emits.
func (e *eventConn) OnData(pc *netpoll.Conn, data []byte) {
	c := (*Conn)(e)
	if pc != nil && c.pc.Load() != pc {
		// Only the first call can find it unset (data may arrive before
		// Register has returned to Serve); a store on every read would
		// cost a write barrier each.
		c.pc.Store(pc)
	}
	if c.stop {
		return
	}
	c.lastRead.Store(time.Now().UnixNano())
	for len(data) > 0 {
		n, ev, err := c.parser.parse(data)
		data = data[n:]
		if err != nil {
			var perr *ProtocolError
			if !errors.As(err, &perr) {
				perr = failf(StatusInternalError, "%v", err)
			}
			c.failEvent(perr)
			return
		}
		switch ev.kind {
		case evData:
			if !c.onDataEvent(ev) {
				return
			}
		case evControl:
			c.onControlEvent(ev)
			if c.stop {
				return
			}
		}
	}
	c.parser.release()
}

// onData assembles a message; it reports false when the connection failed.
func (c *Conn) onDataEvent(ev frameEvent) bool {
	if ev.first && ev.fin {
		// The whole message is in this read: deliver (or inflate) it in
		// place, without a copy.
		return c.deliver(ev.op, ev.compressed, ev.data)
	}
	if ev.first {
		// The first frame's size is the first guess; the buffer grows
		// through the pools' size classes if the message is longer.
		hint := int64(len(ev.data)) + c.parser.frameRemaining()
		c.msgBuf = getMsgBuf(int(min(hint, 64<<10)))
		c.msgOp, c.msgCompressed = ev.op, ev.compressed
	}
	c.msgBuf = appendMsgBuf(c.msgBuf, ev.data)
	if !ev.fin {
		return true
	}
	ok := c.deliver(c.msgOp, c.msgCompressed, *c.msgBuf)
	putMsgBuf(c.msgBuf)
	c.msgBuf = nil
	return ok
}

// deliver hands a complete message to the handler, inflating it first
// when compressed; it reports false when the connection failed.
func (c *Conn) deliver(op opcode, compressed bool, payload []byte) bool {
	if !compressed {
		c.h.OnMessage(c, MessageType(op), payload)
		return true
	}
	out, perr := c.inflateMessage(payload, op == opText)
	if perr != nil {
		c.failEvent(perr)
		return false
	}
	c.h.OnMessage(c, MessageType(op), *out)
	putMsgBuf(out)
	return true
}

// onControl handles a control frame in event mode.
func (c *Conn) onControlEvent(ev frameEvent) {
	switch ev.op {
	case opPing:
		if !c.closing() {
			// A pong that does not fit the queue is dropped: the peer
			// is not reading, and the queue limit handles that.
			_ = c.queueFrame(c.buildFrame(true, false, opPong, ev.data))
		}
	case opPong:
		c.resolvePing(ev.data)
	case opClose:
		ce, _ := parseClosePayload(ev.data)
		c.stop = true
		c.setEndErr(ce)
		c.closeMu.Lock()
		answer := !c.closeSent
		c.closeSent = true
		c.closeMu.Unlock()
		if answer {
			_ = c.writeCloseFrame(ce.Code, "")
		}
		switch {
		case !c.isServer:
			// The server closes TCP first (RFC 6455 §7.1.1).
			c.closeLater(c.opts.closeTimeout)
		case answer:
			// The handshake is complete once our answer is out.
			c.closeWhenFlushed(c.opts.closeTimeout)
		default:
			// Our close was answered.
			c.closeNowEvent()
		}
	}
}

// fail fails the connection with perr (RFC 6455 §7.1.7).
func (c *Conn) failEvent(perr *ProtocolError) {
	c.stop = true
	c.setEndErr(perr)
	c.closeMu.Lock()
	send := !c.closeSent
	c.closeSent = true
	c.closeMu.Unlock()
	if send {
		_ = c.writeCloseFrame(perr.Code, "")
	}
	c.closeWhenFlushed(c.opts.closeTimeout)
}

// OnWritten implements netpoll.WriteObserver. The handler is asserted
// here rather than stored again in the Conn, which every idle connection
// would pay for.
func (e *eventConn) OnWritten(_ *netpoll.Conn, n int, written uint64) {
	if wo, ok := e.h.(WriteObserver); ok {
		wo.OnWritten((*Conn)(e), n, written)
	}
}

// OutboundTotals reports how many bytes the connection has queued for the
// socket and how many it has written since Serve (0, 0 before Serve). A
// message Enqueue accepted is on the wire once written reaches the queued
// total read right after that Enqueue returned.
func (c *Conn) OutboundTotals() (queued, written uint64) {
	pc := c.pc.Load()
	if pc == nil {
		return 0, 0
	}
	return pc.Totals()
}

// OnClose implements netpoll.Handler.
func (e *eventConn) OnClose(pc *netpoll.Conn, err error) {
	c := (*Conn)(e)
	if pc != nil {
		c.pc.Store(pc)
	}
	switch {
	case err == nil:
	case errors.Is(err, netpoll.ErrFlushTimeout):
		c.setEndErr(ErrCloseTimeout)
	case errors.Is(err, io.EOF):
		c.setEndErr(fmt.Errorf("ws: connection lost without a close frame: %w", err))
	default:
		c.setEndErr(fmt.Errorf("ws: connection lost: %w", err))
	}
	c.closeMu.Lock()
	timedOut := c.closeSent && !c.endErrSetLocked()
	c.closeMu.Unlock()
	if timedOut {
		c.setEndErr(ErrCloseTimeout)
	}
	c.closeSocket(ErrClosed)
	c.stopTimer()
	if c.msgBuf != nil {
		putMsgBuf(c.msgBuf)
		c.msgBuf = nil
	}
	c.parser.release()
	c.h.OnClose(c, c.endErr())
}

// inflateMessage inflates a complete compressed message into a pooled
// buffer, enforcing the read limit on the inflated size and UTF-8 for
// text.
func (c *Conn) inflateMessage(compressed []byte, text bool) (*[]byte, *ProtocolError) {
	f := getInflater()
	defer putInflater(f)
	f.src.reset(compressed)
	tk := c.readTakeover()
	var dict []byte
	if tk != nil {
		dict = tk.readDict
	}
	if err := f.start(dict); err != nil {
		return nil, failf(StatusInvalidFramePayloadData, "invalid compressed data: %v", err)
	}
	limit := c.readLimit()
	out, err := f.inflateAll(getMsgBuf(min(4*len(compressed)+64, 64<<10)), limit)
	b := *out
	switch {
	case errors.Is(err, errMessageTooBig):
		putMsgBuf(out)
		return nil, failf(StatusMessageTooBig, "inflated message exceeds the read limit of %d bytes", limit)
	case err != nil:
		putMsgBuf(out)
		return nil, failf(StatusInvalidFramePayloadData, "invalid compressed data: %v", err)
	case text && !validUTF8(b):
		putMsgBuf(out)
		return nil, failf(StatusInvalidFramePayloadData, "text message is not valid UTF-8")
	}
	if tk != nil {
		tk.readDict = appendWindow(tk.readDict, b, tk.readDictN)
	}
	return out, nil
}

// readTakeover returns the inflate window state when the peer keeps its
// compression context between messages, or nil.
func (c *Conn) readTakeover() *rareState {
	if tk := c.rare; tk != nil && tk.readDictN > 0 {
		return tk
	}
	return nil
}
