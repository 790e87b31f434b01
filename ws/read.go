package ws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"
	"time"
)

// readBufferSize is the size of the pooled buffers blocking reads use.
const readBufferSize = 8 << 10

var readBufPool = sync.Pool{New: func() any {
	b := make([]byte, readBufferSize)
	return &b
}}

// aLongTimeAgo is a deadline in the past: it wakes a blocked read or write.
var aLongTimeAgo = time.Unix(1, 0)

// Read reads the next data message. The returned slice belongs to the
// caller. Control frames that arrive meanwhile are handled (pings
// answered, pongs matched to Ping calls, the closing handshake completed).
//
// When the peer closes the connection Read returns a *CloseError; when
// the peer breaks the protocol it fails the connection and returns a
// *ProtocolError carrying the code sent to the peer. Cancelling ctx while
// no message is partly read returns ctx's error and leaves the connection
// usable (the parser keeps any partial frame for the next call);
// cancelling it once part of a message was consumed closes the connection,
// since the rest of the message could not be delivered.
//
// At most one Read or Reader may be in progress at a time.
func (c *Conn) Read(ctx context.Context) (MessageType, []byte, error) {
	if c.served {
		return 0, nil, ErrServed
	}
	b := c.blockingState()
	b.readMu.Lock()
	defer b.readMu.Unlock()
	m, err := c.nextMessage(b, ctx)
	if err != nil {
		return 0, nil, err
	}
	typ := m.typ
	if !m.compressed && (m.fin || c.parser.inFinalFrame()) {
		// A single frame: its length is the message's, read it into a
		// slice of exactly that size.
		n := int64(len(m.pending)) + c.parser.frameRemaining()
		buf, err := m.readAll(make([]byte, 0, n))
		if err != nil {
			return 0, nil, err
		}
		return typ, buf, nil
	}
	// Fragmented or compressed: the size is known only at the end.
	// Assemble the message in pooled buffers and copy it once into a
	// slice of its size, rather than growing the caller's slice (each
	// step of which would be garbage).
	hint := int64(len(m.pending)) + c.parser.frameRemaining()
	if m.compressed {
		hint = 4*int64(len(m.inf.src.cur)) + 64
	}
	bp, err := readMsgBuf(getMsgBuf(int(min(hint, 64<<10))), (*messageBody)(m), math.MaxInt64)
	if err != nil {
		putMsgBuf(bp)
		m.finish(err)
		return 0, nil, err
	}
	m.finish(io.EOF)
	buf := make([]byte, len(*bp))
	copy(buf, *bp)
	putMsgBuf(bp)
	return typ, buf, nil
}

// Reader waits for the next data message and returns a reader for its
// payload, which streams the message frame by frame (and inflates it when
// compressed) without buffering it whole. The reader is valid until it
// returns io.EOF or the next Read/Reader call; a Reader call abandons
// the previous message's unread rest by discarding it. ctx bounds every
// network read made through the returned reader too.
func (c *Conn) Reader(ctx context.Context) (MessageType, io.Reader, error) {
	if c.served {
		return 0, nil, ErrServed
	}
	b := c.blockingState()
	b.readMu.Lock()
	defer b.readMu.Unlock()
	m, err := c.nextMessage(b, ctx)
	if err != nil {
		return 0, nil, err
	}
	return m.typ, m, nil
}

// nextMessage discards what is left of the previous message and waits for
// the first piece of the next one. The caller holds b.readMu.
func (c *Conn) nextMessage(b *blockingState, ctx context.Context) (*messageReader, error) {
	m := &b.msg
	if m.active {
		m.ctx = ctx
		if err := m.discard(); err != nil {
			return nil, err
		}
	}
	ev, err := c.nextEvent(b, ctx)
	if err != nil {
		c.releaseReadBuf(b)
		return nil, err
	}
	m.start(c, b, ctx, ev)
	return m, nil
}

// nextEvent returns the next data piece, handling control frames on the
// way. The caller holds b.readMu.
func (c *Conn) nextEvent(b *blockingState, ctx context.Context) (frameEvent, error) {
	for {
		if len(b.rdata) > 0 {
			n, ev, err := c.parser.parse(b.rdata)
			b.rdata = b.rdata[n:]
			if err != nil {
				var perr *ProtocolError
				if errors.As(err, &perr) {
					c.failConn(perr)
				}
				return frameEvent{}, c.endErr()
			}
			switch ev.kind {
			case evData:
				return ev, nil
			case evControl:
				if err := c.handleControl(b, ev); err != nil {
					return frameEvent{}, err
				}
			}
			continue
		}
		if err := c.fill(b, ctx); err != nil {
			return frameEvent{}, err
		}
	}
}

