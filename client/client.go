package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// Client is a connection to a herald server that keeps itself connected.
// Create it with New, add subscriptions with Subscribe (before or after
// Connect), and Close it when done.
//
// A Client is safe for concurrent use. Handlers (the Options On* fields,
// subscription handlers and options) are called one at a time, in the
// order the events happened, from one goroutine per client: a slow handler
// delays the others (see Options.EventQueueSize). Handlers may call any
// method of the client, including Close.
type Client struct {
	url    *url.URL
	opts   Options
	events *eventQueue

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the run loop

	nextID atomic.Uint32

	connects, duplicates, overflows atomic.Uint64

	mu        sync.Mutex
	state     State
	started   bool
	conn      *connection   // established connection, or nil
	changed   chan struct{} // closed and replaced at every state change or attempt
	lastErr   error         // outcome of the latest connection attempt
	attempts  uint64        // connection attempts finished
	token     string
	subs      map[string]*Subscription
	closeOnce sync.Once
}

// New returns a client for rawURL without connecting: ws:// and wss://
// connect to the WebSocket endpoint (for example ws://host:8080/ws),
// tcp:// and tls:// to the TCP transport (tcp://host:port). Call Connect
// to start it.
func New(rawURL string, opts Options) (*Client, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		url:     u,
		opts:    o,
		events:  newEventQueue(o.EventQueueSize),
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
		token:   o.Token,
		subs:    make(map[string]*Subscription),
	}, nil
}

func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/heraldhq/herald" {
				return d.Version
			}
		}
		if bi.Main.Path == "github.com/heraldhq/herald" && bi.Main.Version != "(devel)" && bi.Main.Version != "" {
			return bi.Main.Version
		}
	}
	return "dev"
}

// State returns the client's connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{Connects: c.connects.Load(), DuplicatesDropped: c.duplicates.Load(), QueueOverflows: c.overflows.Load()}
}

// notifyLocked wakes everyone waiting for a state change; c.mu is held.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Connect starts the client, if it is not running yet, and waits for the
// outcome of the next connection attempt: it returns nil once connected,
// or that attempt's error. After a failed attempt the client keeps
// reconnecting in the background (unless the server refused it for good,
// for example with a bad token) until Close; use Ready to wait for it.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	switch c.state {
	case StateClosed:
		c.mu.Unlock()
		return ErrClosed
	case StateConnected:
		c.mu.Unlock()
		return nil
	}
	if c.state == StateDisconnected {
		if !c.started {
			c.started = true
			go c.events.run()
		}
		c.state = StateConnecting
		c.notifyLocked()
		c.wg.Add(1)
		go c.run()
	}
	seen := c.attempts
	c.mu.Unlock()
	for {
		c.mu.Lock()
		st, n, err, ch := c.state, c.attempts, c.lastErr, c.changed
		c.mu.Unlock()
		switch {
		case st == StateConnected:
			return nil
		case st == StateClosed:
			return ErrClosed
		case n > seen:
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("herald: connect: %w", ctx.Err())
		}
	}
}

// Ready waits until the client is connected. It fails when ctx ends, the
// client is closed, or it stopped reconnecting (the error then says why).
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.waitConn(ctx)
	return err
}

// waitConn returns the established connection, waiting while connecting.
func (c *Client) waitConn(ctx context.Context) (*connection, error) {
	for {
		c.mu.Lock()
		st, cn, err, ch := c.state, c.conn, c.lastErr, c.changed
		c.mu.Unlock()
		switch st {
		case StateConnected:
			return cn, nil
		case StateClosed:
			return nil, ErrClosed
		case StateDisconnected:
			if err != nil {
				return nil, err
			}
			return nil, &Error{Code: CodeDisconnected, Message: "client is not connected (call Connect)"}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				if err != nil {
					return nil, &Error{Code: CodeTimeout, Message: "not connected in time: " + err.Error(), Temporary: true}
				}
				return nil, &Error{Code: CodeTimeout, Message: "not connected in time", Temporary: true}
			}
			return nil, ctx.Err()
		}
	}
}

