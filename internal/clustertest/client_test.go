package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/ws"
)

// client is a WebSocket client speaking herald's JSON protocol, written
// for these tests so that every push is checked: it tracks each
// subscribed channel's numbered stream ({"n":k} publications), answers
// server pings, and on an unsubscribe push with resubscribe (2001) it
// subscribes again with its last position, as the SDKs do.
//
// One goroutine reads the connection; it ends when the connection closes
// (close waits for it). The fields below mu are shared with it.
type client struct {
	t    testing.TB
	name string
	user string
	node string // node name from the connect reply
	conn *ws.Conn
	done chan struct{}
	// countOnly makes publications only counted (stream.count), for
	// benchmarks whose publishers run concurrently. Set before subscribing.
	countOnly bool

	mu        sync.Mutex
	nextID    uint32
	pending   map[uint32]*pendingCall
	streams   map[string]*stream
	messages  []json.RawMessage // message pushes (direct messages)
	unsubs    []unsubPush       // every unsubscribe push
	closeCode ws.StatusCode     // close code the server sent, -1 for none
	readErr   error
	changed   chan struct{} // closed and replaced on every state change
}

type pendingCall struct {
	method string
	// onReply runs on the reading goroutine before done closes, so it
	// is ordered with the pushes that follow the reply.
	onReply func(result json.RawMessage, e *wire.Error)
	result  json.RawMessage
	err     *wire.Error
	done    chan struct{}
}

type unsubPush struct {
	Channel     string
	Code        uint32
	Resubscribe bool
}

// stream is the client's view of one channel's numbered stream.
type stream struct {
	pos position
	// want is the next number expected; after recovered:false any larger
	// number is accepted once (publications were lost, and the client was
	// told).
	want       int
	gapAllowed bool
	got        []int
	violations []string
	count      int // publications received (every mode)
	recovered  int // resubscribes that recovered
	notRecov   int // resubscribes that could not
	subscribed bool
}

// serverMsg is any message the server sends: a reply (id) or a push (type).
type serverMsg struct {
	ID          uint32          `json:"id"`
	Result      json.RawMessage `json:"result"`
	Error       *wire.Error     `json:"error"`
	Type        string          `json:"type"`
	Channel     string          `json:"channel"`
	Offset      uint64          `json:"offset"`
	Data        json.RawMessage `json:"data"`
	Code        uint32          `json:"code"`
	Resubscribe bool            `json:"resubscribe"`
}

type subscribeResult struct {
	Epoch        string `json:"epoch"`
	Offset       uint64 `json:"offset"`
	Recoverable  bool   `json:"recoverable"`
	Recovered    bool   `json:"recovered"`
	Publications []struct {
		Offset uint64          `json:"offset"`
		Data   json.RawMessage `json:"data"`
	} `json:"publications"`
}

// dial connects a client for user to n and completes the connect command.
func dial(t testing.TB, n *node, name, user string) *client {
	t.Helper()
	token, err := auth.SignHS256([]byte(n.spec.TokenSecret), user, time.Hour, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 10*time.Second)
	conn, _, err := ws.Dial(ctx, "ws://"+n.addr+"/ws", nil)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, n.name, err)
	}
	c := &client{
		t: t, name: name, user: user, conn: conn, done: make(chan struct{}),
		pending: make(map[uint32]*pendingCall), streams: make(map[string]*stream),
		closeCode: -1, changed: make(chan struct{}),
	}
	go c.read()
	t.Cleanup(c.close)
	var res struct {
		Node string `json:"node"`
	}
	raw, werr := c.call(ctx, "connect", map[string]string{"token": token, "name": "clustertest"})
	if werr != nil {
		t.Fatalf("%s: connect to %s: %v", name, n.name, werr)
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("%s: connect reply %s: %v", name, raw, err)
	}
	c.node = res.Node
	return c
}

// close closes the connection at once and waits for the reader.
func (c *client) close() {
	_ = c.conn.CloseNow()
	<-c.done
}

func (c *client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// read is the client's reading goroutine.
func (c *client) read() {
	defer close(c.done)
	ctx := context.Background()
	for {
		_, data, err := c.conn.Read(ctx)
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.closeCode = ws.CloseStatus(err)
			for _, p := range c.pending {
				p.err = &wire.Error{Code: wire.ErrInternal, Message: "connection closed: " + err.Error()}
				close(p.done)
			}
			c.pending = map[uint32]*pendingCall{}
			c.notifyLocked()
			c.mu.Unlock()
			return
		}
		var m serverMsg
		if err := json.Unmarshal(data, &m); err != nil {
			c.violation("", "undecodable message %q: %v", data, err)
			continue
		}
		c.handle(&m)
	}
}

