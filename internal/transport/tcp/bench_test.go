package tcptransport

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// BenchmarkTCPFanout publishes one publication to 1,000 TCP subscribers
// on loopback and waits until every one has read it.
func BenchmarkTCPFanout(b *testing.B) {
	const subscribers = 1000
	s := newServer(b, nil, nil)
	got := make(chan struct{}, subscribers)
	var wg sync.WaitGroup
	conns := make([]net.Conn, 0, subscribers)
	for range subscribers {
		c := s.connect(wire.EncodingBinary)
		c.subscribe("fanout")
		_ = c.nc.SetReadDeadline(time.Time{})
		conns = append(conns, c.nc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				f, err := c.fr.ReadFrame()
				if err != nil {
					if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
						b.Error(err)
					}
					return
				}
				if len(f) > 1 && f[0] == 3 && f[1] == byte(wire.PushPublication) {
					got <- struct{}{}
				}
			}
		}()
	}
	data := []byte(`{"text":"a publication of a typical size for a chat message"}`)
	for b.Loop() {
		if _, err := s.hub.Publish(context.Background(), "fanout", data, nil); err != nil {
			b.Fatal(err)
		}
		for range subscribers {
			<-got
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subscribers), "ns/delivery")
	for _, nc := range conns {
		nc.Close()
	}
	wg.Wait()
}

// discard is a writer that drops everything.
type discard struct{}

func (discard) Write([]byte) error                  { return nil }
func (discard) WriteBuffers(...[]byte) error        { return nil }
func (discard) Queued() (int, int)                  { return 0, 0 }
func (discard) Totals() (uint64, uint64)            { return 0, 0 }
func (discard) CloseAfterFlush(time.Duration) error { return nil }
func (discard) Close() error                        { return nil }

// BenchmarkFrameDelivery measures the transport's share of one
// publication to 100 TCP subscribers: one frame encoding, then a queue
// operation per subscriber.
func BenchmarkFrameDelivery(b *testing.B) {
	const subscribers = 100
	srv := &Server{opts: Options{QueueBytes: DefaultQueueBytes, QueueMessages: DefaultQueueMessages, MaxFrameSize: wire.DefaultMaxFrameSize}}
	srv.codecs[wire.EncodingJSON] = wire.JSON
	srv.codecs[wire.EncodingBinary] = wire.Binary
	conns := make([]*conn, subscribers)
	for i := range conns {
		conns[i] = newConn(srv, srv.codecs[wire.Encoding(i%2)], "bench")
		conns[i].out = discard{}
	}
	push := wire.Push{Type: wire.PushPublication, Channel: "chat:room1", Publication: &wire.Publication{
		Offset: 42, Data: []byte(`{"text":"hi there"}`), Time: 1763750000000, Info: &wire.ClientInfo{Client: "c8f3a1", User: "42"}}}
	b.ReportAllocs()
	for b.Loop() {
		d := hub.NewDelivery(push)
		for _, c := range conns {
			if err := c.SendDelivery(d); err != nil {
				b.Fatal(err)
			}
		}
	}
}
