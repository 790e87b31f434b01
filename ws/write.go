package ws

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"
)

// writeBufferSize is the capacity of the pooled buffers frames are
// assembled in; it is also the fragment size of Writer.
const writeBufferSize = 16 << 10

// writeBuf is a pooled frame buffer; vec lets a header and a payload go
// out in one writev without allocating.
type writeBuf struct {
	b   []byte
	vec net.Buffers
	arr [2][]byte
}

var writeBufPool = sync.Pool{New: func() any {
	return &writeBuf{b: make([]byte, 0, writeBufferSize+maxFrameHeader)}
}}

func getWriteBuf() *writeBuf { return writeBufPool.Get().(*writeBuf) }

func putWriteBuf(wb *writeBuf, b []byte) {
	if cap(b) > 1<<20 {
		return // do not pin the memory of an unusually large message
	}
	wb.b = b[:0]
	wb.arr = [2][]byte{}
	wb.vec = nil
	writeBufPool.Put(wb)
}

// lockWrite acquires the write lock, giving up when ctx ends or the
// connection closes.
func (c *Conn) lockWrite(ctx context.Context) error {
	if c.served {
		c.wmu.Lock()
		return nil
	}
	if err := ctx.Err(); err != nil {
		// Nothing was written: the connection stays usable.
		return fmt.Errorf("ws: write: %w", err)
	}
	wl := c.blockingState().wlock
	select {
	case wl <- struct{}{}:
		return nil
	default:
	}
	select {
	case wl <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ws: write: %w", ctx.Err())
	case <-c.done():
		return ErrClosed
	}
}

func (c *Conn) unlockWrite() {
	if c.served {
		c.wmu.Unlock()
		return
	}
	<-c.blocking.Load().wlock
}

// closing reports whether no more data frames may be sent.
func (c *Conn) closing() bool {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	return c.closeSent || c.closed
}

// Write sends one data message. With permessage-deflate, messages of at
// least CompressionOptions.Threshold bytes are compressed. In blocking mode
// it returns once the message was handed to the kernel (or ctx ended, which
// closes the connection if the message was partly written). In event mode
// it copies p into the outbound queue and never waits for the network; it
// returns ErrQueueFull when the queue is over its limits.
func (c *Conn) Write(ctx context.Context, typ MessageType, p []byte) error {
	op, err := typ.opcode()
	if err != nil {
		return err
	}
	if err := c.lockWrite(ctx); err != nil {
		return err
	}
	defer c.unlockWrite()
	if c.closing() {
		return ErrClosed
	}
	if d := c.deflateParams(); d != nil && len(p) >= d.threshold {
		return c.writeCompressedLocked(ctx, op, p)
	}
	return c.writeFrameLocked(ctx, true, false, op, p)
}

// writeCompressedLocked compresses p as one message and sends it as one
// frame. The compressed bytes go to a pooled buffer: in event mode the
// frame queued is then a copy of exactly their size, not a buffer sized
// for the worst case.
func (c *Conn) writeCompressedLocked(ctx context.Context, op opcode, p []byte) error {
	dw := c.wdeflate()
	takeover := dw != nil
	if c.served && takeover && !c.mayFit(len(p)+64) {
		// Refuse before compressing: a compressed message that is not
		// sent would desynchronise the peer's LZ77 window.
		return ErrQueueFull
	}
	if dw == nil {
		d := c.deflateParams()
		dw = getDeflateWriter(d.level, d.writeWindowBits)
		defer putDeflateWriter(dw)
	}
	bp := getWriteBuf()
	out := dw.compress(bp.b[:0], p)
	err := c.writeFrameLocked(ctx, true, true, op, out)
	putWriteBuf(bp, out)
	if err != nil && takeover && c.served {
		c.streamBroken(err)
	}
	return err
}

// newMaskKey returns a fresh masking key. The runtime's generator is
// seeded from the system's entropy and unpredictable to the peer, which is
// what RFC 6455 §5.3 asks for.
func newMaskKey(masked bool) [4]byte {
	var key [4]byte
	if masked {
		binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	}
	return key
}