// Close disconnects, stops reconnecting and ends every goroutine the
// client started, waiting for them (except, when called from a handler,
// the handler goroutine itself, which ends when the handler returns).
// Events queued before Close are still delivered, the last one being
// OnDisconnected with DisconnectClosed if the client was connected.
// Subscriptions get OnUnsubscribed with CodeClosed. Close is idempotent
// and always returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		started := c.started
		c.state = StateClosed
		c.notifyLocked()
		c.mu.Unlock()
		c.cancel()
		c.wg.Wait()
		c.mu.Lock()
		subs := make([]*Subscription, 0, len(c.subs))
		for _, s := range c.subs {
			subs = append(subs, s)
		}
		c.subs = map[string]*Subscription{}
		for _, s := range subs {
			s.endLocked(CodeClosed, "client closed")
		}
		c.mu.Unlock()
		c.events.close()
		if !started {
			return
		}
		if !c.events.inDispatcher() {
			<-c.events.done
		}
	})
	return nil
}

// emit queues a state event for the handler goroutine.
func (c *Client) emit(fn func()) { c.events.push(fn, false) }

func (c *Client) reportError(err error) {
	c.opts.Logger.Warn("herald client", "error", err)
	if h := c.opts.OnError; h != nil {
		c.emit(func() { h(err) })
	}
}

// backoff returns the delay before reconnect attempt n (from 0):
// uniformly random below min(Max, Min*2^n).
func (c *Client) backoff(n int) time.Duration {
	ceil := c.opts.MaxReconnectDelay
	if n < 30 {
		if d := c.opts.MinReconnectDelay << n; d > 0 && d < ceil {
			ceil = d
		}
	}
	return rand.N(ceil) + 1
}

// sleep waits d or until Close; false after Close.
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// attemptError is the outcome of a failed connection attempt.
type attemptError struct {
	code      uint16
	reason    string
	reconnect bool
	err       error
}

// run keeps the client connected until Close or a disconnect that
// forbids reconnecting. It owns each connection's reader goroutine.
func (c *Client) run() {
	defer c.wg.Done()
	failures := 0
	for {
		cn, ae := c.attempt()
		if c.ctx.Err() != nil {
			if cn != nil {
				c.finish(cn)
			}
			return
		}
		if ae != nil {
			c.mu.Lock()
			c.lastErr = ae.err
			c.attempts++
			if !ae.reconnect && c.state != StateClosed {
				c.state = StateDisconnected
			}
			c.notifyLocked()
			c.mu.Unlock()
			c.reportError(ae.err)
			if !ae.reconnect {
				c.stopped(ae.code, ae.reason)
				if h := c.opts.OnDisconnected; h != nil {
					ev := DisconnectedEvent{Code: ae.code, Reason: ae.reason}
					c.emit(func() { h(ev) })
				}
				return
			}
			if !c.sleep(c.backoff(failures)) {
				return
			}
			failures++
			continue
		}
		failures = 0
		code, reason, again := c.serve(cn)
		if c.ctx.Err() != nil {
			return
		}
		if !again {
			c.stopped(code, reason)
			return
		}
		if !c.sleep(c.backoff(0)) {
			return
		}
	}
}

// stopped moves to StateDisconnected: the client no longer reconnects.
// Subscriptions stay registered and resubscribe if Connect is called
// again.
func (c *Client) stopped(code uint16, reason string) {
	c.mu.Lock()
	if c.state != StateClosed {
		c.state = StateDisconnected
		if c.lastErr == nil {
			c.lastErr = &Error{Code: CodeClosed, Message: fmt.Sprintf("disconnected: %s (%d)", reason, code)}
		}
		c.notifyLocked()
	}
	c.mu.Unlock()
}

