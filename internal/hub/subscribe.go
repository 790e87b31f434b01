package hub

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// brokerOpTimeout bounds broker calls the hub makes on its own behalf
// (releasing subscriptions, deferred presence and leave updates).
const brokerOpTimeout = 5 * time.Second

// checkSubscribe applies the namespace's subscribe permissions.
func checkSubscribe(user, channel string, nsOpts ChannelOptions, opts SubscribeOptions) error {
	if nsOpts.RequireGrant && !opts.Granted {
		return fmt.Errorf("%w: channel %q requires a grant", ErrPermissionDenied, channel)
	}
	if opts.Granted {
		return nil
	}
	if user == "" && !nsOpts.AllowAnonymous {
		return fmt.Errorf("%w: anonymous subscribe to %q", ErrPermissionDenied, channel)
	}
	if nsOpts.UserLimited {
		ns := Namespace(channel)
		owner := channel
		if len(ns) < len(channel) && channel[len(ns)] == ':' {
			owner = channel[len(ns)+1:]
		}
		if user == "" || owner != user {
			return fmt.Errorf("%w: channel %q belongs to another user", ErrPermissionDenied, channel)
		}
	}
	return nil
}

// sameSlice reports whether a and b are the same slice (same array, same
// length, or both nil), so that sharing one of them is unobservable.
func sameSlice(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 {
		return (a == nil) == (b == nil)
	}
	return &a[0] == &b[0]
}

