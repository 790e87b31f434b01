package tcptransport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/testcert"
	"github.com/heraldhq/herald/internal/testwait"
	"github.com/heraldhq/herald/internal/wire"
)

var encodings = []wire.Encoding{wire.EncodingJSON, wire.EncodingBinary}

func TestHello(t *testing.T) {
	s := newServer(t, nil, nil)
	for _, enc := range encodings {
		c := s.dial(enc)
		if r := c.call(&wire.Command{Method: wire.MethodPing}); r.Error == nil || r.Error.Code != wire.ErrNotConnected {
			t.Fatalf("%v: ping before connect: %+v", enc, r.Error)
		}
	}

	refused := func(hello []byte, want wire.HelloStatus) {
		t.Helper()
		nc := s.dialRaw()
		// A frame right after the hello is discarded with it.
		if _, err := nc.Write(append(hello, 0, 0, 0, 1, 'x')); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(nc)
		if err != nil && !isReset(err) {
			t.Fatal(err)
		}
		h, perr := wire.ParseServerHello(b)
		if perr != nil || len(b) != wire.ServerHelloSize || h.Status != want || h.Version != wire.ProtocolVersion || h.Encoding != wire.Encoding(hello[5]) {
			t.Fatalf("answer %x (%v), want status %v", b, perr, want)
		}
	}
	refused([]byte("HRLD\x02\x01"), wire.HelloUnsupportedVersion)
	refused([]byte("HRLD\x01\x07"), wire.HelloUnsupportedEncoding)

	// Not our protocol at all: closed without an answer, on the first
	// byte (the rest of the request never needs to arrive).
	nc := s.dialRaw()
	if _, err := nc.Write([]byte("G")); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, nc)
	before := s.srv.Stats().HelloFailed
	if before < 3 {
		t.Fatalf("HelloFailed %d, want at least 3", before)
	}
}

func TestHelloTimeout(t *testing.T) {
	s := newServer(t, func(_ *session.Config, o *Options) { o.HelloTimeout = 50 * time.Millisecond }, nil)
	nc := s.dialRaw()
	if _, err := nc.Write([]byte("HRL")); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, nc)
	testwait.Until(t, "hello failure counted", func() bool { return s.srv.Stats().HelloFailed == 1 })
}

func TestConnectSubscribePublish(t *testing.T) {
	for _, enc := range encodings {
		t.Run(enc.String(), func(t *testing.T) {
			s := newServer(t, nil, nil)
			a, b := s.connect(enc), s.connect(wire.EncodingBinary)
			// The other encoding subscribes too: one publication, one
			// frame per codec.
			c := s.connect(wire.EncodingJSON)
			for _, cl := range []*client{a, b, c} {
				cl.subscribe("chat:room")
			}
			long := strings.Repeat("y", 300)
			r := a.call(&wire.Command{Method: wire.MethodPublish, Publish: &wire.PublishParams{Channel: "chat:room", Data: jsonData(t, map[string]string{"text": long})}})
			if r.Error != nil || r.Publish.Offset != 1 {
				t.Fatalf("publish: %+v %+v", r.Error, r.Publish)
			}
			if _, err := s.hub.Publish(context.Background(), "chat:room", []byte(`"from the server"`), nil); err != nil {
				t.Fatal(err)
			}
			for _, cl := range []*client{a, b, c} {
				p := cl.nextPush()
				if p.Type != wire.PushPublication || dataOf(p) != `{"text":"`+long+`"}` || p.Publication.Info.Client != a.id || p.Channel != "chat:room" {
					t.Fatalf("first publication %+v", p)
				}
				if p = cl.nextPush(); dataOf(p) != `"from the server"` || p.Publication.Offset != 2 {
					t.Fatalf("second publication %+v", p)
				}
			}
			r = b.call(&wire.Command{Method: wire.MethodPresenceStats, PresenceStats: &wire.ChannelParams{Channel: "chat:room"}})
			if r.Error != nil || r.PresenceStats.NumClients != 3 {
				t.Fatalf("presence stats %+v %+v", r.Error, r.PresenceStats)
			}
			// A client that closes its socket leaves.
			a.nc.Close()
			testwait.Until(t, "client removed", func() bool { return s.hub.NumSubscribers("chat:room") == 2 })
		})
	}
}

