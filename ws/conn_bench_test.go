package ws

import (
	"context"
	"io"
	"net"
	"runtime"
	"runtime/metrics"
	"strconv"
	"testing"

	"github.com/heraldhq/herald/internal/netpoll"
)

// blockingEcho echoes with Reader and a reused buffer, so a steady-state
// echo allocates nothing on the server side.
func blockingEcho(c *Conn) {
	buf := make([]byte, 0, 128<<10)
	ctx := context.Background()
	for {
		typ, r, err := c.Reader(ctx)
		if err != nil {
			return
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		if c.Write(ctx, typ, buf) != nil {
			return
		}
	}
}

// BenchmarkEcho measures a round trip of one message over loopback TCP:
// the client writes, the server echoes, the client reads into a reused
// buffer. Allocations are the whole process's (both ends).
func BenchmarkEcho(b *testing.B) {
	for _, mode := range modes {
		for _, size := range []int{16, 1 << 10, 64 << 10} {
			for _, deflate := range []bool{false, true} {
				name := mode.name + "/" + strconv.Itoa(size) + map[bool]string{true: "/deflate", false: "/plain"}[deflate]
				b.Run(name, func(b *testing.B) {
					sc, cc := tcpPair(b)
					var o pairOpts
					if deflate {
						o.serverDeflate = &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true, threshold: 1}
						o.clientDeflate = &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true, threshold: 1}
					}
					o.readLimit = 1 << 20
					srv, cli := newConnPair(b, sc, cc, o)
					done := make(chan struct{})
					if mode.event {
						useTestPoller(b)
						if err := srv.Serve(newEchoHandler()); err != nil {
							b.Fatal(err)
						}
						close(done)
					} else {
						go func() { defer close(done); blockingEcho(srv) }()
					}
					msg := make([]byte, size)
					for i := range msg {
						msg[i] = byte(i % 61)
					}
					buf := make([]byte, size)
					ctx := context.Background()
					b.SetBytes(int64(size))
					b.ReportAllocs()
					for b.Loop() {
						if err := cli.Write(ctx, MessageBinary, msg); err != nil {
							b.Fatal(err)
						}
						_, r, err := cli.Reader(ctx)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := io.ReadFull(r, buf); err != nil {
							b.Fatal(err)
						}
						// Consume the end of the message.
						if n, err := r.Read(buf[:0]); n != 0 || (err != nil && err != io.EOF) {
							b.Fatal("message longer than sent", err)
						}
					}
					b.StopTimer()
					cli.CloseNow()
					srv.CloseNow()
					<-done
				})
			}
		}
	}
}

func BenchmarkFrameEncode(b *testing.B) {
	payload := make([]byte, 1024)
	buf := make([]byte, 0, 2048)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	key := [4]byte{1, 2, 3, 4}
	for b.Loop() {
		out := appendFrameHeader(buf[:0], true, false, opBinary, len(payload), true, key)
		hl := len(out)
		out = append(out, payload...)
		maskBytes(key, 0, out[hl:])
	}
}

func BenchmarkFrameDecode(b *testing.B) {
	for _, size := range []int{16, 1024, 64 << 10} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			frame := fr(opBinary, true, make([]byte, size)).bytes(true)
			buf := make([]byte, len(frame))
			p := newFrameParser(true, false, 1<<20)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, frame)
				in := buf
				for len(in) > 0 {
					n, _, err := p.parse(in)
					if err != nil {
						b.Fatal(err)
					}
					in = in[n:]
				}
			}
		})
	}
}

// discard drains client sockets on the poller.
type discard struct{}

func (discard) OnData(*netpoll.Conn, []byte) {}
func (discard) OnClose(*netpoll.Conn, error) {}

// fanoutConns makes n server Conns whose clients discard what they get.
func fanoutConns(b *testing.B, n int, p *netpoll.Poller, deflate bool, event bool) []*Conn {
	conns := make([]*Conn, n)
	for i := range conns {
		sc, cc := tcpPair(b)
		if _, err := p.Register(cc, discard{}); err != nil {
			b.Fatal(err)
		}
		var d *deflateParams
		if deflate {
			d = &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true}
		}
		conns[i] = newConn(connConfig{netConn: sc, isServer: true, deflate: d, opts: ConnOptions{QueueBytes: 64 << 20, QueueMessages: 1 << 20}})
		if event {
			if err := conns[i].Serve(newEchoHandler()); err != nil {
				b.Fatal(err)
			}
		}
	}
	return conns
}

// BenchmarkPreparedFanout sends one prepared message to 1,000
// connections per operation: WritePrepared in blocking mode, Enqueue in
// event mode.
func BenchmarkPreparedFanout(b *testing.B) {
	const n = 1000
	for _, event := range []bool{false, true} {
		for _, deflate := range []bool{false, true} {
			b.Run(map[bool]string{true: "Enqueue", false: "WritePrepared"}[event]+map[bool]string{true: "/deflate", false: "/plain"}[deflate], func(b *testing.B) {
				p := useTestPoller(b)
				conns := fanoutConns(b, n, p, deflate, event)
				payload := make([]byte, 512)
				for i := range payload {
					payload[i] = byte('a' + i%7)
				}
				pm := NewPreparedMessage(MessageText, payload)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					for _, c := range conns {
						var err error
						if event {
							err = c.Enqueue(pm)
						} else {
							err = c.WritePrepared(ctx, pm)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/conn")
				for _, c := range conns {
					c.CloseNow()
				}
			})
		}
	}
}

// BenchmarkIdleConnMemory reports the heap and stack bytes an idle
// event-mode connection adds over the plain net.Conn it wraps (B/conn),
// and an estimate of its absolute cost (B/conn-abs), measured with
// runtime/metrics before and after turning the server ends of 2,000
// established loopback connections into event-mode Conns. Each call
// measures once, whatever b.N: the figure is per connection, not per
// operation.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 2000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	{
		p := useTestPoller(b)
		servers := make([]net.Conn, n)
		clients := make([]net.Conn, n)
		empty := liveBytes()
		for i := range servers {
			if clients[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
				b.Fatal(err)
			}
			if servers[i], err = ln.Accept(); err != nil {
				b.Fatal(err)
			}
		}
		h := &echoHandler{closed: make(chan error, n)}
		conns := make([]*Conn, n)
		before := liveBytes()
		for i, sc := range servers {
			conns[i] = newConn(connConfig{netConn: sc, isServer: true})
			if err := conns[i].Serve(h); err != nil {
				b.Fatal(err)
			}
		}
		clear(servers)
		after := liveBytes()
		b.ReportMetric(float64(after-before)/n, "B/conn")
		// Half of a plain connected pair's cost estimates the net.Conn
		// the server end was: added back, it gives the absolute cost.
		b.ReportMetric(float64(after-before)/n+float64(before-empty)/(2*n), "B/conn-abs")
		for i := range conns {
			conns[i].CloseNow()
			clients[i].Close()
		}
		p.Close()
	}
}

// liveBytes is the heap in use plus goroutine stacks, after a GC.
func liveBytes() int64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64() + s[1].Value.Uint64())
}
