// Package brokertest is the behaviour suite every hub.Broker and
// hub.PresenceManager implementation must pass. A broker package calls
// RunSuite from one of its tests:
//
//	func TestSuite(t *testing.T) {
//		brokertest.RunSuite(t, func(t *testing.T) (hub.Broker, hub.PresenceManager) {
//			b := membroker.New(membroker.Options{})
//			return b, b
//		})
//	}
//
// newBroker is called once per subtest and must return a broker that is not
// yet running; the suite calls Run with its own recording EventHandler and
// closes both values when the subtest ends. Brokers backed by a shared
// service must isolate subtests themselves (the suite uses random channel
// names too). Expiry is checked with short TTLs (a few hundred
// milliseconds) and polling deadlines, so backends must honour
// millisecond-granularity TTLs.
//
// Brokers backed by a shared service also run RunTwoNodeSuite (two nodes
// on one backend: ordering and shared state across nodes) and
// RunOutageSuite (a private server stopped and restarted under traffic).
// Recorder, the EventHandler the suites use, serves a broker package's
// own tests too.
package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

// waitTimeout bounds every wait for an asynchronous delivery or expiry.
const waitTimeout = 10 * time.Second

// RunSuite runs every behaviour test against brokers made by newBroker.
func RunSuite(t *testing.T, newBroker func(t *testing.T) (hub.Broker, hub.PresenceManager)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"PublishDeliversInOffsetOrder", testPublishDelivers},
		{"ConcurrentPublishersNoGaps", testConcurrentPublishers},
		{"PublishWithoutHistory", testPublishWithoutHistory},
		{"HistorySizeTrim", testHistorySizeTrim},
		{"HistorySinceLimitReverse", testHistoryQueries},
		{"HistoryOfUnpublishedChannel", testHistoryUnpublished},
		{"HistoryTTLExpiry", testHistoryTTL},
		{"EpochChangesAfterMetaExpiry", testMetaExpiry},
		{"RemoveHistoryKeepsEpoch", testRemoveHistory},
		{"UnsubscribeStopsDelivery", testUnsubscribe},
		{"OnlySubscribedChannelsDelivered", testOnlySubscribed},
		{"JoinLeave", testJoinLeave},
		{"ControlReachesSelf", testControl},
		{"PresenceAddRemoveStats", testPresence},
		{"PresenceExpiry", testPresenceExpiry},
		{"ConcurrentOperations", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, pm := newBroker(t)
			rec := NewRecorder()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			t.Cleanup(cancel)
			if err := b.Run(ctx, rec); err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Cleanup(func() {
				cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer ccancel()
				if err := b.Close(cctx); err != nil {
					t.Errorf("Broker.Close: %v", err)
				}
				if err := pm.Close(cctx); err != nil {
					t.Errorf("PresenceManager.Close: %v", err)
				}
				// Close is idempotent.
				if err := b.Close(cctx); err != nil {
					t.Errorf("second Broker.Close: %v", err)
				}
			})
			tc.fn(t, &env{b: b, pm: pm, rec: rec, ctx: ctx, prefix: randomPrefix()})
		})
	}
}

type env struct {
	b      hub.Broker
	pm     hub.PresenceManager
	rec    *Recorder
	ctx    context.Context
	prefix string
}

// ch returns a channel name unique to this subtest run.
func (e *env) ch(name string) string { return "bt" + e.prefix + ":" + name }

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (e *env) subscribe(t *testing.T, ch string) {
	t.Helper()
	if err := e.b.Subscribe(e.ctx, ch); err != nil {
		t.Fatalf("Subscribe(%q): %v", ch, err)
	}
}

func (e *env) publish(t *testing.T, ch, data string, opts hub.PublishOptions) hub.StreamPosition {
	t.Helper()
	pos, err := e.b.Publish(e.ctx, ch, &hub.Publication{Data: []byte(data)}, opts)
	if err != nil {
		t.Fatalf("Publish(%q): %v", ch, err)
	}
	return pos
}

func (e *env) history(t *testing.T, ch string, opts hub.HistoryOptions) hub.HistoryResult {
	t.Helper()
	res, err := e.b.History(e.ctx, ch, opts)
	if err != nil {
		t.Fatalf("History(%q): %v", ch, err)
	}
	return res
}

// poll calls cond every few milliseconds until it returns true, failing
// after waitTimeout. It is for state that changes with time (expiry).
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func hist(size int) hub.PublishOptions {
	return hub.PublishOptions{HistorySize: size, HistoryMetaTTL: time.Hour}
}

