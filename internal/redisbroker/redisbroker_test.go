package redisbroker

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

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/brokercodec"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/hub/brokertest"
	"github.com/heraldhq/herald/internal/testservers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// suiteOpTimeout is generous: the suites run on loaded two-core CI
// machines with the race detector, and timing is not what they check.
const suiteOpTimeout = 5 * time.Second

func uniquePrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "herald-test-" + hex.EncodeToString(b[:])
}

// newTestBroker returns a broker that is closed when the test ends.
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
	addrs := testservers.RedisAddrs(t, 1)
	brokertest.RunSuite(t, func(t *testing.T) (hub.Broker, hub.PresenceManager) {
		b, err := New(Options{Addrs: addrs[:1], Prefix: uniquePrefix(), OpTimeout: suiteOpTimeout})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b, b
	})
}

func TestSuiteClassicPubSub(t *testing.T) {
	addrs := testservers.RedisAddrs(t, 1)
	brokertest.RunSuite(t, func(t *testing.T) (hub.Broker, hub.PresenceManager) {
		b, err := New(Options{Addrs: addrs[:1], Prefix: uniquePrefix(), PubSub: PubSubClassic, OpTimeout: suiteOpTimeout})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b, b
	})
}

func TestSuiteSharded(t *testing.T) {
	addrs := testservers.RedisAddrs(t, 2)
	brokertest.RunSuite(t, func(t *testing.T) (hub.Broker, hub.PresenceManager) {
		b, err := New(Options{Addrs: addrs, Prefix: uniquePrefix(), OpTimeout: suiteOpTimeout})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b, b
	})
}

// recorder is an EventHandler for this package's own tests.
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
	deadline := time.NewTimer(10 * time.Second)
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