// commandStream is a hello followed by frames: connect, then pings and
// publishes with distinct ids. It returns the stream and the ids in order.
func commandStream(t testing.TB, enc wire.Encoding, n int) ([]byte, []uint32) {
	codec, _ := wire.CodecFor(enc)
	b := wire.AppendClientHello(nil, wire.ProtocolVersion, enc)
	cmds := []*wire.Command{{ID: 1, Method: wire.MethodConnect, Connect: &wire.ConnectParams{Name: "split"}}}
	for i := 2; i <= n; i++ {
		if i%3 == 0 {
			cmds = append(cmds, &wire.Command{ID: uint32(i), Method: wire.MethodPublish,
				Publish: &wire.PublishParams{Channel: "split", Data: []byte(`{"n":` + strings.Repeat("1", i) + `}`)}})
		} else {
			cmds = append(cmds, &wire.Command{ID: uint32(i), Method: wire.MethodPing})
		}
	}
	var ids []uint32
	for i, c := range cmds {
		if i == 2 {
			b = wire.AppendFrame(b, nil) // a keepalive between frames
		}
		var start int
		b, start = wire.StartFrame(b)
		b = wire.FinishFrame(codec.AppendCommand(b, c), start)
		ids = append(ids, c.ID)
	}
	return b, ids
}