// fill reads more bytes from the socket into the pooled read buffer.
func (c *Conn) fill(b *blockingState, ctx context.Context) error {
	if c.isClosed() {
		return c.endErr()
	}
	if b.rbuf == nil {
		b.rbuf = readBufPool.Get().(*[]byte)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = c.netConn.SetReadDeadline(d)
		b.rdlSet = true
	} else if b.rdlSet {
		_ = c.netConn.SetReadDeadline(time.Time{})
		b.rdlSet = false
	}
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { _ = c.netConn.SetReadDeadline(aLongTimeAgo) })
		b.rdlSet = true
	}
	n, err := c.netConn.Read(*b.rbuf)
	if stop != nil {
		stop()
	}
	if n > 0 {
		b.rdata = (*b.rbuf)[:n]
		c.lastRead.Store(time.Now().UnixNano())
		return nil
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && !c.isClosed() {
		cerr := ctx.Err()
		if cerr == nil {
			cerr = context.DeadlineExceeded
		}
		if b.msg.active {
			// Part of a message was handed out; it cannot be resumed.
			// (The parser keeps partial frames, so an abandoned read
			// between messages loses nothing.)
			c.closeSocket(fmt.Errorf("ws: read abandoned mid-message: %w", cerr))
		}
		return fmt.Errorf("ws: read: %w", cerr)
	}
	if c.isClosed() {
		return c.endErr()
	}
	lost := fmt.Errorf("ws: connection lost without a close frame: %w", err)
	c.closeSocket(lost)
	return c.endErr()
}

// releaseReadBuf returns the read buffer to its pool when no unparsed
// bytes are left in it.
func (c *Conn) releaseReadBuf(b *blockingState) {
	if b.rbuf != nil && len(b.rdata) == 0 {
		readBufPool.Put(b.rbuf)
		b.rbuf = nil
		b.rdata = nil
	}
	c.parser.release()
}

// handleControl reacts to a control frame in blocking mode. It returns an
// error when the frame ends the connection.
func (c *Conn) handleControl(b *blockingState, ev frameEvent) error {
	switch ev.op {
	case opPing:
		// Auto-pong with the same payload; nothing is sent after our close.
		if err := c.writeControl(context.Background(), opPong, ev.data); err != nil && !errors.Is(err, ErrClosed) {
			return err
		}
	case opPong:
		c.resolvePing(ev.data)
	case opClose:
		ce, _ := parseClosePayload(ev.data) // validated by the parser
		return c.handlePeerClose(b, ce)
	}
	return nil
}

// handlePeerClose completes the closing handshake started by the peer, or
// finishes the one we started, and ends the connection. It returns ce.
func (c *Conn) handlePeerClose(b *blockingState, ce *CloseError) error {
	c.setEndErr(ce)
	b.rdata = nil // nothing after a close frame is read (RFC 6455 §5.5.1)
	c.closeMu.Lock()
	answer := !c.closeSent
	c.closeSent = true
	c.closeMu.Unlock()
	if answer {
		// Echo the peer's code (RFC 6455 §5.5.1); a close without a code
		// is answered without one.
		_ = c.writeCloseFrame(ce.Code, "")
	}
	if !c.isServer {
		// The server closes TCP first (RFC 6455 §7.1.1): wait for its FIN.
		c.drainUntilEOF(b, time.Now().Add(c.opts.closeTimeout))
	}
	c.closeSocket(ce)
	return ce
}

// drainUntilEOF reads and discards until the peer closes or the deadline
// passes. The caller holds b.readMu.
func (c *Conn) drainUntilEOF(b *blockingState, deadline time.Time) {
	if b.rbuf == nil {
		b.rbuf = readBufPool.Get().(*[]byte)
	}
	_ = c.netConn.SetReadDeadline(deadline)
	b.rdlSet = true
	for {
		if _, err := c.netConn.Read(*b.rbuf); err != nil {
			return
		}
	}
}

// failConn fails the connection (RFC 6455 §7.1.7): it sends a close frame
// with the error's code and closes the socket.
func (c *Conn) failConn(perr *ProtocolError) {
	c.setEndErr(perr)
	c.closeMu.Lock()
	send := !c.closeSent && !c.closed
	c.closeSent = true
	c.closeMu.Unlock()
	if send {
		_ = c.writeCloseFrame(perr.Code, "")
	}
	c.closeSocket(perr)
}

// messageReader streams one data message in blocking mode. It lives in the
// blocking state and is reused for every message.
type messageReader struct {
	c          *Conn
	b          *blockingState
	ctx        context.Context
	typ        MessageType
	active     bool   // a message is being read
	pending    []byte // unread part of the current piece
	fin        bool   // the last piece of the message has been received
	compressed bool
	text       bool
	inf        *inflater
	inflated   int64
	utf8       utf8Validator
	more       func() ([]byte, bool, error) // m.nextPiece, bound once
	err        error
}