// TestTwoNodesOrdering runs two brokers (two nodes) on the same servers:
// publications from both reach both, in offset order.
func TestTwoNodesOrdering(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs int
	}{{"single", 1}, {"sharded", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			addrs := testservers.RedisAddrs(t, tc.addrs)[:tc.addrs]
			prefix := uniquePrefix()
			a := newTestBroker(t, Options{Addrs: addrs, Prefix: prefix})
			b := newTestBroker(t, Options{Addrs: addrs, Prefix: prefix})
			recA, recB := run(t, a), run(t, b)
			ctx := context.Background()
			ch := "two-nodes"
			for _, n := range []*Broker{a, b} {
				if err := n.Subscribe(ctx, ch); err != nil {
					t.Fatalf("Subscribe: %v", err)
				}
			}
			const each = 100
			var wg sync.WaitGroup
			errs := make(chan error, 2*each)
			for i, n := range []*Broker{a, b} {
				wg.Go(func() {
					for j := range each {
						if _, err := n.Publish(ctx, ch, &hub.Publication{Data: fmt.Appendf(nil, `"%d-%d"`, i, j)}, hist(1000)); err != nil {
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
			for name, rec := range map[string]*recorder{"A": recA, "B": recB} {
				rec.waitFor(t, "deliveries on "+name, func() bool { return len(rec.pubs[ch]) >= 2*each })
				rec.mu.Lock()
				got := slices.Clone(rec.pubs[ch])
				datas := slices.Clone(rec.datas[ch])
				rec.mu.Unlock()
				if len(got) != 2*each {
					t.Fatalf("node %s got %d publications", name, len(got))
				}
				for i, pos := range got {
					if pos.Offset != uint64(i+1) || pos.Epoch != got[0].Epoch {
						t.Fatalf("node %s delivery %d at %+v", name, i, pos)
					}
				}
				// Both nodes see the same sequence.
				recA.mu.Lock()
				same := slices.Equal(datas, recA.datas[ch][:len(datas)])
				recA.mu.Unlock()
				if !same {
					t.Fatalf("node %s saw a different order than A", name)
				}
			}
			if err := a.PublishControl(ctx, []byte("hello")); err != nil {
				t.Fatalf("PublishControl: %v", err)
			}
			recB.waitFor(t, "control on B", func() bool { return recB.controls == 1 })
		})
	}
}

// TestShardingSpreadsChannels checks that channels land on both servers
// and that any node reads any channel's history.
func TestShardingSpreadsChannels(t *testing.T) {
	addrs := testservers.RedisAddrs(t, 2)[:2]
	prefix := uniquePrefix()
	a := newTestBroker(t, Options{Addrs: addrs, Prefix: prefix})
	// The second node lists the addresses in another order: same mapping.
	b := newTestBroker(t, Options{Addrs: []string{addrs[1], addrs[0]}, Prefix: prefix})
	recA := run(t, a)
	recB := run(t, b)
	ctx := context.Background()
	// Control messages meet on one shard whatever the address order.
	if err := b.PublishControl(ctx, []byte("c")); err != nil {
		t.Fatalf("PublishControl: %v", err)
	}
	recA.waitFor(t, "control on A", func() bool { return recA.controls == 1 })
	recB.waitFor(t, "control on B", func() bool { return recB.controls == 1 })
	perShard := make([]int, 2)
	for i := range 40 {
		ch := fmt.Sprintf("spread:%d", i)
		if a.ShardOf(ch) != 1-b.ShardOf(ch) {
			t.Fatalf("nodes disagree on the shard of %s", ch)
		}
		perShard[a.ShardOf(ch)]++
		pos, err := a.Publish(ctx, ch, &hub.Publication{Data: []byte(`1`)}, hist(10))
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		res, err := b.History(ctx, ch, hub.HistoryOptions{Limit: -1})
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		if res.Position != pos || len(res.Publications) != 1 || string(res.Publications[0].Data) != "1" {
			t.Fatalf("history of %s through B: %+v", ch, res)
		}
		// The stream lives on the owning server only.
		for si, addr := range addrs {
			c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
			n, err := c.Exists(ctx, a.metaKey(ch)).Result()
			_ = c.Close()
			if err != nil {
				t.Fatalf("Exists: %v", err)
			}
			if want := int64(0); si == a.ShardOf(ch) {
				want = 1
				if n != want {
					t.Fatalf("%s: meta missing on its shard %s", ch, addr)
				}
			} else if n != want {
				t.Fatalf("%s: meta found on foreign shard %s", ch, addr)
			}
		}
	}
	if perShard[0] < 5 || perShard[1] < 5 {
		t.Fatalf("40 channels spread %v over two shards", perShard)
	}
}

func TestHashRing(t *testing.T) {
	three := newHashRing([]string{"a:1", "b:1", "c:1"}, DefaultVirtualNodes)
	two := newHashRing([]string{"a:1", "b:1"}, DefaultVirtualNodes)
	counts := make([]int, 3)
	moved := 0
	const n = 30000
	for i := range n {
		k := fmt.Sprintf("chan:%d", i)
		s3 := three.shard(k)
		counts[s3]++
		if s3 != 2 && two.shard(k) != s3 {
			moved++
		}
	}
	for i, c := range counts {
		if c < n/3*7/10 || c > n/3*13/10 {
			t.Fatalf("shard %d owns %d of %d keys: %v", i, c, n, counts)
		}
	}
	// Removing shard c moves only c's keys.
	if moved != 0 {
		t.Fatalf("%d keys moved between surviving shards", moved)
	}
}

// TestOutageAndRecovery stops a private Redis during traffic: Publish fails
// fast with ErrBrokerUnavailable, and after the restart the broker
// resubscribes by itself, reports the reconnect and starts a new epoch
// (the restarted server has no persistence).
func TestOutageAndRecovery(t *testing.T) {
	srv := testservers.StartRedis(t)
	const opTimeout = 2 * time.Second
	b := newTestBroker(t, Options{Addrs: []string{srv.Addr()}, OpTimeout: opTimeout, MaxReconnectGap: 100 * time.Millisecond})
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
	start := time.Now()
	_, err := b.Publish(ctx, ch, &hub.Publication{Data: []byte("lost")}, hist(10))
	elapsed := time.Since(start)
	if !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("Publish during outage: %v, want ErrBrokerUnavailable", err)
	}
	if elapsed >= opTimeout {
		t.Fatalf("Publish during outage took %v, OpTimeout is %v", elapsed, opTimeout)
	}
	if _, err := b.History(ctx, ch, hub.HistoryOptions{}); !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("History during outage: %v", err)
	}
	if err := b.AddPresence(ctx, ch, "c", nil, time.Minute); !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("AddPresence during outage: %v", err)
	}

	srv.Start()
	rec.waitFor(t, "HandleReconnect", func() bool { return rec.reconnects == 1 })
	// Resubscribed by itself: a new publication is delivered without a
	// new Subscribe call, in a new epoch because Redis lost the metadata.
	after, err := b.Publish(ctx, ch, &hub.Publication{Data: []byte(`"after"`)}, hist(10))
	if err != nil {
		t.Fatalf("Publish after restart: %v", err)
	}
	if after.Offset != 1 || after.Epoch == before.Epoch || after.Epoch == "" {
		t.Fatalf("position after restart %+v, before %+v: want offset 1 in a new epoch", after, before)
	}
	rec.waitFor(t, "delivery after restart", func() bool { return len(rec.pubs[ch]) == 4 })
	rec.mu.Lock()
	got := rec.pubs[ch][3]
	rec.mu.Unlock()
	if got != after {
		t.Fatalf("delivered %+v, want %+v", got, after)
	}
	if err := b.PublishControl(ctx, []byte("x")); err != nil {
		t.Fatalf("PublishControl after restart: %v", err)
	}
	rec.waitFor(t, "control after restart", func() bool { return rec.controls == 1 })
}

