package wstransport

import (
	"context"
	"sync"
	"testing"

	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/session"
)

// BenchmarkFanout publishes one message per op to a channel with 50
// WebSocket subscribers on this node and waits until every subscriber has
// read it: the end-to-end cost of one publication's fan-out, encoded once.
// The metrics variant adds the traffic counters and the sampled
// publish-to-write latency.
func BenchmarkFanout(b *testing.B) {
	b.Run("metrics=off", func(b *testing.B) { benchmarkFanout(b, nil) })
	b.Run("metrics=on", func(b *testing.B) { benchmarkFanout(b, metrics.New().Transport(TransportName)) })
}

func benchmarkFanout(b *testing.B, m *metrics.Transport) {
	const subscribers = 50
	s := newServer(b, func(_ *session.Config, o *Options) { o.Metrics = m })
	clients := make([]*wsClient, subscribers)
	for i := range clients {
		clients[i] = s.connect("")
		if r := clients[i].call("subscribe", map[string]any{"channel": "bench"}); r.Error != nil {
			b.Fatal(r.Error)
		}
	}
	received := make(chan struct{}, subscribers*64)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := c.c.Read(context.Background()); err != nil {
					return
				}
				received <- struct{}{}
			}
		}()
	}
	data := []byte(`{"text":"hello, subscribers"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.hub.Publish(context.Background(), "bench", data, nil); err != nil {
			b.Fatal(err)
		}
		for range subscribers {
			<-received
		}
	}
	b.StopTimer()
	for _, c := range clients {
		_ = c.c.CloseNow()
	}
	wg.Wait()
}
