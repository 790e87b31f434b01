package tcptransport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/netpoll"
	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/wire"
)

// writer is the part of *netpoll.Conn a connection writes through.
type writer interface {
	Write(b []byte) error
	WriteBuffers(bs ...[]byte) error
	Queued() (bytes, msgs int)
	Totals() (queued, written uint64)
	CloseAfterFlush(timeout time.Duration) error
	Close() error
}

var _ writer = (*netpoll.Conn)(nil)

// conn is one established connection: the session's Transport and the
// poller's Handler.
//
// Concurrency: OnData and OnClose run on one poller worker at a time and
// alone own dec. The session calls Send, SendDelivery and Close from any
// goroutine; they only touch out (set before the session exists) and
// atomics.
type conn struct {
	srv    *Server
	codec  wire.Codec
	format hub.Format
	remote string

	out writer // set before ready is closed
	// s is set once before ready is closed; nil when no session could be
	// created. Handler calls wait for ready: Register may deliver bytes
	// before the session exists.
	s     *session.Session
	ready chan struct{}

	dec      wire.FrameDecoder
	failed   bool         // a framing error ended the stream (handler-owned)
	lastRead atomic.Int64 // unix nanoseconds
	gone     bool         // OnClose ran; guarded by srv.mu

	m      *metrics.Transport // nil: not counted
	sample metrics.WriteSample
}

var (
	_ session.Transport     = (*conn)(nil)
	_ netpoll.Handler       = (*conn)(nil)
	_ netpoll.WriteObserver = (*conn)(nil)
)

func newConn(srv *Server, codec wire.Codec, remote string) *conn {
	c := &conn{srv: srv, codec: codec, remote: remote, ready: make(chan struct{}), m: srv.opts.Metrics}
	c.dec.MaxFrameSize = srv.opts.MaxFrameSize
	if codec.Encoding() == wire.EncodingBinary {
		c.format = formatBinaryFrame
	} else {
		c.format = formatJSONFrame
	}
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// start attaches the session and releases the handler.
func (c *conn) start(s *session.Session) {
	c.s = s
	close(c.ready)
}

// abandon releases the handler without a session.
func (c *conn) abandon() { close(c.ready) }

func (c *conn) session() *session.Session {
	<-c.ready
	return c.s
}

// OnData implements netpoll.Handler.
func (c *conn) OnData(_ *netpoll.Conn, data []byte) {
	c.lastRead.Store(time.Now().UnixNano())
	if s := c.session(); s != nil {
		c.feed(s, data)
	}
}

// feed splits data into frames and hands each to the session. After a
// framing error the rest of the stream is ignored: the session has been
// told to disconnect.
func (c *conn) feed(s *session.Session, data []byte) {
	if c.failed {
		return
	}
	for len(data) > 0 {
		payload, n, err := c.dec.Next(data)
		if err != nil {
			c.failed = true
			c.dec.Release()
			var pe *wire.ProtocolError
			if !errors.As(err, &pe) {
				pe = &wire.ProtocolError{Code: wire.DisconnectBadRequest, Reason: "bad frame"}
			}
			s.Disconnect(*pe.Disconnect().Disconnect)
			return
		}
		data = data[n:]
		if payload != nil {
			c.m.Received(len(payload))
			s.HandleMessage(payload)
		}
	}
	// Return the reassembly buffer so an idle connection holds none.
	c.dec.Release()
}

// OnWritten implements netpoll.WriteObserver: bytes reached the socket.
func (c *conn) OnWritten(_ *netpoll.Conn, n int, written uint64) {
	if c.m == nil {
		return
	}
	c.m.Wrote(n)
	c.sample.Written(c.m, written)
}

// OnClose implements netpoll.Handler.
func (c *conn) OnClose(_ *netpoll.Conn, err error) {
	if s := c.session(); s != nil {
		s.HandleClose(err)
	}
	c.dec.Reset()
	c.srv.forget(c)
}

// queueErr maps the poller's errors to the session's overflow contract.
func queueErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, netpoll.ErrQueueFull):
		return fmt.Errorf("tcptransport: %w: %w", session.ErrOverflow, err)
	}
	return fmt.Errorf("tcptransport: %w", err)
}

