package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/hub/brokertest"
	"github.com/heraldhq/herald/internal/testservers"
)

// contentionOpTimeout is the production default: these tests check that
// contended publishes finish within it, on a loaded machine with -race.
const contentionOpTimeout = DefaultOpTimeout

// delivered waits until rec recorded n publications on channel and
// returns their positions and data in delivery order.
func delivered(t *testing.T, rec *brokertest.Recorder, channel string, n int) ([]hub.StreamPosition, []string) {
	t.Helper()
	rec.WaitFor(t, fmt.Sprintf("%d publications on %s", n, channel), func() bool { return len(rec.Publications(channel)) >= n })
	pubs := rec.Publications(channel)
	pos := make([]hub.StreamPosition, len(pubs))
	for i, p := range pubs {
		pos[i] = p.Pos
	}
	return pos, rec.Data(channel)
}

// contentionPrefix isolates a test's stream and bucket on the shared
// server and deletes them when the test ends.
func contentionPrefix(tb testing.TB, url string) string {
	prefix := uniquePrefix()
	dropStorage(tb, url, prefix)
	return prefix
}

// startContentionNode runs a broker (one node) with a recorder as its
// event handler and subscribes it to channel.
func startContentionNode(tb testing.TB, url, prefix, channel string) (*Broker, *brokertest.Recorder) {
	tb.Helper()
	b, err := New(Options{URL: url, Prefix: prefix, Storage: MemoryStorage, OpTimeout: contentionOpTimeout})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	brokertest.CloseAtEnd(tb, b)
	rec := brokertest.Start(tb, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Subscribe(ctx, channel); err != nil {
		tb.Fatalf("Subscribe: %v", err)
	}
	return b, rec
}

// publishConcurrently runs perNode publishers on each node, each
// publishing each publications to channel, and returns every assigned
// offset. It fails the test on the first error.
func publishConcurrently(t *testing.T, nodes []*Broker, channel string, perNode, each int) []uint64 {
	t.Helper()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		offsets []uint64
		errs    []error
	)
	opts := hub.PublishOptions{HistorySize: 10000, HistoryMetaTTL: time.Hour}
	for n, node := range nodes {
		for p := range perNode {
			wg.Go(func() {
				for i := range each {
					pub := &hub.Publication{Data: fmt.Appendf(nil, `"%d-%d-%d"`, n, p, i)}
					pos, err := node.Publish(context.Background(), channel, pub, opts)
					mu.Lock()
					if err != nil {
						errs = append(errs, fmt.Errorf("node %d publisher %d publication %d: %w", n, p, i, err))
						mu.Unlock()
						return
					}
					offsets = append(offsets, pos.Offset)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d publishers failed, first: %v", len(errs), errs[0])
	}
	return offsets
}

// checkGapFree checks that offsets (in any order) are exactly 1..n.
func checkGapFree(t *testing.T, offsets []uint64, n int) {
	t.Helper()
	slices.Sort(offsets)
	if len(offsets) != n {
		t.Fatalf("%d offsets assigned, want %d", len(offsets), n)
	}
	for i, o := range offsets {
		if o != uint64(i+1) {
			t.Fatalf("assigned offsets are not 1..%d: position %d holds %d", n, i, o)
		}
	}
}

// checkDelivered checks that a node delivered offsets 1..n in order, in one
// epoch.
func checkDelivered(t *testing.T, name string, pos []hub.StreamPosition, n int) {
	t.Helper()
	if len(pos) != n {
		t.Fatalf("node %s delivered %d publications, want %d", name, len(pos), n)
	}
	for i, p := range pos {
		if p.Offset != uint64(i+1) || p.Epoch != pos[0].Epoch {
			t.Fatalf("node %s delivery %d at %+v, want offset %d in epoch %q", name, i, p, i+1, pos[0].Epoch)
		}
	}
}

// TestContendedPublishOneNode has 16 publishers append to one channel
// through one node: every publish succeeds within the default operation
// timeout, offsets are 1..N without gaps and are delivered in order.
func TestContendedPublishOneNode(t *testing.T) {
	url := testservers.NATSURL(t)
	prefix := contentionPrefix(t, url)
	const channel, publishers, each = "hot:one-node", 16, 25
	node, rec := startContentionNode(t, url, prefix, channel)

	offsets := publishConcurrently(t, []*Broker{node}, channel, publishers, each)
	checkGapFree(t, offsets, publishers*each)
	pos, _ := delivered(t, rec, channel, publishers*each)
	checkDelivered(t, "A", pos, publishers*each)

	res, err := node.History(context.Background(), channel, hub.HistoryOptions{Limit: -1})
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(res.Publications) != publishers*each || res.Position.Offset != uint64(publishers*each) {
		t.Fatalf("history holds %d publications at %+v, want %d", len(res.Publications), res.Position, publishers*each)
	}
	if n := node.appendConflicts.Load(); n != 0 {
		t.Fatalf("%d appends of one node conflicted with each other", n)
	}
	if node.locks.inFlight() != 0 {
		t.Fatalf("%d append locks left after the publishers finished", node.locks.inFlight())
	}
}

// TestContendedPublishTwoNodes has 8 publishers on each of two nodes append
// to one channel: appends of the two nodes conflict, every publish still
// succeeds within the default operation timeout, and both nodes deliver
// the same sequence in offset order.
func TestContendedPublishTwoNodes(t *testing.T) {
	url := testservers.NATSURL(t)
	prefix := contentionPrefix(t, url)
	const channel, perNode, each = "hot:two-nodes", 8, 20
	a, recA := startContentionNode(t, url, prefix, channel)
	b, recB := startContentionNode(t, url, prefix, channel)

	const total = 2 * perNode * each
	offsets := publishConcurrently(t, []*Broker{a, b}, channel, perNode, each)
	checkGapFree(t, offsets, total)
	posA, dataA := delivered(t, recA, channel, total)
	posB, dataB := delivered(t, recB, channel, total)
	checkDelivered(t, "A", posA, total)
	checkDelivered(t, "B", posB, total)
	if posA[0].Epoch != posB[0].Epoch {
		t.Fatalf("nodes delivered epochs %q and %q", posA[0].Epoch, posB[0].Epoch)
	}
	if !slices.Equal(dataA, dataB) {
		t.Fatal("the nodes delivered the publications in different orders")
	}
	t.Logf("appends rejected by the other node: A %d, B %d", a.appendConflicts.Load(), b.appendConflicts.Load())
}

// TestPublishWaitsForLockWithinContext checks that a publish queued behind
// another append to its channel gives up when its context ends, and
// releases its place in the queue.
func TestPublishWaitsForLockWithinContext(t *testing.T) {
	url := testservers.NATSURL(t)
	prefix := contentionPrefix(t, url)
	const channel = "hot:queued"
	node, _ := startContentionNode(t, url, prefix, channel)

	release, err := node.locks.acquire(context.Background(), node.histSubject(channel))
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = node.Publish(ctx, channel, &hub.Publication{Data: []byte(`1`)}, hub.PublishOptions{HistorySize: 10})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish behind a held lock: %v, want context.DeadlineExceeded", err)
	}
	if errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("a caller's deadline is not an outage: %v", err)
	}
	release()
	if n := node.locks.inFlight(); n != 0 {
		t.Fatalf("%d append locks left", n)
	}
	pos, err := node.Publish(context.Background(), channel, &hub.Publication{Data: []byte(`2`)}, hub.PublishOptions{HistorySize: 10})
	if err != nil || pos.Offset != 1 {
		t.Fatalf("Publish after release: %+v, %v", pos, err)
	}
}

// TestConflictRevealsHead checks the two halves of a cheap retry: a
// rejected append reports the subject's actual last sequence, and a node
// that publishes to a channel follows the head other nodes append there.
func TestConflictRevealsHead(t *testing.T) {
	url := testservers.NATSURL(t)
	prefix := contentionPrefix(t, url)
	const channel = "hot:observed"
	a, recA := startContentionNode(t, url, prefix, channel)
	b, _ := startContentionNode(t, url, prefix, channel)
	ctx := context.Background()
	opts := hub.PublishOptions{HistorySize: 10, HistoryMetaTTL: time.Hour}
	subject := a.histSubject(channel)

	if _, err := a.Publish(ctx, channel, &hub.Publication{Data: []byte(`"a"`)}, opts); err != nil {
		t.Fatalf("Publish on A: %v", err)
	}
	stale, ok := a.cachedHead(subject)
	if !ok {
		t.Fatal("A cached no head after publishing")
	}
	posB, err := b.Publish(ctx, channel, &hub.Publication{Data: []byte(`"b"`)}, opts)
	if err != nil {
		t.Fatalf("Publish on B: %v", err)
	}
	delivered(t, recA, channel, 2)
	h, ok := a.cachedHead(subject)
	if !ok || h.seq <= stale.seq || h.offset != posB.Offset || h.epoch != posB.Epoch {
		t.Fatalf("A's head after B's publication: %+v (before: %+v), want offset %d", h, stale, posB.Offset)
	}

	m := nats.NewMsg(subject)
	m.Header.Set(hdrKind, kindPublication)
	_, err = a.appendMsg(ctx, m, stale.seq)
	if !isConflict(err) {
		t.Fatalf("append against a stale head: %v, want a conflict", err)
	}
	if seq, ok := conflictSeq(err); !ok || seq != h.seq {
		t.Fatalf("conflict reports last sequence %d (%v), want %d", seq, ok, h.seq)
	}
}

func TestConflictBackoff(t *testing.T) {
	if d := conflictBackoff(1); d != 0 {
		t.Fatalf("first retry waits %v", d)
	}
	for n := 2; n < 40; n++ {
		c := min(maxConflictBackoff, minConflictBackoff<<min(n-2, 10))
		if d := conflictBackoff(n); d < c/2 || d >= c {
			t.Fatalf("conflict %d: backoff %v outside [%v, %v)", n, d, c/2, c)
		}
	}
}

// BenchmarkPublishParallel measures publishes to one hot channel from
// GOMAXPROCS×p goroutines spread over one or two nodes (brokers). On one
// node the appends take turns; on two, the nodes' appends also conflict.
// max-ms is the slowest publish: it must stay well below OpTimeout.
func BenchmarkPublishParallel(b *testing.B) {
	for _, nodes := range []int{1, 2} {
		for _, parallelism := range []int{1, 4, 8} {
			b.Run(fmt.Sprintf("nodes=%d/p=%d", nodes, parallelism), func(b *testing.B) {
				url := testservers.NATSURL(b)
				prefix := contentionPrefix(b, url)
				const channel = "bench:hot"
				brokers := make([]*Broker, nodes)
				for i := range brokers {
					brokers[i], _ = startContentionNode(b, url, prefix, channel)
				}
				pub := &hub.Publication{Data: []byte(`{"text":"hello, world"}`)}
				opts := hub.PublishOptions{HistorySize: 100, HistoryMetaTTL: time.Hour}
				var (
					mu      sync.Mutex
					started int
					slowest time.Duration
				)
				b.SetParallelism(parallelism)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					mu.Lock()
					node := brokers[started%nodes]
					started++
					mu.Unlock()
					var mine time.Duration
					defer func() {
						mu.Lock()
						slowest = max(slowest, mine)
						mu.Unlock()
					}()
					for pb.Next() {
						start := time.Now()
						if _, err := node.Publish(context.Background(), channel, pub, opts); err != nil {
							b.Error(err)
							return
						}
						mine = max(mine, time.Since(start))
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
				b.ReportMetric(float64(slowest)/float64(time.Millisecond), "max-ms")
			})
		}
	}
}
