package natsbroker

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/hub/brokertest"
	"github.com/heraldhq/herald/internal/testservers"
	"github.com/heraldhq/herald/internal/testwait"
)

// runHistoryBroker starts a broker on the shared server with its own
// stream, removed when the test ends.
func runHistoryBroker(tb testing.TB) *Broker {
	tb.Helper()
	url := testservers.NATSURL(tb)
	prefix := uniquePrefix()
	dropStorage(tb, url, prefix)
	b, err := New(Options{URL: url, Prefix: prefix, Storage: MemoryStorage, OpTimeout: suiteOpTimeout})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	brokertest.CloseAtEnd(tb, b)
	brokertest.Start(tb, b)
	return b
}

// publishN publishes n publications whose data is their expected offset.
func publishN(tb testing.TB, b *Broker, channel string, from, n int, opts hub.PublishOptions) hub.StreamPosition {
	tb.Helper()
	var pos hub.StreamPosition
	for i := range n {
		var err error
		pub := &hub.Publication{Data: []byte(strconv.Itoa(from + i))}
		if pos, err = b.Publish(context.Background(), channel, pub, opts); err != nil {
			tb.Fatalf("Publish %d: %v", from+i, err)
		}
	}
	return pos
}

// requests runs fn and returns how many messages the broker's connection
// sent meanwhile: every JetStream request and pull is one.
func requests(b *Broker, fn func()) uint64 {
	before := b.nc.Stats().OutMsgs
	fn()
	return b.nc.Stats().OutMsgs - before
}

func offsetRange(from, to uint64) []uint64 {
	var out []uint64
	for o := from; ; {
		out = append(out, o)
		if o == to {
			return out
		}
		if from < to {
			o++
		} else {
			o--
		}
	}
}

// checkPubs checks the offsets of pubs and that each carries its own data.
func checkPubs(t *testing.T, pubs []*hub.Publication, want []uint64) {
	t.Helper()
	got := make([]uint64, len(pubs))
	for i, p := range pubs {
		got[i] = p.Offset
		if string(p.Data) != strconv.FormatUint(p.Offset, 10) {
			t.Fatalf("publication %d carries %q", p.Offset, p.Data)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("offsets %v (%d), want %v (%d)", abbrev(got), len(got), abbrev(want), len(want))
	}
}

func abbrev(o []uint64) string {
	if len(o) <= 6 {
		return fmt.Sprint(o)
	}
	return fmt.Sprintf("%v ... %v", o[:3], o[len(o)-3:])
}

// TestHistoryLargeInFewRequests reads a channel with 1,000 retained
// publications. The old read cost a request per message; a batched read
// costs the head, the reader's creation and deletion, and one pull per
// historyBatch messages.
func TestHistoryLargeInFewRequests(t *testing.T) {
	const n = 1000
	b := runHistoryBroker(t)
	ch := "large"
	head := publishN(t, b, ch, 1, n, hist(n))
	ctx := context.Background()

	const maxRequests = 20
	for _, tc := range []struct {
		name string
		opts hub.HistoryOptions
		want []uint64
	}{
		{"all", hub.HistoryOptions{Limit: -1}, offsetRange(1, n)},
		{"since near start", hub.HistoryOptions{Since: &hub.StreamPosition{Offset: 2, Epoch: head.Epoch}, Limit: -1}, offsetRange(3, n)},
		{"since middle", hub.HistoryOptions{Since: &hub.StreamPosition{Offset: 500, Epoch: head.Epoch}, Limit: -1}, offsetRange(501, n)},
		{"since middle limit", hub.HistoryOptions{Since: &hub.StreamPosition{Offset: 500, Epoch: head.Epoch}, Limit: 20}, offsetRange(501, 520)},
		{"since near end", hub.HistoryOptions{Since: &hub.StreamPosition{Offset: n - 3, Epoch: head.Epoch}, Limit: -1}, offsetRange(n-2, n)},
		{"limit", hub.HistoryOptions{Limit: 7}, offsetRange(1, 7)},
		{"reverse", hub.HistoryOptions{Limit: -1, Reverse: true}, offsetRange(n, 1)},
		{"reverse limit", hub.HistoryOptions{Limit: 10, Reverse: true}, offsetRange(n, n-9)},
		{"reverse limit beyond since", hub.HistoryOptions{Since: &hub.StreamPosition{Offset: 995, Epoch: head.Epoch}, Limit: 10, Reverse: true}, offsetRange(n, 996)},
		{"since middle reverse limit", hub.HistoryOptions{Since: &hub.StreamPosition{Offset: 500, Epoch: head.Epoch}, Limit: 3, Reverse: true}, offsetRange(n, n-2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res hub.HistoryResult
			var err error
			reqs := requests(b, func() { res, err = b.History(ctx, ch, tc.opts) })
			if err != nil {
				t.Fatalf("History: %v", err)
			}
			if res.Position != head {
				t.Fatalf("position %+v, want %+v", res.Position, head)
			}
			checkPubs(t, res.Publications, tc.want)
			if reqs >= maxRequests {
				t.Fatalf("%d requests for %d retained publications, want < %d", reqs, n, maxRequests)
			}
			t.Logf("%d requests", reqs)
		})
	}

	// Every reader was deleted, not left for the server to expire.
	info, err := b.historyStream().Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("%d history readers left on the stream", info.State.Consumers)
	}
}

