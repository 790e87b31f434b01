package session

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// discardTransport accepts everything and keeps nothing.
type discardTransport struct{ s *Session }

func (*discardTransport) Send([]byte) error                { return nil }
func (*discardTransport) SendDelivery(*hub.Delivery) error { return nil }
func (*discardTransport) Ping() error                      { return nil }
func (t *discardTransport) Close(uint16, string)           { t.s.HandleClose(nil) }
func (*discardTransport) LastRead() time.Time              { return time.Time{} }
func (*discardTransport) Info() TransportInfo              { return TransportInfo{Name: "discard"} }

func discardSession(b *testing.B, e *env) *Session {
	t := &discardTransport{}
	s, err := e.m.NewSession(t, wire.JSON)
	if err != nil {
		b.Fatal(err)
	}
	t.s = s
	return s
}

// BenchmarkDeliver measures the session's share of fanning a publication
// out: one Deliver call per subscriber.
func BenchmarkDeliver(b *testing.B) {
	e := newEnv(b, nil)
	s := discardSession(b, e)
	d := hub.NewDelivery(wire.Push{Type: wire.PushPublication, Channel: "c",
		Publication: &wire.Publication{Offset: 1, Data: []byte(`{"text":"hello"}`)}})
	b.ReportAllocs()
	for b.Loop() {
		s.Deliver(d)
	}
}

// BenchmarkPingCommand measures one command round through the session:
// decode, dispatch, encode the reply.
func BenchmarkPingCommand(b *testing.B) {
	e := newEnv(b, nil)
	s := discardSession(b, e)
	s.HandleMessage([]byte(`{"id":1,"method":"connect"}`))
	msg := []byte(`{"id":2,"method":"ping"}`)
	b.ReportAllocs()
	for b.Loop() {
		s.HandleMessage(msg)
	}
}

// BenchmarkWheel measures scheduling and sweeping 15k sessions through
// one ping interval of ticks.
func BenchmarkWheel(b *testing.B) {
	const n = 15000
	sessions := make([]*Session, n)
	for i := range sessions {
		sessions[i] = &Session{}
	}
	start := time.Unix(0, 0)
	b.ReportAllocs()
	for b.Loop() {
		w := newWheel(time.Second, 35*time.Second, start)
		for i, s := range sessions {
			w.schedule(s, start.Add(time.Duration(i%25)*time.Second))
		}
		var due []*Session
		for sec := 1; sec <= 26; sec++ {
			due = w.due(start.Add(time.Duration(sec)*time.Second), due[:0])
		}
	}
}

// BenchmarkPublishCommand measures a client's publish through the session
// with 1 KiB of data in each codec: decode, data validation, the hub's
// publish (in-memory broker, no subscribers) and the reply.
func BenchmarkPublishCommand(b *testing.B) {
	data := []byte(`{"text":"` + strings.Repeat("x", 1000) + `","n":[1,2.5,-3e2,true,null]}`)
	for _, codec := range []wire.Codec{wire.JSON, wire.Binary} {
		b.Run(codec.Name(), func(b *testing.B) {
			e := newEnv(b, nil)
			t := &discardTransport{}
			s, err := e.m.NewSession(t, codec)
			if err != nil {
				b.Fatal(err)
			}
			t.s = s
			s.HandleMessage(codec.AppendCommand(nil, &wire.Command{ID: 1, Method: wire.MethodConnect, Connect: &wire.ConnectParams{}}))
			msg := codec.AppendCommand(nil, &wire.Command{ID: 2, Method: wire.MethodPublish,
				Publish: &wire.PublishParams{Channel: "chat:bench", Data: data}})
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				s.HandleMessage(msg)
			}
		})
	}
}

// encodingTransport encodes each delivery once per Delivery, as a real
// transport does, and drops it.
type encodingTransport struct{ discardTransport }

// benchFrame is what encodingTransport shares between recipients.
type benchFrame struct{ b []byte }

func (*encodingTransport) SendDelivery(d *hub.Delivery) error {
	_ = d.Encoded(testFormat, func(p *wire.Push) any {
		return &benchFrame{b: wire.JSON.AppendPush(make([]byte, 0, 256), p)}
	})
	return nil
}

// BenchmarkPublishOneSubscriber measures what a pipelined client publish
// costs end to end when publications spread over many channels with one
// subscriber each (the many-channels workload): decode, checks, the hub's
// publish, the fan-out to the one subscriber with its encoding, and the
// reply. The namespace keeps neither history nor presence.
func BenchmarkPublishOneSubscriber(b *testing.B) {
	const channels = 1000
	e := newEnv(b, func(c *Config) { c.Metrics = NopMetrics{} })
	for i := range channels {
		t := &encodingTransport{}
		s, err := e.m.NewSession(t, wire.JSON)
		if err != nil {
			b.Fatal(err)
		}
		t.s = s
		s.HandleMessage([]byte(`{"id":1,"method":"connect"}`))
		s.HandleMessage([]byte(`{"id":2,"method":"subscribe","params":{"channel":"bench:c` + strconv.Itoa(i) + `"}}`))
	}
	if got := len(e.hub.Channels()); got != channels {
		b.Fatalf("%d channels with subscribers, want %d", got, channels)
	}
	p := discardSession(b, e)
	p.HandleMessage([]byte(`{"id":1,"method":"connect"}`))
	msgs := make([][]byte, channels)
	for i := range msgs {
		msgs[i] = []byte(`{"id":` + strconv.Itoa(i+2) + `,"method":"publish","params":{"channel":"bench:c` + strconv.Itoa(i) +
			`","data":{"bch":1,"bseq":1234,"bts":1763750000000000000,"pad":"` + strings.Repeat("x", 40) + `"}}}`)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.HandleMessage(msgs[i])
		if i++; i == channels {
			i = 0
		}
	}
	b.StopTimer()
	if n := e.hub.Counters().Deliveries; n < uint64(b.N) {
		b.Fatalf("%d deliveries for %d publications", n, b.N)
	}
}