// buildFrame allocates a complete frame carrying payload (event mode: the
// queue keeps a reference to it).
func (c *Conn) buildFrame(fin, rsv1 bool, op opcode, payload []byte) []byte {
	masked := !c.isServer
	key := newMaskKey(masked)
	b := make([]byte, 0, frameHeaderLen(len(payload), masked)+len(payload))
	b = appendFrameHeader(b, fin, rsv1, op, len(payload), masked, key)
	hl := len(b)
	b = append(b, payload...)
	if masked {
		maskBytes(key, 0, b[hl:])
	}
	return b
}

// writeFrameLocked sends one frame. The caller holds the write lock (or,
// for control frames in event mode, needs none).
func (c *Conn) writeFrameLocked(ctx context.Context, fin, rsv1 bool, op opcode, payload []byte) error {
	if c.served {
		return c.queueFrame(c.buildFrame(fin, rsv1, op, payload))
	}
	masked := !c.isServer
	key := newMaskKey(masked)
	bp := getWriteBuf()
	b := appendFrameHeader(bp.b[:0], fin, rsv1, op, len(payload), masked, key)
	hl := len(b)
	stop := c.armWrite(ctx)
	var err error
	switch {
	case hl+len(payload) <= cap(b):
		// One write for small frames.
		b = append(b, payload...)
		if masked {
			maskBytes(key, 0, b[hl:])
		}
		err = c.writeAll(b)
	case !masked:
		// A server frame's payload goes out as it is, in one writev.
		bp.arr = [2][]byte{b, payload}
		bp.vec = bp.arr[:]
		_, err = bp.vec.WriteTo(c.netConn)
	default:
		// A client masks a copy, a buffer at a time.
		pos := 0
		for len(payload) > 0 && err == nil {
			n := min(len(payload), cap(b)-len(b))
			chunk := b[len(b) : len(b)+n]
			copy(chunk, payload[:n])
			pos = maskBytes(key, pos, chunk)
			err = c.writeAll(b[:len(b)+n])
			payload = payload[n:]
			b = b[:0]
		}
	}
	putWriteBuf(bp, b)
	return c.disarmWrite(ctx, stop, err)
}

func (c *Conn) writeAll(b []byte) error {
	_, err := c.netConn.Write(b)
	return err
}

// armWrite applies ctx's deadline and cancellation to the socket's writes.
func (c *Conn) armWrite(ctx context.Context) func() bool {
	b := c.blocking.Load() // created by lockWrite
	if d, ok := ctx.Deadline(); ok {
		_ = c.netConn.SetWriteDeadline(d)
		b.wdlSet = true
	} else if b.wdlSet {
		_ = c.netConn.SetWriteDeadline(time.Time{})
		b.wdlSet = false
	}
	if ctx.Done() == nil {
		return nil
	}
	b.wdlSet = true
	return context.AfterFunc(ctx, func() { _ = c.netConn.SetWriteDeadline(aLongTimeAgo) })
}

// disarmWrite undoes armWrite and classifies err. A failed write leaves a
// partial frame on the wire, so it closes the connection.
func (c *Conn) disarmWrite(ctx context.Context, stop func() bool, err error) error {
	if stop != nil {
		stop()
	}
	if err == nil {
		return nil
	}
	if c.isClosed() {
		return ErrClosed
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		cerr := ctx.Err()
		if cerr == nil {
			cerr = context.DeadlineExceeded
		}
		err = cerr
	}
	err = fmt.Errorf("ws: write: %w", err)
	c.closeSocket(err)
	return err
}

// writeControl sends a control frame. Control frames may go out between
// the fragments of a message, but not after our close frame.
func (c *Conn) writeControl(ctx context.Context, op opcode, payload []byte) error {
	if c.served {
		if c.closing() {
			return ErrClosed
		}
		return c.queueFrame(c.buildFrame(true, false, op, payload))
	}
	if err := c.lockWrite(ctx); err != nil {
		return err
	}
	defer c.unlockWrite()
	if c.closing() {
		return ErrClosed
	}
	return c.writeFrameLocked(ctx, true, false, op, payload)
}

// writeCloseFrame sends our close frame; the caller has set closeSent. It
// waits at most CloseTimeout for the write lock and the write.
func (c *Conn) writeCloseFrame(code StatusCode, reason string) error {
	var buf [maxControlPayload]byte
	payload := appendClosePayload(buf[:0], code, reason)
	if c.served {
		return c.queueFrame(c.buildFrame(true, false, opClose, payload))
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.closeTimeout)
	defer cancel()
	if err := c.lockWrite(ctx); err != nil {
		return err
	}
	defer c.unlockWrite()
	return c.writeFrameLocked(ctx, true, false, opClose, payload)
}

