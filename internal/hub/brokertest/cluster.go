package brokertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

// node is one running broker of a two-node subtest.
type node struct {
	b   hub.Broker
	pm  hub.PresenceManager
	rec *Recorder
}

// RunTwoNodeSuite runs the behaviour that needs two herald nodes sharing
// one backend: newNode is called twice per subtest and must return brokers
// that are not yet running and that share their servers and key prefix,
// as two nodes of one deployment do. The suite runs both with their own
// Recorders and closes them when the subtest ends. Only brokers backed by
// a shared service can pass it; an in-process broker has no second node.
func RunTwoNodeSuite(t *testing.T, newNode func(t *testing.T) (hub.Broker, hub.PresenceManager)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, a, b node, prefix string)
	}{
		{"ConcurrentPublishersSameOrderOnBothNodes", testTwoNodeOrdering},
		{"StateSharedAcrossNodes", testTwoNodeSharedState},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			t.Cleanup(cancel)
			a, b := startNode(t, newNode), startNode(t, newNode)
			tc.fn(t, ctx, a, b, randomPrefix())
		})
	}
}

func startNode(t *testing.T, newNode func(t *testing.T) (hub.Broker, hub.PresenceManager)) node {
	t.Helper()
	b, pm := newNode(t)
	t.Cleanup(func() { closeBroker(t, b, pm) })
	return node{b: b, pm: pm, rec: Start(t, b)}
}

func closeBroker(t *testing.T, b hub.Broker, pm hub.PresenceManager) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Errorf("Broker.Close: %v", err)
	}
	if err := pm.Close(ctx); err != nil {
		t.Errorf("PresenceManager.Close: %v", err)
	}
}