// frame returns msg's frame as a header and the message itself.
func (c *conn) frame(msg []byte) []byte {
	return wire.AppendFrame(make([]byte, 0, wire.FrameHeaderSize+len(msg)), msg)
}

// Send implements session.Transport: a 4-byte header and msg are queued
// as one message without copying msg. Replies may use the queue's
// reserve above the publication limits.
func (c *conn) Send(msg []byte) error {
	hdr := binary.BigEndian.AppendUint32(make([]byte, 0, wire.FrameHeaderSize), uint32(len(msg)))
	return queueErr(c.out.WriteBuffers(hdr, msg))
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// pushFrame is the shared encoding of a delivery in one codec: its
// complete frame, and the choice of the one recipient whose write is
// timed.
type pushFrame struct {
	b      []byte
	sample metrics.SampleOnce
}

// encodeFrame returns an encoder building the complete frame of a push
// in codec; it runs once per delivery and codec for the whole node.
func encodeFrame(codec wire.Codec) func(*wire.Push) any {
	return func(p *wire.Push) any {
		bp := framePool.Get().(*[]byte)
		b, start := wire.StartFrame((*bp)[:0])
		b = wire.FinishFrame(codec.AppendPush(b, p), start)
		pf := &pushFrame{b: make([]byte, len(b))}
		copy(pf.b, b)
		if cap(b) <= 64<<10 {
			*bp = b[:0]
			framePool.Put(bp)
		}
		return pf
	}
}

var (
	encodeJSONFrame   = encodeFrame(wire.JSON)
	encodeBinaryFrame = encodeFrame(wire.Binary)
)

// SendDelivery implements session.Transport: every TCP subscriber with
// the same codec queues the same frame. A queue over the publication
// limits refuses it (slow consumer) while leaving the reserve for the
// disconnect push.
func (c *conn) SendDelivery(d *hub.Delivery) error {
	var pf *pushFrame
	if c.format == formatBinaryFrame {
		pf = d.Encoded(formatBinaryFrame, encodeBinaryFrame).(*pushFrame)
	} else {
		pf = d.Encoded(formatJSONFrame, encodeJSONFrame).(*pushFrame)
	}
	frame := pf.b
	if qb, qm := c.out.Queued(); qb+len(frame) > c.srv.opts.QueueBytes || qm+1 > c.srv.opts.QueueMessages {
		c.srv.overflows.Add(1)
		return fmt.Errorf("tcptransport: %w: %w", session.ErrOverflow, netpoll.ErrQueueFull)
	}
	err := c.out.Write(frame)
	if errors.Is(err, netpoll.ErrQueueFull) {
		c.srv.overflows.Add(1)
	}
	if err == nil && c.m != nil && pf.sample.Take() {
		queued, _ := c.out.Totals()
		if c.sample.Start(d.Created(), queued) {
			_, written := c.out.Totals() // it may be out already
			c.sample.Written(c.m, written)
		}
	}
	return queueErr(err)
}

// Ping implements session.Transport: TCP has no transport ping; the
// session's ping push is the heartbeat.
func (c *conn) Ping() error { return nil }

// Close implements session.Transport: the queue (ending with the
// disconnect push) is flushed within CloseTimeout, then the socket
// closes.
func (c *conn) Close(uint16, string) {
	_ = c.out.CloseAfterFlush(c.srv.opts.CloseTimeout)
}

// LastRead implements session.Transport.
func (c *conn) LastRead() time.Time { return time.Unix(0, c.lastRead.Load()) }

// Info implements session.Transport.
func (c *conn) Info() session.TransportInfo {
	return session.TransportInfo{Name: TransportName, RemoteAddr: c.remote}
}
