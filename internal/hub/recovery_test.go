package hub_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
	"github.com/heraldhq/herald/internal/wire"
)

// checkingSub verifies, as pushes arrive, that it sees the numbered
// publications of one channel exactly once and in order across any number
// of resubscriptions, and that every subscribe reply precedes live pushes.
type checkingSub struct {
	id string

	mu         sync.Mutex
	subscribed bool
	next       int // the number expected next; 0 until the first reply
	pos        hub.StreamPosition
	seen       int
	errs       []string
	changed    chan struct{}
	// progress is shared by all checkers and signalled on every
	// publication they accept.
	progress chan struct{}
	// lossy accepts insufficient-state unsubscribes (the runner then
	// resubscribes with its position); kicked records one.
	lossy  bool
	kicked bool
}

func newCheckingSub(id string, progress chan struct{}) *checkingSub {
	return &checkingSub{id: id, changed: make(chan struct{}), progress: progress}
}

// waitKicked waits for a server unsubscribe and consumes it.
func (c *checkingSub) waitKicked(ctx context.Context) error {
	for {
		c.mu.Lock()
		kicked, ch := c.kicked, c.changed
		c.kicked = false
		c.mu.Unlock()
		if kicked {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the server unsubscribe: %w", ctx.Err())
		}
	}
}

func (c *checkingSub) expecting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next
}

func (c *checkingSub) ClientID() string { return c.id }
func (c *checkingSub) UserID() string   { return "" }
func (c *checkingSub) ConnInfo() []byte { return nil }

func (c *checkingSub) failf(format string, args ...any) {
	if len(c.errs) < 10 {
		c.errs = append(c.errs, fmt.Sprintf(format, args...))
	}
}

// accept checks one publication (recovered or live) against the sequence.
func (c *checkingSub) accept(p *wire.Publication) {
	n, err := strconv.Atoi(string(p.Data))
	if err != nil {
		c.failf("bad data %q", p.Data)
		return
	}
	if uint64(n) != p.Offset {
		c.failf("number %d at offset %d", n, p.Offset)
	}
	if n != c.next {
		c.failf("got %d, want %d", n, c.next)
	}
	c.next = n + 1
	c.pos.Offset = p.Offset
	c.seen++
	c.signal()
}

func (c *checkingSub) signal() {
	select {
	case c.progress <- struct{}{}:
	default:
	}
}

func (c *checkingSub) Deliver(d *hub.Delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := d.Push()
	if p.Type != wire.PushPublication {
		return
	}
	if !c.subscribed {
		c.failf("live publication %d outside a subscription (before the reply or after unsubscribe)", p.Publication.Offset)
		return
	}
	c.accept(p.Publication)
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *checkingSub) ServerUnsubscribe(channel string, code uint32, reason string, resubscribe bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.subscribed {
		c.failf("server unsubscribe while not subscribed")
	}
	if c.lossy && code == wire.UnsubscribeInsufficientState && resubscribe {
		c.kicked = true
	} else {
		c.failf("unexpected server unsubscribe %d %s", code, reason)
	}
	c.subscribed = false
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *checkingSub) ServerDisconnect(code uint16, reason string) {}

func (c *checkingSub) onResult(res *wire.SubscribeResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subscribed {
		c.failf("reply while subscribed")
	}
	c.subscribed = true
	defer c.signal()
	if c.next == 0 {
		// First subscription: the sequence starts after the reply.
		c.next = int(res.Offset) + 1
		c.pos = hub.StreamPosition{Offset: res.Offset, Epoch: res.Epoch}
		return
	}
	if !res.Recovered {
		c.failf("not recovered from %+v (reply at %d/%s)", c.pos, res.Offset, res.Epoch)
		return
	}
	for _, p := range res.Publications {
		c.accept(p)
	}
	if c.pos.Offset != res.Offset || c.pos.Epoch != res.Epoch {
		c.failf("after recovery at %+v, reply says %d/%s", c.pos, res.Offset, res.Epoch)
	}
}