// Subscribe subscribes a registered client to channel.
//
// It checks the channel name, the namespace and the namespace's subscribe
// permissions, makes sure this node receives the channel from the broker,
// adds a presence entry when the namespace tracks presence, and, when the
// namespace keeps history, reads the channel's position and, with
// opts.Since, the publications after it.
//
// On success the hub calls onResult exactly once with the subscribe reply
// before any live push of the channel reaches sub, and live publications
// continue exactly after the reply's position: no gap, no duplicate, even
// while publications arrive concurrently. onResult may run on another
// goroutine (a broker goroutine that delivers the publications the reply
// has been waiting for) but always before Subscribe returns nil. If the
// stream breaks while the reply is assembled (a gap or an epoch change),
// the reply is still sent and immediately followed by
// sub.ServerUnsubscribe with wire.UnsubscribeInsufficientState and
// resubscribe, so the client recovers.
//
// With opts.Since the reply has WasRecovering set and Recovered true when
// every publication after Since is still in history within the same
// epoch; then Publications holds them in order. Otherwise Recovered is
// false, no publications are returned, and the client must reload state.
//
// When history reports publications that live delivery has not brought
// within Config.RecoveryWait, the hub concludes they were lost: whichever
// side is behind (the channel's live subscribers, or this subscriber) gets
// the insufficient-state unsubscribe push.
//
// Subscribe returns ErrInvalidChannel, ErrUnknownNamespace,
// ErrPermissionDenied, ErrAlreadySubscribed (also while an earlier
// Subscribe of the channel is in progress), ErrUnknownClient,
// ErrShuttingDown, ErrNotRunning, ErrRecoveryOverflow, ctx's error, or a
// broker error (possibly wrapping ErrBrokerUnavailable); onResult is not
// called then.
func (h *Hub) Subscribe(ctx context.Context, sub Subscriber, channel string, opts SubscribeOptions, onResult SubscribeResultFunc) error {
	if h.closing.Load() {
		return ErrShuttingDown
	}
	if !h.ready.Load() {
		return ErrNotRunning
	}
	nsOpts, err := h.resolve(channel)
	if err != nil {
		return err
	}
	cl := h.lookupClient(sub)
	if cl == nil {
		return fmt.Errorf("hub: subscribe %q: %w", channel, ErrUnknownClient)
	}
	if err := checkSubscribe(cl.info.User, channel, nsOpts, opts); err != nil {
		return err
	}
	s := &subscription{cl: cl, info: cl.info, idx: -1}
	if connInfo := sub.ConnInfo(); opts.ChanInfo != nil || !sameSlice(connInfo, cl.info.ConnInfo) {
		s.info = &ClientInfo{Client: cl.info.Client, User: cl.info.User, ConnInfo: connInfo, ChanInfo: opts.ChanInfo}
	}
	j := getJoiner()
	defer putJoiner(j)
	j.s, j.since, j.onResult, j.limit = s, opts.Since, onResult, h.cfg.RecoveryBufferSize
	ch, err := h.join(ctx, channel, nsOpts, j)
	if err != nil {
		// s.ch is set (by join, on this goroutine) when s was
		// registered before the join failed.
		if s.ch != nil {
			h.release(ctx, s.ch)
		}
		return err
	}
	nsOpts = ch.opts

	if nsOpts.Presence {
		if err := h.cfg.Presence.AddPresence(ctx, channel, cl.info.Client, s.info, nsOpts.presenceTTL()); err != nil {
			h.counters.presenceErrors.Add(1)
			return h.abortJoin(ctx, ch, j, fmt.Errorf("hub: subscribe %q: add presence: %w", channel, err))
		}
		s.presence = true
	}

	var hist HistoryResult
	if nsOpts.Recoverable() {
		hopts := HistoryOptions{MetaTTL: nsOpts.HistoryMetaTTL}
		if opts.Since != nil {
			hopts.Since = opts.Since
			hopts.Limit = -1
		}
		hist, err = h.cfg.Broker.History(ctx, channel, hopts)
		if err != nil {
			h.counters.brokerErrors.Add(1)
			return h.abortJoin(ctx, ch, j, fmt.Errorf("hub: subscribe %q: read history: %w", channel, err))
		}
	}

	ch.mu.Lock()
	if j.outcome == joinPending {
		j.setHistory(hist)
		ch.tryComplete(h, j)
	}
	var done chan struct{}
	if j.outcome == joinPending {
		// Live delivery has not reached the position history reported:
		// wait for the broker goroutine that completes the join.
		j.done = make(chan struct{})
		done = j.done
	}
	ch.mu.Unlock()

	if done != nil {
		timer := time.NewTimer(h.cfg.RecoveryWait)
		select {
		case <-done:
		case <-timer.C:
			h.counters.recoveryTimeouts.Add(1)
			ch.mu.Lock()
			ch.forceComplete(h, j)
			ch.mu.Unlock()
		case <-ctx.Done():
			ch.mu.Lock()
			ch.failJoiner(j, fmt.Errorf("hub: subscribe %q: %w", channel, ctx.Err()))
			ch.mu.Unlock()
		}
		timer.Stop()
	}

	switch j.outcome {
	case joinFailed:
		return h.abortJoin(ctx, ch, j, j.err)
	case joinBroken:
		h.counters.subscribes.Add(1)
		return nil
	}
	h.counters.subscribes.Add(1)
	if j.since != nil && nsOpts.Recoverable() {
		if j.recovered {
			h.counters.recovered.Add(1)
		} else {
			h.counters.notRecovered.Add(1)
		}
	}
	if nsOpts.JoinLeave {
		if err := h.cfg.Broker.PublishJoin(ctx, channel, s.info); err != nil {
			h.counters.brokerErrors.Add(1)
			h.cfg.Logger.Warn("publish join failed", "channel", channel, "error", err)
		}
	}
	return nil
}

// abortJoin undoes a subscribe that failed after registering with ch.
func (h *Hub) abortJoin(ctx context.Context, ch *channel, j *joiner, err error) error {
	ch.mu.Lock()
	ch.failJoiner(j, err)
	err = j.err
	ch.mu.Unlock()
	if j.s.presence {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), brokerOpTimeout)
		if perr := h.cfg.Presence.RemovePresence(ctx, j.s.ch.name, j.s.cl.info.Client); perr != nil {
			h.counters.presenceErrors.Add(1)
		}
		cancel()
	}
	h.release(ctx, ch)
	return err
}