func (c *client) violation(channel, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.streamLocked(channel)
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
	c.notifyLocked()
}

func (c *client) streamLocked(channel string) *stream {
	s := c.streams[channel]
	if s == nil {
		s = &stream{want: 1}
		c.streams[channel] = s
	}
	return s
}

func (c *client) handle(m *serverMsg) {
	if m.Type == "" {
		c.mu.Lock()
		p := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if p == nil {
			c.violation("", "reply to unknown id %d", m.ID)
			return
		}
		p.result, p.err = m.Result, m.Error
		if p.onReply != nil {
			p.onReply(m.Result, m.Error)
		}
		close(p.done)
		return
	}
	switch m.Type {
	case "ping":
		// The server expects a pong for every ping.
		_ = c.conn.Write(context.Background(), ws.MessageText, []byte(`{"method":"pong"}`))
	case "publication":
		c.mu.Lock()
		c.publicationLocked(m.Channel, m.Offset, m.Data, "live")
		c.notifyLocked()
		c.mu.Unlock()
	case "message":
		c.mu.Lock()
		c.messages = append(c.messages, m.Data)
		c.notifyLocked()
		c.mu.Unlock()
	case "unsubscribe":
		c.mu.Lock()
		c.unsubs = append(c.unsubs, unsubPush{Channel: m.Channel, Code: m.Code, Resubscribe: m.Resubscribe})
		s := c.streamLocked(m.Channel)
		s.subscribed = false
		since := s.pos
		c.notifyLocked()
		c.mu.Unlock()
		if m.Resubscribe {
			// Resubscribing from the reader: the reply is handled here
			// when it arrives, before the channel's next live push.
			if err := c.send("subscribe", c.subscribeParams(m.Channel, &since), c.subscribeReply(m.Channel, true)); err != nil {
				c.violation(m.Channel, "resubscribe: %v", err)
			}
		}
	case "disconnect", "join", "leave":
	default:
		c.violation("", "unknown push type %q", m.Type)
	}
}