// runResubscriber subscribes c, then repeatedly unsubscribes after a few
// live publications and resubscribes with its position, until it has seen
// number last.
func runResubscriber(ctx context.Context, h *hub.Hub, c *checkingSub, channel string, last, every int) error {
	if err := h.AddClient(c); err != nil {
		return err
	}
	defer h.RemoveClient(ctx, c)
	for round := 0; ; round++ {
		c.mu.Lock()
		var since *hub.StreamPosition
		if c.next != 0 {
			p := c.pos
			since = &p
		}
		c.mu.Unlock()
		if err := h.Subscribe(ctx, c, channel, hub.SubscribeOptions{Since: since}, c.onResult); err != nil {
			return fmt.Errorf("subscribe round %d: %w", round, err)
		}
		c.mu.Lock()
		target := c.seen + every + round%7
		c.mu.Unlock()
		for {
			c.mu.Lock()
			done := c.next > last
			reached := c.seen >= target || done
			ch := c.changed
			bad := len(c.errs) > 0
			kicked := c.kicked
			c.kicked = false
			c.mu.Unlock()
			if bad {
				return errors.New("sequence broken")
			}
			if done {
				return nil
			}
			if kicked {
				// The server removed the subscription; resubscribe
				// with the position, as clients do.
				break
			}
			if reached {
				break
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return fmt.Errorf("waiting for publications: %w", ctx.Err())
			}
		}
		c.mu.Lock()
		live := c.subscribed
		c.mu.Unlock()
		if !live {
			continue
		}
		if err := h.Unsubscribe(ctx, c, channel); err != nil {
			if !c.lossy || !errors.Is(err, hub.ErrNotSubscribed) {
				return fmt.Errorf("unsubscribe round %d: %w", round, err)
			}
			// The server removed the subscription meanwhile; its
			// unsubscribe push is on the way.
			if err := c.waitKicked(ctx); err != nil {
				return fmt.Errorf("unsubscribe round %d: %w", round, err)
			}
			continue
		}
		c.mu.Lock()
		c.subscribed = false
		c.mu.Unlock()
	}
}

