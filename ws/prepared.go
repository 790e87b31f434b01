package ws

import (
	"context"
	"sync"
)

// PreparedMessage is a data message encoded once and sent to many
// connections: the server frame (header and payload) is built when the
// message is prepared, and its permessage-deflate form is built on first
// use, once per parameter set (level, window), then shared by every
// connection that negotiated that set without server context takeover.
// Connections with context takeover compress it with their own LZ77 state
// each time.
//
// A client connection must mask what it sends, so writing a prepared
// message from the client side builds a masked copy of the frame per
// write; preparing pays off on servers.
//
// A PreparedMessage is immutable and safe for concurrent use.
type PreparedMessage struct {
	typ     MessageType
	op      opcode
	frame   []byte // unmasked, uncompressed server frame
	payload []byte // frame's payload

	mu       sync.Mutex
	deflated []preparedDeflate
}

type preparedDeflate struct {
	level, bits int
	frame       []byte // unmasked compressed server frame (RSV1 set)
	payload     []byte // its payload
}

// NewPreparedMessage prepares data (copied) as a message of type typ. It
// panics if typ is neither MessageText nor MessageBinary.
func NewPreparedMessage(typ MessageType, data []byte) *PreparedMessage {
	op, err := typ.opcode()
	if err != nil {
		panic(err)
	}
	frame := make([]byte, 0, frameHeaderLen(len(data), false)+len(data))
	frame = appendFrameHeader(frame, true, false, op, len(data), false, [4]byte{})
	hl := len(frame)
	frame = append(frame, data...)
	return &PreparedMessage{typ: typ, op: op, frame: frame, payload: frame[hl:]}
}

// Type returns the message type.
func (pm *PreparedMessage) Type() MessageType { return pm.typ }

// Payload returns the uncompressed payload. It must not be modified.
func (pm *PreparedMessage) Payload() []byte { return pm.payload }

// compressedFor returns the shared compressed frame and payload for a
// parameter set, compressing on first use.
func (pm *PreparedMessage) compressedFor(level, bits int) (frame, payload []byte) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	for _, d := range pm.deflated {
		if d.level == level && d.bits == bits {
			return d.frame, d.payload
		}
	}
	// Compress into a pooled buffer and keep an exact-size frame: the
	// frame lives as long as the message.
	dw := getDeflateWriter(level, bits)
	bp := getWriteBuf()
	out := dw.compress(bp.b[:0], pm.payload)
	putDeflateWriter(dw)
	hl := frameHeaderLen(len(out), false)
	frame = make([]byte, 0, hl+len(out))
	frame = appendFrameHeader(frame, true, true, pm.op, len(out), false, [4]byte{})
	frame = append(frame, out...)
	putWriteBuf(bp, out)
	d := preparedDeflate{level: level, bits: bits, frame: frame, payload: frame[hl:]}
	pm.deflated = append(pm.deflated, d)
	return d.frame, d.payload
}

// encodingFor picks what c sends for pm: a shared server frame and its
// payload (rsv1 when compressed), or shared=false when the connection must
// compress with its own context.
func (pm *PreparedMessage) encodingFor(c *Conn) (frame, payload []byte, rsv1, shared bool) {
	d := c.deflateParams()
	if d == nil || len(pm.payload) < d.threshold {
		return pm.frame, pm.payload, false, true
	}
	if !d.writeNoContextTakeover {
		return nil, nil, true, false
	}
	frame, payload = pm.compressedFor(d.level, d.writeWindowBits)
	return frame, payload, true, true
}

// WritePrepared sends a prepared message, like Write. On a server without
// write context takeover the shared frame is written as it is.
func (c *Conn) WritePrepared(ctx context.Context, pm *PreparedMessage) error {
	if err := c.lockWrite(ctx); err != nil {
		return err
	}
	defer c.unlockWrite()
	if c.closing() {
		return ErrClosed
	}
	return c.writePreparedLocked(ctx, pm)
}

func (c *Conn) writePreparedLocked(ctx context.Context, pm *PreparedMessage) error {
	frame, payload, rsv1, shared := pm.encodingFor(c)
	switch {
	case !shared:
		return c.writeCompressedLocked(ctx, pm.op, pm.payload)
	case !c.isServer:
		// A client masks a copy of the payload.
		return c.writeFrameLocked(ctx, true, rsv1, pm.op, payload)
	case c.served:
		return c.queueFrame(frame)
	default:
		stop := c.armWrite(ctx)
		return c.disarmWrite(ctx, stop, c.writeAll(frame))
	}
}

// Enqueue queues a prepared message on a connection in event mode and
// returns at once: it never waits for the network. It fails with
// ErrQueueFull when the outbound queue is over ConnOptions.QueueBytes or
// QueueMessages (nothing is queued; the connection stays open), with
// ErrClosed once the connection is closing, and with ErrNotServed before
// Serve. On a server without write context takeover it queues a reference
// to the shared frame: no copy, no allocation.
//
// Enqueue waits only for a Writer of the same connection that is open in
// another goroutine, since a message cannot be queued between its
// fragments.
func (c *Conn) Enqueue(pm *PreparedMessage) error {
	if !c.served {
		return ErrNotServed
	}
	if err := c.lockWrite(context.Background()); err != nil {
		return err
	}
	defer c.unlockWrite()
	if c.closing() {
		return ErrClosed
	}
	return c.writePreparedLocked(context.Background(), pm)
}

// EnqueueMessage is Enqueue for a message that is not prepared: p is
// copied (and compressed when it reaches the threshold) into the queue.
func (c *Conn) EnqueueMessage(typ MessageType, p []byte) error {
	if !c.served {
		return ErrNotServed
	}
	return c.Write(context.Background(), typ, p)
}