// TestHistoryStopsAtHead checks that a read returns the publications up to
// the head it started from, not those appended while it ran.
func TestHistoryStopsAtHead(t *testing.T) {
	b := runHistoryBroker(t)
	ch := "moving"
	publishN(t, b, ch, 1, 300, hist(1000))
	ctx := context.Background()
	h, err := b.head(ctx, b.histSubject(ch))
	if err != nil || h == nil {
		t.Fatalf("head: %v %v", h, err)
	}
	publishN(t, b, ch, 301, 5, hist(1000))
	for _, opts := range []hub.HistoryOptions{{Limit: -1}, {Limit: 4, Reverse: true}} {
		pubs, err := b.readSelected(ctx, b.histSubject(ch), h, opts)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(pubs) == 0 || pubs[len(pubs)-1].offset != 300 {
			t.Fatalf("%+v: read past the head: %d publications", opts, len(pubs))
		}
	}
}

// TestHistorySkipsExpired checks that publications past their history TTL
// stay hidden while newer ones of the same channel are read.
func TestHistorySkipsExpired(t *testing.T) {
	b := runHistoryBroker(t)
	ch := "ttl"
	ctx := context.Background()
	short := hub.PublishOptions{HistorySize: 100, HistoryTTL: 200 * time.Millisecond, HistoryMetaTTL: time.Hour}
	publishN(t, b, ch, 1, 5, short)
	testwait.UntilNil(t, "publications to expire", func() error {
		res, err := b.History(ctx, ch, hub.HistoryOptions{Limit: -1})
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		if len(res.Publications) != 0 {
			return fmt.Errorf("%d publications still visible after their TTL", len(res.Publications))
		}
		return nil
	})
	head := publishN(t, b, ch, 6, 3, hist(100))
	for _, tc := range []struct {
		opts hub.HistoryOptions
		want []uint64
	}{
		{hub.HistoryOptions{Limit: -1}, offsetRange(6, 8)},
		{hub.HistoryOptions{Limit: 2}, offsetRange(6, 7)},
		{hub.HistoryOptions{Limit: 5, Reverse: true}, offsetRange(8, 6)},
		{hub.HistoryOptions{Since: &hub.StreamPosition{Offset: 2, Epoch: head.Epoch}, Limit: -1}, offsetRange(6, 8)},
		{hub.HistoryOptions{Since: &hub.StreamPosition{Offset: 6, Epoch: head.Epoch}, Limit: -1, Reverse: true}, offsetRange(8, 7)},
	} {
		res, err := b.History(ctx, ch, tc.opts)
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		checkPubs(t, res.Publications, tc.want)
	}
}

// selMsg builds the headers of a history message.
func selMsg(kind string, offset uint64, epoch string, ttl time.Duration) nats.Header {
	h := nats.Header{}
	h.Set(hdrKind, kind)
	h.Set(hdrOffset, strconv.FormatUint(offset, 10))
	h.Set(hdrEpoch, epoch)
	h.Set(hdrTTL, ms(ttl))
	return h
}

