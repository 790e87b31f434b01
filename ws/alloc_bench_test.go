package ws

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"
	"time"
)

// replayConn is a net.Conn whose reads replay one byte stream forever, at
// most chunk bytes per Read, and whose writes are discarded: it lets a
// benchmark measure the read path without a peer or the network.
type replayConn struct {
	stream []byte
	off    int
	chunk  int
}

func (r *replayConn) Read(p []byte) (int, error) {
	n := copy(p[:min(len(p), r.chunk)], r.stream[r.off:])
	r.off = (r.off + n) % len(r.stream)
	return n, nil
}

func (r *replayConn) Write(p []byte) (int, error)        { return len(p), nil }
func (r *replayConn) Close() error                       { return nil }
func (r *replayConn) LocalAddr() net.Addr                { return replayAddr }
func (r *replayConn) RemoteAddr() net.Addr               { return replayAddr }
func (r *replayConn) SetDeadline(t time.Time) error      { return nil }
func (r *replayConn) SetReadDeadline(t time.Time) error  { return nil }
func (r *replayConn) SetWriteDeadline(t time.Time) error { return nil }

var replayAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}

// jsonish is a compressible payload of n bytes, like the JSON a gateway
// relays.
func jsonish(n int) []byte {
	var b []byte
	for i := 0; len(b) < n; i++ {
		b = append(b, `{"channel":"news","seq":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"data":"lorem ipsum dolor sit amet"},`...)
	}
	return b[:n]
}

// fragmentedStream is one client message of payload sent as frames of at
// most frag bytes (gorilla's client fragments at 4 KiB); with compressed,
// payload is already deflated and the first frame has RSV1.
func fragmentedStream(op opcode, payload []byte, frag int, compressed bool) []byte {
	var out []byte
	for first := true; first || len(payload) > 0; first = false {
		n := min(frag, len(payload))
		f := rawFrame{op: opContinuation, fin: n == len(payload), payload: payload[:n]}
		if first {
			f.op = op
			if compressed {
				f.rsv = rsv1Bit
			}
		}
		out = append(out, f.bytes(true)...)
		payload = payload[n:]
	}
	return out
}

// assembleCases are the incoming messages BenchmarkReadAssembly feeds a
// server: 64 KiB, whole or in 4 KiB fragments, plain or compressed.
func assembleCases(b *testing.B) []struct {
	name    string
	stream  []byte
	size    int
	deflate bool
} {
	const size = 64 << 10
	plain := make([]byte, size)
	for i := range plain {
		plain[i] = byte(i % 251)
	}
	text := jsonish(size)
	compressed := deflateMsg(b, nil, text)
	return []struct {
		name    string
		stream  []byte
		size    int
		deflate bool
	}{
		{"64KiB/fragmented", fragmentedStream(opBinary, plain, 4<<10, false), size, false},
		{"64KiB/deflate", fragmentedStream(opText, compressed, size, true), size, true},
		{"64KiB/deflate-fragmented", fragmentedStream(opText, compressed, 4<<10, true), size, true},
	}
}

// countingHandler checks the size of each message it is given.
type countingHandler struct {
	b    *testing.B
	size int
	n    int
}

func (h *countingHandler) OnMessage(_ *Conn, _ MessageType, data []byte) {
	if len(data) != h.size {
		h.b.Fatalf("message of %d bytes, want %d", len(data), h.size)
	}
	h.n++
}

func (h *countingHandler) OnClose(*Conn, error) {}

