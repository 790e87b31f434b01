package membroker

import (
	"context"
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
