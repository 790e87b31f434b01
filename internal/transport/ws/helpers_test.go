package wstransport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/testnode"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/ws"
)

func TestMain(m *testing.M) {
	// The ws engine's process-wide poller lives as long as the process.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*loop).run"),
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*epollPoller).worker"),
	)
}

// clientCodec decodes what the server sends; recovery replies carrying
// thousands of publications exceed the default limit.
var clientCodec = wire.JSONCodec{MaxMessageSize: 8 << 20}

var testSecret = []byte("wstransport-test-secret-0123456789")

// muteConn is a client socket whose writes can be silently dropped: a
// peer whose outgoing traffic no longer arrives (a dead uplink).
type muteConn struct {
	net.Conn
	muted atomic.Bool
}

func (m *muteConn) Write(p []byte) (int, error) {
	if m.muted.Load() {
		return len(p), nil
	}
	return m.Conn.Write(p)
}

type server struct {
	t       testing.TB
	url     string
	hub     *hub.Hub
	m       *session.Manager
	metrics *testnode.Metrics
	node    *testnode.Node
	h       *Handler
}

func newServer(t testing.TB, adjust func(*session.Config, *Options)) *server {
	t.Helper()
	return newServerWith(t, adjust, nil)
}

// smallSendBuffers makes every accepted socket's kernel send buffer
// small, so that a client that stops reading fills the server's own
// queue quickly.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}

func newServerWith(t testing.TB, adjust func(*session.Config, *Options), wrap func(net.Listener) net.Listener) *server {
	t.Helper()
	opts := Options{}
	node := testnode.Start(t, testnode.Config{
		Hub: hub.Config{MaxConnectionsPerUser: 2, Namespaces: hub.NamespaceMap{
			"":        {AllowPublish: true, AllowAnonymous: true},
			"private": {AllowPublish: true},
			"ro":      {AllowAnonymous: true, HistorySize: 10, AllowHistory: true},
			"chat":    {HistorySize: 5000, AllowHistory: true, Presence: true, AllowPresence: true, AllowPublish: true, AllowAnonymous: true},
		}},
		Secret: testSecret,
		Session: func(cfg *session.Config) {
			if adjust != nil {
				adjust(cfg, &opts)
			}
		},
	})
	opts.Sessions = node.Sessions
	handler, err := NewHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	if wrap != nil {
		srv.Listener = wrap(srv.Listener)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		node.Drain(ctx)
		srv.Close()
		node.Close(ctx)
	})
	return &server{t: t, url: "ws" + strings.TrimPrefix(srv.URL, "http"), hub: node.Hub, m: node.Sessions, metrics: node.Metrics, node: node, h: handler}
}

func (s *server) token(sub string) string { return s.node.Token(sub) }

// wsClient is a protocol client over the ws package's blocking API.
type wsClient struct {
	t       testing.TB
	id      string // client id from the connect reply
	c       *ws.Conn
	nextID  uint32
	methods map[uint32]wire.Method
	backlog []*wire.Push
}

func (s *server) dial(opts *ws.DialOptions) *wsClient {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, s.url, opts)
	if err != nil {
		s.t.Fatalf("dial: %v", err)
	}
	s.t.Cleanup(func() { _ = c.CloseNow() })
	return &wsClient{t: s.t, c: c, methods: map[uint32]wire.Method{}}
}

// connect dials and connects with token ("" for anonymous).
func (s *server) connect(token string) *wsClient {
	s.t.Helper()
	c := s.dial(nil)
	r := c.call("connect", map[string]any{"token": token})
	if r.Error != nil {
		s.t.Fatalf("connect: %+v", r.Error)
	}
	c.id = r.Connect.Client
	return c
}

func (c *wsClient) write(raw string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, ws.MessageText, []byte(raw)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wsClient) cmd(method string, params any) uint32 {
	c.t.Helper()
	c.nextID++
	m := map[string]any{"id": c.nextID, "method": method}
	if params != nil {
		m["params"] = params
	}
	b, err := json.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.methods[c.nextID] = wire.MethodByName(method)
	c.write(string(b))
	return c.nextID
}

// read returns the next server message, or the error that ended the
// connection.
func (c *wsClient) read() (*wire.Reply, *wire.Push, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.c.Read(ctx)
	if err != nil {
		return nil, nil, err
	}
	if typ != ws.MessageText {
		c.t.Fatalf("server sent a %v message", typ)
	}
	r, p, err := clientCodec.DecodeServerMessage(b, func(id uint32) wire.Method { return c.methods[id] })
	if err != nil {
		c.t.Fatalf("decode %.200s: %.300v", b, err)
	}
	return r, p, nil
}

func (c *wsClient) mustRead() (*wire.Reply, *wire.Push) {
	c.t.Helper()
	r, p, err := c.read()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return r, p
}

func (c *wsClient) call(method string, params any) *wire.Reply {
	c.t.Helper()
	id := c.cmd(method, params)
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

// nextPush returns the next push, skipping nothing but failing on replies.
func (c *wsClient) nextPush() *wire.Push {
	c.t.Helper()
	if len(c.backlog) > 0 {
		p := c.backlog[0]
		c.backlog = c.backlog[1:]
		return p
	}
	r, p := c.mustRead()
	if r != nil {
		c.t.Fatalf("reply %+v, want a push", r)
	}
	return p
}

// expectClose reads until the connection ends and checks that the server
// sent a disconnect push (when push is true) and a close frame with code.
func (c *wsClient) expectClose(code uint16, push bool) {
	c.t.Helper()
	sawPush := false
	for {
		_, p, err := c.read()
		if err != nil {
			var ce *ws.CloseError
			if !errors.As(err, &ce) {
				c.t.Fatalf("connection ended with %v, want close frame %d", err, code)
			}
			if uint16(ce.Code) != code {
				c.t.Fatalf("close code %d (%q), want %d", ce.Code, ce.Reason, code)
			}
			if push && !sawPush {
				c.t.Fatalf("close %d without a disconnect push", code)
			}
			return
		}
		if p != nil && p.Type == wire.PushDisconnect {
			if p.Disconnect.Code != code {
				c.t.Fatalf("disconnect push %d, want %d", p.Disconnect.Code, code)
			}
			sawPush = true
		}
	}
}

func expectError(t *testing.T, r *wire.Reply, code uint32) {
	t.Helper()
	if r.Error == nil || r.Error.Code != code {
		t.Fatalf("reply %+v error %+v, want error %d", r, r.Error, code)
	}
}

func dataOf(p *wire.Push) string {
	if p.Publication == nil {
		return fmt.Sprintf("<%s push>", p.Type)
	}
	return string(p.Publication.Data)
}
