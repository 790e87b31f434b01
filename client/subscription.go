package client

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// SubscriptionState is the state of a Subscription.
type SubscriptionState int

// Subscription states.
const (
	// SubscriptionSubscribing: waiting for the client to connect or for
	// the subscribe reply (also after every reconnect).
	SubscriptionSubscribing SubscriptionState = iota
	// SubscriptionSubscribed: publications are delivered.
	SubscriptionSubscribed
	// SubscriptionUnsubscribed: ended for good (Unsubscribe, Close, the
	// server refused or removed it).
	SubscriptionUnsubscribed
)

func (s SubscriptionState) String() string {
	switch s {
	case SubscriptionSubscribing:
		return "subscribing"
	case SubscriptionSubscribed:
		return "subscribed"
	case SubscriptionUnsubscribed:
		return "unsubscribed"
	}
	return "unknown"
}

// SubscribeOption configures a subscription.
type SubscribeOption func(*subscribeConfig)

type subscribeConfig struct {
	since          *Position
	onSubscribed   func(SubscribedEvent)
	onUnsubscribed func(UnsubscribedEvent)
	onJoin         func(ClientInfo)
	onLeave        func(ClientInfo)
}

// WithSince recovers the publications after pos on the first subscribe,
// for example the position of a History call the application rendered.
func WithSince(pos Position) SubscribeOption {
	return func(c *subscribeConfig) { c.since = &pos }
}

// OnSubscribed sets the handler called each time the subscription is
// (re)established; see SubscribedEvent for recovery.
func OnSubscribed(h func(SubscribedEvent)) SubscribeOption {
	return func(c *subscribeConfig) { c.onSubscribed = h }
}

// OnUnsubscribed sets the handler called once when the subscription ends.
func OnUnsubscribed(h func(UnsubscribedEvent)) SubscribeOption {
	return func(c *subscribeConfig) { c.onUnsubscribed = h }
}

// OnJoin sets the handler for join events (namespaces with join_leave).
func OnJoin(h func(ClientInfo)) SubscribeOption {
	return func(c *subscribeConfig) { c.onJoin = h }
}

// OnLeave sets the handler for leave events.
func OnLeave(h func(ClientInfo)) SubscribeOption {
	return func(c *subscribeConfig) { c.onLeave = h }
}

// Subscription follows one channel. It stays subscribed across
// reconnects: after a connection is lost it subscribes again from the
// last publication it delivered, so that the handler receives the missed
// publications in order, exactly once, before live ones; when the server
// can no longer provide them the OnSubscribed handler sees Recovered
// false.
//
// A Subscription is safe for concurrent use; its handlers run on the
// client's handler goroutine.
type Subscription struct {
	c       *Client
	channel string
	handler func(Publication)
	cfg     subscribeConfig
	ready   chan struct{} // closed once subscribed or unsubscribed
	stopped atomic.Bool   // Unsubscribe called: drop queued publications

	// guarded by c.mu
	state       SubscriptionState
	gen         uint64      // bumped per subscribe attempt and on loss: stale replies are ignored
	conn        *connection // connection it is subscribed on
	pos         Position    // last publication queued for the handler
	hasPos      bool
	recoverable bool
	attempts    int
	retry       *time.Timer
	readyDone   bool
	err         error
}

// Subscribe subscribes to channel; handler receives its publications in
// order. The subscription starts at once if the client is connected, else
// when it connects; use Ready to wait for it. It fails if the client is
// closed or already has a subscription to channel.
func (c *Client) Subscribe(channel string, handler func(Publication), opts ...SubscribeOption) (*Subscription, error) {
	if channel == "" {
		return nil, &Error{Code: CodeUnknownChannel, Message: "subscribe: empty channel name"}
	}
	if handler == nil {
		return nil, &Error{Code: CodeBadRequest, Message: "subscribe: nil handler"}
	}
	s := &Subscription{c: c, channel: channel, handler: handler, ready: make(chan struct{})}
	for _, o := range opts {
		o(&s.cfg)
	}
	if s.cfg.since != nil {
		s.pos, s.hasPos, s.recoverable = *s.cfg.since, true, true
	}
	c.mu.Lock()
	if c.state == StateClosed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.subs[channel] != nil {
		c.mu.Unlock()
		return nil, &Error{Code: CodeAlreadySubscribed, Message: "subscribe: already subscribed to " + channel}
	}
	c.subs[channel] = s
	send := func() {}
	if c.conn != nil {
		send = s.subscribeLocked(c.conn, false)
	}
	c.mu.Unlock()
	send()
	return s, nil
}