// TestHistorySelection feeds a subject's messages to the selection: old
// epochs, markers, the size window, TTLs, Since, limits and the ring.
func TestHistorySelection(t *testing.T) {
	now := time.Now()
	old := now.Add(-time.Minute)
	type msg struct {
		hdr    nats.Header
		stored time.Time
	}
	var subject []msg
	add := func(kind string, offset uint64, epoch string, ttl time.Duration, stored time.Time) {
		subject = append(subject, msg{selMsg(kind, offset, epoch, ttl), stored})
	}
	// Epoch A, then epoch B: a reset publication, a marker hiding 1..4,
	// then 5..12 of which 5 and 6 expired by TTL.
	for o := uint64(1); o <= 3; o++ {
		add(kindPublication, o, "A", 0, old)
	}
	for o := uint64(1); o <= 4; o++ {
		add(kindPublication, o, "B", 0, old)
	}
	add(kindRemoved, 4, "B", 0, old)
	add(kindPublication, 5, "B", time.Second, old)
	add(kindPublication, 6, "B", time.Second, old)
	for o := uint64(7); o <= 12; o++ {
		add(kindPublication, o, "B", time.Hour, old)
	}
	head := &streamHead{kind: kindPublication, offset: 12, epoch: "B", size: 100}
	since := func(o uint64) *hub.StreamPosition { return &hub.StreamPosition{Offset: o, Epoch: "B"} }
	for _, tc := range []struct {
		name string
		size int
		opts hub.HistoryOptions
		want []uint64
	}{
		{"all", 100, hub.HistoryOptions{Limit: -1}, offsetRange(7, 12)},
		{"limit", 100, hub.HistoryOptions{Limit: 2}, offsetRange(7, 8)},
		{"newest", 100, hub.HistoryOptions{Limit: 4, Reverse: true}, offsetRange(9, 12)},
		{"newest wraps twice", 100, hub.HistoryOptions{Limit: 1, Reverse: true}, []uint64{12}},
		{"newest more than kept", 100, hub.HistoryOptions{Limit: 50, Reverse: true}, offsetRange(7, 12)},
		{"size window", 3, hub.HistoryOptions{Limit: -1}, offsetRange(10, 12)},
		{"since", 100, hub.HistoryOptions{Since: since(9), Limit: -1}, offsetRange(10, 12)},
		{"since below window", 4, hub.HistoryOptions{Since: since(2), Limit: -1}, offsetRange(9, 12)},
		{"since newest", 100, hub.HistoryOptions{Since: since(7), Limit: 3, Reverse: true}, offsetRange(10, 12)},
		{"since at head", 100, hub.HistoryOptions{Since: since(12), Limit: -1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := *head
			h.size = tc.size
			sel := newHistorySelection(&h, tc.opts, now)
			for _, m := range subject {
				sel.add(m.hdr, m.stored, []byte("x"))
			}
			var got []uint64
			for _, p := range sel.result() {
				got = append(got, p.offset)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("kept %v, want %v", got, tc.want)
			}
		})
	}

	// A publication that starts a new epoch after the old one expired
	// appends no marker: the old epoch's messages are skipped by epoch.
	t.Run("reset without marker", func(t *testing.T) {
		h := &streamHead{kind: kindPublication, offset: 2, epoch: "D", size: 100}
		sel := newHistorySelection(h, hub.HistoryOptions{Limit: -1}, now)
		for _, e := range []struct {
			off   uint64
			epoch string
		}{{1, "C"}, {2, "C"}, {3, "C"}, {1, "D"}, {2, "D"}} {
			sel.add(selMsg(kindPublication, e.off, e.epoch, 0), old, []byte("x"))
		}
		var got []uint64
		for _, p := range sel.result() {
			got = append(got, p.offset)
		}
		if !slices.Equal(got, []uint64{1, 2}) {
			t.Fatalf("kept %v, want [1 2]", got)
		}
	})
}

// BenchmarkHistory1000 reads a channel with 1,000 retained publications:
// all of them, and the last three after a position (a subscriber's
// recovery).
func BenchmarkHistory1000(b *testing.B) {
	const n = 1000
	br := runHistoryBroker(b)
	head := publishN(b, br, "bench", 1, n, hist(n))
	for _, bc := range []struct {
		name string
		opts hub.HistoryOptions
		want int
	}{
		{"all", hub.HistoryOptions{Limit: -1}, n},
		{"recover3", hub.HistoryOptions{Since: &hub.StreamPosition{Offset: n - 3, Epoch: head.Epoch}, Limit: -1}, 3},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var reqs uint64
			for b.Loop() {
				reqs += requests(br, func() {
					res, err := br.History(context.Background(), "bench", bc.opts)
					if err != nil {
						b.Fatal(err)
					}
					if len(res.Publications) != bc.want {
						b.Fatalf("%d publications, want %d", len(res.Publications), bc.want)
					}
				})
			}
			b.ReportMetric(float64(reqs)/float64(b.N), "requests/op")
		})
	}
}
