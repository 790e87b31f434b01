package hub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
	"github.com/heraldhq/herald/internal/wire"
)

func pubData(e event) string {
	if e.kind != evPush || e.delivery.Push().Publication == nil {
		return ""
	}
	return string(e.delivery.Push().Publication.Data)
}

func TestSubscribePublishDeliver(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	a := f.client(t, "a", "u1")
	b := f.client(t, "b", "u2")
	resA := f.subscribe(t, a, "hist:room", nil)
	f.subscribe(t, b, "hist:room", nil)
	if !resA.Recoverable || resA.Epoch == "" || resA.Offset != 0 || resA.WasRecovering {
		t.Fatalf("first subscribe result %+v", resA)
	}
	pos := f.publish(t, "hist:room", `{"text":"hi"}`)
	if pos.Offset != 1 || pos.Epoch != resA.Epoch {
		t.Fatalf("publish position %+v, want 1/%s", pos, resA.Epoch)
	}
	evA := a.waitFor(t, "publication", func(evs []event) bool { return len(evs) == 2 })
	evB := b.waitFor(t, "publication", func(evs []event) bool { return len(evs) == 2 })
	if evA[0].kind != evResult || evA[1].kind != evPush {
		t.Fatalf("a events %v", describe(evA))
	}
	p := evA[1].delivery.Push()
	if p.Type != wire.PushPublication || p.Channel != "hist:room" || p.Publication.Offset != 1 ||
		string(p.Publication.Data) != `{"text":"hi"}` || p.Publication.Time == 0 {
		t.Fatalf("push %+v %+v", p, p.Publication)
	}
	// One Delivery per publication, shared by every subscriber.
	if evA[1].delivery != evB[1].delivery {
		t.Fatal("subscribers got different Delivery values for one publication")
	}
	if n := f.h.NumSubscribers("hist:room"); n != 2 {
		t.Fatalf("NumSubscribers %d", n)
	}
	if got := f.h.Channels(); len(got) != 1 || got["hist:room"] != 2 {
		t.Fatalf("Channels %v", got)
	}

	// Unsubscribe stops delivery to a, not to b.
	if err := f.h.Unsubscribe(f.ctx, a, "hist:room"); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if err := f.h.Unsubscribe(f.ctx, a, "hist:room"); !errors.Is(err, hub.ErrNotSubscribed) {
		t.Fatalf("second Unsubscribe: %v", err)
	}
	f.publish(t, "hist:room", `2`)
	b.waitFor(t, "second publication", func(evs []event) bool { return len(evs) == 3 })
	if got := a.snapshot(); len(got) != 2 {
		t.Fatalf("a received after unsubscribe: %v", describe(got))
	}
}

func TestSubscribeErrors(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	anon := f.client(t, "anon", "")
	alice := f.client(t, "alice", "alice")
	noop := func(*wire.SubscribeResult) {}
	cases := []struct {
		sub     hub.Subscriber
		channel string
		opts    hub.SubscribeOptions
		want    error
		code    uint32
	}{
		{alice, "", hub.SubscribeOptions{}, hub.ErrInvalidChannel, wire.ErrUnknownChannel},
		{alice, "has space", hub.SubscribeOptions{}, hub.ErrInvalidChannel, wire.ErrUnknownChannel},
		{alice, "nope:x", hub.SubscribeOptions{}, hub.ErrUnknownNamespace, wire.ErrUnknownChannel},
		{anon, "users:x", hub.SubscribeOptions{}, hub.ErrPermissionDenied, wire.ErrPermissionDenied},
		{alice, "personal:bob", hub.SubscribeOptions{}, hub.ErrPermissionDenied, wire.ErrPermissionDenied},
		{anon, "personal:alice", hub.SubscribeOptions{}, hub.ErrPermissionDenied, wire.ErrPermissionDenied},
		{alice, "secret:x", hub.SubscribeOptions{}, hub.ErrPermissionDenied, wire.ErrPermissionDenied},
		{newSub("stranger", "s"), "hist:x", hub.SubscribeOptions{}, hub.ErrUnknownClient, wire.ErrInternal},
	}
	for _, c := range cases {
		err := f.h.Subscribe(f.ctx, c.sub, c.channel, c.opts, noop)
		if !errors.Is(err, c.want) {
			t.Errorf("Subscribe(%s, %q): %v, want %v", c.sub.ClientID(), c.channel, err, c.want)
			continue
		}
		if we := hub.WireError(err); we.Code != c.code {
			t.Errorf("Subscribe(%q): wire code %d, want %d", c.channel, we.Code, c.code)
		}
	}
	// Allowed: own personal channel, granted secret, granted other user.
	for _, ok := range []struct {
		channel string
		granted bool
	}{{"personal:alice", false}, {"secret:x", true}, {"personal:bob", true}, {"users:x", false}} {
		if err := f.h.Subscribe(f.ctx, alice, ok.channel, hub.SubscribeOptions{Granted: ok.granted}, noop); err != nil {
			t.Errorf("Subscribe(%q, granted=%v): %v", ok.channel, ok.granted, err)
		}
	}
	if err := f.h.Subscribe(f.ctx, alice, "users:x", hub.SubscribeOptions{}, noop); !errors.Is(err, hub.ErrAlreadySubscribed) {
		t.Errorf("duplicate subscribe: %v", err)
	}
	if _, err := f.h.History(f.ctx, "users:x", hub.HistoryOptions{}); !errors.Is(err, hub.ErrNotAvailable) {
		t.Errorf("history in a namespace without history: %v", err)
	}
	if _, err := f.h.Presence(f.ctx, "users:x"); !errors.Is(err, hub.ErrNotAvailable) {
		t.Errorf("presence in a namespace without presence: %v", err)
	}
	if _, err := f.h.Publish(f.ctx, "nope:x", []byte("1"), nil); !errors.Is(err, hub.ErrUnknownNamespace) {
		t.Errorf("publish to unknown namespace: %v", err)
	}
	if o, err := f.h.ChannelOptions("hist:x"); err != nil || !o.AllowPublish || o.HistorySize != 1000 {
		t.Errorf("ChannelOptions: %+v %v", o, err)
	}
}