func testRecoveryStress(t *testing.T, wrap func(*membroker.Broker) hub.Broker, lossy bool) {
	ns := hub.NamespaceMap{"stress": {HistorySize: 100000, HistoryMetaTTL: time.Hour, AllowAnonymous: true}}
	f := newHub(t, hub.Config{Namespaces: ns, RecoveryBufferSize: 100000, RecoveryWait: 50 * time.Millisecond}, wrap)
	const channel = "stress:numbers"
	const total = 3000
	// The channel exists before the subscribers start so that the first
	// reply's offset is a number of the sequence.
	f.publish(t, channel, "1")

	ctx, cancel := context.WithTimeout(f.ctx, 20*time.Second)
	defer cancel()
	subs := make([]*checkingSub, 4)
	errs := make(chan error, len(subs)+1)
	progress := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for i := range subs {
		subs[i] = newCheckingSub(fmt.Sprintf("checker%d", i), progress)
		subs[i].lossy = lossy
		wg.Go(func() {
			err := runResubscriber(ctx, f.h, subs[i], channel, total, 10+i*7)
			if err != nil {
				cancel() // stop the others; the first error is reported
			}
			errs <- err
		})
	}
	wg.Go(func() {
		for n := 2; n <= total; n++ {
			if _, err := f.h.Publish(ctx, channel, []byte(strconv.Itoa(n)), nil); err != nil {
				errs <- fmt.Errorf("publish %d: %w", n, err)
				return
			}
			// Flow control: keep the publisher at most a few dozen
			// publications ahead of the slowest subscriber, so that
			// subscribe rounds interleave with publishing throughout.
			for n%8 == 0 && !allPast(subs, n-30) {
				select {
				case <-progress:
				case <-ctx.Done():
					errs <- fmt.Errorf("publisher waiting for subscribers: %w", ctx.Err())
					return
				}
			}
		}
		errs <- nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, c := range subs {
		c.mu.Lock()
		if len(c.errs) > 0 {
			t.Errorf("%s: %v", c.id, c.errs)
		}
		if c.next != total+1 {
			t.Errorf("%s ended expecting %d, want %d", c.id, c.next, total+1)
		}
		c.mu.Unlock()
	}
	cnt := f.h.Counters()
	t.Logf("publications %d, deliveries %d, subscribes %d, recovered %d, gaps %d, insufficient state %d, duplicates %d, recovery timeouts %d",
		cnt.PublicationsReceived, cnt.Deliveries, cnt.Subscribes, cnt.Recovered, cnt.Gaps, cnt.InsufficientState, cnt.Duplicates, cnt.RecoveryTimeouts)
	if cnt.Recovered == 0 || cnt.NotRecovered != 0 {
		t.Errorf("counters: recovered %d, not recovered %d", cnt.Recovered, cnt.NotRecovered)
	}
	if lossy != (cnt.InsufficientState > 0) {
		t.Errorf("lossy=%v but %d insufficient-state unsubscribes", lossy, cnt.InsufficientState)
	}
}

func allPast(subs []*checkingSub, n int) bool {
	for _, c := range subs {
		if c.expecting() <= n {
			return false
		}
	}
	return true
}

// TestRecoveryNoGapNoDuplicate: subscribers repeatedly leave and
// resubscribe with their position while a numbered publisher runs; each
// sees every number exactly once, in order, replies before live pushes.
func TestRecoveryNoGapNoDuplicate(t *testing.T) {
	t.Run("synchronous broker", func(t *testing.T) { testRecoveryStress(t, nil, false) })
	t.Run("asynchronous broker", func(t *testing.T) {
		testRecoveryStress(t, func(mb *membroker.Broker) hub.Broker { return newAsyncBroker(mb) }, false)
	})
	// The broker loses publications now and then: subscribers are told to
	// resubscribe and recover the lost ones from history, so each still
	// sees every number exactly once, in order.
	t.Run("lossy broker", func(t *testing.T) {
		testRecoveryStress(t, func(mb *membroker.Broker) hub.Broker {
			ab := newAsyncBroker(mb)
			ab.dropIf = func(_ string, pos hub.StreamPosition) bool {
				return pos.Offset%97 == 0 && pos.Offset < 2900
			}
			return ab
		}, true)
	})
}

// TestRecoveryWaitLostPublications: history reports a publication that
// live delivery never brings (the broker lost it). After RecoveryWait the
// live subscribers, which are behind, are told to resubscribe and the new
// subscriber goes live at the history position.
func TestRecoveryWaitLostPublications(t *testing.T) {
	var ab *asyncBroker
	f := newHub(t, hub.Config{RecoveryWait: 100 * time.Millisecond}, func(mb *membroker.Broker) hub.Broker {
		ab = newAsyncBroker(mb)
		return ab
	})
	a := f.client(t, "a", "")
	f.subscribe(t, a, "hist:lost", nil)
	ab.loseNext("hist:lost", 1)
	f.publish(t, "hist:lost", "1")
	b := f.client(t, "b", "")
	res := f.subscribe(t, b, "hist:lost", nil)
	if res.Offset != 1 {
		t.Fatalf("b subscribed at %d, want 1", res.Offset)
	}
	evs := a.waitFor(t, "unsubscribe", func(evs []event) bool { return countKind(evs, evUnsubscribe, 0) == 1 })
	if u := evs[len(evs)-1]; u.code != wire.UnsubscribeInsufficientState || !u.resubscribe {
		t.Fatalf("a: unsubscribe code %d", u.code)
	}
	f.publish(t, "hist:lost", "2")
	evs = b.waitFor(t, "publication 2", func(evs []event) bool { return len(evs) == 2 })
	if pubData(evs[1]) != "2" {
		t.Fatalf("b events %v", describe(evs))
	}
	if c := f.h.Counters(); c.RecoveryTimeouts != 1 {
		t.Fatalf("recovery timeouts %d", c.RecoveryTimeouts)
	}
}

// gatedBroker holds History calls until the gate opens.
type gatedBroker struct {
	*membroker.Broker
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedBroker) History(ctx context.Context, channel string, opts hub.HistoryOptions) (hub.HistoryResult, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.Broker.History(ctx, channel, opts)
}

// TestRecoveryBufferOverflow: more live publications than
// RecoveryBufferSize while history is read fail the subscribe (temporary)
// instead of growing without bound.
func TestRecoveryBufferOverflow(t *testing.T) {
	g := &gatedBroker{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	f := newHub(t, hub.Config{RecoveryBufferSize: 4}, func(mb *membroker.Broker) hub.Broker {
		g.Broker = mb
		return g
	})
	s := f.client(t, "s", "")
	errc := make(chan error, 1)
	go func() {
		errc <- f.h.Subscribe(f.ctx, s, "hist:flood", hub.SubscribeOptions{}, s.onResult)
	}()
	<-g.entered
	for i := range 5 {
		f.publish(t, "hist:flood", fmt.Sprint(i))
	}
	close(g.gate)
	err := <-errc
	if !errors.Is(err, hub.ErrRecoveryOverflow) {
		t.Fatalf("Subscribe: %v, want ErrRecoveryOverflow", err)
	}
	if len(s.snapshot()) != 0 {
		t.Fatalf("failed subscribe delivered %v", describe(s.snapshot()))
	}
	if we := hub.WireError(err); we.Code != wire.ErrInternal || !we.Temporary {
		t.Fatalf("wire error %+v", we)
	}
	// The client can subscribe again; the channel state was cleaned up.
	g.entered = make(chan struct{}, 1)
	res := f.subscribe(t, s, "hist:flood", nil)
	if res.Offset != 5 {
		t.Fatalf("resubscribe at %d", res.Offset)
	}
}

// TestRemoveClientDuringSubscribe: a client that goes away while its
// subscribe is reading history gets no reply, and leaves no subscription
// or presence entry behind.
func TestRemoveClientDuringSubscribe(t *testing.T) {
	g := &gatedBroker{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	f := newHub(t, hub.Config{}, func(mb *membroker.Broker) hub.Broker {
		g.Broker = mb
		return g
	})
	s := f.client(t, "s", "u")
	errc := make(chan error, 1)
	go func() {
		errc <- f.h.Subscribe(f.ctx, s, "both:x", hub.SubscribeOptions{}, s.onResult)
	}()
	<-g.entered
	if p, _ := f.mb.Presence(f.ctx, "both:x"); p["s"] == nil {
		t.Fatal("presence not added before the history read")
	}
	f.h.RemoveClient(f.ctx, s)
	close(g.gate)
	if err := <-errc; !errors.Is(err, hub.ErrUnknownClient) {
		t.Fatalf("Subscribe of a removed client: %v", err)
	}
	if evs := s.snapshot(); len(evs) != 0 {
		t.Fatalf("removed client got %v", describe(evs))
	}
	if p, _ := f.mb.Presence(f.ctx, "both:x"); len(p) != 0 {
		t.Fatalf("presence left behind: %v", p)
	}
	if len(f.h.Channels()) != 0 || f.h.NumSubscribers("both:x") != 0 {
		t.Fatalf("channel state left behind: %v", f.h.Channels())
	}
}

// TestJoinSeesNewEpoch: a subscriber whose history read finds a newer
// epoch than the live subscribers follow proves they lost continuity: they
// are told to resubscribe at once, and the newcomer goes live.
func TestJoinSeesNewEpoch(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	a := f.client(t, "a", "")
	old := f.subscribe(t, a, "shortmeta:e", nil)
	var fresh hub.StreamPosition
	poll(t, "new epoch", func() bool {
		res, err := f.h.History(f.ctx, "shortmeta:e", hub.HistoryOptions{})
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		fresh = res.Position
		return fresh.Epoch != old.Epoch
	})
	b := f.client(t, "b", "")
	res := f.subscribe(t, b, "shortmeta:e", nil)
	if res.Epoch != fresh.Epoch {
		t.Fatalf("b subscribed in epoch %s, want %s", res.Epoch, fresh.Epoch)
	}
	evs := a.waitFor(t, "unsubscribe", func(evs []event) bool { return countKind(evs, evUnsubscribe, 0) == 1 })
	if u := evs[len(evs)-1]; u.code != wire.UnsubscribeInsufficientState || !u.resubscribe {
		t.Fatalf("a: unsubscribe code %d", u.code)
	}
	f.publish(t, "shortmeta:e", "1")
	b.waitFor(t, "publication", func(evs []event) bool { return len(evs) == 2 && pubData(evs[1]) == "1" })
	if n := countKind(a.snapshot(), evPush, wire.PushPublication); n != 0 {
		t.Fatalf("a got %d publications after losing continuity", n)
	}
}

// TestSubscribeWhileInProgress: a second subscribe to a channel whose
// first subscribe is still reading history is refused, leaves the first
// alone, and the first completes with one reply.
func TestSubscribeWhileInProgress(t *testing.T) {
	g := &gatedBroker{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	f := newHub(t, hub.Config{}, func(mb *membroker.Broker) hub.Broker {
		g.Broker = mb
		return g
	})
	s := f.client(t, "s", "")
	errc := make(chan error, 1)
	go func() {
		errc <- f.h.Subscribe(f.ctx, s, "hist:busy", hub.SubscribeOptions{}, s.onResult)
	}()
	<-g.entered
	if !f.h.Subscribed(s, "hist:busy") {
		t.Fatal("subscription in progress not reported by Subscribed")
	}
	err := f.h.Subscribe(f.ctx, s, "hist:busy", hub.SubscribeOptions{}, s.onResult)
	if !errors.Is(err, hub.ErrAlreadySubscribed) {
		t.Fatalf("second Subscribe: %v, want ErrAlreadySubscribed", err)
	}
	if err := f.h.Unsubscribe(f.ctx, s, "hist:busy"); !errors.Is(err, hub.ErrNotSubscribed) {
		t.Fatalf("Unsubscribe while in progress: %v, want ErrNotSubscribed", err)
	}
	close(g.gate)
	if err := <-errc; err != nil {
		t.Fatalf("first Subscribe: %v", err)
	}
	if n := countKind(s.snapshot(), evResult, 0); n != 1 {
		t.Fatalf("%d replies, want 1", n)
	}
	f.publish(t, "hist:busy", "1")
	s.waitFor(t, "publication", func(evs []event) bool { return len(evs) == 2 && pubData(evs[1]) == "1" })
	if n := f.h.NumSubscriptions(s); n != 1 {
		t.Fatalf("%d subscriptions, want 1", n)
	}
}
