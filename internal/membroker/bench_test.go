package membroker

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/internal/hub"
)

type nopHandler struct{}

func (nopHandler) HandlePublication(string, *hub.Publication, hub.StreamPosition) {}
func (nopHandler) HandleJoin(string, *hub.ClientInfo)                             {}
func (nopHandler) HandleLeave(string, *hub.ClientInfo)                            {}
func (nopHandler) HandleControl([]byte)                                           {}
func (nopHandler) HandleReconnect()                                               {}

// BenchmarkPublish is the broker's share of a publication: offset, history
// append with trimming, delivery to a subscribed handler.
func BenchmarkPublish(b *testing.B) {
	br := New(Options{})
	ctx := context.Background()
	b.Cleanup(func() { _ = br.Close(ctx) })
	if err := br.Run(ctx, nopHandler{}); err != nil {
		b.Fatal(err)
	}
	_ = br.Subscribe(ctx, "c")
	pub := &hub.Publication{Data: []byte(`{"text":"hello"}`)}
	opts := hub.PublishOptions{HistorySize: 100}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Publish(ctx, "c", pub, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHistorySince reads the last 10 of 100 retained publications,
// the typical recovery read.
func BenchmarkHistorySince(b *testing.B) {
	br := New(Options{})
	ctx := context.Background()
	b.Cleanup(func() { _ = br.Close(ctx) })
	var pos hub.StreamPosition
	for range 100 {
		pos, _ = br.Publish(ctx, "c", &hub.Publication{Data: []byte("1")}, hub.PublishOptions{HistorySize: 100})
	}
	since := &hub.StreamPosition{Offset: pos.Offset - 10, Epoch: pos.Epoch}
	b.ReportAllocs()
	for b.Loop() {
		res, err := br.History(ctx, "c", hub.HistoryOptions{Since: since, Limit: -1})
		if err != nil || len(res.Publications) != 10 {
			b.Fatalf("history: %d %v", len(res.Publications), err)
		}
	}
}

// BenchmarkPublishManyChannelsParallel publishes from every core to
// 10,000 subscribed channels kept in no history, the shape of client
// publishes spread over many one-subscriber channels: the cost is the
// channel lookup and its locks.
func BenchmarkPublishManyChannelsParallel(b *testing.B) {
	const channels = 10000
	br := New(Options{})
	ctx := context.Background()
	b.Cleanup(func() { _ = br.Close(ctx) })
	if err := br.Run(ctx, nopHandler{}); err != nil {
		b.Fatal(err)
	}
	names := make([]string, channels)
	for i := range names {
		names[i] = "bench:c" + strconv.Itoa(i)
		_ = br.Subscribe(ctx, names[i])
	}
	pub := &hub.Publication{Data: []byte(`{"text":"hello"}`)}
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine strides through the channels from its own start.
		i := int(next.Add(1) * 7919)
		for pb.Next() {
			i = (i + 4099) % channels
			if _, err := br.Publish(ctx, names[i], pub, hub.PublishOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