func offsets(pubs []*hub.Publication) []uint64 {
	out := make([]uint64, len(pubs))
	for i, p := range pubs {
		out[i] = p.Offset
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	if from <= to {
		for o := from; o <= to; o++ {
			out = append(out, o)
		}
	} else {
		for o := from; o >= to; o-- {
			out = append(out, o)
		}
	}
	return out
}

func testPublishDelivers(t *testing.T, e *env) {
	ch := e.ch("order")
	e.subscribe(t, ch)
	var epoch string
	for i := 1; i <= 20; i++ {
		pos := e.publish(t, ch, fmt.Sprintf(`{"n":%d}`, i), hist(100))
		if pos.Offset != uint64(i) {
			t.Fatalf("publish %d got offset %d", i, pos.Offset)
		}
		if i == 1 {
			epoch = pos.Epoch
			if epoch == "" {
				t.Fatal("publish with history returned an empty epoch")
			}
		} else if pos.Epoch != epoch {
			t.Fatalf("epoch changed from %q to %q without expiry", epoch, pos.Epoch)
		}
	}
	e.rec.WaitFor(t, "20 publications", func() bool { return len(e.rec.Publications(ch)) >= 20 })
	got := e.rec.Publications(ch)
	if len(got) != 20 {
		t.Fatalf("delivered %d publications, want 20", len(got))
	}
	for i, rp := range got {
		want := uint64(i + 1)
		if rp.Pos.Offset != want || rp.Pub.Offset != want || rp.Pos.Epoch != epoch {
			t.Fatalf("delivery %d: pos %+v pub offset %d, want offset %d epoch %q", i, rp.Pos, rp.Pub.Offset, want, epoch)
		}
		if string(rp.Pub.Data) != fmt.Sprintf(`{"n":%d}`, i+1) {
			t.Fatalf("delivery %d data %q", i, rp.Pub.Data)
		}
	}
}

func testConcurrentPublishers(t *testing.T, e *env) {
	ch := e.ch("concurrent")
	e.subscribe(t, ch)
	const publishers, each = 8, 50
	var wg sync.WaitGroup
	posCh := make(chan uint64, publishers*each)
	errCh := make(chan error, publishers*each)
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				pos, err := e.b.Publish(e.ctx, ch, &hub.Publication{Data: fmt.Appendf(nil, `[%d,%d]`, p, i)}, hist(1000))
				if err != nil {
					errCh <- err
					return
				}
				posCh <- pos.Offset
			}
		})
	}
	wg.Wait()
	close(posCh)
	close(errCh)
	for err := range errCh {
		t.Fatalf("concurrent Publish: %v", err)
	}
	var assigned []uint64
	for o := range posCh {
		assigned = append(assigned, o)
	}
	slices.Sort(assigned)
	if !slices.Equal(assigned, seq(1, publishers*each)) {
		t.Fatalf("assigned offsets are not 1..%d without gaps or duplicates", publishers*each)
	}
	e.rec.WaitFor(t, "all publications", func() bool { return len(e.rec.Publications(ch)) >= publishers*each })
	got := e.rec.Publications(ch)
	if len(got) != publishers*each {
		t.Fatalf("delivered %d, want %d", len(got), publishers*each)
	}
	// Delivery order is offset order, and each publisher's own
	// publications keep their order.
	last := make(map[int]int)
	for i, rp := range got {
		if rp.Pos.Offset != uint64(i+1) {
			t.Fatalf("delivery %d has offset %d", i, rp.Pos.Offset)
		}
		var p, n int
		if _, err := fmt.Sscanf(string(rp.Pub.Data), "[%d,%d]", &p, &n); err != nil {
			t.Fatalf("bad data %q", rp.Pub.Data)
		}
		if prev, ok := last[p]; ok && n != prev+1 {
			t.Fatalf("publisher %d: %d delivered after %d", p, n, prev)
		}
		last[p] = n
	}
	res := e.history(t, ch, hub.HistoryOptions{Limit: -1})
	if !slices.Equal(offsets(res.Publications), seq(1, publishers*each)) {
		t.Fatalf("history offsets %v", offsets(res.Publications))
	}
	overlaps := e.rec.Overlaps()
	if overlaps != 0 {
		t.Fatalf("handler called concurrently for one channel %d times", overlaps)
	}
}