// TestSubscribeDuringOutage fails fast too.
func TestSubscribeDuringOutage(t *testing.T) {
	srv := testservers.StartRedis(t)
	b := newTestBroker(t, Options{Addrs: []string{srv.Addr()}, OpTimeout: 2 * time.Second})
	run(t, b)
	srv.Stop()
	if err := b.Subscribe(context.Background(), "x"); !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("Subscribe during outage: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	for name, o := range map[string]Options{
		"no addrs":   {},
		"both modes": {Addrs: []string{"x:1"}, Cluster: true, SentinelMaster: "m"},
		"bad mode":   {Addrs: []string{"x:1"}, PubSub: "weird"},
		"braces":     {Addrs: []string{"x:1"}, Prefix: "a{b}"},
		"duplicate":  {Addrs: []string{"x:1", "x:1"}},
	} {
		if b, err := New(o); err == nil {
			_ = b.Close(context.Background())
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestClosedBrokerRejects(t *testing.T) {
	b, err := New(Options{Addrs: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(context.Background(), "c", &hub.Publication{}, hist(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
}

func TestDecodePublicationMessage(t *testing.T) {
	blob := brokercodec.AppendPublication(nil, &hub.Publication{Data: []byte("a b c")})
	pub, pos, err := decodePublicationMessage(append([]byte("12 ep "), blob...))
	if err != nil || pos != (hub.StreamPosition{Offset: 12, Epoch: "ep"}) || pub.Offset != 12 || string(pub.Data) != "a b c" {
		t.Fatalf("got %+v %+v %v", pub, pos, err)
	}
	pub, pos, err = decodePublicationMessage(append([]byte("0  "), blob...))
	if err != nil || pos != (hub.StreamPosition{}) || string(pub.Data) != "a b c" {
		t.Fatalf("no-history message: %+v %+v %v", pub, pos, err)
	}
	for _, bad := range []string{"", "12", "x ep ", "12 ep"} {
		if _, _, err := decodePublicationMessage([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func FuzzDecodePublicationMessage(f *testing.F) {
	f.Add(append([]byte("3 epoch "), brokercodec.AppendPublication(nil, &hub.Publication{Data: []byte(`{}`)})...))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, pos, err := decodePublicationMessage(b)
		if err == nil && pub.Offset != pos.Offset {
			t.Fatalf("offset mismatch %d vs %d", pub.Offset, pos.Offset)
		}
	})
}

func BenchmarkPublish(b *testing.B) {
	addrs := testservers.RedisAddrs(b, 1)
	br, err := New(Options{Addrs: addrs[:1], Prefix: uniquePrefix(), OpTimeout: suiteOpTimeout})
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
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Publish(context.Background(), "bench", pub, hist(100)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// TestSuiteCluster runs the suite against a real three-master Redis
// Cluster started for this test.
func TestSuiteCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	addrs := testservers.StartRedisCluster(t, 3)
	brokertest.RunSuite(t, func(t *testing.T) (hub.Broker, hub.PresenceManager) {
		b, err := New(Options{Addrs: addrs, Cluster: true, Prefix: uniquePrefix(), OpTimeout: suiteOpTimeout})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b, b
	})
}

// TestSuiteSentinel runs the suite through a Redis Sentinel.
func TestSuiteSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis Sentinel")
	}
	_, sentinel := testservers.StartRedisSentinel(t, "herald-master")
	brokertest.RunSuite(t, func(t *testing.T) (hub.Broker, hub.PresenceManager) {
		b, err := New(Options{Addrs: []string{sentinel.Addr()}, SentinelMaster: "herald-master", Prefix: uniquePrefix(), OpTimeout: suiteOpTimeout})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b, b
	})
}

// TestShardOutageIsolated stops one of two private shards: channels on the
// other shard keep working, the failed shard's channels fail fast, and after
// the restart only that shard reports a reconnect.
func TestShardOutageIsolated(t *testing.T) {
	s0, s1 := testservers.StartRedis(t), testservers.StartRedis(t)
	b := newTestBroker(t, Options{Addrs: []string{s0.Addr(), s1.Addr()}, OpTimeout: 2 * time.Second, MaxReconnectGap: 100 * time.Millisecond})
	rec := run(t, b)
	ctx := context.Background()
	// One channel on each shard.
	onShard := make(map[int]string)
	for i := 0; len(onShard) < 2; i++ {
		ch := fmt.Sprintf("iso:%d", i)
		if _, ok := onShard[b.ShardOf(ch)]; !ok {
			onShard[b.ShardOf(ch)] = ch
		}
	}
	for _, ch := range onShard {
		if err := b.Subscribe(ctx, ch); err != nil {
			t.Fatalf("Subscribe(%s): %v", ch, err)
		}
	}
	s1.Stop()
	if _, err := b.Publish(ctx, onShard[1], &hub.Publication{Data: []byte("1")}, hist(10)); !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("Publish on the stopped shard: %v", err)
	}
	pos, err := b.Publish(ctx, onShard[0], &hub.Publication{Data: []byte("1")}, hist(10))
	if err != nil || pos.Offset != 1 {
		t.Fatalf("Publish on the live shard: %+v %v", pos, err)
	}
	rec.waitFor(t, "delivery on the live shard", func() bool { return len(rec.pubs[onShard[0]]) == 1 })

	s1.Start()
	rec.waitFor(t, "HandleReconnect", func() bool { return rec.reconnects == 1 })
	pos, err = b.Publish(ctx, onShard[1], &hub.Publication{Data: []byte("2")}, hist(10))
	if err != nil || pos.Offset != 1 {
		t.Fatalf("Publish on the restarted shard: %+v %v", pos, err)
	}
	rec.waitFor(t, "delivery on the restarted shard", func() bool { return len(rec.pubs[onShard[1]]) == 1 })
	rec.mu.Lock()
	reconnects := rec.reconnects
	rec.mu.Unlock()
	if reconnects != 1 {
		t.Fatalf("%d reconnects reported, want 1 (only the failed shard)", reconnects)
	}
}
