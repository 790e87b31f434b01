package membroker

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/heraldhq/herald/internal/hub"
)

// targetHandler is an EventHandler with hub.ChannelTargets: it records
// which path each publication took and how often targets were asked for.
type targetHandler struct {
	nopHandler
	mu       sync.Mutex
	byName   []string // channel:data of publications given by name
	targeted []string // target number:data of publications given to a target
	asked    map[string]int
	refuse   map[string]bool // channels without a target
}

func (h *targetHandler) HandlePublication(channel string, pub *hub.Publication, _ hub.StreamPosition) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.byName = append(h.byName, channel+":"+string(pub.Data))
}

func (h *targetHandler) PublicationTarget(channel string) hub.ChannelTarget {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.asked[channel]++
	if h.refuse[channel] {
		return nil
	}
	return &recordingTarget{h: h, name: channel + "#" + string(rune('0'+h.asked[channel]))}
}

type recordingTarget struct {
	h    *targetHandler
	name string
}

func (t *recordingTarget) HandleChannelPublication(pub *hub.Publication, _ hub.StreamPosition) {
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	t.h.targeted = append(t.h.targeted, t.name+":"+string(pub.Data))
}

// TestChannelTargets: publications of a subscription go to the target the
// handler gave for it, asked for once per subscription, with and without
// history; a channel without a target is delivered by name.
func TestChannelTargets(t *testing.T) {
	b, _ := newClocked(t)
	h := &targetHandler{asked: map[string]int{}, refuse: map[string]bool{"plain": true}}
	ctx := context.Background()
	if err := b.Run(ctx, h); err != nil {
		t.Fatal(err)
	}
	publish := func(ch, data string, history int) {
		t.Helper()
		if _, err := b.Publish(ctx, ch, &hub.Publication{Data: []byte(data)}, hub.PublishOptions{HistorySize: history}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ch := range []string{"a", "plain"} {
		if err := b.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	publish("a", "1", 0)
	publish("a", "2", 10)
	publish("plain", "3", 0)
	publish("plain", "4", 10)
	if err := b.Unsubscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	publish("a", "5", 0) // not subscribed: nowhere
	if err := b.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	publish("a", "6", 10)
	publish("a", "7", 0)

	h.mu.Lock()
	defer h.mu.Unlock()
	if got, want := h.targeted, []string{"a#1:1", "a#1:2", "a#2:6", "a#2:7"}; !slices.Equal(got, want) {
		t.Errorf("targeted %v, want %v", got, want)
	}
	if got, want := h.byName, []string{"plain:3", "plain:4"}; !slices.Equal(got, want) {
		t.Errorf("by name %v, want %v", got, want)
	}
	if h.asked["a"] != 2 {
		t.Errorf("target of a asked for %d times, want once per subscription", h.asked["a"])
	}
}
