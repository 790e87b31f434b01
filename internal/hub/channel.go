package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

type chanState uint8

const (
	// chSubscribing: the first joiner is calling Broker.Subscribe.
	chSubscribing chanState = iota
	// chActive: the node receives the channel's events.
	chActive
	// chClosing: Broker.Unsubscribe is in progress (or Subscribe failed);
	// new joiners wait for closed and create a fresh state.
	chClosing
)

// channel is the per-node state of one channel with local subscribers or
// joiners. Everything below mu is guarded by it.
type channel struct {
	name   string
	opts   ChannelOptions
	ready  chan struct{} // closed when the broker subscription is settled
	closed chan struct{} // closed when the state has left the shard map

	mu       sync.Mutex
	state    chanState
	readyErr error
	// live are the subscribers receiving live pushes. All of them have
	// seen the channel's stream exactly up to pos. targets[i] is
	// live[i].cl.sub, kept contiguous so that fan-out touches one array.
	live    []*subscription
	targets []Subscriber
	// pending are subscribers between registration and going live.
	pending []*joiner
	// pos is the position of the last publication delivered live (or the
	// position a joiner went live at); posKnown is false until the first.
	pos      StreamPosition
	posKnown bool
	// nextRefresh is when the presence entries of live are due again.
	nextRefresh time.Time
}

// subscription is one client's subscription to one channel. An idle
// server holds one per subscribed connection, so it is kept to 32 bytes
// (a size class): its channel's name is ch.name.
type subscription struct {
	cl   *client
	info *ClientInfo
	// ch is the channel state the subscription is registered with. It is
	// set before the subscription joins its client's set (both under
	// cl.mu, see join) and never changes, so whoever finds the
	// subscription in that set or in ch.live may read it.
	ch *channel
	// idx is the position in ch.live, -1 while not live. Guarded by ch.mu.
	// While the subscription is in progress its joiner is in ch.pending
	// (see pendingJoiner).
	idx int32
	// presence reports that a presence entry was added.
	presence bool
}

// pendingJoiner returns the joiner of s while its subscribe is in
// progress on ch, or nil. ch.mu is held.
func (ch *channel) pendingJoiner(s *subscription) *joiner {
	for _, j := range ch.pending {
		if j.s == s {
			return j
		}
	}
	return nil
}

type joinOutcome uint8

const (
	joinPending joinOutcome = iota
	joinLive
	joinFailed
	// joinBroken: the reply was sent but the stream broke while merging,
	// so the subscription was immediately removed with an
	// insufficient-state unsubscribe push.
	joinBroken
)

type bufferedPub struct {
	pub *Publication
	pos StreamPosition
}

// joiner merges a subscriber's history read with the live publications
// that arrive meanwhile. Guarded by the channel's mu.
type joiner struct {
	s        *subscription
	since    *StreamPosition
	onResult SubscribeResultFunc
	limit    int

	// buf holds every live publication since registration until the
	// history read completes.
	buf []bufferedPub
	// After the history read (haveHist): out is the reply's publications
	// (only when recovered), cur the joiner's stream position.
	haveHist  bool
	recovered bool
	out       []*Publication
	cur       StreamPosition
	fed       int
	broken    bool

	outcome joinOutcome
	err     error
	// done is made only when Subscribe has to wait for the outcome (most
	// joins finish on the subscribing goroutine); guarded by ch.mu.
	done chan struct{}
}

// joinerPool recycles joiners: every subscribe needs one only until it
// completes, and allocating it each time would leave short-lived garbage
// in the size class of long-lived per-connection objects, holes in spans
// that stay resident. Subscribe takes one and puts it back when it
// returns; by then the joiner has left ch.pending (every outcome but
// joinPending removes it) and nothing else refers to it.
var joinerPool = sync.Pool{New: func() any { return new(joiner) }}

// joinerReleased, when set (by tests), is called with every joiner given
// back, before it is cleared.
var joinerReleased func(*joiner)

func getJoiner() *joiner { return joinerPool.Get().(*joiner) }

// putJoiner clears j and gives it back. The reply's publications (j.out)
// were handed to the subscriber, so the slice is dropped, never reused.
func putJoiner(j *joiner) {
	if joinerReleased != nil {
		joinerReleased(j)
	}
	*j = joiner{}
	joinerPool.Put(j)
}

// finished wakes a Subscribe waiting for the joiner's outcome, which is
// set; ch.mu is held.
func (j *joiner) finished() {
	if j.done != nil {
		close(j.done)
	}
}