func testPublishWithoutHistory(t *testing.T, e *env) {
	ch := e.ch("nohistory")
	e.subscribe(t, ch)
	pos := e.publish(t, ch, `"x"`, hub.PublishOptions{})
	if pos.Offset != 0 {
		t.Fatalf("publication without history got offset %d", pos.Offset)
	}
	e.rec.WaitFor(t, "publication", func() bool { return len(e.rec.Publications(ch)) == 1 })
	if got := e.rec.Publications(ch)[0]; got.Pos.Offset != 0 || string(got.Pub.Data) != `"x"` {
		t.Fatalf("delivered %+v %q", got.Pos, got.Pub.Data)
	}
	res := e.history(t, ch, hub.HistoryOptions{Limit: -1})
	if len(res.Publications) != 0 || res.Position.Offset != 0 {
		t.Fatalf("history after publish without history: %d pubs at %+v", len(res.Publications), res.Position)
	}
}

func testHistorySizeTrim(t *testing.T, e *env) {
	ch := e.ch("trim")
	for i := 1; i <= 12; i++ {
		e.publish(t, ch, fmt.Sprint(i), hist(5))
	}
	res := e.history(t, ch, hub.HistoryOptions{Limit: -1})
	if !slices.Equal(offsets(res.Publications), seq(8, 12)) {
		t.Fatalf("history offsets %v, want 8..12", offsets(res.Publications))
	}
	for i, p := range res.Publications {
		if string(p.Data) != fmt.Sprint(i+8) {
			t.Fatalf("publication %d has data %q", p.Offset, p.Data)
		}
	}
	if res.Position.Offset != 12 {
		t.Fatalf("position %d, want 12", res.Position.Offset)
	}
}

func testHistoryQueries(t *testing.T, e *env) {
	ch := e.ch("queries")
	var epoch string
	for i := 1; i <= 10; i++ {
		epoch = e.publish(t, ch, fmt.Sprint(i), hist(100)).Epoch
	}
	since := func(o uint64) *hub.StreamPosition { return &hub.StreamPosition{Offset: o, Epoch: epoch} }
	cases := []struct {
		name string
		opts hub.HistoryOptions
		want []uint64
	}{
		{"all", hub.HistoryOptions{Limit: -1}, seq(1, 10)},
		{"limit 0 is position only", hub.HistoryOptions{Limit: 0}, nil},
		{"limit", hub.HistoryOptions{Limit: 3}, seq(1, 3)},
		{"reverse", hub.HistoryOptions{Limit: -1, Reverse: true}, seq(10, 1)},
		{"reverse limit", hub.HistoryOptions{Limit: 3, Reverse: true}, seq(10, 8)},
		{"since", hub.HistoryOptions{Since: since(6), Limit: -1}, seq(7, 10)},
		{"since limit", hub.HistoryOptions{Since: since(4), Limit: 2}, seq(5, 6)},
		{"since reverse limit", hub.HistoryOptions{Since: since(4), Limit: 2, Reverse: true}, seq(10, 9)},
		{"since reverse", hub.HistoryOptions{Since: since(7), Limit: -1, Reverse: true}, seq(10, 8)},
		{"since latest", hub.HistoryOptions{Since: since(10), Limit: -1}, nil},
		{"since zero", hub.HistoryOptions{Since: since(0), Limit: -1}, seq(1, 10)},
		{"since other epoch", hub.HistoryOptions{Since: &hub.StreamPosition{Offset: 3, Epoch: epoch + "x"}, Limit: -1}, nil},
	}
	for _, c := range cases {
		res := e.history(t, ch, c.opts)
		if got := offsets(res.Publications); !slices.Equal(got, c.want) {
			t.Errorf("%s: offsets %v, want %v", c.name, got, c.want)
		}
		if res.Position != (hub.StreamPosition{Offset: 10, Epoch: epoch}) {
			t.Errorf("%s: position %+v, want 10/%s", c.name, res.Position, epoch)
		}
	}
}

func testHistoryUnpublished(t *testing.T, e *env) {
	ch := e.ch("unpublished")
	opts := hub.HistoryOptions{Limit: -1, MetaTTL: time.Hour}
	first := e.history(t, ch, opts)
	if first.Position.Offset != 0 || first.Position.Epoch == "" || len(first.Publications) != 0 {
		t.Fatalf("history of an unpublished channel: %+v, %d pubs", first.Position, len(first.Publications))
	}
	if again := e.history(t, ch, opts); again.Position != first.Position {
		t.Fatalf("epoch not stable across reads: %+v then %+v", first.Position, again.Position)
	}
	pos := e.publish(t, ch, "1", hist(10))
	if pos != (hub.StreamPosition{Offset: 1, Epoch: first.Position.Epoch}) {
		t.Fatalf("first publication at %+v, want offset 1 in epoch %q read before", pos, first.Position.Epoch)
	}
}

