package hub_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
	"github.com/heraldhq/herald/internal/wire"
)

// countingSub's Deliver only counts, so benchmarks measure the hub.
type countingSub struct {
	id string
	n  atomic.Int64
}

func (c *countingSub) ClientID() string                               { return c.id }
func (c *countingSub) UserID() string                                 { return "" }
func (c *countingSub) ConnInfo() []byte                               { return nil }
func (c *countingSub) Deliver(*hub.Delivery)                          { c.n.Add(1) }
func (c *countingSub) ServerUnsubscribe(string, uint32, string, bool) {}
func (c *countingSub) ServerDisconnect(uint16, string)                {}

func benchHub(b *testing.B) (*hub.Hub, *membroker.Broker) {
	b.Helper()
	mb := membroker.New(membroker.Options{})
	h, err := hub.New(hub.Config{Broker: mb, Presence: mb, Namespaces: testNamespaces})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := h.Run(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = h.Shutdown(ctx)
		_ = mb.Close(ctx)
	})
	return h, mb
}

func subscribeMany(b *testing.B, h *hub.Hub, channel string, n int) []*countingSub {
	b.Helper()
	subs := make([]*countingSub, n)
	for i := range subs {
		subs[i] = &countingSub{id: fmt.Sprintf("c%d", i)}
		if err := h.AddClient(subs[i]); err != nil {
			b.Fatal(err)
		}
		if err := h.Subscribe(context.Background(), subs[i], channel, hub.SubscribeOptions{}, func(*wire.SubscribeResult) {}); err != nil {
			b.Fatal(err)
		}
	}
	return subs
}

// BenchmarkFanout10k hands one publication to 10,000 local subscribers of
// a channel. allocs/op is per publication, not per subscriber.
func BenchmarkFanout10k(b *testing.B) {
	for _, bc := range []struct {
		name, channel string
		positioned    bool
	}{{"no-history", "bench", false}, {"history", "hist:bench", true}} {
		b.Run(bc.name, func(b *testing.B) {
			h, _ := benchHub(b)
			subs := subscribeMany(b, h, bc.channel, 10_000)
			pub := &hub.Publication{Data: []byte(`{"text":"hello"}`)}
			var pos hub.StreamPosition
			if bc.positioned {
				res, err := h.History(context.Background(), bc.channel, hub.HistoryOptions{})
				if err != nil {
					b.Fatal(err)
				}
				pos = res.Position
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if bc.positioned {
					pos.Offset++
				}
				h.HandlePublication(bc.channel, pub, pos)
			}
			b.StopTimer()
			if got := subs[len(subs)-1].n.Load(); got != int64(b.N) {
				b.Fatalf("last subscriber got %d of %d", got, b.N)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(subs)), "ns/delivery")
		})
	}
}

// BenchmarkPublishMemBroker measures Hub.Publish through the in-memory
// broker: offset assignment, history append and local fan-out.
func BenchmarkPublishMemBroker(b *testing.B) {
	for _, bc := range []struct {
		channel string
		subs    int
	}{{"bench", 0}, {"hist:bench", 0}, {"hist:bench", 100}} {
		b.Run(fmt.Sprintf("%s/subs=%d", bc.channel, bc.subs), func(b *testing.B) {
			h, _ := benchHub(b)
			subscribeMany(b, h, bc.channel, bc.subs)
			data := []byte(`{"text":"hello"}`)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.Publish(ctx, bc.channel, data, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeliveryEncoded is the cached path every recipient takes.
func BenchmarkDeliveryEncoded(b *testing.B) {
	d := hub.NewDelivery(wire.Push{Type: wire.PushPublication, Channel: "c", Publication: &wire.Publication{Data: []byte("1")}})
	enc := func(*wire.Push) any { return []byte("encoded") }
	d.Encoded(jsonFmt, enc)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d.Encoded(jsonFmt, enc) == nil {
				b.Fatal("nil encoding")
			}
		}
	})
}

// BenchmarkPublishManyChannels publishes round-robin to 10,000 channels
// with one local subscriber each and no history, the shape of per-user
// channels fed by the server API: the channel's lookups by name, in
// maps too large for the CPU's caches, are a good part of the cost.
func BenchmarkPublishManyChannels(b *testing.B) {
	const channels = 10_000
	h, _ := benchHub(b)
	names := make([]string, channels)
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
		sub := &countingSub{id: names[i]}
		if err := h.AddClient(sub); err != nil {
			b.Fatal(err)
		}
		if err := h.Subscribe(context.Background(), sub, names[i], hub.SubscribeOptions{}, func(*wire.SubscribeResult) {}); err != nil {
			b.Fatal(err)
		}
	}
	data := []byte(`{"text":"hello"}`)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i = (i + 4099) % channels // strides through the maps
		if _, err := h.Publish(ctx, names[i], data, nil); err != nil {
			b.Fatal(err)
		}
	}
}