// feed gives the joiner a live publication of its channel.
func (ch *channel) feed(h *Hub, j *joiner, pub *Publication, pos StreamPosition) {
	if !ch.opts.Recoverable() {
		// Nothing to merge: the subscription starts when it goes live.
		return
	}
	if !j.haveHist {
		if len(j.buf) >= j.limit {
			h.counters.recoveryOverflows.Add(1)
			ch.failJoiner(j, fmt.Errorf("hub: subscribe %q: %w", ch.name, ErrRecoveryOverflow))
			return
		}
		j.buf = append(j.buf, bufferedPub{pub, pos})
		return
	}
	j.fed++
	if j.fed > j.limit {
		h.counters.recoveryOverflows.Add(1)
		ch.failJoiner(j, fmt.Errorf("hub: subscribe %q: %w", ch.name, ErrRecoveryOverflow))
		return
	}
	j.advance(pub, pos)
}

// advance appends pub to the joiner's view if it continues the stream,
// skips it if the joiner's view already includes it, and marks the joiner
// broken on a gap or an epoch change.
func (j *joiner) advance(pub *Publication, pos StreamPosition) {
	if j.broken {
		return
	}
	switch {
	case pos.Offset == 0:
		// Not kept in history, so it has no place in the stream; a
		// recovering client still gets it in order.
		if j.recovered {
			j.out = append(j.out, pub)
		}
	case pos.Epoch == j.cur.Epoch && pos.Offset <= j.cur.Offset:
		// Already in the history that was read.
	case pos.Epoch == j.cur.Epoch && pos.Offset == j.cur.Offset+1:
		if j.recovered {
			j.out = append(j.out, pub)
		}
		j.cur = pos
	default:
		j.broken = true
	}
}

// setHistory records the history read and merges the buffered live
// publications into it.
func (j *joiner) setHistory(res HistoryResult) {
	j.haveHist = true
	j.cur = res.Position
	if s := j.since; s != nil && s.Epoch != "" && s.Epoch == res.Position.Epoch && s.Offset <= res.Position.Offset {
		pubs := res.Publications
		want := res.Position.Offset - s.Offset
		if uint64(len(pubs)) == want && (want == 0 || (pubs[0].Offset == s.Offset+1 && pubs[len(pubs)-1].Offset == res.Position.Offset)) {
			j.recovered = true
			j.out = append(make([]*Publication, 0, len(pubs)+len(j.buf)), pubs...)
		}
	}
	for _, b := range j.buf {
		j.advance(b.pub, b.pos)
	}
	j.buf = nil
}

func (j *joiner) result(recoverable bool) *wire.SubscribeResult {
	res := &wire.SubscribeResult{Recoverable: recoverable}
	if recoverable {
		res.Epoch = j.cur.Epoch
		res.Offset = j.cur.Offset
		res.WasRecovering = j.since != nil
		res.Recovered = j.recovered
		if j.recovered {
			res.Publications = j.out
		}
	}
	return res
}

// tryComplete moves a joiner whose history is merged to the live set when
// its position matches the channel's, and reports whether it finished.
func (ch *channel) tryComplete(h *Hub, j *joiner) bool {
	if j.outcome != joinPending || !j.haveHist {
		return j.outcome != joinPending
	}
	if !ch.opts.Recoverable() {
		ch.goLive(h, j)
		return true
	}
	if j.broken {
		ch.finishBroken(h, j)
		return true
	}
	switch {
	case len(ch.live) == 0 || !ch.posKnown:
		ch.pos, ch.posKnown = j.cur, true
	case j.cur.Epoch != ch.pos.Epoch:
		// The stream the live subscribers follow is gone (a newer epoch
		// was read after every live publication so far): they lost
		// continuity.
		h.counters.insufficientState.Add(uint64(len(ch.live)))
		ch.resetLive(h)
		ch.pos = j.cur
	case j.cur.Offset != ch.pos.Offset:
		// History is ahead of (or behind) live delivery: wait until the
		// broker delivers the publications in between.
		return false
	}
	ch.goLive(h, j)
	return true
}

// forceComplete ends a joiner's wait after RecoveryWait: live delivery did
// not reach the position history reported, so publications were lost on
// one side. If the live subscribers are behind, they lost continuity and
// are told to resubscribe, and the joiner goes live at its position; if the
// joiner is behind, it replies and is told to resubscribe itself.
func (ch *channel) forceComplete(h *Hub, j *joiner) {
	if j.outcome != joinPending || !j.haveHist {
		return
	}
	if ch.tryComplete(h, j) {
		return
	}
	if j.cur.Offset > ch.pos.Offset {
		h.counters.gaps.Add(1)
		h.counters.insufficientState.Add(uint64(len(ch.live)))
		ch.resetLive(h)
		ch.pos = j.cur
		ch.goLive(h, j)
		return
	}
	ch.finishBroken(h, j)
}

