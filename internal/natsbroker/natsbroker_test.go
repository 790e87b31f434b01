package natsbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/hub/brokertest"
	"github.com/heraldhq/herald/internal/testservers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// uniquePrefix isolates a test's stream, bucket and subjects on a shared
// server. Test streams use memory storage so they cost no disk.
// suiteOpTimeout is generous: the suites run on loaded two-core CI
// machines with the race detector, and timing is not what they check.
const suiteOpTimeout = 5 * time.Second

func uniquePrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "ht" + hex.EncodeToString(b[:])
}

// dropStorage deletes the stream and bucket of prefix from a shared server
// when the test ends.
func dropStorage(t testing.TB, url, prefix string) {
	t.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, prefix+"_history"); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("cleanup: delete stream: %v", err)
		}
		if err := js.DeleteKeyValue(ctx, prefix+"_presence"); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Errorf("cleanup: delete bucket: %v", err)
		}
	})
}

func newTestBroker(t *testing.T, opts Options) *Broker {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = uniquePrefix()
	}
	if opts.OpTimeout == 0 {
		opts.OpTimeout = suiteOpTimeout
	}
	b, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func TestSuite(t *testing.T) {
	url := testservers.NATSURL(t)
	prefix := uniquePrefix()
	dropStorage(t, url, prefix)
	brokertest.RunSuite(t, func(t *testing.T) (hub.Broker, hub.PresenceManager) {
		b, err := New(Options{URL: url, Prefix: prefix, Storage: MemoryStorage, OpTimeout: suiteOpTimeout})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b, b
	})
}

type recorder struct {
	mu         sync.Mutex
	changed    chan struct{}
	pubs       map[string][]hub.StreamPosition
	datas      map[string][]string
	controls   int
	reconnects int
}

func newRecorder() *recorder {
	return &recorder{changed: make(chan struct{}), pubs: map[string][]hub.StreamPosition{}, datas: map[string][]string{}}
}

func (r *recorder) notify() { close(r.changed); r.changed = make(chan struct{}) }

func (r *recorder) HandlePublication(ch string, pub *hub.Publication, pos hub.StreamPosition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pubs[ch] = append(r.pubs[ch], pos)
	r.datas[ch] = append(r.datas[ch], string(pub.Data))
	r.notify()
}
func (r *recorder) HandleJoin(string, *hub.ClientInfo)  {}
func (r *recorder) HandleLeave(string, *hub.ClientInfo) {}
func (r *recorder) HandleControl([]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.controls++
	r.notify()
}
func (r *recorder) HandleReconnect() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reconnects++
	r.notify()
}