func testHistoryTTL(t *testing.T, e *env) {
	ch := e.ch("ttl")
	opts := hub.PublishOptions{HistorySize: 10, HistoryTTL: 300 * time.Millisecond, HistoryMetaTTL: time.Hour}
	e.publish(t, ch, "1", opts)
	pos := e.publish(t, ch, "2", opts)
	if res := e.history(t, ch, hub.HistoryOptions{Limit: -1}); len(res.Publications) != 2 {
		t.Fatalf("history right after publishing has %d publications", len(res.Publications))
	}
	poll(t, "history TTL expiry", func() bool {
		return len(e.history(t, ch, hub.HistoryOptions{Limit: -1}).Publications) == 0
	})
	res := e.history(t, ch, hub.HistoryOptions{Limit: -1})
	if res.Position != pos {
		t.Fatalf("position after TTL expiry %+v, want %+v (meta outlives publications)", res.Position, pos)
	}
	if next := e.publish(t, ch, "3", opts); next.Offset != 3 || next.Epoch != pos.Epoch {
		t.Fatalf("publication after expiry at %+v, want offset 3 epoch %q", next, pos.Epoch)
	}
}

func testMetaExpiry(t *testing.T, e *env) {
	ch := e.ch("meta")
	const metaTTL = 400 * time.Millisecond
	opts := hub.PublishOptions{HistorySize: 10, HistoryMetaTTL: metaTTL}
	e.publish(t, ch, "1", opts)
	old := e.publish(t, ch, "2", opts)
	var fresh hub.StreamPosition
	poll(t, "stream metadata expiry", func() bool {
		fresh = e.history(t, ch, hub.HistoryOptions{Limit: -1, MetaTTL: time.Hour}).Position
		return fresh.Epoch != old.Epoch
	})
	if fresh.Offset != 0 || fresh.Epoch == "" {
		t.Fatalf("new stream position %+v, want offset 0 and an epoch", fresh)
	}
	if res := e.history(t, ch, hub.HistoryOptions{Limit: -1}); len(res.Publications) != 0 {
		t.Fatalf("publications of the old epoch survived: %v", offsets(res.Publications))
	}
	if pos := e.publish(t, ch, "3", hist(10)); pos.Offset != 1 || pos.Epoch != fresh.Epoch {
		t.Fatalf("publication in the new epoch at %+v, want 1/%s", pos, fresh.Epoch)
	}
}

func testRemoveHistory(t *testing.T, e *env) {
	ch := e.ch("remove")
	for i := 1; i <= 3; i++ {
		e.publish(t, ch, fmt.Sprint(i), hist(10))
	}
	before := e.history(t, ch, hub.HistoryOptions{Limit: 0}).Position
	if err := e.b.RemoveHistory(e.ctx, ch); err != nil {
		t.Fatalf("RemoveHistory: %v", err)
	}
	res := e.history(t, ch, hub.HistoryOptions{Limit: -1})
	if len(res.Publications) != 0 || res.Position != before {
		t.Fatalf("after RemoveHistory: %d pubs at %+v, want none at %+v", len(res.Publications), res.Position, before)
	}
	if pos := e.publish(t, ch, "4", hist(10)); pos.Offset != 4 || pos.Epoch != before.Epoch {
		t.Fatalf("publication after RemoveHistory at %+v", pos)
	}
	if got := offsets(e.history(t, ch, hub.HistoryOptions{Limit: -1}).Publications); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("history %v, want [4]", got)
	}
	// Removing the history of an unknown channel is not an error.
	if err := e.b.RemoveHistory(e.ctx, e.ch("never")); err != nil {
		t.Fatalf("RemoveHistory of unknown channel: %v", err)
	}
}