// publicationLocked checks and records one publication of the numbered
// stream. c.mu must be held.
func (c *client) publicationLocked(channel string, offset uint64, data json.RawMessage, how string) {
	s := c.streamLocked(channel)
	s.count++
	if c.countOnly {
		return
	}
	var v struct {
		N int `json:"n"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		s.violations = append(s.violations, fmt.Sprintf("%s publication with data %s", how, data))
		return
	}
	if !s.subscribed && how == "live" {
		s.violations = append(s.violations, fmt.Sprintf("live publication n=%d while not subscribed", v.N))
	}
	if s.pos.Epoch != "" && offset != s.pos.Offset+1 {
		s.violations = append(s.violations, fmt.Sprintf("%s publication n=%d at offset %d after offset %d", how, v.N, offset, s.pos.Offset))
	}
	switch {
	case v.N == s.want:
	case s.gapAllowed && v.N > s.want:
	default:
		s.violations = append(s.violations, fmt.Sprintf("%s publication n=%d, want %d", how, v.N, s.want))
	}
	s.gapAllowed = false
	s.want = v.N + 1
	s.pos.Offset = offset
	s.got = append(s.got, v.N)
}

func (c *client) subscribeParams(channel string, since *position) map[string]any {
	p := map[string]any{"channel": channel}
	if since != nil && since.Epoch != "" {
		p["since"] = since
	}
	return p
}

// subscribeReply returns the handler of a subscribe reply: recovered
// publications go through the same checks as live ones.
func (c *client) subscribeReply(channel string, recovering bool) func(json.RawMessage, *wire.Error) {
	return func(raw json.RawMessage, e *wire.Error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		defer c.notifyLocked()
		s := c.streamLocked(channel)
		if e != nil {
			s.violations = append(s.violations, fmt.Sprintf("subscribe error %d %s", e.Code, e.Message))
			return
		}
		var r subscribeResult
		if err := json.Unmarshal(raw, &r); err != nil {
			s.violations = append(s.violations, fmt.Sprintf("subscribe reply %s: %v", raw, err))
			return
		}
		s.subscribed = true
		if recovering {
			if r.Recovered {
				s.recovered++
				for _, p := range r.Publications {
					c.publicationLocked(channel, p.Offset, p.Data, "recovered")
				}
			} else {
				s.notRecov++
				s.gapAllowed = true
			}
		}
		if s.pos.Epoch == r.Epoch && s.pos.Offset != r.Offset && recovering && r.Recovered {
			s.violations = append(s.violations, fmt.Sprintf("recovered up to offset %d but the reply says %d", s.pos.Offset, r.Offset))
		}
		s.pos = position{Offset: r.Offset, Epoch: r.Epoch}
	}
}

// send writes a command whose reply is handled by onReply on the reader.
func (c *client) send(method string, params any, onReply func(json.RawMessage, *wire.Error)) error {
	_, err := c.start(method, params, onReply)
	return err
}

func (c *client) start(method string, params any, onReply func(json.RawMessage, *wire.Error)) (*pendingCall, error) {
	c.mu.Lock()
	if c.readErr != nil {
		c.mu.Unlock()
		return nil, errClientClosed
	}
	c.nextID++
	id := c.nextID
	p := &pendingCall{method: method, onReply: onReply, done: make(chan struct{})}
	c.pending[id] = p
	c.mu.Unlock()
	cmd := map[string]any{"id": id, "method": method}
	if params != nil {
		cmd["params"] = params
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, ws.MessageText, b); err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, err
	}
	return p, nil
}

// call sends a command and waits for its reply.
func (c *client) call(ctx context.Context, method string, params any) (json.RawMessage, *wire.Error) {
	p, err := c.start(method, params, nil)
	if err != nil {
		return nil, &wire.Error{Code: wire.ErrInternal, Message: err.Error()}
	}
	select {
	case <-p.done:
		return p.result, p.err
	case <-ctx.Done():
		return nil, &wire.Error{Code: wire.ErrInternal, Message: method + ": " + ctx.Err().Error()}
	}
}

// subscribe subscribes to channel, from since when given (a client that
// was subscribed elsewhere: its stream state carries over), and waits for
// the reply.
func (c *client) subscribe(t testing.TB, channel string, since *stream) {
	t.Helper()
	var pos *position
	if since != nil {
		c.mu.Lock()
		s := c.streamLocked(channel)
		s.pos, s.want = since.pos, since.want
		c.mu.Unlock()
		pos = &since.pos
	}
	p, err := c.start("subscribe", c.subscribeParams(channel, pos), c.subscribeReply(channel, since != nil))
	if err != nil {
		t.Fatalf("%s: subscribe %s: %v", c.name, channel, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no reply to subscribe %s", c.name, channel)
	}
	if p.err != nil {
		t.Fatalf("%s: subscribe %s: %d %s", c.name, channel, p.err.Code, p.err.Message)
	}
}

// snapshot returns a copy of channel's stream state.
func (c *client) snapshot(channel string) stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := *c.streamLocked(channel)
	s.got = append([]int(nil), s.got...)
	s.violations = append([]string(nil), s.violations...)
	return s
}

// waitFor waits until cond holds for the client's state (checked under
// its lock) or fails the test after within.
func (c *client) waitFor(t testing.TB, within time.Duration, what string, cond func(c *client) bool) {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		c.mu.Lock()
		ok := cond(c)
		changed := c.changed
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("%s (on %s): timed out after %v waiting for %s; state: %s", c.name, c.node, within, what, c.describe())
		}
	}
}

// waitNumbers waits until channel's stream has received every number up
// to last, and fails on any violation of order or continuity.
func (c *client) waitNumbers(t testing.TB, channel string, last int) {
	t.Helper()
	c.waitFor(t, 15*time.Second, fmt.Sprintf("%s up to n=%d", channel, last), func(c *client) bool {
		s := c.streamLocked(channel)
		return len(s.violations) > 0 || s.want > last
	})
	c.requireClean(t, channel)
}

func (c *client) requireClean(t testing.TB, channel string) {
	t.Helper()
	s := c.snapshot(channel)
	if len(s.violations) > 0 {
		t.Fatalf("%s (on %s): stream %s broken: %s", c.name, c.node, channel, strings.Join(s.violations, "; "))
	}
	if g := c.snapshot(""); len(g.violations) > 0 {
		t.Fatalf("%s (on %s): %s", c.name, c.node, strings.Join(g.violations, "; "))
	}
}

func (c *client) describe() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for name, s := range c.streams {
		fmt.Fprintf(&b, "[%s pos=%+v want=%d got=%d recovered=%d notRecovered=%d violations=%v] ",
			name, s.pos, s.want, len(s.got), s.recovered, s.notRecov, s.violations)
	}
	fmt.Fprintf(&b, "messages=%d unsubs=%+v closeCode=%d readErr=%v", len(c.messages), c.unsubs, c.closeCode, c.readErr)
	return b.String()
}

// ping round-trips a ping command: the connection is alive end to end.
func (c *client) ping(t testing.TB) {
	t.Helper()
	if _, e := c.call(ctxFor(t, 5*time.Second), "ping", nil); e != nil {
		t.Fatalf("%s (on %s): ping: %d %s", c.name, c.node, e.Code, e.Message)
	}
}
