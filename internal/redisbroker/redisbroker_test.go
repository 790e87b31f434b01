package redisbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
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

// TestSentinelFailoverAfterMasterCrash kills the master of a Sentinel
// group and promotes its replica: calls fail fast while there is no
// master, then the broker follows the new master by itself, reports one
// reconnect, and the stream continues where it was because the replica had
// everything.
func TestSentinelFailoverAfterMasterCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis Sentinel and a replica")
	}
	brokertest.RunOutageSuite(t, func(t *testing.T) brokertest.Outage {
		g := testservers.StartSentinelGroup(t, "herald-crash")
		const opTimeout = 2 * time.Second
		b, err := New(Options{
			Addrs: []string{g.Sentinel.Addr()}, SentinelMaster: g.Name, Prefix: uniquePrefix(),
			OpTimeout: opTimeout, MaxReconnectGap: 100 * time.Millisecond,
		})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return brokertest.Outage{
			Broker: b, Presence: b, OpTimeout: opTimeout,
			Stop: func() {
				// Nothing acknowledged may be lost in the failover.
				g.WaitReplicated(t)
				g.Master.Stop()
			},
			Start:   func() { g.Failover(t) },
			Resumed: brokertest.StreamContinues,
		}
	})
}

// TestSentinelSwitchover forces a failover (SENTINEL FAILOVER) while the
// old master keeps running, as in planned maintenance. The Sentinel demotes
// the old master only seconds later, so until then a connection left on it
// stays healthy and hears nothing: both nodes must move their pub/sub
// connection to the new master by themselves, report a reconnect, and
// deliver again without a new Subscribe, with the stream continuing in the
// same epoch. One node only subscribes (it has no command traffic that
// would dial the new master); the other publishes throughout the switch,
// and each of its calls returns promptly, with a position or an error.
func TestSentinelSwitchover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis Sentinel and a replica")
	}
	g := testservers.StartSentinelGroup(t, "herald-switchover")
	const opTimeout = time.Second
	opts := Options{
		Addrs: []string{g.Sentinel.Addr()}, SentinelMaster: g.Name, Prefix: uniquePrefix(),
		OpTimeout: opTimeout, PingInterval: 200 * time.Millisecond, MaxReconnectGap: 100 * time.Millisecond,
	}
	sub, pub := newTestBroker(t, opts), newTestBroker(t, opts)
	subRec, pubRec := brokertest.Start(t, sub), brokertest.Start(t, pub)
	ctx := context.Background()
	const ch = "switchover"
	if err := sub.Subscribe(ctx, ch); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	var before hub.StreamPosition
	for i := range 3 {
		var err error
		if before, err = pub.Publish(ctx, ch, &hub.Publication{Data: fmt.Appendf(nil, "%d", i)}, hist(10)); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	subRec.WaitFor(t, "3 deliveries", func() bool { return len(subRec.Publications(ch)) == 3 })
	info := &hub.ClientInfo{Client: "c1", User: "u1"}
	if err := sub.AddPresence(ctx, ch, "c1", info, time.Minute); err != nil {
		t.Fatalf("AddPresence: %v", err)
	}
	g.WaitReplicated(t)

	// Traffic on another channel during the switch. Publications accepted
	// by the old master just before the nodes notice the switch are lost
	// (replication is asynchronous), so only promptness is checked here.
	stop := make(chan struct{})
	trafficErr := make(chan error, 1)
	go func(stop <-chan struct{}) {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		calls := 0
		for {
			select {
			case <-stop:
				if calls == 0 {
					trafficErr <- errors.New("no publication attempted during the switch")
					return
				}
				trafficErr <- nil
				return
			case <-tick.C:
			}
			start := time.Now()
			_, err := pub.Publish(ctx, "switchover-traffic", &hub.Publication{Data: []byte("t")}, hist(10))
			calls++
			if elapsed := time.Since(start); elapsed > opTimeout+500*time.Millisecond {
				trafficErr <- fmt.Errorf("Publish during the switch took %v (error %v)", elapsed, err)
				return
			}
		}
	}(stop)
	stopped := false
	stopTraffic := func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		close(stop)
		if err := <-trafficErr; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(stopTraffic)

	g.Failover(t)
	subRec.WaitFor(t, "HandleReconnect on the subscribing node", func() bool { return subRec.Reconnects() >= 1 })
	pubRec.WaitFor(t, "HandleReconnect on the publishing node", func() bool { return pubRec.Reconnects() >= 1 })
	// The nodes moved by themselves, not because the Sentinel demoted the
	// old master (which kills its clients' connections).
	if role := serverRole(t, g.Master.Addr()); role != "master" {
		t.Fatalf("old master's role is %q when the nodes reconnected: they only followed its demotion", role)
	}
	stopTraffic()

	after, err := pub.Publish(ctx, ch, &hub.Publication{Data: []byte(`"after"`)}, hist(10))
	if err != nil {
		t.Fatalf("Publish after the switch: %v", err)
	}
	brokertest.StreamContinues(t, before, after)
	subRec.WaitFor(t, "delivery after the switch", func() bool { return len(subRec.Publications(ch)) == 4 })
	if got := subRec.Publications(ch)[3]; got.Pos != after || string(got.Pub.Data) != `"after"` {
		t.Fatalf("delivered %+v %q, want %+v", got.Pos, got.Pub.Data, after)
	}
	// A client that saw the first three recovers the fourth, same epoch.
	res, err := sub.History(ctx, ch, hub.HistoryOptions{Since: &before, Limit: -1})
	if err != nil {
		t.Fatalf("History since %+v: %v", before, err)
	}
	if res.Position != after || len(res.Publications) != 1 || res.Publications[0].Offset != after.Offset {
		t.Fatalf("History since %+v after the switch: %+v", before, res)
	}
	res, err = pub.History(ctx, ch, hub.HistoryOptions{Limit: -1})
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	var datas []string
	for _, p := range res.Publications {
		datas = append(datas, fmt.Sprintf("%d:%s", p.Offset, p.Data))
	}
	if want := `[1:0 2:1 3:2 4:"after"]`; fmt.Sprint(datas) != want {
		t.Fatalf("history after the switch %v, want %s", datas, want)
	}
	p, err := pub.Presence(ctx, ch)
	if err != nil || len(p) != 1 || p["c1"] == nil || p["c1"].User != "u1" {
		t.Fatalf("presence after the switch: %v %v", p, err)
	}
	if err := pub.AddPresence(ctx, ch, "c2", nil, time.Minute); err != nil {
		t.Fatalf("AddPresence after the switch: %v", err)
	}
	if err := sub.PublishControl(ctx, []byte("ctl")); err != nil {
		t.Fatalf("PublishControl after the switch: %v", err)
	}
	pubRec.WaitFor(t, "control after the switch", func() bool { return len(pubRec.Controls()) == 1 })
	for name, rec := range map[string]*brokertest.Recorder{"subscribing": subRec, "publishing": pubRec} {
		if n := rec.Reconnects(); n != 1 {
			t.Errorf("%s node reported %d reconnects for one switch, want 1", name, n)
		}
	}
}

