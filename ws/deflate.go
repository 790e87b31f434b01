package ws

import (
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

// permessage-deflate data path (RFC 7692 §7.2).
//
// A compressed message is the deflate stream of its payload ended with a
// sync flush, minus the flush's final 0x00 0x00 0xff 0xff. To inflate, the
// receiver appends those four bytes plus an empty final stored block, so the
// decompressor ends cleanly with io.EOF instead of reporting a truncated
// stream.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

const (
	defaultCompressionThreshold = 256
	defaultCompressionLevel     = 1
)

// deflateWriter is a flate compressor with the output buffer it appends
// to. Without context takeover they come from a pool per (level, window)
// and are reset for every message; with it the connection owns one.
type deflateWriter struct {
	fw    *flate.Writer
	out   sliceWriter
	level int
	bits  int
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// deflateWriterPools is indexed by [level][window bits].
var deflateWriterPools [10][16]sync.Pool

func normalizeDeflate(level, bits int) (int, int) {
	if level < 1 || level > 9 {
		level = defaultCompressionLevel
	}
	if bits < 8 || bits > 15 {
		bits = 15
	}
	return level, bits
}

func getDeflateWriter(level, bits int) *deflateWriter {
	level, bits = normalizeDeflate(level, bits)
	if w, ok := deflateWriterPools[level][bits].Get().(*deflateWriter); ok {
		return w
	}
	return newDeflateWriter(level, bits)
}

func newDeflateWriter(level, bits int) *deflateWriter {
	level, bits = normalizeDeflate(level, bits)
	w := &deflateWriter{level: level, bits: bits}
	var err error
	if bits == 15 {
		w.fw, err = flate.NewWriter(&w.out, level)
	} else {
		// A smaller window than the decompressor expects is fine, a
		// larger one is not: honour the negotiated max_window_bits.
		w.fw, err = flate.NewWriterWindow(&w.out, 1<<bits)
	}
	if err != nil {
		// Only invalid levels or windows fail, and both are normalised.
		panic("ws: flate writer: " + err.Error())
	}
	return w
}

func putDeflateWriter(w *deflateWriter) {
	w.fw.Reset(&w.out)
	w.out.b = nil
	deflateWriterPools[w.level][w.bits].Put(w)
}

// compress appends the compressed form of p (tail stripped) to dst and
// returns it. The compressor keeps its LZ77 state: the caller resets it
// when context takeover is off.
func (w *deflateWriter) compress(dst, p []byte) []byte {
	w.out.b = dst
	// Writes to a sliceWriter cannot fail.
	_, _ = w.fw.Write(p)
	_ = w.fw.Flush()
	out := w.out.b
	w.out.b = nil
	return stripDeflateTail(out, len(dst))
}

// stripDeflateTail removes the sync flush marker that ends out[start:].
func stripDeflateTail(out []byte, start int) []byte {
	if n := len(out); n-start >= 4 && out[n-4] == 0 && out[n-3] == 0 && out[n-2] == 0xff && out[n-1] == 0xff {
		return out[:n-4]
	}
	return out
}

// inflateSource feeds a decompressor one message's compressed bytes
// followed by deflateTail. It implements io.ByteReader so the decompressor
// reads it directly, without a bufio.Reader reading ahead.
type inflateSource struct {
	cur  []byte
	more func() ([]byte, bool, error) // next piece and whether it is the last; nil when cur is the whole message
	done bool                         // all compressed pieces delivered
	tail int                          // bytes of deflateTail delivered
}

func (s *inflateSource) reset(whole []byte) {
	*s = inflateSource{cur: whole, done: true}
}

func (s *inflateSource) fill() error {
	for len(s.cur) == 0 {
		if s.done {
			if s.tail == len(deflateTail) {
				return io.EOF
			}
			s.cur = deflateTail[s.tail:]
			s.tail = len(deflateTail)
			return nil
		}
		p, last, err := s.more()
		if err != nil {
			return err
		}
		s.cur, s.done = p, last
	}
	return nil
}

func (s *inflateSource) Read(p []byte) (int, error) {
	if err := s.fill(); err != nil {
		return 0, err
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	return n, nil
}

func (s *inflateSource) ReadByte() (byte, error) {
	if err := s.fill(); err != nil {
		return 0, err
	}
	b := s.cur[0]
	s.cur = s.cur[1:]
	return b, nil
}

// inflater is a pooled decompressor with its source. One decompressor
// inflates any window size up to 32 KiB, so a single pool serves every
// parameter set.
type inflater struct {
	src inflateSource
	fr  io.ReadCloser
}

var inflaterPool sync.Pool

func getInflater() *inflater {
	if f, ok := inflaterPool.Get().(*inflater); ok {
		return f
	}
	f := &inflater{}
	f.src.done = true
	f.src.tail = len(deflateTail)
	f.fr = flate.NewReader(&f.src)
	return f
}

func putInflater(f *inflater) {
	f.src = inflateSource{done: true, tail: len(deflateTail)}
	inflaterPool.Put(f)
}

// start prepares f to inflate a message whose bytes come from src (already
// set up by the caller) with dict as the preceding window (context
// takeover) or nil.
func (f *inflater) start(dict []byte) error {
	return f.fr.(flate.Resetter).Reset(&f.src, dict)
}

// errMessageTooBig marks a message whose (inflated) size passed the read
// limit.
var errMessageTooBig = errors.New("message exceeds the read limit")

// inflateAll appends the inflated message to the pooled buffer bp,
// growing it through the size classes (see readMsgBuf), and returns the
// buffer holding it. It fails with errMessageTooBig once more than limit
// bytes come out, having inflated at most limit+1.
func (f *inflater) inflateAll(bp *[]byte, limit int64) (*[]byte, error) {
	return readMsgBuf(bp, f.fr, limit)
}

// appendWindow keeps the last size bytes of history+p: the dictionary the
// next message of a context-takeover stream is inflated with.
func appendWindow(history, p []byte, size int) []byte {
	if len(p) >= size {
		history = append(history[:0], p[len(p)-size:]...)
		return history
	}
	if over := len(history) + len(p) - size; over > 0 {
		history = append(history[:0], history[over:]...)
	}
	return append(history, p...)
}