// attempt dials, and sends connect. On success the connection's reader
// runs and the returned connection is established.
func (c *Client) attempt() (*connection, *attemptError) {
	c.mu.Lock()
	token := c.token
	c.mu.Unlock()
	if token == "" && c.opts.GetToken != nil {
		t, err := c.opts.GetToken(c.ctx)
		if err != nil {
			if errors.Is(err, ErrUnauthorized) {
				return nil, &attemptError{DisconnectUnauthorized, "unauthorized", false, fmt.Errorf("herald: get token: %w", err)}
			}
			return nil, &attemptError{DisconnectTransportFailed, "token", true, fmt.Errorf("herald: get token: %w", err)}
		}
		token = t
		c.mu.Lock()
		c.token = t
		c.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	t, err := dialTransport(ctx, c.url, &c.opts)
	if err != nil {
		code := uint16(DisconnectTransportFailed)
		if ctx.Err() == context.DeadlineExceeded {
			code = DisconnectConnectTimeout
		}
		return nil, &attemptError{code, "dial failed", true, fmt.Errorf("herald: %w", err)}
	}
	cn := newConnection(t)
	cn.setReadTimeout(c.opts.Timeout)
	go c.read(cn)
	id := c.newID()
	r, err := cn.roundTrip(ctx, &wire.Command{ID: id, Method: wire.MethodConnect,
		Connect: &wire.ConnectParams{Token: token, Name: c.opts.Name, Version: c.opts.Version}})
	if err != nil {
		ae := c.connectFailed(cn, err)
		cn.end(ae.code, ae.reason, 0)
		<-cn.done
		return nil, ae
	}
	res := r.Connect
	if res == nil {
		res = &wire.ConnectResult{}
	}
	ping := time.Duration(res.Ping) * time.Second
	c.connects.Add(1)

	ev := ConnectedEvent{Client: res.Client, Version: res.Version, Node: res.Node, Ping: ping,
		Expires: res.Expires, TTL: time.Duration(res.TTL) * time.Second}
	cn.ttl, cn.expires = ev.TTL, ev.Expires
	c.mu.Lock()
	if c.state == StateClosed {
		c.mu.Unlock()
		return cn, nil
	}
	c.conn = cn
	c.state = StateConnected
	c.lastErr = nil
	c.attempts++
	c.notifyLocked()
	if h := c.opts.OnConnected; h != nil {
		c.emit(func() { h(ev) })
	}
	sends := make([]func(), 0, len(c.subs))
	for _, s := range c.subs {
		sends = append(sends, s.subscribeLocked(cn, false))
	}
	c.mu.Unlock()
	for _, send := range sends {
		send()
	}
	c.opts.Logger.Info("herald client connected", "client", res.Client, "url", c.url.Redacted())
	return cn, nil
}

// connectFailed classifies a failed connect command.
func (c *Client) connectFailed(cn *connection, err error) *attemptError {
	var e *Error
	if !errors.As(err, &e) {
		return &attemptError{DisconnectConnectFailed, "connect failed", true, fmt.Errorf("herald: connect: %w", err)}
	}
	switch {
	case e.Code == CodeDisconnected:
		code, reason, again := cn.endInfo()
		if code == 0 {
			code, reason, again = DisconnectTransportFailed, "connection closed", true
		}
		if code == wire.DisconnectTokenExpired {
			c.dropToken()
		}
		return &attemptError{code, reason, again, fmt.Errorf("herald: connect: %s (%d)", reason, code)}
	case e.Code == CodeTimeout:
		return &attemptError{DisconnectConnectTimeout, "connect timeout", true, fmt.Errorf("herald: connect: %w", err)}
	case e.Code == CodeTokenExpired && c.opts.GetToken != nil:
		c.dropToken()
		return &attemptError{wire.DisconnectTokenExpired, e.Message, true, fmt.Errorf("herald: connect: %w", err)}
	case e.Temporary:
		return &attemptError{DisconnectConnectFailed, e.Message, true, fmt.Errorf("herald: connect: %w", err)}
	case e.Code == CodeUnauthorized || e.Code == CodeTokenExpired:
		return &attemptError{DisconnectUnauthorized, e.Message, false, fmt.Errorf("herald: connect: %w", err)}
	}
	return &attemptError{wire.DisconnectBadRequest, e.Message, false, fmt.Errorf("herald: connect: %w", err)}
}

func (c *Client) dropToken() {
	if c.opts.GetToken == nil {
		return
	}
	c.mu.Lock()
	c.token = ""
	c.mu.Unlock()
}

func (c *Client) newID() uint32 {
	for {
		if id := c.nextID.Add(1); id != 0 {
			return id
		}
	}
}

// serve watches an established connection until it ends, refreshing the
// token on the way, and reports how it ended.
func (c *Client) serve(cn *connection) (uint16, string, bool) {
	var refresh <-chan time.Time
	var timer *time.Timer
	schedule := func(d time.Duration) {
		if timer != nil {
			timer.Stop()
		}
		timer = time.NewTimer(d)
		refresh = timer.C
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	if cn.expires && cn.ttl > 0 && c.opts.GetToken != nil {
		schedule(refreshDelay(cn.ttl))
	}
	refreshFailures := 0
	for {
		select {
		case <-c.ctx.Done():
			c.finish(cn)
			return DisconnectClosed, "client closed", false
		case <-cn.done:
			code, reason, again := cn.endInfo()
			c.lost(cn, code, reason, again)
			return code, reason, again
		case <-refresh:
			refresh = nil
			next, err := c.refresh(cn)
			if err != nil {
				c.reportError(err)
				if errors.Is(err, ErrUnauthorized) {
					cn.end(DisconnectUnauthorized, "unauthorized", -1)
					continue
				}
				if IsTemporary(err) {
					schedule(c.backoff(refreshFailures))
					refreshFailures++
				}
				// A refused token ends in a 3005 disconnect at expiry,
				// after which a fresh one is fetched.
				continue
			}
			refreshFailures = 0
			if next > 0 {
				schedule(refreshDelay(next))
			}
		}
	}
}

// refreshDelay: a minute before expiry for long tokens, a fifth of the
// lifetime early for short ones.
func refreshDelay(ttl time.Duration) time.Duration {
	return ttl - min(time.Minute, ttl/5)
}

// refresh fetches a token and sends it; it returns the new TTL (0: the
// token does not expire).
func (c *Client) refresh(cn *connection) (time.Duration, error) {
	tok, err := c.opts.GetToken(c.ctx)
	if err != nil {
		if errors.Is(err, ErrUnauthorized) {
			return 0, fmt.Errorf("herald: get token: %w", err)
		}
		return 0, &Error{Code: CodeInternal, Message: "get token: " + err.Error(), Temporary: true}
	}
	c.mu.Lock()
	c.token = tok
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	r, err := cn.roundTrip(ctx, &wire.Command{ID: c.newID(), Method: wire.MethodRefresh, Refresh: &wire.RefreshParams{Token: tok}})
	if err != nil {
		return 0, fmt.Errorf("herald: refresh: %w", err)
	}
	if r.Refresh == nil || !r.Refresh.Expires {
		return 0, nil
	}
	return time.Duration(r.Refresh.TTL) * time.Second, nil
}

// finish closes cn after Close and reports the end.
func (c *Client) finish(cn *connection) {
	cn.mu.Lock()
	if !cn.ended {
		cn.ended, cn.code, cn.reason, cn.advice = true, DisconnectClosed, "client closed", -1
	}
	cn.mu.Unlock()
	cn.t.goodbye()
	<-cn.done
	c.lost(cn, DisconnectClosed, "client closed", false)
}

// lost records the end of an established connection.
func (c *Client) lost(cn *connection, code uint16, reason string, again bool) {
	c.mu.Lock()
	established := c.conn == cn
	if established {
		c.conn = nil
	}
	if code == wire.DisconnectTokenExpired && c.opts.GetToken != nil {
		c.token = ""
	}
	if c.state == StateConnected {
		c.state = StateConnecting
		if !again {
			c.state = StateDisconnected
			c.lastErr = &Error{Code: CodeClosed, Message: fmt.Sprintf("disconnected: %s (%d)", reason, code)}
		}
		c.notifyLocked()
	}
	for _, s := range c.subs {
		s.lostLocked(cn)
	}
	c.mu.Unlock()
	c.opts.Logger.Info("herald client disconnected", "code", code, "reason", reason, "reconnect", again)
	if h := c.opts.OnDisconnected; h != nil && established {
		ev := DisconnectedEvent{Code: code, Reason: reason, Reconnect: again}
		c.emit(func() { h(ev) })
	}
}

// read is a connection's reader goroutine: it decodes every server
// message, resolves replies and handles pushes until the connection ends.
func (c *Client) read(cn *connection) {
	defer close(cn.done)
	defer cn.failPending()
	for {
		b, err := cn.t.read(time.Duration(cn.readTimeout.Load()))
		if err != nil {
			code, reason := closeInfo(err)
			cn.end(code, reason, 0)
			return
		}
		reply, push, err := cn.codec.DecodeServerMessage(b, cn.methodOf)
		if err != nil {
			c.reportError(fmt.Errorf("herald: malformed server message: %w", err))
			continue
		}
		if reply != nil {
			if res := reply.Connect; res != nil {
				// Before the next message: a ping push may follow at once.
				cn.connected(res, c.opts.MaxServerPingDelay)
			}
			cn.resolve(reply)
			continue
		}
		if !c.handlePush(cn, push) {
			return
		}
	}
}

// handlePush acts on one push; false ends the connection.
func (c *Client) handlePush(cn *connection, p *wire.Push) bool {
	switch p.Type {
	case wire.PushPing:
		cn.mu.Lock()
		pong := cn.pong
		cn.mu.Unlock()
		if pong {
			ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
			err := cn.send(ctx, &wire.Command{Method: wire.MethodPong})
			cancel()
			if err != nil {
				cn.end(DisconnectTransportFailed, "pong: "+err.Error(), 0)
				return false
			}
		}
	case wire.PushDisconnect:
		d := p.Disconnect
		advice := int8(-1)
		if d.Reconnect {
			advice = 1
		}
		cn.end(d.Code, d.Reason, advice)
		return false
	case wire.PushMessage:
		if h := c.opts.OnMessage; h != nil {
			m := Message{Data: rawOrNil(p.Message.Data), Info: toClientInfo(p.Message.Info)}
			if !c.events.push(func() { h(m) }, true) {
				return c.overflow(cn)
			}
		}
	case wire.PushPublication, wire.PushJoin, wire.PushLeave, wire.PushUnsubscribe:
		c.mu.Lock()
		s := c.subs[p.Channel]
		ok, after := true, func() {}
		if s != nil {
			var f func()
			if ok, f = s.pushLocked(cn, p); f != nil {
				after = f
			}
		}
		c.mu.Unlock()
		after()
		if !ok {
			return c.overflow(cn)
		}
	}
	return true
}

// overflow ends a connection whose events the handlers cannot keep up
// with; the subscriptions recover from the last queued publication.
func (c *Client) overflow(cn *connection) bool {
	c.overflows.Add(1)
	c.reportError(errors.New("herald: event queue full: reconnecting to recover"))
	cn.end(DisconnectSlowHandler, "event queue full", 1)
	return false
}

// call sends a command on the current connection (waiting while the
// client connects) and returns its reply. Without a deadline on ctx the
// command is bounded by Options.Timeout.
func (c *Client) call(ctx context.Context, cmd *wire.Command) (*wire.Reply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	cn, err := c.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	cmd.ID = c.newID()
	return cn.roundTrip(ctx, cmd)
}

// Publish publishes data, which must be one JSON value, to channel and
// returns its position (zero on channels without history).
func (c *Client) Publish(ctx context.Context, channel string, data []byte) (Position, error) {
	if !wire.ValidJSON(data) {
		return Position{}, &Error{Code: CodeBadData, Message: "publish: data is not one JSON value"}
	}
	r, err := c.call(ctx, &wire.Command{Method: wire.MethodPublish, Publish: &wire.PublishParams{Channel: channel, Data: data}})
	if err != nil {
		return Position{}, err
	}
	if r.Publish == nil {
		return Position{}, nil
	}
	return Position{Offset: r.Publish.Offset, Epoch: r.Publish.Epoch}, nil
}

// PublishJSON marshals v with encoding/json and publishes it.
func (c *Client) PublishJSON(ctx context.Context, channel string, v any) (Position, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Position{}, &Error{Code: CodeBadData, Message: "publish: " + err.Error()}
	}
	return c.Publish(ctx, channel, b)
}

// Send sends data, one JSON value, to every connection of user.
func (c *Client) Send(ctx context.Context, user string, data []byte) error {
	if !wire.ValidJSON(data) {
		return &Error{Code: CodeBadData, Message: "send: data is not one JSON value"}
	}
	_, err := c.call(ctx, &wire.Command{Method: wire.MethodSend, Send: &wire.SendParams{User: user, Data: data}})
	return err
}

// Presence returns the connections subscribed to channel, by client id.
func (c *Client) Presence(ctx context.Context, channel string) (map[string]ClientInfo, error) {
	r, err := c.call(ctx, &wire.Command{Method: wire.MethodPresence, Presence: &wire.ChannelParams{Channel: channel}})
	if err != nil {
		return nil, err
	}
	out := make(map[string]ClientInfo)
	if r.Presence != nil {
		for id, ci := range r.Presence.Presence {
			if ci != nil {
				out[id] = *toClientInfo(ci)
			}
		}
	}
	return out, nil
}

// PresenceStats counts the connections and users subscribed to channel.
func (c *Client) PresenceStats(ctx context.Context, channel string) (PresenceStats, error) {
	r, err := c.call(ctx, &wire.Command{Method: wire.MethodPresenceStats, PresenceStats: &wire.ChannelParams{Channel: channel}})
	if err != nil {
		return PresenceStats{}, err
	}
	if r.PresenceStats == nil {
		return PresenceStats{}, nil
	}
	return PresenceStats{NumClients: int(r.PresenceStats.NumClients), NumUsers: int(r.PresenceStats.NumUsers)}, nil
}

// History reads channel's history.
func (c *Client) History(ctx context.Context, channel string, opts HistoryOptions) (HistoryResult, error) {
	p := &wire.HistoryParams{Channel: channel, Limit: opts.Limit, Reverse: opts.Reverse}
	if opts.Since != nil {
		p.Since = &wire.StreamPosition{Offset: opts.Since.Offset, Epoch: opts.Since.Epoch}
	}
	r, err := c.call(ctx, &wire.Command{Method: wire.MethodHistory, History: p})
	if err != nil {
		return HistoryResult{}, err
	}
	var res HistoryResult
	if h := r.History; h != nil {
		res.Position = Position{Offset: h.Offset, Epoch: h.Epoch}
		res.Publications = make([]Publication, 0, len(h.Publications))
		for _, pub := range h.Publications {
			res.Publications = append(res.Publications, toPublication(channel, pub))
		}
	}
	return res, nil
}

// Ping sends a ping command and returns the round-trip time.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if _, err := c.call(ctx, &wire.Command{Method: wire.MethodPing}); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