// BenchmarkReadAssembly measures what the server allocates to assemble
// one 64 KiB message that is fragmented or compressed: in event mode
// (the parser fed 4 KiB reads, as the poller does, the handler given the
// message) and in blocking mode (Read, whose result the caller owns).
// No network is involved, so allocs/op and B/op are the read path's own.
func BenchmarkReadAssembly(b *testing.B) {
	for _, tc := range assembleCases(b) {
		var d *deflateParams
		if tc.deflate {
			d = &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true}
		}
		b.Run("event/"+tc.name, func(b *testing.B) {
			// Event mode without a poller: the socket is never read, the
			// bytes go straight to OnData.
			c := newConn(connConfig{netConn: &replayConn{stream: tc.stream, chunk: 1}, isServer: true, deflate: d})
			h := &countingHandler{b: b, size: tc.size}
			c.h, c.served = h, true // event mode without a poller
			buf := make([]byte, len(tc.stream))
			b.SetBytes(int64(tc.size))
			b.ReportAllocs()
			for b.Loop() {
				// The parser unmasks in place, as it does the poller's
				// read buffer.
				copy(buf, tc.stream)
				for in := buf; len(in) > 0; {
					n := min(len(in), 4<<10)
					(*eventConn)(c).OnData(nil, in[:n])
					in = in[n:]
				}
			}
			if h.n != b.N {
				b.Fatalf("%d messages delivered, want %d", h.n, b.N)
			}
		})
		b.Run("blocking/"+tc.name, func(b *testing.B) {
			c := newConn(connConfig{netConn: &replayConn{stream: tc.stream, chunk: 4 << 10}, isServer: true, deflate: d})
			ctx := context.Background()
			b.SetBytes(int64(tc.size))
			b.ReportAllocs()
			for b.Loop() {
				_, p, err := c.Read(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if len(p) != tc.size {
					b.Fatalf("message of %d bytes, want %d", len(p), tc.size)
				}
			}
		})
	}
}

// BenchmarkEventWriteCompressed measures compressing and queueing one
// 64 KiB compressible message in event mode (no context takeover); the
// peer reads and discards.
func BenchmarkEventWriteCompressed(b *testing.B) {
	p := useTestPoller(b)
	c := fanoutConns(b, 1, p, true, true)[0]
	msg := jsonish(64 << 10)
	ctx := context.Background()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Write(ctx, MessageText, msg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c.CloseNow()
}

// recordingHandler keeps a copy of every message.
type recordingHandler struct{ msgs [][]byte }

func (h *recordingHandler) OnMessage(_ *Conn, _ MessageType, data []byte) {
	h.msgs = append(h.msgs, bytes.Clone(data))
}

func (h *recordingHandler) OnClose(*Conn, error) {}

// TestReadAssembly checks that fragmented and compressed messages, of
// sizes around the pooled buffers' size classes, are assembled intact in
// both modes, message after message (so reused pooled buffers are
// exercised too).
func TestReadAssembly(t *testing.T) {
	d := &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true}
	for _, size := range []int{0, 511, 512, 513, 4 << 10, 64<<10 - 1, 64 << 10, 64<<10 + 1, 300 << 10} {
		payload := jsonish(size)
		for _, compressed := range []bool{false, true} {
			wire := payload
			if compressed {
				wire = deflateMsg(t, nil, payload)
			}
			for _, frag := range []int{1000, 4 << 10, 1 << 20} {
				stream := fragmentedStream(opText, wire, frag, compressed)
				name := strconv.Itoa(size) + "/" + strconv.FormatBool(compressed) + "/" + strconv.Itoa(frag)
				t.Run(name, func(t *testing.T) {
					c := newConn(connConfig{netConn: &replayConn{stream: stream, chunk: 3000}, isServer: true, deflate: d})
					for i := range 3 {
						typ, p, err := c.Read(context.Background())
						if err != nil {
							t.Fatal(err)
						}
						if typ != MessageText || !bytes.Equal(p, payload) {
							t.Fatalf("blocking message %d: %v of %d bytes, want text of %d", i, typ, len(p), size)
						}
					}
					ec := newConn(connConfig{netConn: &replayConn{stream: stream, chunk: 1}, isServer: true, deflate: d})
					h := &recordingHandler{}
					ec.h, c.served = h, true // event mode without a poller
					for range 3 {
						in := bytes.Clone(stream)
						for len(in) > 0 {
							n := min(len(in), 4<<10)
							(*eventConn)(ec).OnData(nil, in[:n])
							in = in[n:]
						}
					}
					if len(h.msgs) != 3 {
						t.Fatalf("event mode delivered %d messages, want 3", len(h.msgs))
					}
					for i, m := range h.msgs {
						if !bytes.Equal(m, payload) {
							t.Fatalf("event message %d: %d bytes, want %d", i, len(m), size)
						}
					}
				})
			}
		}
	}
}
