package membroker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newClocked(t *testing.T) (*Broker, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	b := New(Options{Now: clk.Now, JanitorInterval: 5 * time.Millisecond})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b, clk
}

func historyOffsets(t *testing.T, b *Broker, ch string) ([]uint64, hub.StreamPosition) {
	t.Helper()
	res, err := b.History(context.Background(), ch, hub.HistoryOptions{Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, p := range res.Publications {
		out = append(out, p.Offset)
	}
	return out, res.Position
}

func TestHistoryTTLWithClock(t *testing.T) {
	b, clk := newClocked(t)
	ctx := context.Background()
	opts := hub.PublishOptions{HistorySize: 10, HistoryTTL: 10 * time.Second}
	for range 3 {
		if _, err := b.Publish(ctx, "c", &hub.Publication{Data: []byte("1")}, opts); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(6 * time.Second)
	b.Publish(ctx, "c", &hub.Publication{Data: []byte("2")}, opts)
	clk.Advance(5 * time.Second)
	got, pos := historyOffsets(t, b, "c")
	if !slices.Equal(got, []uint64{4}) || pos.Offset != 4 {
		t.Fatalf("history %v at %+v, want [4] at 4", got, pos)
	}
	clk.Advance(5 * time.Second)
	if got, pos2 := historyOffsets(t, b, "c"); len(got) != 0 || pos2 != pos {
		t.Fatalf("history %v at %+v after all expired", got, pos2)
	}
}

func TestMetaExpiryWithClock(t *testing.T) {
	b, clk := newClocked(t)
	ctx := context.Background()
	opts := hub.PublishOptions{HistorySize: 10, HistoryMetaTTL: time.Minute}
	old, _ := b.Publish(ctx, "c", &hub.Publication{Data: []byte("1")}, opts)
	clk.Advance(59 * time.Second)
	// A publication extends the metadata's life.
	b.Publish(ctx, "c", &hub.Publication{Data: []byte("2")}, opts)
	clk.Advance(59 * time.Second)
	if _, pos := historyOffsets(t, b, "c"); pos != (hub.StreamPosition{Offset: 2, Epoch: old.Epoch}) {
		t.Fatalf("position %+v before expiry", pos)
	}
	clk.Advance(2 * time.Second)
	got, pos := historyOffsets(t, b, "c")
	if len(got) != 0 || pos.Offset != 0 || pos.Epoch == old.Epoch || pos.Epoch == "" {
		t.Fatalf("after meta expiry: %v at %+v (old epoch %s)", got, pos, old.Epoch)
	}
	next, _ := b.Publish(ctx, "c", &hub.Publication{Data: []byte("3")}, opts)
	if next != (hub.StreamPosition{Offset: 1, Epoch: pos.Epoch}) {
		t.Fatalf("first publication of the new epoch at %+v", next)
	}
	// Default meta TTL applies when none is given.
	b.Publish(ctx, "d", &hub.Publication{Data: []byte("1")}, hub.PublishOptions{HistorySize: 1})
	clk.Advance(DefaultHistoryMetaTTL - time.Second)
	if _, pos := historyOffsets(t, b, "d"); pos.Offset != 1 {
		t.Fatalf("default meta TTL expired early: %+v", pos)
	}
}

func TestJanitorForgetsUnusedState(t *testing.T) {
	b, clk := newClocked(t)
	ctx := context.Background()
	b.Publish(ctx, "gone", &hub.Publication{Data: []byte("1")}, hub.PublishOptions{HistorySize: 5, HistoryMetaTTL: time.Second})
	b.Subscribe(ctx, "kept")
	b.AddPresence(ctx, "p", "c1", &hub.ClientInfo{Client: "c1"}, time.Second)
	clk.Advance(2 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, gone := b.lookupState("gone")
		_, kept := b.lookupState("kept")
		b.presMu.Lock()
		presence := len(b.presence)
		b.presMu.Unlock()
		if !gone && kept && presence == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("janitor left gone=%v kept=%v presence=%d", gone, kept, presence)
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-b.done:
			t.Fatal("janitor stopped")
		}
	}
	// A forgotten channel starts over with a new epoch.
	pos, _ := b.Publish(ctx, "gone", &hub.Publication{Data: []byte("1")}, hub.PublishOptions{HistorySize: 5})
	if pos.Offset != 1 {
		t.Fatalf("publication after purge at %+v", pos)
	}
}

func TestHistoryResize(t *testing.T) {
	b, _ := newClocked(t)
	ctx := context.Background()
	pub := func(size int) {
		if _, err := b.Publish(ctx, "c", &hub.Publication{Data: []byte("1")}, hub.PublishOptions{HistorySize: size}); err != nil {
			t.Fatal(err)
		}
	}
	for range 7 {
		pub(5)
	}
	pub(8) // grows: 3..8
	if got, _ := historyOffsets(t, b, "c"); !slices.Equal(got, []uint64{3, 4, 5, 6, 7, 8}) {
		t.Fatalf("after growing %v", got)
	}
	pub(3) // shrinks: 7..9
	if got, _ := historyOffsets(t, b, "c"); !slices.Equal(got, []uint64{7, 8, 9}) {
		t.Fatalf("after shrinking %v", got)
	}
	// A publication without history neither advances nor stores.
	if pos, _ := b.Publish(ctx, "c", &hub.Publication{Data: []byte("x")}, hub.PublishOptions{}); pos.Offset != 0 {
		t.Fatalf("publication without history at %+v", pos)
	}
	if got, pos := historyOffsets(t, b, "c"); !slices.Equal(got, []uint64{7, 8, 9}) || pos.Offset != 9 {
		t.Fatalf("after publication without history %v %+v", got, pos)
	}
	if _, err := b.Publish(ctx, "c", &hub.Publication{}, hub.PublishOptions{HistorySize: -1}); err == nil {
		t.Fatal("negative history size accepted")
	}
}

func TestPublishCopiesInput(t *testing.T) {
	b, _ := newClocked(t)
	in := &hub.Publication{Offset: 77, Data: []byte("1")}
	pos, _ := b.Publish(context.Background(), "c", in, hub.PublishOptions{HistorySize: 2})
	if in.Offset != 77 || pos.Offset != 1 {
		t.Fatalf("input modified (%d) or wrong position %+v", in.Offset, pos)
	}
}

func TestPresenceExpiryWithClock(t *testing.T) {
	b, clk := newClocked(t)
	ctx := context.Background()
	b.AddPresence(ctx, "c", "a", &hub.ClientInfo{Client: "a", User: "u"}, 10*time.Second)
	b.AddPresence(ctx, "c", "b", &hub.ClientInfo{Client: "b", User: "u"}, 0) // default TTL
	clk.Advance(11 * time.Second)
	p, _ := b.Presence(ctx, "c")
	st, _ := b.PresenceStats(ctx, "c")
	if len(p) != 1 || p["b"] == nil || st != (hub.PresenceStats{NumClients: 1, NumUsers: 1}) {
		t.Fatalf("presence %v stats %+v", p, st)
	}
	// Refreshing extends an entry.
	b.AddPresence(ctx, "c", "b", &hub.ClientInfo{Client: "b", User: "u"}, 0)
	clk.Advance(DefaultPresenceTTL - time.Second)
	if p, _ := b.Presence(ctx, "c"); p["b"] == nil {
		t.Fatal("refreshed entry expired")
	}
}

func TestClosed(t *testing.T) {
	b := New(Options{})
	ctx := context.Background()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.Publish(ctx, "c", &hub.Publication{}, hub.PublishOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if err := b.AddPresence(ctx, "c", "x", nil, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddPresence after Close: %v", err)
	}
	if err := b.Run(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
}

// lookupState reports whether the broker holds a state for channel.
func (b *Broker) lookupState(channel string) (*channelState, bool) {
	sh := b.shardFor(channel)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	cs, ok := sh.channels[channel]
	return cs, ok
}