// serverRole returns the first element of ROLE: master, slave or sentinel.
func serverRole(t *testing.T, addr string) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	role, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 {
		t.Fatalf("ROLE of %s: %v %v", addr, role, err)
	}
	s, _ := role[0].(string)
	return s
}

// TestMasterTrackerDropsFormerMaster checks the tracker on its own: a dial
// to a new address closes the connections to the old one and only those,
// closed connections are forgotten, and the wrapped connections still
// expose their socket to go-redis's liveness check.
func TestMasterTrackerDropsFormerMaster(t *testing.T) {
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("Listen: %v", err)
		}
		t.Cleanup(func() { _ = l.Close() })
		return l
	}
	oldMaster, newMaster := listen(), listen()
	m := newMasterTracker(slog.New(slog.DiscardHandler))
	dial := m.DialHook(func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	})
	connect := func(l net.Listener) net.Conn {
		t.Helper()
		c, err := dial(context.Background(), "tcp", l.Addr().String())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, ok := c.(syscall.Conn); !ok {
			t.Fatalf("tracked TCP connection %T hides its socket", c)
		}
		return c
	}
	usable := func(c net.Conn) bool {
		_, err := c.Write([]byte("PING\r\n"))
		return err == nil
	}
	a1, a2 := connect(oldMaster), connect(oldMaster)
	if err := a2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := len(m.conns); n != 1 {
		t.Fatalf("%d connections tracked after one of two was closed, want 1", n)
	}
	if !usable(a1) {
		t.Fatal("connection to the first master closed before any switch")
	}
	b1 := connect(newMaster)
	if usable(a1) {
		t.Fatal("connection to the former master still open after a dial to the new one")
	}
	b2 := connect(newMaster)
	if !usable(b1) || !usable(b2) {
		t.Fatal("connections to the current master closed")
	}
	if n := len(m.conns); n != 2 {
		t.Fatalf("%d connections tracked, want the 2 to the current master", n)
	}
}
