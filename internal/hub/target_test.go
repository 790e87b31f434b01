package hub_test

import (
	"testing"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

func pushedData(evs []event) []string {
	var out []string
	for _, e := range evs {
		if e.kind == evPush && e.delivery.Push().Type == wire.PushPublication {
			out = append(out, e.delivery.Push().Channel+":"+string(e.delivery.Push().Publication.Data))
		}
	}
	return out
}

// TestPublicationTargets: a channel's target delivers to its subscribers
// like HandlePublication; a channel released and joined again has a new
// state, so a stale target delivers nothing and publications through the
// in-memory broker (which keeps targets) reach the new subscribers.
func TestPublicationTargets(t *testing.T) {
	f := newHub(t, hub.Config{}, nil)
	if f.h.PublicationTarget("nobody") != nil {
		t.Fatal("target for a channel without subscribers")
	}
	s1 := f.client(t, "c1", "")
	f.subscribe(t, s1, "room", nil)
	old := f.h.PublicationTarget("room")
	if old == nil {
		t.Fatal("no target for a subscribed channel")
	}
	old.HandleChannelPublication(&hub.Publication{Data: []byte("1")}, hub.StreamPosition{})
	f.publish(t, "room", "2")
	s1.waitFor(t, "two publications", func(evs []event) bool { return len(pushedData(evs)) == 2 })

	if err := f.h.Unsubscribe(f.ctx, s1, "room"); err != nil {
		t.Fatal(err)
	}
	poll(t, "the channel's release", func() bool { return f.h.PublicationTarget("room") == nil })
	s2 := f.client(t, "c2", "")
	f.subscribe(t, s2, "room", nil)
	old.HandleChannelPublication(&hub.Publication{Data: []byte("stale")}, hub.StreamPosition{})
	f.publish(t, "room", "3")
	evs := s2.waitFor(t, "a publication", func(evs []event) bool { return len(pushedData(evs)) >= 1 })
	if got := pushedData(evs); len(got) != 1 || got[0] != "room:3" {
		t.Errorf("new subscriber got %v, want [room:3]", got)
	}
	if got := pushedData(s1.snapshot()); len(got) != 2 || got[0] != "room:1" || got[1] != "room:2" {
		t.Errorf("first subscriber got %v", got)
	}
}
