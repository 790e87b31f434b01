package hub_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
	"github.com/heraldhq/herald/internal/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitTimeout = 10 * time.Second

type eventKind int

const (
	evResult eventKind = iota
	evPush
	evUnsubscribe
	evDisconnect
)

type event struct {
	kind        eventKind
	result      *wire.SubscribeResult
	delivery    *hub.Delivery
	channel     string
	code        uint32
	reason      string
	resubscribe bool
}

// testSub is a Subscriber that records everything it is given.
type testSub struct {
	id, user string
	conn     []byte

	mu      sync.Mutex
	events  []event
	changed chan struct{}
}

func newSub(id, user string) *testSub {
	return &testSub{id: id, user: user, changed: make(chan struct{})}
}

func (s *testSub) ClientID() string { return s.id }
func (s *testSub) UserID() string   { return s.user }
func (s *testSub) ConnInfo() []byte { return s.conn }

func (s *testSub) record(e event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *testSub) Deliver(d *hub.Delivery) { s.record(event{kind: evPush, delivery: d}) }

func (s *testSub) ServerUnsubscribe(channel string, code uint32, reason string, resubscribe bool) {
	s.record(event{kind: evUnsubscribe, channel: channel, code: code, reason: reason, resubscribe: resubscribe})
}

func (s *testSub) ServerDisconnect(code uint16, reason string) {
	s.record(event{kind: evDisconnect, code: uint32(code), reason: reason})
}

func (s *testSub) onResult(res *wire.SubscribeResult) { s.record(event{kind: evResult, result: res}) }

func (s *testSub) snapshot() []event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event(nil), s.events...)
}

// waitFor waits until cond holds for the recorded events.
func (s *testSub) waitFor(t *testing.T, what string, cond func([]event) bool) []event {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		evs := append([]event(nil), s.events...)
		ch := s.changed
		s.mu.Unlock()
		if cond(evs) {
			return evs
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%s: timed out waiting for %s; events: %v", s.id, what, describe(evs))
		}
	}
}

func describe(evs []event) []string {
	var out []string
	for _, e := range evs {
		switch e.kind {
		case evResult:
			out = append(out, "result")
		case evPush:
			p := e.delivery.Push()
			s := p.Type.String() + ":" + p.Channel
			if p.Publication != nil {
				s += ":" + string(p.Publication.Data)
			}
			out = append(out, s)
		case evUnsubscribe:
			out = append(out, "unsubscribe:"+e.channel)
		case evDisconnect:
			out = append(out, "disconnect")
		}
	}
	return out
}

func countKind(evs []event, kind eventKind, pushType wire.PushType) int {
	n := 0
	for _, e := range evs {
		if e.kind == kind && (kind != evPush || e.delivery.Push().Type == pushType) {
			n++
		}
	}
	return n
}

// poll calls cond until it returns true or the deadline passes.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

var testNamespaces = hub.NamespaceMap{
	"": {AllowAnonymous: true},
	"hist": {
		HistorySize: 1000, HistoryMetaTTL: time.Hour, AllowAnonymous: true, AllowPublish: true,
	},
	"small": {HistorySize: 5, HistoryMetaTTL: time.Hour, AllowAnonymous: true},
	"pres": {
		Presence: true, JoinLeave: true, AllowAnonymous: true, PresenceTTL: 400 * time.Millisecond,
	},
	"personal":  {UserLimited: true},
	"both":      {HistorySize: 10, Presence: true, JoinLeave: true, AllowAnonymous: true},
	"secret":    {RequireGrant: true},
	"users":     {},
	"shortmeta": {HistorySize: 100, HistoryMetaTTL: 200 * time.Millisecond, AllowAnonymous: true},
}

type fixture struct {
	h   *hub.Hub
	mb  *membroker.Broker
	ctx context.Context
}

// newHub starts a hub over an in-memory broker, wrapped by wrap when it is
// not nil, and shuts everything down when the test ends.
func newHub(t *testing.T, cfg hub.Config, wrap func(*membroker.Broker) hub.Broker) *fixture {
	t.Helper()
	mb := membroker.New(membroker.Options{JanitorInterval: 50 * time.Millisecond})
	t.Cleanup(func() { _ = mb.Close(context.Background()) })
	cfg.Broker = mb
	if wrap != nil {
		b := wrap(mb)
		cfg.Broker = b
		// Registered before the hub's shutdown, so it runs after it.
		t.Cleanup(func() { _ = b.Close(context.Background()) })
	}
	if cfg.Presence == nil {
		cfg.Presence = mb
	}
	if cfg.Namespaces == nil {
		cfg.Namespaces = testNamespaces
	}
	if cfg.HousekeepingInterval == 0 {
		cfg.HousekeepingInterval = 20 * time.Millisecond
	}
	h, err := hub.New(cfg)
	if err != nil {
		t.Fatalf("hub.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if err := h.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &fixture{h: h, mb: mb, ctx: ctx}
}

func (f *fixture) client(t *testing.T, id, user string) *testSub {
	t.Helper()
	s := newSub(id, user)
	if err := f.h.AddClient(s); err != nil {
		t.Fatalf("AddClient(%s): %v", id, err)
	}
	return s
}

func (f *fixture) subscribe(t *testing.T, s *testSub, channel string, since *hub.StreamPosition) *wire.SubscribeResult {
	t.Helper()
	var res *wire.SubscribeResult
	err := f.h.Subscribe(f.ctx, s, channel, hub.SubscribeOptions{Since: since}, func(r *wire.SubscribeResult) {
		res = r
		s.onResult(r)
	})
	if err != nil {
		t.Fatalf("Subscribe(%s, %s): %v", s.id, channel, err)
	}
	if res == nil {
		t.Fatalf("Subscribe(%s, %s) returned without a result", s.id, channel)
	}
	return res
}

func (f *fixture) publish(t *testing.T, channel, data string) hub.StreamPosition {
	t.Helper()
	pos, err := f.h.Publish(f.ctx, channel, []byte(data), nil)
	if err != nil {
		t.Fatalf("Publish(%s): %v", channel, err)
	}
	return pos
}
