package tcptransport

import (
	"testing"

	"github.com/heraldhq/herald/internal/wire"
)

// FuzzTCPConn feeds arbitrary bytes, split at an arbitrary point, into a
// connection's input path (frame decoder, codec, session) in both
// encodings. It must never panic, and whatever the server queued must be
// a sequence of well-formed frames.
func FuzzTCPConn(f *testing.F) {
	s := newServer(f, nil, nil)
	stream, _ := commandStream(f, wire.EncodingBinary, 5)
	f.Add(uint8(0), stream[wire.ClientHelloSize:])
	stream, _ = commandStream(f, wire.EncodingJSON, 5)
	f.Add(uint8(3), stream[wire.ClientHelloSize:])
	f.Add(uint8(1), []byte{0xff, 0xff, 0xff, 0xff})
	f.Add(uint8(2), []byte{0, 0, 0, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, split uint8, data []byte) {
		enc := wire.EncodingBinary
		if split&1 == 1 {
			enc = wire.EncodingJSON
		}
		c, sess, rec := detached(t, s.srv, s.m, enc)
		at := 0
		if len(data) > 0 {
			at = int(split) % (len(data) + 1)
		}
		c.feed(sess, data[:at])
		c.feed(sess, data[at:])
		sess.HandleClose(nil)
		c.dec.Reset()
		rec.mu.Lock()
		out := append([]byte(nil), rec.buf.Bytes()...)
		rec.mu.Unlock()
		var d wire.FrameDecoder
		for len(out) > 0 {
			_, n, err := d.Next(out)
			if err != nil {
				t.Fatalf("server output is not frames: %v", err)
			}
			out = out[n:]
		}
		if d.Pending() {
			t.Fatal("server output ends inside a frame")
		}
	})
}
