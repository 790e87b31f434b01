package session

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
	"github.com/heraldhq/herald/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testSecret = []byte("session-test-secret-0123456789abcdef")

// testFormat is the delivery format of the fake transport.
var testFormat = hub.NewFormat("session-test-json")

// fakeTransport records what a client would receive, in order, as encoded
// JSON messages. It overflows after limit queued messages when limit > 0.
type fakeTransport struct {
	mu       sync.Mutex
	msgs     [][]byte
	pings    int
	closed   bool
	code     uint16
	reason   string
	limit    int
	notify   chan struct{}
	lastRead atomic.Int64

	s *Session
}

func newFakeTransport() *fakeTransport {
	return &fakeTransport{notify: make(chan struct{}, 1)}
}

func (f *fakeTransport) signal() {
	select {
	case f.notify <- struct{}{}:
	default:
	}
}

func (f *fakeTransport) push(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fmt.Errorf("fake: closed")
	}
	if f.limit > 0 && len(f.msgs) >= f.limit {
		return fmt.Errorf("fake: %w", ErrOverflow)
	}
	f.msgs = append(f.msgs, b)
	f.signal()
	return nil
}

func (f *fakeTransport) Send(msg []byte) error { return f.push(msg) }

func (f *fakeTransport) SendDelivery(d *hub.Delivery) error {
	b := d.Encoded(testFormat, func(p *wire.Push) any { return wire.JSON.AppendPush(nil, p) }).([]byte)
	return f.push(b)
}

func (f *fakeTransport) Ping() error {
	f.mu.Lock()
	f.pings++
	f.mu.Unlock()
	return nil
}

func (f *fakeTransport) Close(code uint16, reason string) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed, f.code, f.reason = true, code, reason
	f.signal()
	f.mu.Unlock()
	// Like a transport whose socket closes at once.
	f.s.HandleClose(nil)
}

func (f *fakeTransport) LastRead() time.Time { return time.Unix(0, f.lastRead.Load()) }

func (f *fakeTransport) Info() TransportInfo {
	return TransportInfo{Name: "fake", RemoteAddr: "127.0.0.1:1"}
}

// countMetrics counts what the session reports.
type countMetrics struct {
	mu       sync.Mutex
	opened   int
	closed   map[uint16]int
	commands map[string]int // "method/code"
	sent     map[MessageKind]int
}

func newCountMetrics() *countMetrics {
	return &countMetrics{closed: map[uint16]int{}, commands: map[string]int{}, sent: map[MessageKind]int{}}
}

func (c *countMetrics) SessionOpened(string) { c.mu.Lock(); c.opened++; c.mu.Unlock() }
func (c *countMetrics) SessionClosed(_ string, code uint16) {
	c.mu.Lock()
	c.closed[code]++
	c.mu.Unlock()
}
func (c *countMetrics) Command(m wire.Method, code uint32) {
	c.mu.Lock()
	c.commands[fmt.Sprintf("%s/%d", m, code)]++
	c.mu.Unlock()
}
func (c *countMetrics) Sent(k MessageKind) { c.mu.Lock(); c.sent[k]++; c.mu.Unlock() }

func (c *countMetrics) closedWith(code uint16) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed[code]
}

func (c *countMetrics) command(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commands[key]
}

// testNamespaces covers every permission rule.
func testNamespaces() hub.NamespaceMap {
	return hub.NamespaceMap{
		"":        {AllowPublish: true, AllowAnonymous: true, Presence: true, AllowPresence: true},
		"chat":    {HistorySize: 100, AllowHistory: true, Presence: true, AllowPresence: true, JoinLeave: true, AllowPublish: true, AllowAnonymous: true},
		"members": {AllowPublish: true},
		"ro":      {AllowAnonymous: true, HistorySize: 10},
		"user":    {UserLimited: true, AllowPublish: true, HistorySize: 10, AllowHistory: true},
		"vip":     {RequireGrant: true, AllowPublish: true},
		"bench":   {AllowPublish: true, AllowAnonymous: true},
	}
}

type env struct {
	t       testing.TB
	hub     *hub.Hub
	m       *Manager
	metrics *countMetrics
}

// newEnv starts a memory broker, a hub and a Manager configured by
// adjust; everything stops when the test ends.
func newEnv(t testing.TB, adjust func(*Config)) *env {
	t.Helper()
	b := membroker.New(membroker.Options{})
	h, err := hub.New(hub.Config{Broker: b, Presence: b, Namespaces: testNamespaces()})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{HMACSecret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	met := newCountMetrics()
	cfg := Config{Hub: h, Verifier: v, AllowAnonymous: true, Metrics: met, Node: "n1", Version: "test"}
	if adjust != nil {
		adjust(&cfg)
	}
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Drain(ctx, wire.Disconnect{Code: wire.DisconnectShutdown, Reason: "test over", Reconnect: true}, 0); err != nil {
			t.Errorf("drain: %v", err)
		}
		m.Close()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		if err := b.Close(ctx); err != nil {
			t.Errorf("broker close: %v", err)
		}
	})
	return &env{t: t, hub: h, m: m, metrics: met}
}