// Writer returns a writer for one data message that is sent in fragments
// as it is written: each fragment is at most 16 KiB, and the last one goes
// out on Close. Until Close the message holds the connection's write side:
// other data writes wait (control frames are still sent in between). With
// permessage-deflate every message written through a Writer is
// compressed, whatever its size. ctx bounds the whole message.
func (c *Conn) Writer(ctx context.Context, typ MessageType) (io.WriteCloser, error) {
	op, err := typ.opcode()
	if err != nil {
		return nil, err
	}
	if err := c.lockWrite(ctx); err != nil {
		return nil, err
	}
	if c.closing() {
		c.unlockWrite()
		return nil, ErrClosed
	}
	w := &c.blockingState().wstream
	*w = messageWriter{c: c, ctx: ctx, op: op, open: true}
	w.bp = getWriteBuf()
	w.buf = w.bp.b[:0]
	if d := c.deflateParams(); d != nil {
		w.compress = true
		w.dw = c.wdeflate()
		if w.dw == nil {
			w.dw = getDeflateWriter(d.level, d.writeWindowBits)
			w.pooledDW = true
		}
	}
	return w, nil
}

// messageWriter is the io.WriteCloser of Writer; it lives in the
// connection's blocking state.
type messageWriter struct {
	c        *Conn
	ctx      context.Context
	op       opcode // opcode of the next frame
	open     bool
	started  bool // a fragment was sent
	bp       *writeBuf
	buf      []byte
	compress bool
	dw       *deflateWriter
	pooledDW bool
	err      error
}

func (w *messageWriter) Write(p []byte) (int, error) {
	if !w.open {
		return 0, errors.New("ws: write to a closed message writer")
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.compress {
		w.dw.out.b = w.buf
		_, _ = w.dw.fw.Write(p)
		w.buf = w.dw.out.b
		w.dw.out.b = nil
		// Keep the last 4 bytes back: they may be the start of the tail
		// the last fragment must strip.
		if len(w.buf) > writeBufferSize+4 {
			keep := len(w.buf) - 4
			if err := w.flushFragment(w.buf[:keep], false); err != nil {
				return 0, err
			}
			w.buf = append(w.buf[:0], w.buf[keep:]...)
		}
		return len(p), nil
	}
	n := 0
	for len(p) > 0 {
		room := writeBufferSize - len(w.buf)
		if room == 0 {
			if err := w.flushFragment(w.buf, false); err != nil {
				return n, err
			}
			w.buf = w.buf[:0]
			continue
		}
		k := min(room, len(p))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		n += k
	}
	return n, nil
}

func (w *messageWriter) flushFragment(payload []byte, fin bool) error {
	rsv1 := w.compress && !w.started
	err := w.c.writeFrameLocked(w.ctx, fin, rsv1, w.op, payload)
	if err != nil {
		w.err = err
		if w.c.served && (w.started || (w.compress && !w.pooledDW)) {
			// Part of the message, or of the shared compression
			// context, is queued: the stream cannot continue.
			w.c.streamBroken(err)
		}
	}
	w.started = true
	w.op = opContinuation
	return err
}

// streamBroken closes a connection whose outgoing stream can no longer
// be continued (event mode: a fragment or a context-takeover message
// could not be queued).
func (c *Conn) streamBroken(err error) {
	c.closeSocket(fmt.Errorf("ws: outgoing message cut short: %w", err))
}

// Close sends the last fragment and releases the connection's write side.
func (w *messageWriter) Close() error {
	if !w.open {
		return nil
	}
	w.open = false
	c := w.c
	defer c.unlockWrite()
	err := w.err
	if err == nil {
		if w.compress {
			w.dw.out.b = w.buf
			_ = w.dw.fw.Flush()
			w.buf = stripDeflateTail(w.dw.out.b, 0)
			w.dw.out.b = nil
		}
		err = w.flushFragment(w.buf, true)
	}
	if w.pooledDW {
		putDeflateWriter(w.dw)
	} else if w.compress && err != nil {
		// The shared LZ77 state no longer matches the peer's: the
		// connection is unusable anyway.
		w.dw.fw.Reset(&w.dw.out)
	}
	putWriteBuf(w.bp, w.buf)
	*w = messageWriter{}
	return err
}