// testTwoNodeOrdering publishes concurrently from both nodes: both see
// every publication once, in offset order, in the same sequence, and the
// history read through either node holds them all.
func testTwoNodeOrdering(t *testing.T, ctx context.Context, a, b node, prefix string) {
	ch := "bt" + prefix + ":two nodes: *.> not a subject"
	for _, n := range []node{a, b} {
		if err := n.b.Subscribe(ctx, ch); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	}
	const publishers, each = 4, 50 // two per node
	var wg sync.WaitGroup
	errs := make(chan error, publishers*each)
	for p := range publishers {
		n := []node{a, b}[p%2]
		wg.Go(func() {
			for j := range each {
				if _, err := n.b.Publish(ctx, ch, &hub.Publication{Data: fmt.Appendf(nil, `[%d,%d]`, p, j)}, hist(1000)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	var first []string
	for name, n := range map[string]node{"A": a, "B": b} {
		n.rec.WaitFor(t, "deliveries on "+name, func() bool { return len(n.rec.Publications(ch)) >= publishers*each })
		got := n.rec.Publications(ch)
		if len(got) != publishers*each {
			t.Fatalf("node %s got %d publications, want %d", name, len(got), publishers*each)
		}
		last := make(map[int]int)
		for i, rp := range got {
			if rp.Pos.Offset != uint64(i+1) || rp.Pos.Epoch != got[0].Pos.Epoch {
				t.Fatalf("node %s delivery %d at %+v", name, i, rp.Pos)
			}
			var p, j int
			if _, err := fmt.Sscanf(string(rp.Pub.Data), "[%d,%d]", &p, &j); err != nil {
				t.Fatalf("node %s: bad data %q", name, rp.Pub.Data)
			}
			if prev, ok := last[p]; ok && j != prev+1 {
				t.Fatalf("node %s: publisher %d's %d delivered after %d", name, p, j, prev)
			}
			last[p] = j
		}
		datas := n.rec.Data(ch)
		if first == nil {
			first = datas
		} else if !slices.Equal(first, datas) {
			t.Fatalf("nodes saw different orders")
		}
	}
	for name, n := range map[string]node{"A": a, "B": b} {
		res, err := n.b.History(ctx, ch, hub.HistoryOptions{Limit: -1})
		if err != nil {
			t.Fatalf("history through %s: %v", name, err)
		}
		if !slices.Equal(offsets(res.Publications), seq(1, publishers*each)) {
			t.Fatalf("history through %s: offsets %v", name, offsets(res.Publications))
		}
	}
	if err := a.b.PublishControl(ctx, []byte("hello")); err != nil {
		t.Fatalf("PublishControl: %v", err)
	}
	b.rec.WaitFor(t, "control on B", func() bool { return len(b.rec.Controls()) == 1 })
	if got := b.rec.Controls(); string(got[0]) != "hello" {
		t.Fatalf("control on B: %q", got[0])
	}
}

// testTwoNodeSharedState checks that history, presence and presence
// events written through one node are seen through the other.
func testTwoNodeSharedState(t *testing.T, ctx context.Context, a, b node, prefix string) {
	ch := "bt" + prefix + ":shared"
	if err := b.b.Subscribe(ctx, ch); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	pos, err := a.b.Publish(ctx, ch, &hub.Publication{Data: []byte(`"1"`)}, hist(10))
	if err != nil {
		t.Fatalf("Publish through A: %v", err)
	}
	res, err := b.b.History(ctx, ch, hub.HistoryOptions{Limit: -1})
	if err != nil || res.Position != pos || len(res.Publications) != 1 || string(res.Publications[0].Data) != `"1"` {
		t.Fatalf("history through B: %+v %v, want the publication at %+v", res, err, pos)
	}
	if err := a.b.RemoveHistory(ctx, ch); err != nil {
		t.Fatalf("RemoveHistory through A: %v", err)
	}
	if res, err := b.b.History(ctx, ch, hub.HistoryOptions{Limit: -1}); err != nil || len(res.Publications) != 0 || res.Position != pos {
		t.Fatalf("history through B after RemoveHistory: %+v %v", res, err)
	}

	info := &hub.ClientInfo{Client: "c1", User: "u1"}
	if err := a.b.PublishJoin(ctx, ch, info); err != nil {
		t.Fatalf("PublishJoin through A: %v", err)
	}
	b.rec.WaitFor(t, "join on B", func() bool { return len(b.rec.Joins(ch)) == 1 })
	if got := b.rec.Joins(ch)[0]; got.Client != "c1" || got.User != "u1" {
		t.Fatalf("join on B: %+v", got)
	}
	if err := a.pm.AddPresence(ctx, ch, "c1", info, time.Minute); err != nil {
		t.Fatalf("AddPresence through A: %v", err)
	}
	p, err := b.pm.Presence(ctx, ch)
	if err != nil || len(p) != 1 || p["c1"] == nil || p["c1"].User != "u1" {
		t.Fatalf("presence through B: %v %v", p, err)
	}
	if err := b.pm.RemovePresence(ctx, ch, "c1"); err != nil {
		t.Fatalf("RemovePresence through B: %v", err)
	}
	if st, err := a.pm.PresenceStats(ctx, ch); err != nil || st != (hub.PresenceStats{}) {
		t.Fatalf("presence stats through A after removal: %+v %v", st, err)
	}
}

// Outage is a broker connected to a private backend server that
// RunOutageSuite stops and restarts.
type Outage struct {
	// Broker and Presence are the broker under test, not yet running; the
	// suite runs and closes them.
	Broker   hub.Broker
	Presence hub.PresenceManager
	// OpTimeout is the broker's operation timeout. During the outage every
	// call must fail with hub.ErrBrokerUnavailable before it elapses.
	OpTimeout time.Duration
	// Stop stops the backend server; Start starts it again on the same
	// address and returns once it accepts connections.
	Stop, Start func()
	// Connected reports whether the broker still believes it is connected.
	// A client that notices a closed socket asynchronously may fail calls
	// differently until then; they must still fail, and quickly. nil means
	// the broker finds out on its next call.
	Connected func() bool
	// Resumed checks the first stream position after the restart against
	// the last one before the outage; whether the stream continues or a new
	// epoch starts depends on what the backend keeps across a restart (see
	// StreamContinues and StreamRestarts).
	Resumed func(t *testing.T, before, after hub.StreamPosition)
}

// StreamContinues is the Outage.Resumed check for a backend that keeps its
// data across a restart: the next offset in the same epoch.
func StreamContinues(t *testing.T, before, after hub.StreamPosition) {
	t.Helper()
	if after != (hub.StreamPosition{Offset: before.Offset + 1, Epoch: before.Epoch}) {
		t.Fatalf("position after restart %+v, before %+v: want the next offset in the same epoch", after, before)
	}
}

// StreamRestarts is the Outage.Resumed check for a backend that loses its
// data in a restart: offset 1 in a new epoch.
func StreamRestarts(t *testing.T, before, after hub.StreamPosition) {
	t.Helper()
	if after.Offset != 1 || after.Epoch == before.Epoch || after.Epoch == "" {
		t.Fatalf("position after restart %+v, before %+v: want offset 1 in a new epoch", after, before)
	}
}

// RunOutageSuite stops the backend of the broker made by newOutage during
// traffic: every call fails fast with hub.ErrBrokerUnavailable; after the
// restart the broker resubscribes by itself, reports exactly one
// reconnect, and delivers again.
func RunOutageSuite(t *testing.T, newOutage func(t *testing.T) Outage) {
	t.Run("FailFastAndRecover", func(t *testing.T) {
		o := newOutage(t)
		t.Cleanup(func() { closeBroker(t, o.Broker, o.Presence) })
		b := o.Broker
		rec := Start(t, b)
		ctx := context.Background()
		const ch = "outage"
		if err := b.Subscribe(ctx, ch); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		var before hub.StreamPosition
		for i := range 3 {
			var err error
			if before, err = b.Publish(ctx, ch, &hub.Publication{Data: fmt.Appendf(nil, "%d", i)}, hist(10)); err != nil {
				t.Fatalf("Publish: %v", err)
			}
		}
		rec.WaitFor(t, "3 deliveries", func() bool { return len(rec.Publications(ch)) == 3 })

		o.Stop()
		deadline := time.Now().Add(waitTimeout)
		for o.Connected != nil && o.Connected() && time.Now().Before(deadline) {
			start := time.Now()
			if _, err := b.Publish(ctx, ch, &hub.Publication{Data: []byte("lost")}, hist(10)); err == nil {
				t.Fatal("Publish succeeded with the server stopped")
			}
			if elapsed := time.Since(start); elapsed > o.OpTimeout+time.Second {
				t.Fatalf("Publish took %v", elapsed)
			}
		}
		failsFast := func(op string, call func() error) {
			t.Helper()
			start := time.Now()
			err := call()
			if elapsed := time.Since(start); !errors.Is(err, hub.ErrBrokerUnavailable) || elapsed >= o.OpTimeout {
				t.Fatalf("%s during outage: %v after %v, want ErrBrokerUnavailable before %v", op, err, elapsed, o.OpTimeout)
			}
		}
		failsFast("Publish", func() error {
			_, err := b.Publish(ctx, ch, &hub.Publication{Data: []byte("lost")}, hist(10))
			return err
		})
		failsFast("History", func() error {
			_, err := b.History(ctx, ch, hub.HistoryOptions{})
			return err
		})
		failsFast("PublishControl", func() error { return b.PublishControl(ctx, []byte("x")) })
		failsFast("Subscribe", func() error { return b.Subscribe(ctx, "outage-new") })
		failsFast("AddPresence", func() error { return o.Presence.AddPresence(ctx, ch, "c", nil, time.Minute) })

		o.Start()
		rec.WaitFor(t, "HandleReconnect", func() bool { return rec.Reconnects() >= 1 })
		// Resubscribed by itself: a new publication is delivered without
		// a new Subscribe call.
		after, err := b.Publish(ctx, ch, &hub.Publication{Data: []byte(`"after"`)}, hist(10))
		if err != nil {
			t.Fatalf("Publish after restart: %v", err)
		}
		o.Resumed(t, before, after)
		rec.WaitFor(t, "delivery after restart", func() bool { return len(rec.Publications(ch)) == 4 })
		if got := rec.Publications(ch)[3].Pos; got != after {
			t.Fatalf("delivered %+v, want %+v", got, after)
		}
		if err := b.PublishControl(ctx, []byte("x")); err != nil {
			t.Fatalf("PublishControl after restart: %v", err)
		}
		rec.WaitFor(t, "control after restart", func() bool { return len(rec.Controls()) == 1 })
		if n := rec.Reconnects(); n != 1 {
			t.Fatalf("%d reconnects reported for one outage, want 1", n)
		}
	})
}