// replyIDs reads n replies and returns their ids, failing on errors.
func (c *client) replyIDs(n int) []uint32 {
	c.t.Helper()
	var ids []uint32
	for len(ids) < n {
		r, p := c.mustRead()
		if p != nil {
			continue
		}
		if r.Error != nil {
			c.t.Fatalf("reply %d: error %+v", r.ID, r.Error)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

func TestFramesOverSocket(t *testing.T) {
	s := newServer(t, nil, nil)
	for _, enc := range encodings {
		stream, ids := commandStream(t, enc, 30)
		for _, mode := range []string{"byte-by-byte", "all-at-once"} {
			nc := s.dialRaw()
			if mode == "all-at-once" {
				if _, err := nc.Write(stream); err != nil {
					t.Fatal(err)
				}
			} else {
				for i := range stream {
					if _, err := nc.Write(stream[i : i+1]); err != nil {
						t.Fatal(err)
					}
				}
			}
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			if h, err := wire.ReadServerHello(nc); err != nil || h.Status != wire.HelloOK {
				t.Fatalf("hello %+v %v", h, err)
			}
			c := newClient(t, nc, enc)
			for _, id := range ids {
				c.methods[id] = wire.MethodPing
			}
			c.methods[1] = wire.MethodConnect
			for i := 3; i <= len(ids); i += 3 {
				c.methods[uint32(i)] = wire.MethodPublish
			}
			if got := c.replyIDs(len(ids)); !equalIDs(got, ids) {
				t.Fatalf("%v %s: reply ids %v, want %v", enc, mode, got, ids)
			}
		}
	}
}

func equalIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// recorder is a writer that keeps what the connection queued.
type recorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	closed bool
}

func (r *recorder) Write(b []byte) error { return r.WriteBuffers(b) }
func (r *recorder) WriteBuffers(bs ...[]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range bs {
		r.buf.Write(b)
	}
	return nil
}
func (r *recorder) Queued() (int, int)                  { return 0, 0 }
func (r *recorder) Totals() (uint64, uint64)            { return 0, 0 }
func (r *recorder) CloseAfterFlush(time.Duration) error { return r.Close() }
func (r *recorder) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}

// detached builds a connection that is not registered with a poller:
// feed drives its input and rec collects its output.
func detached(t testing.TB, srv *Server, m *session.Manager, enc wire.Encoding) (*conn, *session.Session, *recorder) {
	t.Helper()
	rec := &recorder{}
	c := newConn(srv, srv.codecs[enc], "detached")
	c.out = rec
	s, err := m.NewSession(c, c.codec)
	if err != nil {
		t.Fatal(err)
	}
	c.start(s)
	return c, s, rec
}

// TestFramesSplitEverywhere feeds the same stream split at every byte
// boundary, one byte at a time, and whole, and checks that the session
// answered exactly the commands sent, in order.
func TestFramesSplitEverywhere(t *testing.T) {
	s := newServer(t, nil, nil)
	for _, enc := range encodings {
		stream, ids := commandStream(t, enc, 12)
		stream = stream[wire.ClientHelloSize:]
		check := func(what string, chunks [][]byte) {
			t.Helper()
			c, sess, rec := detached(t, s.srv, s.m, enc)
			for _, ch := range chunks {
				c.feed(sess, ch)
			}
			if c.dec.Pending() {
				t.Fatalf("%s: partial frame left", what)
			}
			sess.HandleClose(nil)
			rec.mu.Lock()
			out := append([]byte(nil), rec.buf.Bytes()...)
			rec.mu.Unlock()
			cl := newClient(t, nil, enc)
			cl.fr = wire.NewFrameReader(bytes.NewReader(out), 0)
			var got []uint32
			for {
				b, err := cl.fr.ReadFrame()
				if err != nil {
					break
				}
				r, _, err := cl.codec.DecodeServerMessage(b, func(id uint32) wire.Method {
					if id == 1 {
						return wire.MethodConnect
					}
					if id%3 == 0 {
						return wire.MethodPublish
					}
					return wire.MethodPing
				})
				if err != nil {
					t.Fatalf("%s: decode: %v", what, err)
				}
				if r != nil {
					if r.Error != nil {
						t.Fatalf("%s: error reply %+v", what, r.Error)
					}
					got = append(got, r.ID)
				}
			}
			if !equalIDs(got, ids) {
				t.Fatalf("%v %s: replies %v, want %v", enc, what, got, ids)
			}
		}
		check("whole", [][]byte{stream})
		var bytewise [][]byte
		for i := range stream {
			bytewise = append(bytewise, stream[i:i+1])
		}
		check("byte by byte", bytewise)
		for i := 1; i < len(stream); i++ {
			check("split", [][]byte{stream[:i], stream[i:]})
		}
	}
}

func TestBadFrames(t *testing.T) {
	s := newServer(t, nil, nil)
	for _, enc := range encodings {
		// Garbage payload: no command id can be read.
		c := s.connect(enc)
		c.writeRaw(wire.AppendFrame(nil, []byte{0xff, 0xfe, 0xfd}))
		c.expectDisconnect(wire.DisconnectBadRequest)

		// A 4 GiB header: refused from the header alone.
		c = s.connect(enc)
		c.writeRaw([]byte{0xff, 0xff, 0xff, 0xff, 'x'})
		c.expectDisconnect(wire.DisconnectMessageTooBig)

		// One byte over the limit.
		c = s.connect(enc)
		c.writeRaw([]byte{0, 1, 0, 1})
		c.expectDisconnect(wire.DisconnectMessageTooBig)

		// A truncated frame, then the client stops sending: the
		// connection ends without a reply and the session is removed.
		c = s.connect(enc)
		c.writeRaw([]byte{0, 0, 0, 100, 1, 2, 3})
		_ = c.nc.(*net.TCPConn).CloseWrite()
		expectEOF(t, c.nc)
	}
	// A truncated command inside a complete frame whose id can be read:
	// answered with 107, the connection stays.
	c := s.connect(wire.EncodingBinary)
	c.methods[77] = wire.MethodSubscribe
	c.writeRaw(wire.AppendFrame(nil, []byte{1, byte(wire.MethodSubscribe), 77, 10, 'a'}))
	r, _ := c.mustRead()
	if r == nil || r.ID != 77 || r.Error == nil || r.Error.Code != wire.ErrBadRequest {
		t.Fatalf("truncated command: %+v", r)
	}
	if r := c.call(&wire.Command{Method: wire.MethodPing}); r.Error != nil {
		t.Fatalf("ping after a bad command: %+v", r.Error)
	}
	testwait.Until(t, "bad connections closed", func() bool { return s.srv.Stats().Open == 1 })
}

func TestSlowConsumer(t *testing.T) {
	s := newServer(t, func(_ *session.Config, o *Options) {
		o.QueueBytes = 32 << 10
		o.QueueMessages = 64
		o.CloseTimeout = 5 * time.Second
	}, func(l net.Listener) net.Listener { return smallSendBuffers{l} })
	fast := s.connect(wire.EncodingBinary)
	slowConn := s.dialRaw()
	_ = slowConn.(*net.TCPConn).SetReadBuffer(4 << 10)
	if _, err := slowConn.Write(wire.AppendClientHello(nil, wire.ProtocolVersion, wire.EncodingBinary)); err != nil {
		t.Fatal(err)
	}
	if h, err := wire.ReadServerHello(slowConn); err != nil || h.Status != wire.HelloOK {
		t.Fatal(h, err)
	}
	slow := newClient(t, slowConn, wire.EncodingBinary)
	if r := slow.call(&wire.Command{Method: wire.MethodConnect, Connect: &wire.ConnectParams{}}); r.Error != nil {
		t.Fatal(r.Error)
	}
	fast.subscribe("feed")
	slow.subscribe("feed")
	payload := []byte(`"` + strings.Repeat("x", 1000) + `"`)
	n := 0
	for s.srv.Stats().Overflows == 0 {
		n++
		if n > 5000 {
			t.Fatal("no overflow after 5000 publications")
		}
		if _, err := s.hub.Publish(context.Background(), "feed", payload, nil); err != nil {
			t.Fatal(err)
		}
		// Lockstep: the fast client never falls behind.
		if p := fast.nextPush(); p.Type != wire.PushPublication {
			t.Fatalf("fast client got %+v", p)
		}
	}
	// The slow client reads what was queued, then the disconnect push.
	received := 0
	var last *wire.Push
	for {
		_, p, err := slow.read()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("slow client: %v", err)
			}
			slow.nc.Close()
			break
		}
		if p.Type == wire.PushPublication {
			received++
		}
		last = p
	}
	if last == nil || last.Type != wire.PushDisconnect || last.Disconnect.Code != wire.DisconnectSlowConsumer || !last.Disconnect.Reconnect {
		t.Fatalf("slow client's last push %+v, want disconnect 3001", last)
	}
	if received >= n {
		t.Fatalf("slow client received all %d publications", received)
	}
	testwait.Until(t, "slow subscriber removed", func() bool { return s.hub.NumSubscribers("feed") == 1 })
	testwait.Until(t, "closed with 3001", func() bool { return s.metrics.ClosedWith(wire.DisconnectSlowConsumer) == 1 })
	// The fast client keeps receiving.
	if _, err := s.hub.Publish(context.Background(), "feed", []byte(`"after"`), nil); err != nil {
		t.Fatal(err)
	}
	if p := fast.nextPush(); dataOf(p) != `"after"` {
		t.Fatalf("fast client after the overflow: %+v", p)
	}
}