// Subscribed reports whether sub holds a subscription to channel, live or
// with its Subscribe in progress. Subscriptions the server removed are
// gone by the time the matching Subscriber.ServerUnsubscribe is called.
func (h *Hub) Subscribed(sub Subscriber, channel string) bool {
	cl := h.lookupClient(sub)
	if cl == nil {
		return false
	}
	s, _ := cl.lookup(channel)
	return s != nil
}

// NumSubscriptions returns how many subscriptions sub holds, counted as
// Subscribed does.
func (h *Hub) NumSubscriptions(sub Subscriber) int {
	cl := h.lookupClient(sub)
	if cl == nil {
		return 0
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.subs.len()
}

// Unsubscribe removes sub's subscription to channel: no push of channel
// reaches sub after it returns. The presence entry is removed and a leave
// event published as the namespace configures. It returns ErrNotSubscribed
// when sub has no live subscription to channel: while its Subscribe is
// still in progress, or when the server has removed it (the matching
// Subscriber.ServerUnsubscribe call has then been made or is about to be).
func (h *Hub) Unsubscribe(ctx context.Context, sub Subscriber, channel string) error {
	cl := h.lookupClient(sub)
	if cl == nil {
		return fmt.Errorf("hub: unsubscribe %q: %w", channel, ErrNotSubscribed)
	}
	s, ch := cl.lookup(channel)
	if ch == nil {
		return fmt.Errorf("hub: unsubscribe %q: %w", channel, ErrNotSubscribed)
	}
	ch.mu.Lock()
	live := s.idx >= 0
	ch.mu.Unlock()
	if !live {
		return fmt.Errorf("hub: unsubscribe %q: %w", channel, ErrNotSubscribed)
	}
	h.unsubscribe(ctx, s)
	return nil
}

// unsubscribe ends s, live or in progress, on the client's initiative.
func (h *Hub) unsubscribe(ctx context.Context, s *subscription) {
	ch := s.ch
	ch.mu.Lock()
	if j := ch.pendingJoiner(s); j != nil {
		ch.failJoiner(j, fmt.Errorf("hub: subscribe %q: %w", s.ch.name, ErrUnknownClient))
		ch.mu.Unlock()
		return // the Subscribe call cleans up after itself
	}
	wasLive := ch.removeLive(s)
	s.cl.mu.Lock()
	s.cl.subs.remove(s)
	s.cl.mu.Unlock()
	if len(ch.live) == 0 {
		ch.completeWaiting(h)
	}
	ch.mu.Unlock()
	if !wasLive {
		return
	}
	h.counters.unsubscribes.Add(1)
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), brokerOpTimeout)
	defer cancel()
	if s.presence {
		if err := h.cfg.Presence.RemovePresence(bctx, s.ch.name, s.cl.info.Client); err != nil {
			h.counters.presenceErrors.Add(1)
			h.cfg.Logger.Warn("remove presence failed", "channel", s.ch.name, "error", err)
		}
	}
	if ch.opts.JoinLeave {
		if err := h.cfg.Broker.PublishLeave(bctx, s.ch.name, s.info); err != nil {
			h.counters.brokerErrors.Add(1)
			h.cfg.Logger.Warn("publish leave failed", "channel", s.ch.name, "error", err)
		}
	}
	h.release(ctx, ch)
}

// HandlePublication implements EventHandler: it hands one Delivery to
// every live subscriber of channel, feeds subscribers that are merging
// their history, and detects gaps. A publication whose offset does not
// follow the channel's last one (or whose epoch differs) removes every live
// subscriber with an insufficient-state unsubscribe push so the clients
// recover; a publication at or below the last offset is a duplicate and is
// dropped.
func (h *Hub) HandlePublication(channel string, pub *Publication, pos StreamPosition) {
	if ch := h.lookupChannel(channel); ch != nil {
		h.handlePublication(ch, pub, pos)
	}
}