func (ch *channel) removePending(j *joiner) {
	for i, p := range ch.pending {
		if p == j {
			last := len(ch.pending) - 1
			ch.pending[i] = ch.pending[last]
			ch.pending[last] = nil
			ch.pending = ch.pending[:last]
			return
		}
	}
}

func (ch *channel) goLive(h *Hub, j *joiner) {
	s := j.s
	s.cl.mu.Lock()
	removed := s.cl.subs.removed() || s.cl.subs.get(s.ch.name) != s
	s.cl.mu.Unlock()
	if removed {
		ch.failJoiner(j, fmt.Errorf("hub: subscribe %q: %w", ch.name, ErrUnknownClient))
		return
	}
	ch.removePending(j)
	j.onResult(j.result(ch.opts.Recoverable()))
	s.idx = int32(len(ch.live))
	ch.live = append(ch.live, s)
	ch.targets = append(ch.targets, s.cl.sub)
	j.outcome = joinLive
	j.finished()
}

// finishBroken replies to a joiner whose view of the stream broke while it
// was merging, then removes it so the client resubscribes and recovers.
func (ch *channel) finishBroken(h *Hub, j *joiner) {
	ch.removePending(j)
	j.onResult(j.result(true))
	j.outcome = joinBroken
	j.finished()
	h.counters.insufficientState.Add(1)
	h.dropSubscription(ch, j.s, wire.UnsubscribeInsufficientState, "insufficient state", true, false)
}

func (ch *channel) failJoiner(j *joiner, err error) {
	if j.outcome != joinPending {
		return
	}
	ch.removePending(j)
	j.outcome = joinFailed
	j.err = err
	s := j.s
	s.cl.mu.Lock()
	s.cl.subs.remove(s)
	s.cl.mu.Unlock()
	j.finished()
}

// completeWaiting retries every joiner that merged its history and waits
// for live delivery to reach its position.
func (ch *channel) completeWaiting(h *Hub) {
	for i := 0; i < len(ch.pending); {
		j := ch.pending[i]
		if j.haveHist && ch.tryComplete(h, j) {
			continue // j left pending; index i holds another joiner now
		}
		i++
	}
}

// resetLive removes every live subscriber with an insufficient-state
// unsubscribe push (resubscribe advised).
func (ch *channel) resetLive(h *Hub) {
	for i, s := range ch.live {
		ch.live[i] = nil
		ch.targets[i] = nil
		s.idx = -1
		h.dropSubscription(ch, s, wire.UnsubscribeInsufficientState, "insufficient state", true, true)
	}
	ch.live = ch.live[:0]
	ch.targets = ch.targets[:0]
}

func (ch *channel) removeLive(s *subscription) bool {
	i := int(s.idx)
	if i < 0 || i >= len(ch.live) || ch.live[i] != s {
		return false
	}
	last := len(ch.live) - 1
	ch.live[i] = ch.live[last]
	ch.live[i].idx = int32(i)
	ch.live[last] = nil
	ch.live = ch.live[:last]
	ch.targets[i] = ch.targets[last]
	ch.targets[last] = nil
	ch.targets = ch.targets[:last]
	s.idx = -1
	return true
}

func (ch *channel) empty() bool { return len(ch.live) == 0 && len(ch.pending) == 0 }

// dropSubscription ends a subscription on the server's initiative: the
// client's record forgets it, the subscriber is told, and presence removal
// and the leave event (for a subscription that was live, so joined) are
// deferred to the background goroutine (the caller may be a broker
// goroutine holding ch.mu). s must already be out of ch.live.
func (h *Hub) dropSubscription(ch *channel, s *subscription, code uint32, reason string, resubscribe, wasLive bool) {
	s.cl.mu.Lock()
	s.cl.subs.remove(s)
	s.cl.mu.Unlock()
	s.cl.sub.ServerUnsubscribe(s.ch.name, code, reason, resubscribe)
	h.counters.serverUnsubscribes.Add(1)
	leave := wasLive && ch.opts.JoinLeave
	if s.presence || leave {
		h.enqueueCleanup(cleanupTask{cl: s.cl, channel: s.ch.name, info: s.info, presence: s.presence, leave: leave})
	}
}

