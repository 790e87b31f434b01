package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
)

// TCP stream framing (docs/protocol.md, "TCP transport").
//
// After the hello, each direction is a sequence of frames: a 4-byte
// big-endian unsigned payload length N, then N bytes holding one encoded
// message. A frame with N = 0 is a keepalive: it carries no message, is
// valid in both directions, and is skipped by FrameDecoder and
// FrameReader.

// FrameHeaderSize is the size of a frame's length prefix.
const FrameHeaderSize = 4

// DefaultMaxFrameSize is the largest frame payload accepted when a decoder's
// limit is zero: 64 KiB, the same as DefaultMaxMessageSize.
const DefaultMaxFrameSize = DefaultMaxMessageSize

// ErrFrameTooLarge is wrapped by the *ProtocolError (code
// DisconnectMessageTooBig) returned for a frame header announcing more
// than the configured maximum. It is detected from the header alone,
// before any payload is buffered.
var ErrFrameTooLarge = errors.New("frame too large")

func frameTooLarge(n uint32, limit int) error {
	return &ProtocolError{Code: DisconnectMessageTooBig, Reason: "frame too large",
		Err: fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, limit)}
}

// AppendFrame appends a frame holding payload to dst. It panics if payload
// is longer than 4 GiB - 1, which no limit allows.
func AppendFrame(dst, payload []byte) []byte {
	if uint64(len(payload)) > math.MaxUint32 {
		panic("wire: frame payload longer than 4 GiB")
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// StartFrame appends a placeholder frame header to dst and returns the
// extended slice and the header's position. Append the payload (for
// example with Codec.AppendPush), then call FinishFrame: this encodes a
// message directly into its frame without copying it.
func StartFrame(dst []byte) ([]byte, int) {
	return append(dst, 0, 0, 0, 0), len(dst)
}

// FinishFrame writes the length of everything appended after the header at
// start into that header and returns buf.
func FinishFrame(buf []byte, start int) []byte {
	n := len(buf) - start - FrameHeaderSize
	if uint64(n) > math.MaxUint32 {
		panic("wire: frame payload longer than 4 GiB")
	}
	binary.BigEndian.PutUint32(buf[start:], uint32(n))
	return buf
}

// Frame buffers for frames that arrive split across reads come from size
// classes of pooled buffers, so an idle connection holds none.
const (
	minPooledFrame = 512
	maxPooledFrame = 64 << 10
)

var framePools [8]sync.Pool // 512 B, 1 KiB, ..., 32 KiB, 64 KiB

func framePoolIndex(n int) int {
	i, size := 0, minPooledFrame
	for size < n {
		size <<= 1
		i++
	}
	return i
}

func getFrameBuf(n int) []byte {
	if n > maxPooledFrame {
		return make([]byte, 0, n)
	}
	i := framePoolIndex(n)
	if b, ok := framePools[i].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, minPooledFrame<<i)
}

func putFrameBuf(b []byte) {
	c := cap(b)
	if c < minPooledFrame || c > maxPooledFrame || c&(c-1) != 0 {
		return
	}
	b = b[:0]
	framePools[framePoolIndex(c)].Put(&b)
}

// FrameDecoder splits a byte stream into frame payloads. It is a pure,
// incremental state machine: feed it bytes as they arrive, split anywhere,
// and it yields each complete payload once. It never reads from a socket
// and never blocks.
//
// The length in a header is checked against MaxFrameSize before anything
// is buffered. A payload that lies entirely inside one fed chunk is
// returned without copying; one that spans chunks is assembled in a pooled
// buffer sized exactly for it. While no partial frame is pending the
// decoder holds no buffer.
//
// After an error the decoder stays failed: the stream is out of sync and
// the connection must be closed (with the error's disconnect push, see
// ProtocolError).
//
// A FrameDecoder is not safe for concurrent use; the zero value is ready
// to use.
type FrameDecoder struct {
	// MaxFrameSize is the largest payload accepted, in bytes. Zero means
	// DefaultMaxFrameSize.
	MaxFrameSize int

	hdr    [FrameHeaderSize]byte
	nhdr   int    // header bytes buffered
	need   int    // payload bytes still missing for buf
	buf    []byte // partial payload; nil when none is pending
	done   []byte // pooled buffer returned by the previous call
	err    error
	inside bool // a header has been read and its payload is pending
}

// Next consumes bytes from p and returns the next complete payload, if
// any, with the number of bytes of p it consumed. Call it again with
// p[n:] until it has consumed everything:
//
//	for len(p) > 0 {
//		payload, n, err := d.Next(p)
//		if err != nil { ... close the connection ... }
//		p = p[n:]
//		if payload != nil { handle(payload) }
//	}
//
// A nil payload with a nil error means all of p was consumed and more
// bytes are needed. A payload may alias p or the decoder's buffer; it is
// valid until the next call to Next or Release. Zero-length (keepalive)
// frames are consumed silently.
func (d *FrameDecoder) Next(p []byte) (payload []byte, n int, err error) {
	d.Release()
	if d.err != nil {
		return nil, 0, d.err
	}
	limit := d.MaxFrameSize
	if limit <= 0 {
		limit = DefaultMaxFrameSize
	}
	for {
		if !d.inside {
			// Fast path: a whole frame at the start of p.
			if d.nhdr == 0 && len(p)-n >= FrameHeaderSize {
				size := binary.BigEndian.Uint32(p[n:])
				if uint64(size) > uint64(limit) {
					d.err = frameTooLarge(size, limit)
					return nil, n + FrameHeaderSize, d.err
				}
				if size == 0 {
					n += FrameHeaderSize
					continue
				}
				if end := n + FrameHeaderSize + int(size); end <= len(p) {
					return p[n+FrameHeaderSize : end : end], end, nil
				}
			}
			if n == len(p) {
				return nil, n, nil
			}
			c := copy(d.hdr[d.nhdr:], p[n:])
			d.nhdr += c
			n += c
			if d.nhdr < FrameHeaderSize {
				return nil, n, nil
			}
			d.nhdr = 0
			size := binary.BigEndian.Uint32(d.hdr[:])
			if uint64(size) > uint64(limit) {
				d.err = frameTooLarge(size, limit)
				return nil, n, d.err
			}
			if size == 0 {
				continue
			}
			d.inside = true
			d.need = int(size)
			if len(p)-n >= d.need {
				// The header was split but the payload is whole.
				end := n + d.need
				d.inside, d.need = false, 0
				return p[n:end:end], end, nil
			}
			d.buf = getFrameBuf(d.need)
		}
		if n == len(p) {
			return nil, n, nil
		}
		c := min(d.need, len(p)-n)
		d.buf = append(d.buf, p[n:n+c]...)
		d.need -= c
		n += c
		if d.need > 0 {
			return nil, n, nil
		}
		payload, d.done, d.buf, d.inside = d.buf, d.buf, nil, false
		return payload, n, nil
	}
}

// Release returns the buffer of the last payload to the pool. Next calls
// it; call it directly after handling the last payload of a read so that
// an idle connection holds no buffer. The payload must not be used
// afterwards.
func (d *FrameDecoder) Release() {
	if d.done != nil {
		putFrameBuf(d.done)
		d.done = nil
	}
}

// Pending reports whether a partial frame is buffered.
func (d *FrameDecoder) Pending() bool { return d.nhdr > 0 || d.inside }

// Err returns the error that stopped the decoder, or nil.
func (d *FrameDecoder) Err() error { return d.err }

// Reset drops any partial frame and error, for reuse on a new stream.
func (d *FrameDecoder) Reset() {
	d.Release()
	if d.buf != nil {
		putFrameBuf(d.buf)
	}
	*d = FrameDecoder{MaxFrameSize: d.MaxFrameSize}
}

// FrameReader reads frames from a blocking io.Reader (client side). It
// reuses one buffer, grown to the largest payload seen.
//
// A FrameReader is not safe for concurrent use.
type FrameReader struct {
	r     io.Reader
	limit int
	hdr   [FrameHeaderSize]byte
	buf   []byte
}

// NewFrameReader returns a FrameReader on r accepting payloads up to
// maxFrameSize bytes (0 means DefaultMaxFrameSize).
func NewFrameReader(r io.Reader, maxFrameSize int) *FrameReader {
	if maxFrameSize <= 0 {
		maxFrameSize = DefaultMaxFrameSize
	}
	return &FrameReader{r: r, limit: maxFrameSize}
}

// ReadFrame returns the next non-empty payload, valid until the next call.
// It returns io.EOF when the stream ends cleanly between frames,
// io.ErrUnexpectedEOF when it ends inside one, and a *ProtocolError
// wrapping ErrFrameTooLarge for an oversized header (checked before
// reading the payload).
func (fr *FrameReader) ReadFrame() ([]byte, error) {
	for {
		if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
			return nil, err
		}
		size := binary.BigEndian.Uint32(fr.hdr[:])
		if uint64(size) > uint64(fr.limit) {
			return nil, frameTooLarge(size, fr.limit)
		}
		if size == 0 {
			continue
		}
		if cap(fr.buf) < int(size) {
			fr.buf = make([]byte, size)
		}
		b := fr.buf[:size]
		if _, err := io.ReadFull(fr.r, b); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return b, nil
	}
}