func (r *recorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func run(t *testing.T, b *Broker) *recorder {
	t.Helper()
	rec := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Run(ctx, rec); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rec
}

func hist(n int) hub.PublishOptions {
	return hub.PublishOptions{HistorySize: n, HistoryMetaTTL: time.Hour}
}

// TestTwoNodesOrdering runs two brokers (two nodes) on one server with
// concurrent publishers on both: both nodes see the same sequence, in
// offset order.
func TestTwoNodesOrdering(t *testing.T) {
	url := testservers.NATSURL(t)
	prefix := uniquePrefix()
	dropStorage(t, url, prefix)
	a := newTestBroker(t, Options{URL: url, Prefix: prefix, Storage: MemoryStorage, OpTimeout: suiteOpTimeout})
	b := newTestBroker(t, Options{URL: url, Prefix: prefix, Storage: MemoryStorage, OpTimeout: suiteOpTimeout})
	recA, recB := run(t, a), run(t, b)
	ctx := context.Background()
	const ch = "two nodes: *.> illegal in subjects"
	for _, n := range []*Broker{a, b} {
		if err := n.Subscribe(ctx, ch); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	}
	const publishers, each = 4, 40 // two per node
	var wg sync.WaitGroup
	errs := make(chan error, publishers*each)
	for p := range publishers {
		n := []*Broker{a, b}[p%2]
		wg.Go(func() {
			for j := range each {
				if _, err := n.Publish(ctx, ch, &hub.Publication{Data: fmt.Appendf(nil, `"%d-%d"`, p, j)}, hist(1000)); err != nil {
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
	for name, rec := range map[string]*recorder{"A": recA, "B": recB} {
		rec.waitFor(t, "deliveries on "+name, func() bool { return len(rec.pubs[ch]) >= publishers*each })
		rec.mu.Lock()
		got := slices.Clone(rec.pubs[ch])
		datas := slices.Clone(rec.datas[ch])
		rec.mu.Unlock()
		if len(got) != publishers*each {
			t.Fatalf("node %s got %d publications", name, len(got))
		}
		for i, pos := range got {
			if pos.Offset != uint64(i+1) || pos.Epoch != got[0].Epoch {
				t.Fatalf("node %s delivery %d at %+v", name, i, pos)
			}
		}
		if first == nil {
			first = datas
		} else if !slices.Equal(first, datas) {
			t.Fatalf("nodes saw different orders")
		}
	}
	res, err := b.History(ctx, ch, hub.HistoryOptions{Limit: -1})
	if err != nil || len(res.Publications) != publishers*each {
		t.Fatalf("history through B: %d pubs, %v", len(res.Publications), err)
	}
	if err := a.PublishControl(ctx, []byte("hello")); err != nil {
		t.Fatalf("PublishControl: %v", err)
	}
	recB.waitFor(t, "control on B", func() bool { return recB.controls == 1 })
}

// TestOutageAndRecovery stops a private NATS server during traffic:
// Publish fails fast with ErrBrokerUnavailable; after the restart the
// broker resubscribes by itself, reports the reconnect, and the position
// continues in the same epoch because the file store survived.
func TestOutageAndRecovery(t *testing.T) {
	for _, storage := range []Storage{FileStorage, MemoryStorage} {
		t.Run(string(storage), func(t *testing.T) {
			srv := testservers.StartNATS(t)
			const opTimeout = 2 * time.Second
			b := newTestBroker(t, Options{URL: srv.URL(), Storage: storage, OpTimeout: opTimeout, ReconnectWait: 50 * time.Millisecond})
			rec := run(t, b)
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
			rec.waitFor(t, "3 deliveries", func() bool { return len(rec.pubs[ch]) == 3 })

			srv.Stop()
			// The client notices the closed socket asynchronously; every
			// call in the meantime fails fast too, just differently.
			deadline := time.Now().Add(5 * time.Second)
			for b.nc.IsConnected() && time.Now().Before(deadline) {
				start := time.Now()
				_, err := b.Publish(ctx, ch, &hub.Publication{Data: []byte("lost")}, hist(10))
				if err == nil {
					t.Fatal("Publish succeeded with the server stopped")
				}
				if time.Since(start) > opTimeout+time.Second {
					t.Fatalf("Publish took %v", time.Since(start))
				}
			}
			start := time.Now()
			_, err := b.Publish(ctx, ch, &hub.Publication{Data: []byte("lost")}, hist(10))
			if elapsed := time.Since(start); !errors.Is(err, hub.ErrBrokerUnavailable) || elapsed >= opTimeout {
				t.Fatalf("Publish during outage: %v after %v, want ErrBrokerUnavailable before %v", err, elapsed, opTimeout)
			}
			if err := b.PublishControl(ctx, []byte("x")); !errors.Is(err, hub.ErrBrokerUnavailable) {
				t.Fatalf("PublishControl during outage: %v", err)
			}

			srv.Start()
			rec.waitFor(t, "HandleReconnect", func() bool { return rec.reconnects >= 1 })
			after, err := b.Publish(ctx, ch, &hub.Publication{Data: []byte(`"after"`)}, hist(10))
			if err != nil {
				t.Fatalf("Publish after restart: %v", err)
			}
			if storage == FileStorage && after != (hub.StreamPosition{Offset: before.Offset + 1, Epoch: before.Epoch}) {
				t.Fatalf("file store: position after restart %+v, before %+v", after, before)
			}
			if storage == MemoryStorage && (after.Offset != 1 || after.Epoch == before.Epoch) {
				t.Fatalf("memory store: position after restart %+v, before %+v: want 1 in a new epoch", after, before)
			}
			rec.waitFor(t, "delivery after restart", func() bool { return len(rec.pubs[ch]) == 4 })
			rec.mu.Lock()
			got := rec.pubs[ch][3]
			rec.mu.Unlock()
			if got != after {
				t.Fatalf("delivered %+v, want %+v", got, after)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	for name, o := range map[string]Options{
		"prefix":  {Prefix: "a.b"},
		"storage": {Storage: "tape"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestRunFailsWithoutServer(t *testing.T) {
	srv := testservers.StartNATS(t)
	srv.Stop()
	b := newTestBroker(t, Options{URL: srv.URL(), OpTimeout: 500 * time.Millisecond})
	if err := b.Run(context.Background(), newRecorder()); !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("Run without server: %v", err)
	}
}

func TestTokenRoundTrip(t *testing.T) {
	for _, ch := range []string{"", "a", "chat:room.1", "x y*>", "ünïcode/\x00"} {
		tok := token(ch)
		for _, c := range tok {
			if c == '.' || c == '*' || c == '>' || c == ' ' {
				t.Fatalf("token %q of %q has %q", tok, ch, c)
			}
		}
		if back, ok := channelOfToken(tok); !ok || back != ch {
			t.Fatalf("round trip of %q: %q %v", ch, back, ok)
		}
	}
	if _, ok := channelOfToken("zzz"); ok {
		t.Fatal("foreign token decoded")
	}
}

func BenchmarkPublish(b *testing.B) {
	url := testservers.NATSURL(b)
	prefix := uniquePrefix()
	dropStorage(b, url, prefix)
	br, err := New(Options{URL: url, Prefix: prefix, Storage: MemoryStorage, OpTimeout: suiteOpTimeout})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close(context.Background())
	if err := br.Run(context.Background(), newRecorder()); err != nil {
		b.Fatal(err)
	}
	pub := &hub.Publication{Data: []byte(`{"text":"hello, world"}`)}
	b.ReportAllocs()
	b.ResetTimer()
	// Channels per goroutine: publishers to one channel contend for its
	// next offset; distinct channels show the throughput of the path.
	var n int64
	var mu sync.Mutex
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		n++
		ch := fmt.Sprintf("bench-%d", n)
		mu.Unlock()
		for pb.Next() {
			if _, err := br.Publish(context.Background(), ch, pub, hist(100)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func FuzzChannelOfToken(f *testing.F) {
	f.Add("c" + "YQ")
	f.Add("cY2hhdDoxLjI.cdTE")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, tok string) {
		if ch, ok := channelOfToken(tok); ok {
			if back, ok := channelOfToken(token(ch)); !ok || back != ch {
				t.Fatalf("channel %q does not round-trip", ch)
			}
		}
		if ch, id, ok := cutToken(tok); ok && presenceKey(ch, id) != tok && len(tok) > 0 {
			// Non-canonical base64 may decode; the key must still parse.
			if _, _, ok := cutToken(presenceKey(ch, id)); !ok {
				t.Fatalf("presence key of %q/%q does not parse", ch, id)
			}
		}
	})
}