func (m *messageReader) start(c *Conn, b *blockingState, ctx context.Context, ev frameEvent) {
	m.c, m.b, m.ctx = c, b, ctx
	m.typ = MessageType(ev.op)
	m.active = true
	m.err = nil
	m.pending = ev.data
	m.fin = ev.fin
	m.compressed = ev.compressed
	m.text = ev.op == opText
	if !m.compressed {
		return
	}
	m.inflated = 0
	m.utf8.reset()
	m.inf = getInflater()
	if m.more == nil {
		m.more = m.nextPiece
	}
	m.inf.src = inflateSource{more: m.more}
	m.inf.src.cur, m.inf.src.done = m.pending, m.fin
	m.pending = nil
	var dict []byte
	if tk := c.readTakeover(); tk != nil {
		dict = tk.readDict
	}
	if err := m.inf.start(dict); err != nil {
		m.err = err
	}
}

// nextPiece feeds the inflater: the next compressed piece of the message.
func (m *messageReader) nextPiece() ([]byte, bool, error) {
	ev, err := m.c.nextEvent(m.b, m.ctx)
	if err != nil {
		return nil, false, err
	}
	return ev.data, ev.fin, nil
}

func (m *messageReader) Read(p []byte) (int, error) {
	if m.b == nil {
		return 0, io.EOF
	}
	m.b.readMu.Lock()
	defer m.b.readMu.Unlock()
	if !m.active || m.c == nil {
		if m.err != nil {
			return 0, m.err
		}
		return 0, io.EOF
	}
	n, err := m.read(p)
	if err != nil {
		m.finish(err)
	}
	return n, err
}

// read is Read without the lock.
func (m *messageReader) read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if m.compressed {
		return m.readInflated(p)
	}
	for len(m.pending) == 0 {
		if m.fin {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		ev, err := m.c.nextEvent(m.b, m.ctx)
		if err != nil {
			return 0, err
		}
		m.pending, m.fin = ev.data, ev.fin
	}
	n := copy(p, m.pending)
	m.pending = m.pending[n:]
	if len(m.pending) == 0 && m.fin {
		return n, io.EOF
	}
	return n, nil
}

func (m *messageReader) readInflated(p []byte) (int, error) {
	c := m.c
	n, err := m.inf.fr.Read(p)
	m.inflated += int64(n)
	if limit := c.readLimit(); m.inflated > limit {
		perr := failf(StatusMessageTooBig, "inflated message exceeds the read limit of %d bytes", limit)
		c.failConn(perr)
		return 0, perr
	}
	if m.text && !m.utf8.write(p[:n]) {
		perr := failf(StatusInvalidFramePayloadData, "text message is not valid UTF-8")
		c.failConn(perr)
		return 0, perr
	}
	if tk := c.readTakeover(); tk != nil {
		tk.readDict = appendWindow(tk.readDict, p[:n], tk.readDictN)
	}
	if err == io.EOF {
		if m.text && !m.utf8.complete() {
			perr := failf(StatusInvalidFramePayloadData, "text message ends inside a UTF-8 sequence")
			c.failConn(perr)
			return n, perr
		}
		return n, io.EOF
	}
	if err != nil {
		return n, m.inflateErr(err)
	}
	return n, nil
}

// inflateErr turns a decompressor error into the connection's failure.
// Errors from the source (network, protocol) pass through.
func (m *messageReader) inflateErr(err error) error {
	c := m.c
	if c.isClosed() {
		return c.endErr()
	}
	var perr *ProtocolError
	if errors.As(err, &perr) {
		return err
	}
	var ce *CloseError
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	perr = failf(StatusInvalidFramePayloadData, "invalid compressed data: %v", err)
	c.failConn(perr)
	return perr
}

// finish ends the message: err is io.EOF on success.
func (m *messageReader) finish(err error) {
	if err != io.EOF {
		m.err = err
	}
	m.active = false
	m.pending = nil
	if m.inf != nil {
		putInflater(m.inf)
		m.inf = nil
	}
	m.c.releaseReadBuf(m.b)
}

// readAll reads the rest of the message into buf, which has room for it
// (a single frame of known length). The caller holds readMu.
func (m *messageReader) readAll(buf []byte) ([]byte, error) {
	for {
		n, err := m.read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			m.finish(err)
			if err == io.EOF {
				return buf, nil
			}
			return nil, err
		}
		if len(buf) == cap(buf) {
			// Not expected, since buf was sized for the message; an
			// empty read must not spin.
			buf = slices.Grow(buf, 512)
		}
	}
}

// messageBody is the io.Reader view of a messageReader for a caller that
// holds readMu: the rest of the current message, without finishing it.
type messageBody messageReader

func (b *messageBody) Read(p []byte) (int, error) {
	return (*messageReader)(b).read(p)
}

// discard reads and drops the rest of the message. The caller holds
// readMu.
func (m *messageReader) discard() error {
	var scratch [512]byte
	for {
		_, err := m.read(scratch[:])
		if err != nil {
			m.finish(err)
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}