// TestHalfOpen: a client that stops answering without closing its socket
// is disconnected by the heartbeat and leaves the channel's presence,
// while a client that answers pings stays.
func TestHalfOpen(t *testing.T) {
	s := newServer(t, func(c *session.Config, _ *Options) {
		c.PingInterval = 50 * time.Millisecond
		c.PongTimeout = 250 * time.Millisecond
	}, nil)
	silent := s.connect(wire.EncodingBinary)
	silent.subscribe("chat:presence")
	alive := s.connect(wire.EncodingJSON)
	alive.subscribe("chat:presence")

	_ = alive.nc.SetReadDeadline(time.Time{})
	pongs := make(chan error, 1)
	go func() {
		// Answer every ping until the socket is closed.
		for {
			b, err := alive.fr.ReadFrame()
			if err != nil {
				pongs <- err
				return
			}
			_, p, err := alive.codec.DecodeServerMessage(b, nil)
			if err != nil {
				pongs <- err
				return
			}
			if p != nil && p.Type == wire.PushDisconnect {
				pongs <- fmt.Errorf("disconnected: %+v", p.Disconnect)
				return
			}
			if p != nil && p.Type == wire.PushPing {
				if _, err := alive.nc.Write(wire.AppendFrame(nil, alive.codec.AppendCommand(nil, &wire.Command{Method: wire.MethodPong}))); err != nil {
					pongs <- err
					return
				}
			}
		}
	}()
	testwait.Until(t, "silent client disconnected", func() bool { return s.metrics.ClosedWith(wire.DisconnectNoPong) == 1 })
	testwait.Until(t, "presence cleaned", func() bool {
		p, err := s.hub.Presence(context.Background(), "chat:presence")
		if err != nil {
			t.Fatal(err)
		}
		_, gone := p[silent.id]
		_, here := p[alive.id]
		return !gone && here
	})
	select {
	case err := <-pongs:
		t.Fatalf("answering client: %v", err)
	default:
	}
	alive.nc.Close()
	<-pongs
	silent.expectDisconnect(wire.DisconnectNoPong)
	if s.metrics.ClosedWith(wire.DisconnectNoPong) != 1 {
		t.Fatal("the answering client was disconnected too")
	}
}