// PublicationTarget implements ChannelTargets: the target is the channel's
// state, which lives from the broker subscription's start to its end (a
// channel released and joined again gets a new state and a new broker
// subscription).
func (h *Hub) PublicationTarget(channel string) ChannelTarget {
	if ch := h.lookupChannel(channel); ch != nil {
		return &channelTarget{h, ch}
	}
	return nil
}

// channelTarget hands one channel's publications to the hub.
type channelTarget struct {
	h  *Hub
	ch *channel
}

// HandleChannelPublication implements ChannelTarget: HandlePublication
// without the lookup.
func (t *channelTarget) HandleChannelPublication(pub *Publication, pos StreamPosition) {
	t.h.handlePublication(t.ch, pub, pos)
}

func (h *Hub) handlePublication(ch *channel, pub *Publication, pos StreamPosition) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.state == chClosing {
		return
	}
	for i := 0; i < len(ch.pending); {
		j := ch.pending[i]
		ch.feed(h, j, pub, pos)
		if j.outcome == joinPending {
			i++
		}
	}
	deliver := true
	if pos.Offset != 0 && ch.opts.Recoverable() {
		switch {
		case !ch.posKnown:
		case pos.Epoch == ch.pos.Epoch && pos.Offset <= ch.pos.Offset:
			deliver = false
			h.counters.duplicates.Add(1)
		case pos.Epoch != ch.pos.Epoch || pos.Offset != ch.pos.Offset+1:
			if len(ch.live) > 0 {
				h.counters.gaps.Add(1)
				h.counters.insufficientState.Add(uint64(len(ch.live)))
				ch.resetLive(h)
			}
		}
		if deliver {
			ch.pos, ch.posKnown = pos, true
		}
	}
	h.counters.publicationsIn.Add(1)
	if deliver && len(ch.live) > 0 {
		d := NewDelivery(wire.Push{Type: wire.PushPublication, Channel: ch.name, Publication: pub})
		for _, sub := range ch.targets {
			sub.Deliver(d)
		}
		h.counters.deliveries.Add(uint64(len(ch.targets)))
	}
	if len(ch.pending) > 0 {
		ch.completeWaiting(h)
	}
}

// HandleJoin implements EventHandler: a join push to every live subscriber.
func (h *Hub) HandleJoin(channel string, info *ClientInfo) {
	h.deliverEvent(channel, wire.Push{Type: wire.PushJoin, Channel: channel, Join: info})
}

// HandleLeave implements EventHandler: a leave push to every live
// subscriber.
func (h *Hub) HandleLeave(channel string, info *ClientInfo) {
	h.deliverEvent(channel, wire.Push{Type: wire.PushLeave, Channel: channel, Leave: info})
}

func (h *Hub) deliverEvent(channel string, p wire.Push) {
	ch := h.lookupChannel(channel)
	if ch == nil {
		return
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.state == chClosing || len(ch.live) == 0 {
		return
	}
	d := NewDelivery(p)
	for _, sub := range ch.targets {
		sub.Deliver(d)
	}
	h.counters.deliveries.Add(uint64(len(ch.targets)))
}

// HandleReconnect implements EventHandler: it schedules a check of every
// channel's position against the broker on the background goroutine.
func (h *Hub) HandleReconnect() {
	select {
	case h.reconnect <- struct{}{}:
	default: // a check is already scheduled
	}
}

// serverUnsubscribeLocal removes the matching local subscriptions to
// channel with an unsubscribe push and reports how many there were.
func (h *Hub) serverUnsubscribeLocal(user, clientID, channel string, code uint32, reason string, resubscribe bool) int {
	n := 0
	for _, c := range h.userClients(user, clientID) {
		s, ch := c.lookup(channel)
		if ch == nil {
			continue
		}
		ch.mu.Lock()
		if ch.removeLive(s) {
			h.dropSubscription(ch, s, code, reason, resubscribe, true)
			n++
		}
		empty := ch.empty()
		ch.mu.Unlock()
		if empty {
			h.enqueueCleanup(cleanupTask{release: ch})
		}
	}
	return n
}