func testUnsubscribe(t *testing.T, e *env) {
	ch := e.ch("unsub")
	e.subscribe(t, ch)
	e.publish(t, ch, `"before"`, hist(10))
	e.rec.WaitFor(t, "first publication", func() bool { return len(e.rec.Publications(ch)) == 1 })
	if err := e.b.Unsubscribe(e.ctx, ch); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	e.publish(t, ch, `"while unsubscribed"`, hist(10))
	if err := e.b.PublishJoin(e.ctx, ch, &hub.ClientInfo{Client: "c"}); err != nil {
		t.Fatalf("PublishJoin: %v", err)
	}
	// Subscribe again and publish a marker: per-channel ordering means
	// anything delivered for the unsubscribed period would arrive first.
	e.subscribe(t, ch)
	e.publish(t, ch, `"after"`, hist(10))
	e.rec.WaitFor(t, "marker", func() bool { return len(e.rec.Publications(ch)) >= 2 })
	got := e.rec.Publications(ch)
	if len(got) != 2 || string(got[1].Pub.Data) != `"after"` || got[1].Pos.Offset != 3 {
		var datas []string
		for _, g := range got {
			datas = append(datas, string(g.Pub.Data))
		}
		t.Fatalf("deliveries %v, want before and after only", datas)
	}
	joins := len(e.rec.Joins(ch))
	if joins != 0 {
		t.Fatalf("join delivered while unsubscribed")
	}
}

func testOnlySubscribed(t *testing.T, e *env) {
	a, b := e.ch("a"), e.ch("b")
	e.subscribe(t, b)
	e.publish(t, a, `"a"`, hist(10))
	e.publish(t, b, `"b"`, hist(10))
	e.rec.WaitFor(t, "publication on b", func() bool { return len(e.rec.Publications(b)) == 1 })
	// a was published first; b's delivery does not prove a's absence for
	// brokers without cross-channel order, so subscribe a and use a marker.
	e.subscribe(t, a)
	e.publish(t, a, `"marker"`, hist(10))
	e.rec.WaitFor(t, "marker on a", func() bool { return len(e.rec.Publications(a)) >= 1 })
	if got := e.rec.Publications(a); len(got) != 1 || string(got[0].Pub.Data) != `"marker"` {
		t.Fatalf("unsubscribed channel's publication was delivered")
	}
}

func testJoinLeave(t *testing.T, e *env) {
	ch := e.ch("presence-events")
	e.subscribe(t, ch)
	info := &hub.ClientInfo{Client: "c1", User: "u1", ConnInfo: []byte(`{"a":1}`), ChanInfo: []byte(`{"b":2}`)}
	if err := e.b.PublishJoin(e.ctx, ch, info); err != nil {
		t.Fatalf("PublishJoin: %v", err)
	}
	if err := e.b.PublishLeave(e.ctx, ch, info); err != nil {
		t.Fatalf("PublishLeave: %v", err)
	}
	e.rec.WaitFor(t, "join and leave", func() bool { return len(e.rec.Joins(ch)) == 1 && len(e.rec.Leaves(ch)) == 1 })
	j, l := e.rec.Joins(ch)[0], e.rec.Leaves(ch)[0]
	for _, got := range []*hub.ClientInfo{j, l} {
		if got.Client != "c1" || got.User != "u1" || string(got.ConnInfo) != `{"a":1}` || string(got.ChanInfo) != `{"b":2}` {
			t.Fatalf("event info %+v", got)
		}
	}
	res := e.history(t, ch, hub.HistoryOptions{Limit: -1})
	if len(res.Publications) != 0 {
		t.Fatalf("join/leave stored in history")
	}
}

func testControl(t *testing.T, e *env) {
	payloads := [][]byte{[]byte(`{"type":"x"}` + "\n" + `raw`), {0, 1, 2, 255}, []byte("third")}
	for _, p := range payloads {
		if err := e.b.PublishControl(e.ctx, p); err != nil {
			t.Fatalf("PublishControl: %v", err)
		}
	}
	e.rec.WaitFor(t, "control messages", func() bool { return len(e.rec.Controls()) >= len(payloads) })
	got := e.rec.Controls()
	// Control messages from one publisher arrive in order.
	for i, p := range payloads {
		if string(got[i]) != string(p) {
			t.Fatalf("control %d: %q, want %q", i, got[i], p)
		}
	}
}