func (e *env) token(c auth.Claims) string {
	e.t.Helper()
	tok, err := auth.Sign(c, auth.HS256, testSecret)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// client drives one session through a fake transport.
type client struct {
	t      testing.TB
	ft     *fakeTransport
	s      *Session
	nextID uint32
	read   int // messages consumed
	// methods maps in-flight command ids to methods for decoding replies.
	methods map[uint32]wire.Method
	// backlog holds pushes that arrived while a reply was awaited.
	backlog []*wire.Push
}

func (e *env) client() *client { return e.clientFor(e.t) }

// clientFor is client reporting to t (fuzz targets have their own t).
func (e *env) clientFor(t testing.TB) *client {
	t.Helper()
	ft := newFakeTransport()
	s, err := e.m.NewSession(ft, wire.JSON)
	if err != nil {
		t.Fatal(err)
	}
	ft.s = s
	return &client{t: t, ft: ft, s: s, methods: map[uint32]wire.Method{}}
}

// connected returns a client connected with token ("" for anonymous).
func (e *env) connected(token string) *client {
	e.t.Helper()
	c := e.client()
	r := c.call("connect", map[string]any{"token": token})
	if r.Error != nil {
		e.t.Fatalf("connect: %+v", r.Error)
	}
	return c
}

// send sends a raw message.
func (c *client) send(raw string) { c.s.HandleMessage([]byte(raw)) }

// cmd sends a command and returns its id.
func (c *client) cmd(method string, params any) uint32 {
	c.t.Helper()
	c.nextID++
	id := c.nextID
	m := map[string]any{"id": id, "method": method}
	if params != nil {
		m["params"] = params
	}
	b, err := json.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.methods[id] = wire.MethodByName(method)
	c.s.HandleMessage(b)
	return id
}

// call sends a command and waits for its reply, skipping pushes.
func (c *client) call(method string, params any) *wire.Reply {
	c.t.Helper()
	id := c.cmd(method, params)
	return c.replyTo(id)
}

// next returns the next message the client receives (pushes skipped by
// replyTo first).
func (c *client) next() (*wire.Reply, *wire.Push) {
	c.t.Helper()
	if len(c.backlog) > 0 {
		p := c.backlog[0]
		c.backlog = c.backlog[1:]
		return nil, p
	}
	return c.receive()
}

// receive waits for the next message from the transport.
func (c *client) receive() (*wire.Reply, *wire.Push) {
	c.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.ft.mu.Lock()
		if c.read < len(c.ft.msgs) {
			b := c.ft.msgs[c.read]
			c.read++
			c.ft.mu.Unlock()
			r, p, err := wire.JSON.DecodeServerMessage(b, func(id uint32) wire.Method { return c.methods[id] })
			if err != nil {
				c.t.Fatalf("decode %s: %v", b, err)
			}
			return r, p
		}
		c.ft.mu.Unlock()
		select {
		case <-c.ft.notify:
		case <-deadline:
			c.t.Fatalf("no message within 5s (read %d)", c.read)
		}
	}
}

// replyTo waits for the reply with id; pushes before it go to the
// backlog.
func (c *client) replyTo(id uint32) *wire.Reply {
	c.t.Helper()
	for {
		r, p := c.receive()
		if p != nil {
			c.backlog = append(c.backlog, p)
		}
		if r != nil {
			if r.ID != id {
				c.t.Fatalf("reply to %d while waiting for %d", r.ID, id)
			}
			return r
		}
	}
}

// nextPush waits for the next push; a reply is a test failure.
func (c *client) nextPush() *wire.Push {
	c.t.Helper()
	r, p := c.next()
	if r != nil {
		c.t.Fatalf("got reply %+v, want a push", r)
	}
	return p
}

// pending reports how many received messages were not consumed yet.
func (c *client) pending() int {
	c.ft.mu.Lock()
	defer c.ft.mu.Unlock()
	return len(c.ft.msgs) - c.read
}

// waitClosed waits until the transport was closed and returns the code.
func (c *client) waitClosed() uint16 {
	c.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.ft.mu.Lock()
		closed, code := c.ft.closed, c.ft.code
		c.ft.mu.Unlock()
		if closed {
			return code
		}
		select {
		case <-c.ft.notify:
		case <-deadline:
			c.t.Fatal("transport not closed within 5s")
		}
	}
}

// expectError checks that r is an error reply with code.
func expectError(t *testing.T, r *wire.Reply, code uint32) {
	t.Helper()
	if r.Error == nil || r.Error.Code != code {
		t.Fatalf("reply = %+v (error %+v), want error %d", r, r.Error, code)
	}
}

// expectDisconnect consumes messages until the disconnect push and checks
// it and the close code.
func (c *client) expectDisconnect(code uint16) {
	c.t.Helper()
	for {
		r, p := c.next()
		if r != nil {
			continue
		}
		if p.Type == wire.PushDisconnect {
			if p.Disconnect.Code != code {
				c.t.Fatalf("disconnect push code %d (%s), want %d", p.Disconnect.Code, p.Disconnect.Reason, code)
			}
			if p.Disconnect.Reconnect != wire.DisconnectReconnects(code) {
				c.t.Fatalf("disconnect push reconnect = %v for %d", p.Disconnect.Reconnect, code)
			}
			break
		}
	}
	if got := c.waitClosed(); got != code {
		c.t.Fatalf("close code %d, want %d", got, code)
	}
}