func TestTLS(t *testing.T) {
	cert := testcert.New(t, "127.0.0.1")
	s := newServer(t, func(_ *session.Config, o *Options) {
		o.TLS = cert.ServerConfig()
	}, nil)
	s.tls = cert.ClientConfig("127.0.0.1")
	a := s.connect(wire.EncodingBinary)
	b := s.connect(wire.EncodingJSON)
	a.subscribe("chat:tls")
	b.subscribe("chat:tls")
	if _, err := s.hub.Publish(context.Background(), "chat:tls", []byte(`{"secure":true}`), nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{a, b} {
		if p := c.nextPush(); dataOf(p) != `{"secure":true}` {
			t.Fatalf("publication %+v", p)
		}
	}
	// A plain-text hello on the TLS port is not a TLS handshake.
	plain, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Write(wire.AppendClientHello(nil, 1, wire.EncodingBinary)); err != nil {
		t.Fatal(err)
	}
	_ = plain.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(plain); bytes.HasPrefix(b, []byte(wire.HelloMagic)) {
		t.Fatalf("plain-text client got a server hello: %x", b)
	}
}

func TestShutdown(t *testing.T) {
	s := newServer(t, func(_ *session.Config, o *Options) { o.HelloTimeout = 10 * time.Second }, nil)
	c := s.connect(wire.EncodingBinary)
	pending := s.dialRaw() // in the hello phase
	if _, err := pending.Write([]byte("HR")); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "hello phase", func() bool { return s.srv.Stats().Accepted == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.srv.Shutdown(ctx) }()
	expectEOF(t, pending)
	// Established connections end through the session manager's drain.
	if err := s.m.Drain(ctx, wire.Disconnect{Code: wire.DisconnectShutdown, Reason: "bye", Reconnect: true}, 0); err != nil {
		t.Fatal(err)
	}
	c.expectDisconnect(wire.DisconnectShutdown)
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// New connections are refused.
	nc, err := net.Dial("tcp", s.addr)
	if err == nil {
		expectEOF(t, nc)
		nc.Close()
	}
	if err := s.srv.Serve(newDummyListener()); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

func TestShutdownForcesAfterDeadline(t *testing.T) {
	s := newServer(t, nil, nil)
	c := s.connect(wire.EncodingJSON)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("shutdown: %v", err)
	}
	if s.srv.Stats().Open != 0 {
		t.Fatal("connections left open")
	}
	if _, _, err := c.read(); err == nil {
		t.Fatal("connection still open")
	}
}

type dummyListener struct{ done chan struct{} }

func newDummyListener() *dummyListener { return &dummyListener{done: make(chan struct{})} }

func (l *dummyListener) Accept() (net.Conn, error) { <-l.done; return nil, net.ErrClosed }
func (l *dummyListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}
func (l *dummyListener) Addr() net.Addr { return &net.TCPAddr{} }