func TestValidateChannel(t *testing.T) {
	long := make([]byte, 256)
	for i := range long {
		long[i] = 'a'
	}
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"a", true}, {"chat:room1", true}, {"a:b:c", true}, {"~!@#$%^&*()", true},
		{string(long[:255]), true}, {string(long), false},
		{"", false}, {"a b", false}, {"tab\t", false}, {"é", false}, {"nul\x00", false}, {"del\x7f", false},
	} {
		if err := hub.ValidateChannel(c.name); (err == nil) != c.ok {
			t.Errorf("ValidateChannel(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
	for ch, ns := range map[string]string{"chat:room": "chat", "plain": "", ":x": "", "a:b:c": "a"} {
		if got := hub.Namespace(ch); got != ns {
			t.Errorf("Namespace(%q) = %q, want %q", ch, got, ns)
		}
	}
}

func TestRecoveryOutcomes(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	var last hub.StreamPosition
	for i := 1; i <= 10; i++ {
		last = f.publish(t, "small:c", fmt.Sprint(i))
	}
	cases := []struct {
		name      string
		since     hub.StreamPosition
		recovered bool
		offsets   []uint64
	}{
		{"within window", hub.StreamPosition{Offset: 7, Epoch: last.Epoch}, true, []uint64{8, 9, 10}},
		{"edge of window", hub.StreamPosition{Offset: 5, Epoch: last.Epoch}, true, []uint64{6, 7, 8, 9, 10}},
		{"up to date", last, true, nil},
		{"out of window", hub.StreamPosition{Offset: 4, Epoch: last.Epoch}, false, nil},
		{"other epoch", hub.StreamPosition{Offset: 9, Epoch: "gone"}, false, nil},
		{"ahead of stream", hub.StreamPosition{Offset: 11, Epoch: last.Epoch}, false, nil},
	}
	for i, c := range cases {
		s := f.client(t, fmt.Sprintf("r%d", i), "")
		since := c.since
		res := f.subscribe(t, s, "small:c", &since)
		var got []uint64
		for _, p := range res.Publications {
			got = append(got, p.Offset)
		}
		if res.Recovered != c.recovered || !res.WasRecovering || fmt.Sprint(got) != fmt.Sprint(c.offsets) ||
			res.Offset != 10 || res.Epoch != last.Epoch {
			t.Errorf("%s: recovered=%v pubs=%v at %d/%s, want recovered=%v pubs=%v at 10/%s",
				c.name, res.Recovered, got, res.Offset, res.Epoch, c.recovered, c.offsets, last.Epoch)
		}
	}
	// A namespace without history replies without a position.
	s := f.client(t, "plain", "")
	res := f.subscribe(t, s, "plain", &hub.StreamPosition{Offset: 3, Epoch: "x"})
	if res.Recoverable || res.Recovered || res.Epoch != "" {
		t.Errorf("subscribe without history: %+v", res)
	}
	cnt := f.h.Counters()
	if cnt.Recovered != 3 || cnt.NotRecovered != 3 {
		t.Errorf("counters recovered %d not recovered %d", cnt.Recovered, cnt.NotRecovered)
	}
}

// TestRecoveryAfterEpochChange: when the stream's metadata expires, the
// next publication starts a new epoch; live subscribers are told to
// resubscribe and cannot recover across the change.
func TestRecoveryAfterEpochChange(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	s := f.client(t, "s", "")
	first := f.subscribe(t, s, "shortmeta:c", nil)
	f.publish(t, "shortmeta:c", "1")
	s.waitFor(t, "publication", func(evs []event) bool { return len(evs) == 2 })
	var next hub.StreamPosition
	poll(t, "new epoch", func() bool {
		res, err := f.h.History(f.ctx, "shortmeta:c", hub.HistoryOptions{})
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		next = res.Position
		return next.Epoch != first.Epoch
	})
	f.publish(t, "shortmeta:c", "2")
	evs := s.waitFor(t, "insufficient state", func(evs []event) bool { return countKind(evs, evUnsubscribe, 0) == 1 })
	u := evs[len(evs)-1]
	if u.kind != evUnsubscribe || u.code != wire.UnsubscribeInsufficientState || !u.resubscribe || u.channel != "shortmeta:c" {
		t.Fatalf("events %v (code %d resubscribe %v)", describe(evs), u.code, u.resubscribe)
	}
	if countKind(evs, evPush, wire.PushPublication) != 1 {
		t.Fatalf("publication of the new epoch delivered to the old subscription: %v", describe(evs))
	}
	res := f.subscribe(t, s, "shortmeta:c", &hub.StreamPosition{Offset: 1, Epoch: first.Epoch})
	if res.Recovered || res.Epoch != next.Epoch || res.Offset != 1 {
		t.Fatalf("resubscribe across epochs: %+v", res)
	}
}

// TestGapTriggersResubscribe: a publication the broker lost makes the next
// one a gap; the subscriber is told to resubscribe and recovers the lost
// publication from history.
func TestGapTriggersResubscribe(t *testing.T) {
	var ab *asyncBroker
	f := newHub(t, hub.Config{}, func(mb *membroker.Broker) hub.Broker { ab = newAsyncBroker(mb); return ab })
	s := f.client(t, "s", "")
	res := f.subscribe(t, s, "hist:gap", nil)
	f.publish(t, "hist:gap", "1")
	s.waitFor(t, "publication 1", func(evs []event) bool { return len(evs) == 2 })
	ab.loseNext("hist:gap", 1)
	f.publish(t, "hist:gap", "2")
	f.publish(t, "hist:gap", "3")
	evs := s.waitFor(t, "unsubscribe", func(evs []event) bool { return countKind(evs, evUnsubscribe, 0) == 1 })
	if u := evs[len(evs)-1]; u.code != wire.UnsubscribeInsufficientState || !u.resubscribe {
		t.Fatalf("unsubscribe code %d resubscribe %v", u.code, u.resubscribe)
	}
	if n := countKind(evs, evPush, wire.PushPublication); n != 1 {
		t.Fatalf("publications after the gap were delivered: %v", describe(evs))
	}
	rec := f.subscribe(t, s, "hist:gap", &hub.StreamPosition{Offset: 1, Epoch: res.Epoch})
	if !rec.Recovered || len(rec.Publications) != 2 || string(rec.Publications[0].Data) != "2" || rec.Offset != 3 {
		t.Fatalf("recovery after gap: %+v", rec)
	}
	f.publish(t, "hist:gap", "4")
	evs = s.waitFor(t, "publication 4", func(evs []event) bool { return pubData(evs[len(evs)-1]) == "4" })
	if c := f.h.Counters(); c.Gaps != 1 || c.InsufficientState != 1 {
		t.Fatalf("counters gaps %d insufficient %d", c.Gaps, c.InsufficientState)
	}
	_ = evs
}

// TestReconnectDetectsLostTail: publications lost during a broker outage
// with nothing published afterwards are found by the position check that
// follows HandleReconnect.
func TestReconnectDetectsLostTail(t *testing.T) {
	var ab *asyncBroker
	f := newHub(t, hub.Config{ReconnectGrace: 50 * time.Millisecond}, func(mb *membroker.Broker) hub.Broker {
		ab = newAsyncBroker(mb)
		return ab
	})
	s := f.client(t, "s", "")
	quiet := f.client(t, "q", "")
	f.subscribe(t, s, "hist:tail", nil)
	f.subscribe(t, quiet, "hist:steady", nil)
	f.publish(t, "hist:steady", "1")
	quiet.waitFor(t, "publication", func(evs []event) bool { return len(evs) == 2 })
	ab.loseNext("hist:tail", 1)
	f.publish(t, "hist:tail", "lost")
	f.h.HandleReconnect()
	evs := s.waitFor(t, "unsubscribe", func(evs []event) bool { return countKind(evs, evUnsubscribe, 0) == 1 })
	if u := evs[len(evs)-1]; u.code != wire.UnsubscribeInsufficientState || !u.resubscribe {
		t.Fatalf("unsubscribe code %d", u.code)
	}
	// A channel that missed nothing keeps its subscriber.
	f.publish(t, "hist:steady", "2")
	evs = quiet.waitFor(t, "publication 2", func(evs []event) bool { return len(evs) == 3 })
	if countKind(evs, evUnsubscribe, 0) != 0 {
		t.Fatalf("steady channel's subscriber was unsubscribed")
	}
}

// blockingSub's Deliver blocks until released: it breaks the Subscriber
// contract on purpose.
type blockingSub struct {
	*testSub
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingSub) Deliver(d *hub.Delivery) {
	b.once.Do(func() { close(b.entered) })
	<-b.release
	b.testSub.Deliver(d)
}

// queueSub is a well-behaved subscriber with a bounded queue that nobody
// drains: on overflow it disconnects itself, as sessions do.
type queueSub struct {
	*testSub
	queue        chan *hub.Delivery
	dropped      atomic.Int64
	disconnected atomic.Bool
}

func (q *queueSub) Deliver(d *hub.Delivery) {
	select {
	case q.queue <- d:
	default:
		q.dropped.Add(1)
		q.disconnected.Store(true)
	}
}

func TestSlowSubscriberDoesNotBlockOthers(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	// A subscriber that overflows its bounded queue loses its own
	// messages only.
	slow := &queueSub{testSub: newSub("slow", ""), queue: make(chan *hub.Delivery, 8)}
	if err := f.h.AddClient(slow); err != nil {
		t.Fatal(err)
	}
	if err := f.h.Subscribe(f.ctx, slow, "hist:busy", hub.SubscribeOptions{}, func(*wire.SubscribeResult) {}); err != nil {
		t.Fatal(err)
	}
	fast := f.client(t, "fast", "")
	f.subscribe(t, fast, "hist:busy", nil)
	for i := range 200 {
		f.publish(t, "hist:busy", fmt.Sprint(i))
	}
	evs := fast.waitFor(t, "200 publications", func(evs []event) bool { return len(evs) == 201 })
	for i, e := range evs[1:] {
		if pubData(e) != fmt.Sprint(i) {
			t.Fatalf("fast subscriber got %q at %d", pubData(e), i)
		}
	}
	if slow.dropped.Load() != 192 || !slow.disconnected.Load() {
		t.Fatalf("slow subscriber dropped %d", slow.dropped.Load())
	}

	// A subscriber that blocks in Deliver (against the contract) holds up
	// its own channel only: other channels publish, deliver and accept
	// subscriptions meanwhile.
	stuck := &blockingSub{testSub: newSub("stuck", ""), entered: make(chan struct{}), release: make(chan struct{})}
	if err := f.h.AddClient(stuck); err != nil {
		t.Fatal(err)
	}
	if err := f.h.Subscribe(f.ctx, stuck, "hist:stuck", hub.SubscribeOptions{}, func(*wire.SubscribeResult) {}); err != nil {
		t.Fatal(err)
	}
	published := make(chan error, 1)
	go func() {
		_, err := f.h.Publish(f.ctx, "hist:stuck", []byte("1"), nil)
		published <- err
	}()
	<-stuck.entered
	other := f.client(t, "other", "")
	f.subscribe(t, other, "hist:free", nil)
	f.publish(t, "hist:free", "x")
	other.waitFor(t, "publication on a free channel", func(evs []event) bool { return len(evs) == 2 })
	if err := f.h.SendToUser(f.ctx, "nobody", []byte(`1`), nil); err != nil {
		t.Fatalf("SendToUser while a channel is stuck: %v", err)
	}
	close(stuck.release)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	stuck.waitFor(t, "delivery after release", func(evs []event) bool { return len(evs) == 1 })
}

// countingPresence counts AddPresence calls per client.
type countingPresence struct {
	hub.PresenceManager
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingPresence) AddPresence(ctx context.Context, channel, clientID string, info *hub.ClientInfo, ttl time.Duration) error {
	c.mu.Lock()
	c.calls[clientID]++
	c.mu.Unlock()
	return c.PresenceManager.AddPresence(ctx, channel, clientID, info, ttl)
}

func (c *countingPresence) adds(clientID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[clientID]
}

func TestPresenceLifecycle(t *testing.T) {
	counting := &countingPresence{calls: make(map[string]int)}
	f := newHub(t, hub.Config{Presence: counting}, func(mb *membroker.Broker) hub.Broker {
		counting.PresenceManager = mb
		return mb
	})
	watcher := f.client(t, "w", "uw")
	f.subscribe(t, watcher, "pres:room", nil)
	s := f.client(t, "s", "u1")
	s.conn = []byte(`{"name":"ann"}`)
	if err := f.h.Subscribe(f.ctx, s, "pres:room", hub.SubscribeOptions{ChanInfo: []byte(`{"role":"host"}`)}, s.onResult); err != nil {
		t.Fatal(err)
	}
	p, err := f.h.Presence(f.ctx, "pres:room")
	if err != nil {
		t.Fatal(err)
	}
	if got := p["s"]; len(p) != 2 || got == nil || got.User != "u1" || string(got.ConnInfo) != `{"name":"ann"}` || string(got.ChanInfo) != `{"role":"host"}` {
		t.Fatalf("presence %v", p)
	}
	st, err := f.h.PresenceStats(f.ctx, "pres:room")
	if err != nil || st != (hub.PresenceStats{NumClients: 2, NumUsers: 2}) {
		t.Fatalf("stats %+v %v", st, err)
	}
	// The watcher sees s join (and its own join before that).
	evs := watcher.waitFor(t, "join", func(evs []event) bool { return countKind(evs, evPush, wire.PushJoin) == 2 })
	if j := evs[len(evs)-1].delivery.Push(); j.Join.Client != "s" || string(j.Join.ChanInfo) != `{"role":"host"}` {
		t.Fatalf("join %+v", j.Join)
	}
	// While subscribed, the entry is refreshed again and again (at a
	// third of its TTL), so it never expires.
	poll(t, "presence refreshes", func() bool { return counting.adds("s") >= 4 })
	if p, _ := f.h.Presence(f.ctx, "pres:room"); p["s"] == nil {
		t.Fatal("presence of a live subscription missing")
	}
	if err := f.h.Unsubscribe(f.ctx, s, "pres:room"); err != nil {
		t.Fatal(err)
	}
	if p, _ := f.h.Presence(f.ctx, "pres:room"); p["s"] != nil || len(p) != 1 {
		t.Fatalf("presence after unsubscribe %v", p)
	}
	watcher.waitFor(t, "leave", func(evs []event) bool { return countKind(evs, evPush, wire.PushLeave) == 1 })
	// RemoveClient removes the remaining presence.
	f.h.RemoveClient(f.ctx, watcher)
	if p, _ := f.h.Presence(f.ctx, "pres:room"); len(p) != 0 {
		t.Fatalf("presence after RemoveClient %v", p)
	}
}

// TestPresenceExpiresWhenNodeStops: entries of a node that stopped
// refreshing (here: its hub shut down without removing them) expire.
func TestPresenceExpiresWhenNodeStops(t *testing.T) {
	mb := membroker.New(membroker.Options{JanitorInterval: 20 * time.Millisecond})
	defer mb.Close(context.Background())
	h, err := hub.New(hub.Config{Broker: mb, Presence: mb, Namespaces: testNamespaces, HousekeepingInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := h.Run(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSub("s", "u")
	if err := h.AddClient(s); err != nil {
		t.Fatal(err)
	}
	if err := h.Subscribe(ctx, s, "pres:x", hub.SubscribeOptions{}, s.onResult); err != nil {
		t.Fatal(err)
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if evs := s.snapshot(); evs[len(evs)-1].kind != evDisconnect || evs[len(evs)-1].code != uint32(wire.DisconnectShutdown) {
		t.Fatalf("shutdown did not disconnect the client: %v", describe(evs))
	}
	if p, _ := mb.Presence(ctx, "pres:x"); p["s"] == nil {
		t.Fatal("presence missing right after shutdown")
	}
	poll(t, "presence expiry", func() bool {
		p, _ := mb.Presence(ctx, "pres:x")
		return len(p) == 0
	})
}

func TestSendToUser(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	u1a := f.client(t, "u1a", "u1")
	u1b := f.client(t, "u1b", "u1")
	u2 := f.client(t, "u2", "u2")
	info := &hub.ClientInfo{Client: "sender", User: "u9"}
	data := []byte("{ \"text\" : \"psst\" }")
	if err := f.h.SendToUser(f.ctx, "u1", data, info); err != nil {
		t.Fatal(err)
	}
	a := u1a.waitFor(t, "message", func(evs []event) bool { return len(evs) == 1 })
	b := u1b.waitFor(t, "message", func(evs []event) bool { return len(evs) == 1 })
	m := a[0].delivery.Push()
	if m.Type != wire.PushMessage || string(m.Message.Data) != string(data) || m.Message.Info.User != "u9" {
		t.Fatalf("message push %+v", m)
	}
	if a[0].delivery != b[0].delivery {
		t.Fatal("the user's sessions got different deliveries")
	}
	if got := u2.snapshot(); len(got) != 0 {
		t.Fatalf("other user received %v", describe(got))
	}
	if err := f.h.SendToUser(f.ctx, "u1", make([]byte, hub.MaxControlSize), nil); !errors.Is(err, hub.ErrDataTooLarge) {
		t.Fatalf("oversized message: %v", err)
	}
	f.h.RemoveClient(f.ctx, u1a)
	if err := f.h.SendToUser(f.ctx, "u1", []byte(`2`), nil); err != nil {
		t.Fatal(err)
	}
	u1b.waitFor(t, "second message", func(evs []event) bool { return len(evs) == 2 })
	if got := u1a.snapshot(); len(got) != 1 {
		t.Fatalf("removed client received %v", describe(got))
	}
}

func TestDisconnectAndServerUnsubscribe(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	a1 := f.client(t, "a1", "alice")
	a2 := f.client(t, "a2", "alice")
	b := f.client(t, "b", "bob")
	for _, s := range []*testSub{a1, a2, b} {
		f.subscribe(t, s, "hist:room", nil)
	}
	if err := f.h.ServerUnsubscribe(f.ctx, "alice", "", "hist:room"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*testSub{a1, a2} {
		evs := s.waitFor(t, "unsubscribe", func(evs []event) bool { return countKind(evs, evUnsubscribe, 0) == 1 })
		if u := evs[len(evs)-1]; u.code != wire.UnsubscribeServer || u.resubscribe {
			t.Fatalf("unsubscribe push code %d resubscribe %v", u.code, u.resubscribe)
		}
	}
	f.publish(t, "hist:room", "after")
	b.waitFor(t, "publication", func(evs []event) bool { return len(evs) == 2 })
	for _, s := range []*testSub{a1, a2} {
		if n := countKind(s.snapshot(), evPush, wire.PushPublication); n != 0 {
			t.Fatalf("%s got a publication after server unsubscribe", s.id)
		}
	}
	if err := f.h.Unsubscribe(f.ctx, a1, "hist:room"); !errors.Is(err, hub.ErrNotSubscribed) {
		t.Fatalf("client unsubscribe after server unsubscribe: %v", err)
	}
	// Resubscribing works after a server unsubscribe.
	f.subscribe(t, a1, "hist:room", nil)
	// A client id alone selects one connection.
	if err := f.h.ServerUnsubscribe(f.ctx, "", "b", "hist:room"); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "unsubscribe by client id", func(evs []event) bool { return countKind(evs, evUnsubscribe, 0) == 1 })
	if n := f.h.NumSubscribers("hist:room"); n != 1 {
		t.Fatalf("subscribers left %d, want 1 (a1)", n)
	}
	if err := f.h.ServerUnsubscribe(f.ctx, "alice", "", "bad channel"); !errors.Is(err, hub.ErrInvalidChannel) {
		t.Fatalf("ServerUnsubscribe with a bad channel: %v", err)
	}

	if err := f.h.Disconnect(f.ctx, "alice", "a2", wire.DisconnectForceNoReconnect, "bye"); err != nil {
		t.Fatal(err)
	}
	evs := a2.waitFor(t, "disconnect", func(evs []event) bool { return countKind(evs, evDisconnect, 0) == 1 })
	if d := evs[len(evs)-1]; d.code != uint32(wire.DisconnectForceNoReconnect) || d.reason != "bye" {
		t.Fatalf("disconnect %d %q", d.code, d.reason)
	}
	if countKind(a1.snapshot(), evDisconnect, 0) != 0 {
		t.Fatal("client filter ignored")
	}
	if err := f.h.Disconnect(f.ctx, "bob", "", wire.DisconnectForceReconnect, ""); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "disconnect", func(evs []event) bool { return countKind(evs, evDisconnect, 0) == 1 })
	if err := f.h.Disconnect(f.ctx, "", "a1", wire.DisconnectForceReconnect, ""); err != nil {
		t.Fatal(err)
	}
	a1.waitFor(t, "disconnect by client id", func(evs []event) bool { return countKind(evs, evDisconnect, 0) == 1 })
	if err := f.h.Disconnect(f.ctx, "", "", 3000, ""); err == nil {
		t.Fatal("Disconnect without target succeeded")
	}
}

func TestConnectionLimitAndRegistry(t *testing.T) {
	f := newHub(t, hub.Config{MaxConnectionsPerUser: 2}, nil)
	f.client(t, "c1", "u")
	c2 := f.client(t, "c2", "u")
	if err := f.h.AddClient(newSub("c3", "u")); !errors.Is(err, hub.ErrConnectionLimit) {
		t.Fatalf("third connection: %v", err)
	}
	if err := f.h.AddClient(newSub("c1", "v")); !errors.Is(err, hub.ErrClientExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	f.client(t, "anon1", "")
	f.client(t, "anon2", "")
	f.h.RemoveClient(f.ctx, c2)
	f.client(t, "c3", "u")
	info := f.h.LocalInfo()
	if info.Clients != 4 || info.Users != 1 {
		t.Fatalf("local info %+v", info)
	}
}

func TestShutdown(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	s := f.client(t, "s", "")
	f.subscribe(t, s, "hist:x", nil)
	if err := f.h.Shutdown(f.ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.h.Shutdown(f.ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if evs := s.snapshot(); countKind(evs, evDisconnect, 0) != 1 {
		t.Fatalf("events %v", describe(evs))
	}
	if err := f.h.Subscribe(f.ctx, s, "hist:y", hub.SubscribeOptions{}, s.onResult); !errors.Is(err, hub.ErrShuttingDown) {
		t.Fatalf("subscribe during shutdown: %v", err)
	}
	if err := f.h.AddClient(newSub("late", "")); !errors.Is(err, hub.ErrShuttingDown) {
		t.Fatalf("AddClient during shutdown: %v", err)
	}
	if err := f.h.Run(f.ctx); !errors.Is(err, hub.ErrShuttingDown) {
		t.Fatalf("Run after Shutdown: %v", err)
	}
	// Sessions still clean up after shutdown.
	f.h.RemoveClient(f.ctx, s)
	if n := f.h.NumSubscribers("hist:x"); n != 0 {
		t.Fatalf("subscribers after RemoveClient: %d", n)
	}
}

func TestNodes(t *testing.T) {
	f := newHub(t, hub.Config{NodeID: "n1", NodeName: "alpha", Version: "1.2.3", NodeInfoInterval: 50 * time.Millisecond}, nil)
	s := f.client(t, "s", "u")
	f.subscribe(t, s, "hist:a", nil)
	// Another node's report arrives through the broker's control channel.
	other := fmt.Appendf(nil, `{"type":"node","from":"n2","node":{"id":"n2","name":"beta","clients":7,"users":3,"channels":2,"subscriptions":9,"uptime":60}}`+"\n")
	if err := f.mb.PublishControl(f.ctx, other); err != nil {
		t.Fatal(err)
	}
	nodes := f.h.Nodes()
	if len(nodes) != 2 || nodes[0].ID != "n1" || nodes[1].ID != "n2" {
		t.Fatalf("nodes %+v", nodes)
	}
	self := nodes[0]
	if self.Name != "alpha" || self.Version != "1.2.3" || self.Clients != 1 || self.Users != 1 || self.Channels != 1 || self.Subscriptions != 1 {
		t.Fatalf("self %+v", self)
	}
	if n2 := nodes[1]; n2.Clients != 7 || n2.Subscriptions != 9 || n2.UptimeSeconds != 60 {
		t.Fatalf("n2 %+v", n2)
	}
	// n2 stops reporting and drops out after three intervals.
	poll(t, "silent node dropped", func() bool { return len(f.h.Nodes()) == 1 })
	// Malformed control messages are counted and ignored.
	if err := f.mb.PublishControl(f.ctx, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if c := f.h.Counters(); c.ControlErrors != 1 {
		t.Fatalf("control errors %d", c.ControlErrors)
	}
}

func TestHistoryAndBroadcast(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	res, err := f.h.Broadcast(f.ctx, []string{"hist:a", "hist:b", "plain"}, []byte(`"x"`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Position.Offset != 1 || res[1].Position.Offset != 1 || res[2].Position.Offset != 0 || res[2].Err != nil {
		t.Fatalf("broadcast %+v", res)
	}
	if _, err := f.h.Broadcast(f.ctx, []string{"hist:a", "nope:b"}, []byte(`1`), nil); !errors.Is(err, hub.ErrUnknownNamespace) {
		t.Fatalf("broadcast with a bad channel: %v", err)
	}
	if h, _ := f.h.History(f.ctx, "hist:a", hub.HistoryOptions{Limit: -1}); len(h.Publications) != 1 {
		t.Fatalf("a failed broadcast published: %d", len(h.Publications))
	}
	for i := 2; i <= 8; i++ {
		f.publish(t, "small:h", fmt.Sprint(i))
	}
	h, err := f.h.History(f.ctx, "small:h", hub.HistoryOptions{Limit: 100, Reverse: true})
	if err != nil || len(h.Publications) != 5 || h.Publications[0].Offset != 7 || h.Position.Offset != 7 {
		t.Fatalf("history %+v %v", h, err)
	}
	if err := f.h.RemoveHistory(f.ctx, "small:h"); err != nil {
		t.Fatal(err)
	}
	if h, _ := f.h.History(f.ctx, "small:h", hub.HistoryOptions{Limit: -1}); len(h.Publications) != 0 || h.Position.Offset != 7 {
		t.Fatalf("history after remove %+v", h)
	}
}

// TestChannelRelease: the broker subscription goes when the last local
// subscriber leaves and comes back with the next one.
func TestChannelRelease(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	s := f.client(t, "s", "")
	for round := range 3 {
		f.subscribe(t, s, "hist:r", nil)
		f.publish(t, "hist:r", fmt.Sprint(round))
		s.waitFor(t, "publication", func(evs []event) bool { return pubData(evs[len(evs)-1]) == fmt.Sprint(round) })
		if err := f.h.Unsubscribe(f.ctx, s, "hist:r"); err != nil {
			t.Fatal(err)
		}
		if len(f.h.Channels()) != 0 {
			t.Fatalf("channels after unsubscribe %v", f.h.Channels())
		}
		before := f.h.Counters().PublicationsReceived
		f.publish(t, "hist:r", "unsubscribed")
		if got := f.h.Counters().PublicationsReceived; got != before {
			t.Fatal("the node still receives a channel without subscribers")
		}
	}
}

// Formats are registered once per process, as transports do.
var jsonFmt, binFmt = hub.NewFormat("test-json"), hub.NewFormat("test-bin")

func TestDeliveryEncodedOnce(t *testing.T) {
	if jsonFmt.String() != "test-json" {
		t.Fatalf("format name %q", jsonFmt)
	}
	d := hub.NewDelivery(wire.Push{Type: wire.PushPublication, Channel: "c", Publication: &wire.Publication{Offset: 1, Data: []byte("1")}})
	var calls atomic.Int64
	var wg sync.WaitGroup
	results := make([]any, 32)
	for i := range results {
		wg.Go(func() {
			f := jsonFmt
			if i%2 == 1 {
				f = binFmt
			}
			results[i] = d.Encoded(f, func(p *wire.Push) any {
				calls.Add(1)
				return fmt.Sprintf("%s:%d:%s", f, p.Publication.Offset, p.Channel)
			})
		})
	}
	wg.Wait()
	if calls.Load() != 2 {
		t.Fatalf("encoder ran %d times for 2 formats", calls.Load())
	}
	for i, r := range results {
		want := "test-json:1:c"
		if i%2 == 1 {
			want = "test-bin:1:c"
		}
		if r != want {
			t.Fatalf("result %d = %v", i, r)
		}
	}
}

// flakyBroker fails Subscribe, Publish and History while down is set.
type flakyBroker struct {
	*membroker.Broker
	down atomic.Bool
}

func (f *flakyBroker) err(op string) error {
	return fmt.Errorf("flaky %s: %w", op, hub.ErrBrokerUnavailable)
}

func (f *flakyBroker) Subscribe(ctx context.Context, channel string) error {
	if f.down.Load() {
		return f.err("subscribe")
	}
	return f.Broker.Subscribe(ctx, channel)
}

func (f *flakyBroker) Publish(ctx context.Context, channel string, pub *hub.Publication, opts hub.PublishOptions) (hub.StreamPosition, error) {
	if f.down.Load() {
		return hub.StreamPosition{}, f.err("publish")
	}
	return f.Broker.Publish(ctx, channel, pub, opts)
}

func (f *flakyBroker) History(ctx context.Context, channel string, opts hub.HistoryOptions) (hub.HistoryResult, error) {
	if f.down.Load() {
		return hub.HistoryResult{}, f.err("history")
	}
	return f.Broker.History(ctx, channel, opts)
}

func TestBrokerUnavailable(t *testing.T) {
	fb := &flakyBroker{}
	f := newHub(t, hub.Config{}, func(mb *membroker.Broker) hub.Broker { fb.Broker = mb; return fb })
	s := f.client(t, "s", "")
	fb.down.Store(true)
	for _, ch := range []string{"hist:a", "plain"} {
		err := f.h.Subscribe(f.ctx, s, ch, hub.SubscribeOptions{}, s.onResult)
		if !errors.Is(err, hub.ErrBrokerUnavailable) {
			t.Fatalf("Subscribe(%s) with broker down: %v", ch, err)
		}
		if we := hub.WireError(err); we.Code != wire.ErrBrokerUnavailable || !we.Temporary {
			t.Fatalf("wire error %+v", we)
		}
	}
	if _, err := f.h.Publish(f.ctx, "hist:a", []byte("1"), nil); !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("Publish with broker down: %v", err)
	}
	if len(s.snapshot()) != 0 || len(f.h.Channels()) != 0 {
		t.Fatalf("failed subscribes left state: %v %v", describe(s.snapshot()), f.h.Channels())
	}
	fb.down.Store(false)
	f.subscribe(t, s, "hist:a", nil)
	f.publish(t, "hist:a", "1")
	s.waitFor(t, "publication", func(evs []event) bool { return len(evs) == 2 })
	if c := f.h.Counters(); c.BrokerErrors < 3 {
		t.Fatalf("broker errors %d", c.BrokerErrors)
	}
}

func TestSubscribedAndNumSubscriptions(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	s := f.client(t, "c1", "")
	check := func(channel string, want bool, n int) {
		t.Helper()
		if got := f.h.Subscribed(s, channel); got != want {
			t.Fatalf("Subscribed(%q) = %v, want %v", channel, got, want)
		}
		if got := f.h.NumSubscriptions(s); got != n {
			t.Fatalf("NumSubscriptions = %d, want %d", got, n)
		}
	}
	check("hist:a", false, 0)
	f.subscribe(t, s, "hist:a", nil)
	f.subscribe(t, s, "hist:b", nil)
	check("hist:a", true, 2)
	if err := f.h.Unsubscribe(context.Background(), s, "hist:a"); err != nil {
		t.Fatal(err)
	}
	check("hist:a", false, 1)
	check("hist:b", true, 1)
	if stranger := newSub("c2", ""); f.h.Subscribed(stranger, "hist:b") || f.h.NumSubscriptions(stranger) != 0 {
		t.Fatal("an unregistered subscriber has subscriptions")
	}
}
