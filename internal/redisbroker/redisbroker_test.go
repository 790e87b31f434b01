package redisbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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

// testOptions fills in what a test leaves out: a prefix of its own and
// the generous suite timeout.
func testOptions(o Options) Options {
	if o.Prefix == "" {
		o.Prefix = uniquePrefix()
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = suiteOpTimeout
	}
	return o
}

// newTestBroker returns a broker that is closed when the test ends.
func newTestBroker(t *testing.T, opts Options) *Broker {
	t.Helper()
	b, err := New(testOptions(opts))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	brokertest.CloseAtEnd(t, b)
	return b
}

// suiteBrokers is the suites' constructor of brokers made with opts.
func suiteBrokers(opts Options) func(t *testing.T) (hub.Broker, hub.PresenceManager) {
	return brokertest.Constructor(func() (*Broker, error) { return New(testOptions(opts)) })
}

func TestSuite(t *testing.T) {
	addrs := testservers.RedisAddrs(t, 1)
	brokertest.RunSuite(t, suiteBrokers(Options{Addrs: addrs[:1]}))
}

func TestSuiteClassicPubSub(t *testing.T) {
	addrs := testservers.RedisAddrs(t, 1)
	brokertest.RunSuite(t, suiteBrokers(Options{Addrs: addrs[:1], PubSub: PubSubClassic}))
}

func TestSuiteSharded(t *testing.T) {
	addrs := testservers.RedisAddrs(t, 2)
	brokertest.RunSuite(t, suiteBrokers(Options{Addrs: addrs}))
}

func hist(n int) hub.PublishOptions {
	return hub.PublishOptions{HistorySize: n, HistoryMetaTTL: time.Hour}
}

// TestTwoNodes runs two brokers (two nodes) on the same servers.
func TestTwoNodes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs int
	}{{"single", 1}, {"sharded", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			addrs := testservers.RedisAddrs(t, tc.addrs)[:tc.addrs]
			prefix := uniquePrefix()
			brokertest.RunTwoNodeSuite(t, suiteBrokers(Options{Addrs: addrs, Prefix: prefix}))
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
	recA := brokertest.Start(t, a)
	recB := brokertest.Start(t, b)
	ctx := context.Background()
	// Control messages meet on one shard whatever the address order.
	if err := b.PublishControl(ctx, []byte("c")); err != nil {
		t.Fatalf("PublishControl: %v", err)
	}
	recA.WaitFor(t, "control on A", func() bool { return len(recA.Controls()) == 1 })
	recB.WaitFor(t, "control on B", func() bool { return len(recB.Controls()) == 1 })
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

// TestOutageAndRecovery stops a private Redis during traffic. The
// restarted server has no persistence, so a new epoch starts.
func TestOutageAndRecovery(t *testing.T) {
	brokertest.RunOutageSuite(t, func(t *testing.T) brokertest.Outage {
		srv := testservers.StartRedis(t)
		const opTimeout = 2 * time.Second
		b, err := New(Options{Addrs: []string{srv.Addr()}, Prefix: uniquePrefix(), OpTimeout: opTimeout, MaxReconnectGap: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return brokertest.Outage{
			Broker: b, Presence: b, OpTimeout: opTimeout,
			Stop: srv.Stop, Start: srv.Start,
			Resumed: brokertest.StreamRestarts,
		}
	})
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
	if err := br.Run(context.Background(), brokertest.NewRecorder()); err != nil {
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
	brokertest.RunSuite(t, suiteBrokers(Options{Addrs: addrs, Cluster: true}))
}

// TestSuiteSentinel runs the suite through a Redis Sentinel.
func TestSuiteSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis Sentinel")
	}
	_, sentinel := testservers.StartRedisSentinel(t, "herald-master")
	brokertest.RunSuite(t, suiteBrokers(Options{Addrs: []string{sentinel.Addr()}, SentinelMaster: "herald-master"}))
}

// TestShardOutageIsolated stops one of two private shards: channels on the
// other shard keep working, the failed shard's channels fail fast, and after
// the restart only that shard reports a reconnect.
func TestShardOutageIsolated(t *testing.T) {
	s0, s1 := testservers.StartRedis(t), testservers.StartRedis(t)
	b := newTestBroker(t, Options{Addrs: []string{s0.Addr(), s1.Addr()}, OpTimeout: 2 * time.Second, MaxReconnectGap: 100 * time.Millisecond})
	rec := brokertest.Start(t, b)
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
	rec.WaitFor(t, "delivery on the live shard", func() bool { return len(rec.Publications(onShard[0])) == 1 })

	s1.Start()
	rec.WaitFor(t, "HandleReconnect", func() bool { return rec.Reconnects() == 1 })
	pos, err = b.Publish(ctx, onShard[1], &hub.Publication{Data: []byte("2")}, hist(10))
	if err != nil || pos.Offset != 1 {
		t.Fatalf("Publish on the restarted shard: %+v %v", pos, err)
	}
	rec.WaitFor(t, "delivery on the restarted shard", func() bool { return len(rec.Publications(onShard[1])) == 1 })
	if reconnects := rec.Reconnects(); reconnects != 1 {
		t.Fatalf("%d reconnects reported, want 1 (only the failed shard)", reconnects)
	}
}