// Channel returns the channel name.
func (s *Subscription) Channel() string { return s.channel }

// State returns the subscription's state.
func (s *Subscription) State() SubscriptionState {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.state
}

// Position returns the position of the last publication delivered (or
// queued for delivery), and false when the channel keeps no history.
func (s *Subscription) Position() (Position, bool) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.pos, s.hasPos && s.recoverable
}

// Ready waits until the subscription is subscribed for the first time. It
// returns the reason when the subscription ended instead (for example the
// server's *Error for an unknown channel) and ctx's error when ctx ends.
func (s *Subscription) Ready(ctx context.Context) error {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.err
}

// Unsubscribe ends the subscription: the handlers are not called again
// (except OnUnsubscribed, once) and the server is told when connected.
// Subscribe again, WithSince(Position()), to continue where it stopped.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	c := s.c
	c.mu.Lock()
	if s.state == SubscriptionUnsubscribed {
		c.mu.Unlock()
		return nil
	}
	s.stopped.Store(true)
	s.endLocked(CodeClosed, "unsubscribe called")
	cn := c.conn
	c.mu.Unlock()
	if cn == nil {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	// Commands run in order, so this also undoes a subscribe in flight.
	_, err := cn.roundTrip(ctx, &wire.Command{ID: c.newID(), Method: wire.MethodUnsubscribe,
		Unsubscribe: &wire.ChannelParams{Channel: s.channel}})
	var e *Error
	if errors.As(err, &e) && (e.Code == CodeNotSubscribed || e.Code == CodeDisconnected) {
		return nil // nothing left to undo
	}
	return err
}

// subscribeLocked starts a subscribe attempt on cn and returns the function
// that writes the command; call it after releasing c.mu.
func (s *Subscription) subscribeLocked(cn *connection, forcedRecovering bool) func() {
	c := s.c
	s.state = SubscriptionSubscribing
	s.conn = nil
	s.stopRetryLocked()
	s.gen++
	gen := s.gen
	var since *wire.StreamPosition
	if s.hasPos && s.recoverable {
		since = &wire.StreamPosition{Offset: s.pos.Offset, Epoch: s.pos.Epoch}
	}
	cmd := &wire.Command{ID: c.newID(), Method: wire.MethodSubscribe,
		Subscribe: &wire.SubscribeParams{Channel: s.channel, Since: since}}
	cl := &call{method: wire.MethodSubscribe, onReply: func(r *wire.Reply) {
		s.onReply(cn, gen, since, forcedRecovering, r)
	}}
	if !cn.register(cmd.ID, cl) {
		return func() {} // the connection ended: resubscribed on the next one
	}
	return func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
		defer cancel()
		if err := cn.send(ctx, cmd); err != nil {
			// A partly written frame leaves the stream unusable.
			cn.end(DisconnectTransportFailed, "write: "+err.Error(), 0)
		}
	}
}

// onReply handles the subscribe reply on the reader goroutine (nil: the
// connection ended).
func (s *Subscription) onReply(cn *connection, gen uint64, since *wire.StreamPosition, forced bool, r *wire.Reply) {
	c := s.c
	c.mu.Lock()
	if r == nil || s.gen != gen || s.state != SubscriptionSubscribing {
		c.mu.Unlock()
		return
	}
	if r.Error != nil {
		e := fromWire(r.Error)
		switch {
		case since != nil && e.Code == CodeUnrecoverable:
			// Too far behind: subscribe afresh, reporting recovered false.
			s.hasPos = false
			send := s.subscribeLocked(cn, true)
			c.mu.Unlock()
			send()
		case e.Temporary:
			delay := c.backoff(s.attempts)
			s.attempts++
			s.retry = time.AfterFunc(delay, func() {
				c.mu.Lock()
				if s.gen != gen || s.state != SubscriptionSubscribing || c.conn != cn {
					c.mu.Unlock()
					return
				}
				send := s.subscribeLocked(cn, forced)
				c.mu.Unlock()
				send()
			})
			c.mu.Unlock()
			c.reportError(&Error{Code: e.Code, Message: "subscribe " + s.channel + ": " + e.Message, Temporary: true})
		default:
			s.endLocked(e.Code, e.Message)
			c.mu.Unlock()
		}
		return
	}
	res := r.Subscribe
	if res == nil {
		res = &wire.SubscribeResult{}
	}
	recovered := since != nil && res.Recovered
	s.recoverable = res.Recoverable
	if recovered {
		s.pos = Position{Offset: since.Offset, Epoch: res.Epoch}
	} else {
		s.pos = Position{Offset: res.Offset, Epoch: res.Epoch}
	}
	s.hasPos = true
	s.state = SubscriptionSubscribed
	s.conn = cn
	s.attempts = 0
	if h := s.cfg.onSubscribed; h != nil {
		ev := SubscribedEvent{Channel: s.channel, WasRecovering: since != nil || forced, Recovered: recovered,
			Recoverable: res.Recoverable}
		if res.Recoverable {
			ev.Position = Position{Offset: res.Offset, Epoch: res.Epoch}
		}
		c.emit(func() { h(ev) })
	}
	s.markReadyLocked(nil)
	ok := true
	if recovered {
		for _, p := range res.Publications {
			if ok = s.deliverLocked(p); !ok {
				break
			}
		}
	}
	if ok && s.pos.Offset < res.Offset {
		s.pos.Offset = res.Offset
	}
	c.mu.Unlock()
	if !ok {
		c.overflow(cn)
	}
}