// join registers j with the channel's state, creating it and subscribing
// the broker when it is the first, and waits until the broker subscription
// is settled. The subscription joins its client's set at the same time,
// unless the client was removed (ErrUnknownClient) or already holds a
// subscription to the channel (ErrAlreadySubscribed); then nothing is
// registered.
func (h *Hub) join(ctx context.Context, name string, opts ChannelOptions, j *joiner) (*channel, error) {
	for {
		sh := h.shardFor(name)
		sh.mu.Lock()
		ch := sh.channels[name]
		creator := false
		if ch == nil {
			ch = &channel{
				name:        name,
				opts:        opts,
				ready:       make(chan struct{}),
				closed:      make(chan struct{}),
				nextRefresh: time.Now().Add(opts.presenceTTL() / 3),
			}
			sh.channels[name] = ch
			creator = true
		}
		ch.mu.Lock()
		if ch.state == chClosing {
			closed := ch.closed
			ch.mu.Unlock()
			sh.mu.Unlock()
			select {
			case <-closed:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("hub: subscribe %q: %w", name, ctx.Err())
			}
		}
		cl := j.s.cl
		cl.mu.Lock()
		var refused error
		switch {
		case cl.subs.removed():
			refused = ErrUnknownClient
		case cl.subs.get(name) != nil:
			refused = ErrAlreadySubscribed
		}
		if refused != nil {
			cl.mu.Unlock()
			if creator {
				// Nobody else has seen the new state: the shard lock
				// was held since it was created.
				delete(sh.channels, name)
			}
			ch.mu.Unlock()
			sh.mu.Unlock()
			return nil, fmt.Errorf("hub: subscribe %q: %w", name, refused)
		}
		j.s.ch = ch
		cl.subs.add(j.s)
		cl.mu.Unlock()
		ch.pending = append(ch.pending, j)
		ch.mu.Unlock()
		sh.mu.Unlock()

		if creator {
			// Other joiners wait for this call, so the creator's own
			// cancellation must not fail them; a timeout still bounds it.
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), brokerOpTimeout)
			err := h.cfg.Broker.Subscribe(bctx, name)
			cancel()
			if err != nil {
				err = fmt.Errorf("hub: subscribe %q: broker: %w", name, err)
				h.counters.brokerErrors.Add(1)
				sh.mu.Lock()
				ch.mu.Lock()
				if sh.channels[name] == ch {
					delete(sh.channels, name)
				}
				ch.state = chClosing
				ch.readyErr = err
				for len(ch.pending) > 0 {
					ch.failJoiner(ch.pending[0], err)
				}
				close(ch.ready)
				close(ch.closed)
				ch.mu.Unlock()
				sh.mu.Unlock()
				return nil, err
			}
			ch.mu.Lock()
			ch.state = chActive
			close(ch.ready)
			ch.mu.Unlock()
			return ch, nil
		}
		select {
		case <-ch.ready:
			ch.mu.Lock()
			err := ch.readyErr
			ch.mu.Unlock()
			if err != nil {
				return nil, err
			}
			return ch, nil
		case <-ctx.Done():
			ch.mu.Lock()
			ch.failJoiner(j, fmt.Errorf("hub: subscribe %q: %w", name, ctx.Err()))
			err := j.err
			ch.mu.Unlock()
			return nil, err
		}
	}
}

// release gives up the broker subscription of a channel that has neither
// subscribers nor joiners. A joiner arriving meanwhile waits for closed and
// starts afresh, so Broker.Subscribe and Unsubscribe of one channel never
// overlap.
func (h *Hub) release(ctx context.Context, ch *channel) {
	sh := h.shardFor(ch.name)
	sh.mu.Lock()
	ch.mu.Lock()
	if ch.state != chActive || !ch.empty() || sh.channels[ch.name] != ch {
		ch.mu.Unlock()
		sh.mu.Unlock()
		return
	}
	ch.state = chClosing
	ch.mu.Unlock()
	sh.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), brokerOpTimeout)
	err := h.cfg.Broker.Unsubscribe(ctx, ch.name)
	cancel()
	if err != nil {
		h.counters.brokerErrors.Add(1)
		h.cfg.Logger.Warn("broker unsubscribe failed", "channel", ch.name, "error", err)
	}
	sh.mu.Lock()
	if sh.channels[ch.name] == ch {
		delete(sh.channels, ch.name)
	}
	sh.mu.Unlock()
	close(ch.closed)
}