// ---------------------------------------------------------------------------
// Hello

// HelloMagic starts both hellos.
const HelloMagic = "HRLD"

// Hello sizes: magic, version, encoding (and status for the server).
const (
	ClientHelloSize = 6
	ServerHelloSize = 7
)

// HelloStatus is the server's answer to a client hello.
type HelloStatus uint8

// Hello statuses. On any status but HelloOK the server closes the
// connection after its hello.
const (
	HelloOK                  HelloStatus = 0
	HelloUnsupportedVersion  HelloStatus = 1
	HelloUnsupportedEncoding HelloStatus = 2
)

func (s HelloStatus) String() string {
	switch s {
	case HelloOK:
		return "ok"
	case HelloUnsupportedVersion:
		return "unsupported version"
	case HelloUnsupportedEncoding:
		return "unsupported encoding"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Hello errors.
var (
	// ErrHelloIncomplete means the bytes so far are a valid prefix of a
	// hello: wait for more.
	ErrHelloIncomplete = errors.New("hello incomplete")
	// ErrBadHello means the peer does not speak this protocol; close
	// without answering.
	ErrBadHello = errors.New("not a herald hello")
)

// Hello is the content of a client or server hello.
type Hello struct {
	Version  uint8
	Encoding Encoding
	Status   HelloStatus // server hello only
}

// AppendClientHello appends the 6-byte client hello.
func AppendClientHello(dst []byte, version uint8, enc Encoding) []byte {
	dst = append(dst, HelloMagic...)
	return append(dst, version, byte(enc))
}

// AppendServerHello appends the 7-byte server hello.
func AppendServerHello(dst []byte, version uint8, enc Encoding, status HelloStatus) []byte {
	dst = append(dst, HelloMagic...)
	return append(dst, version, byte(enc), byte(status))
}

func parseHello(b []byte, size int) (Hello, error) {
	m := min(len(b), len(HelloMagic))
	if string(b[:m]) != HelloMagic[:m] {
		return Hello{}, ErrBadHello
	}
	if len(b) < size {
		return Hello{}, ErrHelloIncomplete
	}
	h := Hello{Version: b[4], Encoding: Encoding(b[5])}
	if size == ServerHelloSize {
		h.Status = HelloStatus(b[6])
	}
	return h, nil
}

// ParseClientHello parses the first ClientHelloSize bytes of b (the
// caller keeps any bytes after them: they start the first frame). It
// returns ErrHelloIncomplete while b is a valid prefix too short to
// decide, and ErrBadHello as soon as b cannot be a hello, so that a
// stray HTTP request or garbage is rejected on its first bytes.
func ParseClientHello(b []byte) (Hello, error) { return parseHello(b, ClientHelloSize) }

// ParseServerHello parses a server hello like ParseClientHello.
func ParseServerHello(b []byte) (Hello, error) { return parseHello(b, ServerHelloSize) }

// AnswerHello decides the server's answer to a client hello: HelloOK for
// ProtocolVersion with a known encoding.
func AnswerHello(h Hello) HelloStatus {
	if h.Version != ProtocolVersion {
		return HelloUnsupportedVersion
	}
	if _, ok := CodecFor(h.Encoding); !ok {
		return HelloUnsupportedEncoding
	}
	return HelloOK
}

// ReadClientHello reads and parses a client hello from a blocking reader,
// reading exactly ClientHelloSize bytes (fewer if the first ones already
// rule out a hello). For servers that use a goroutine per connection;
// event-driven servers feed bytes to ParseClientHello instead.
func ReadClientHello(r io.Reader) (Hello, error) { return readHello(r, ClientHelloSize) }

// ReadServerHello reads and parses the server's hello (client side). The
// caller checks Status.
func ReadServerHello(r io.Reader) (Hello, error) { return readHello(r, ServerHelloSize) }

func readHello(r io.Reader, size int) (Hello, error) {
	var buf [ServerHelloSize]byte
	// The magic first, so that garbage fails without waiting for more.
	if _, err := io.ReadFull(r, buf[:len(HelloMagic)]); err != nil {
		return Hello{}, fmt.Errorf("read hello: %w", err)
	}
	if string(buf[:len(HelloMagic)]) != HelloMagic {
		return Hello{}, ErrBadHello
	}
	if _, err := io.ReadFull(r, buf[len(HelloMagic):size]); err != nil {
		return Hello{}, fmt.Errorf("read hello: %w", err)
	}
	return parseHello(buf[:size], size)
}