// deliverLocked queues a publication for the handler, dropping one that
// is not past the last delivered offset. False: the queue is full.
func (s *Subscription) deliverLocked(p *wire.Publication) bool {
	if p.Offset > 0 && s.hasPos {
		if p.Offset <= s.pos.Offset {
			s.c.duplicates.Add(1)
			return true
		}
	}
	pub := toPublication(s.channel, p)
	h := s.handler
	if !s.c.events.push(func() {
		if !s.stopped.Load() {
			h(pub)
		}
	}, true) {
		return false
	}
	if p.Offset > 0 {
		s.pos.Offset = p.Offset
	}
	return true
}

// pushLocked handles a push for this channel arriving on cn. It returns
// false when the event queue is full, and a function to call after
// releasing c.mu (a resubscribe).
func (s *Subscription) pushLocked(cn *connection, p *wire.Push) (bool, func()) {
	if s.conn != cn || s.state != SubscriptionSubscribed {
		return true, nil
	}
	switch p.Type {
	case wire.PushPublication:
		return s.deliverLocked(p.Publication), nil
	case wire.PushJoin, wire.PushLeave:
		h := s.cfg.onJoin
		info := p.Join
		if p.Type == wire.PushLeave {
			h, info = s.cfg.onLeave, p.Leave
		}
		if h == nil || info == nil {
			return true, nil
		}
		ci := *toClientInfo(info)
		return s.c.events.push(func() {
			if !s.stopped.Load() {
				h(ci)
			}
		}, true), nil
	case wire.PushUnsubscribe:
		u := p.Unsubscribe
		if u.Resubscribe || u.Code == wire.UnsubscribeInsufficientState {
			return true, s.subscribeLocked(cn, false)
		}
		s.endLocked(u.Code, u.Reason)
	}
	return true, nil
}

// lostLocked: the connection cn ended; resubscribe on the next one.
func (s *Subscription) lostLocked(cn *connection) {
	if s.state == SubscriptionUnsubscribed {
		return
	}
	s.gen++
	s.stopRetryLocked()
	s.state = SubscriptionSubscribing
	s.conn = nil
}

// endLocked ends the subscription for good.
func (s *Subscription) endLocked(code uint32, reason string) {
	if s.state == SubscriptionUnsubscribed {
		return
	}
	c := s.c
	s.state = SubscriptionUnsubscribed
	s.gen++
	s.conn = nil
	s.stopRetryLocked()
	if c.subs[s.channel] == s {
		delete(c.subs, s.channel)
	}
	err := &Error{Code: code, Message: s.channel + ": " + reason}
	if code == CodeClosed {
		err = &Error{Code: CodeUnsubscribed, Message: s.channel + ": " + reason}
	}
	s.markReadyLocked(err)
	if h := s.cfg.onUnsubscribed; h != nil {
		ev := UnsubscribedEvent{Channel: s.channel, Code: code, Reason: reason}
		c.emit(func() { h(ev) })
	}
}

func (s *Subscription) markReadyLocked(err error) {
	if s.readyDone {
		return
	}
	s.readyDone = true
	s.err = err
	close(s.ready)
}

func (s *Subscription) stopRetryLocked() {
	if s.retry != nil {
		s.retry.Stop()
		s.retry = nil
	}
}
