package tcptransport

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netpoll"
	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/testnode"
	"github.com/heraldhq/herald/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type testServer struct {
	t       testing.TB
	addr    string
	hub     *hub.Hub
	m       *session.Manager
	srv     *Server
	metrics *testnode.Metrics
	tls     *tls.Config // client config when the server uses TLS
}

// smallSendBuffers makes every accepted socket's kernel send buffer small,
// so that a client that stops reading fills the server's queue quickly.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}

// testNamespaces are the hub namespaces the transport tests use.
var testNamespaces = hub.NamespaceMap{
	"":     {AllowPublish: true, AllowAnonymous: true},
	"chat": {HistorySize: 100, AllowHistory: true, Presence: true, AllowPresence: true, AllowPublish: true, AllowAnonymous: true},
}

func newServer(t testing.TB, adjust func(*session.Config, *Options), wrap func(net.Listener) net.Listener) *testServer {
	t.Helper()
	poller, err := netpoll.New(netpoll.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Poller: poller, CloseTimeout: 500 * time.Millisecond}
	node := testnode.Start(t, testnode.Config{
		Hub: hub.Config{Namespaces: testNamespaces},
		Session: func(cfg *session.Config) {
			if adjust != nil {
				adjust(cfg, &opts)
			}
		},
	})
	opts.Sessions = node.Sessions
	srv, err := New(opts)
	if err != nil {
		poller.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		poller.Close()
		t.Fatal(err)
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		node.Drain(ctx)
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("second shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		node.Close(ctx)
		poller.Close()
	})
	return &testServer{t: t, addr: ln.Addr().String(), hub: node.Hub, m: node.Sessions, srv: srv, metrics: node.Metrics}
}

// client is a protocol client over a raw socket.
type client struct {
	t       testing.TB
	nc      net.Conn
	codec   wire.Codec
	fr      *wire.FrameReader
	nextID  uint32
	methods map[uint32]wire.Method
	backlog []*wire.Push
	id      string
}

// dialRaw opens a socket (TLS when the server uses it) without a hello.
func (s *testServer) dialRaw() net.Conn {
	s.t.Helper()
	var nc net.Conn
	var err error
	if s.tls != nil {
		nc, err = tls.Dial("tcp", s.addr, s.tls)
	} else {
		nc, err = net.Dial("tcp", s.addr)
	}
	if err != nil {
		s.t.Fatalf("dial: %v", err)
	}
	s.t.Cleanup(func() { nc.Close() })
	return nc
}

func newClient(t testing.TB, nc net.Conn, enc wire.Encoding) *client {
	var codec wire.Codec = wire.BinaryCodec{MaxMessageSize: 8 << 20}
	if enc == wire.EncodingJSON {
		codec = wire.JSONCodec{MaxMessageSize: 8 << 20}
	}
	return &client{t: t, nc: nc, codec: codec, fr: wire.NewFrameReader(nc, 8<<20), methods: map[uint32]wire.Method{}}
}

// dial opens a connection and completes the hello.
func (s *testServer) dial(enc wire.Encoding) *client {
	s.t.Helper()
	nc := s.dialRaw()
	if _, err := nc.Write(wire.AppendClientHello(nil, wire.ProtocolVersion, enc)); err != nil {
		s.t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := wire.ReadServerHello(nc)
	if err != nil || h.Status != wire.HelloOK || h.Encoding != enc {
		s.t.Fatalf("server hello %+v, %v", h, err)
	}
	return newClient(s.t, nc, enc)
}

// connect dials and connects anonymously.
func (s *testServer) connect(enc wire.Encoding) *client {
	s.t.Helper()
	c := s.dial(enc)
	r := c.call(&wire.Command{Method: wire.MethodConnect, Connect: &wire.ConnectParams{Name: "test"}})
	if r.Error != nil {
		s.t.Fatalf("connect: %+v", r.Error)
	}
	c.id = r.Connect.Client
	return c
}

func (c *client) writeRaw(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// send sends cmd with the next id (unless it is a pong) and returns it.
func (c *client) send(cmd *wire.Command) uint32 {
	c.t.Helper()
	if cmd.Method != wire.MethodPong {
		c.nextID++
		cmd.ID = c.nextID
		c.methods[cmd.ID] = cmd.Method
	}
	c.writeRaw(wire.AppendFrame(nil, c.codec.AppendCommand(nil, cmd)))
	return cmd.ID
}

// read returns the next server message, or the error that ended the
// connection.
func (c *client) read() (*wire.Reply, *wire.Push, error) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := c.fr.ReadFrame()
	if err != nil {
		return nil, nil, err
	}
	r, p, err := c.codec.DecodeServerMessage(b, func(id uint32) wire.Method { return c.methods[id] })
	if err != nil {
		c.t.Fatalf("decode %q: %v", b, err)
	}
	return r, p, nil
}

func (c *client) mustRead() (*wire.Reply, *wire.Push) {
	c.t.Helper()
	r, p, err := c.read()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return r, p
}

func (c *client) call(cmd *wire.Command) *wire.Reply {
	c.t.Helper()
	id := c.send(cmd)
	for {
		r, p := c.mustRead()
		if p != nil {
			c.backlog = append(c.backlog, p)
			continue
		}
		if r.ID != id {
			c.t.Fatalf("reply %d while waiting for %d", r.ID, id)
		}
		return r
	}
}

func (c *client) subscribe(channel string) {
	c.t.Helper()
	if r := c.call(&wire.Command{Method: wire.MethodSubscribe, Subscribe: &wire.SubscribeParams{Channel: channel}}); r.Error != nil {
		c.t.Fatalf("subscribe %s: %+v", channel, r.Error)
	}
}

// nextPush returns the next push other than ping.
func (c *client) nextPush() *wire.Push {
	c.t.Helper()
	for {
		if len(c.backlog) > 0 {
			p := c.backlog[0]
			c.backlog = c.backlog[1:]
			if p.Type != wire.PushPing {
				return p
			}
			continue
		}
		r, p := c.mustRead()
		if r != nil {
			c.t.Fatalf("reply %+v, want a push", r)
		}
		if p.Type != wire.PushPing {
			return p
		}
	}
}

// expectDisconnect reads until the connection ends and checks that the
// last message was a disconnect push with code, followed by EOF.
func (c *client) expectDisconnect(code uint16) {
	c.t.Helper()
	var last *wire.Push
	for {
		_, p, err := c.read()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				c.t.Fatalf("connection ended with %v, want EOF after disconnect %d", err, code)
			}
			break
		}
		if p != nil {
			last = p
		}
	}
	if last == nil || last.Type != wire.PushDisconnect || last.Disconnect.Code != code {
		c.t.Fatalf("last push %+v, want disconnect %d", last, code)
	}
}

// expectEOF checks that the server closes the connection without sending
// anything more.
func expectEOF(t testing.TB, nc net.Conn) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(nc)
	if err != nil && !isReset(err) {
		t.Fatalf("read: %v", err)
	}
	if len(b) != 0 {
		t.Fatalf("server sent %q, want nothing", b)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func dataOf(p *wire.Push) string {
	if p.Publication == nil {
		return fmt.Sprintf("<%s push>", p.Type)
	}
	return string(p.Publication.Data)
}

func jsonData(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