func testPresence(t *testing.T, e *env) {
	ch := e.ch("presence")
	add := func(client, user string) {
		t.Helper()
		info := &hub.ClientInfo{Client: client, User: user, ChanInfo: []byte(`{"c":"` + client + `"}`)}
		if err := e.pm.AddPresence(e.ctx, ch, client, info, time.Minute); err != nil {
			t.Fatalf("AddPresence: %v", err)
		}
	}
	add("c1", "u1")
	add("c2", "u1")
	add("c3", "u2")
	add("c3", "u2") // refresh, not a second entry
	st, err := e.pm.PresenceStats(e.ctx, ch)
	if err != nil {
		t.Fatalf("PresenceStats: %v", err)
	}
	if st != (hub.PresenceStats{NumClients: 3, NumUsers: 2}) {
		t.Fatalf("stats %+v, want 3 clients 2 users", st)
	}
	p, err := e.pm.Presence(e.ctx, ch)
	if err != nil {
		t.Fatalf("Presence: %v", err)
	}
	if len(p) != 3 || p["c2"] == nil || p["c2"].User != "u1" || string(p["c2"].ChanInfo) != `{"c":"c2"}` {
		t.Fatalf("presence %v", p)
	}
	if err := e.pm.RemovePresence(e.ctx, ch, "c1"); err != nil {
		t.Fatalf("RemovePresence: %v", err)
	}
	if err := e.pm.RemovePresence(e.ctx, ch, "nobody"); err != nil {
		t.Fatalf("RemovePresence of absent client: %v", err)
	}
	st, _ = e.pm.PresenceStats(e.ctx, ch)
	if st != (hub.PresenceStats{NumClients: 2, NumUsers: 2}) {
		t.Fatalf("stats after remove %+v", st)
	}
	other, err := e.pm.Presence(e.ctx, e.ch("empty"))
	if err != nil || len(other) != 0 {
		t.Fatalf("presence of empty channel: %v %v", other, err)
	}
}

func testPresenceExpiry(t *testing.T, e *env) {
	ch := e.ch("presence-ttl")
	if err := e.pm.AddPresence(e.ctx, ch, "short", &hub.ClientInfo{Client: "short", User: "u1"}, 300*time.Millisecond); err != nil {
		t.Fatalf("AddPresence: %v", err)
	}
	if err := e.pm.AddPresence(e.ctx, ch, "long", &hub.ClientInfo{Client: "long", User: "u2"}, time.Minute); err != nil {
		t.Fatalf("AddPresence: %v", err)
	}
	poll(t, "presence expiry", func() bool {
		p, err := e.pm.Presence(e.ctx, ch)
		if err != nil {
			t.Fatalf("Presence: %v", err)
		}
		return p["short"] == nil
	})
	p, _ := e.pm.Presence(e.ctx, ch)
	if len(p) != 1 || p["long"] == nil {
		t.Fatalf("presence after expiry %v, want only long", p)
	}
	st, _ := e.pm.PresenceStats(e.ctx, ch)
	if st != (hub.PresenceStats{NumClients: 1, NumUsers: 1}) {
		t.Fatalf("stats after expiry %+v", st)
	}
}

func testConcurrent(t *testing.T, e *env) {
	channels := []string{e.ch("x0"), e.ch("x1"), e.ch("x2")}
	for _, c := range channels {
		e.subscribe(t, c)
	}
	const workers, rounds = 6, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*4)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				c := channels[(w+i)%len(channels)]
				if _, err := e.b.Publish(e.ctx, c, &hub.Publication{Data: []byte("1")}, hist(20)); err != nil {
					errs <- err
				}
				if _, err := e.b.History(e.ctx, c, hub.HistoryOptions{Limit: 5, Reverse: i%2 == 0}); err != nil {
					errs <- err
				}
				id := fmt.Sprintf("w%d", w)
				if err := e.pm.AddPresence(e.ctx, c, id, &hub.ClientInfo{Client: id}, time.Minute); err != nil {
					errs <- err
				}
				if _, err := e.pm.PresenceStats(e.ctx, c); err != nil {
					errs <- err
				}
				if i%10 == 9 {
					if err := e.pm.RemovePresence(e.ctx, c, id); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent operation: %v", err)
	}
	total := 0
	for _, c := range channels {
		res := e.history(t, c, hub.HistoryOptions{Limit: 0})
		total += int(res.Position.Offset)
	}
	if total != workers*rounds {
		t.Fatalf("offsets add up to %d, want %d", total, workers*rounds)
	}
	e.rec.WaitFor(t, "deliveries", func() bool {
		n := 0
		for _, c := range channels {
			n += len(e.rec.Publications(c))
		}
		return n == workers*rounds
	})
	for _, c := range channels {
		got := e.rec.Publications(c)
		for i, rp := range got {
			if rp.Pos.Offset != uint64(i+1) {
				t.Fatalf("channel %s delivery %d has offset %d", c, i, rp.Pos.Offset)
			}
		}
	}
}
