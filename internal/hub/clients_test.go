package hub

import (
	"fmt"
	"slices"
	"testing"
)

func TestClientTableCollisions(t *testing.T) {
	tab := newClientTable()
	tab.hashOf = func(id string) uint64 { return uint64(len(id)) } // ids of one length collide
	mk := func(id string) *client { return &client{info: &ClientInfo{Client: id}} }
	a, b, c, d := mk("a1"), mk("b2"), mk("c3"), mk("long-id")
	for _, x := range []*client{a, b, c, d} {
		tab.add(x)
	}
	if tab.len() != 4 {
		t.Fatalf("len %d, want 4", tab.len())
	}
	for _, x := range []*client{a, b, c, d} {
		if got := tab.get(x.info.Client); got != x {
			t.Fatalf("get(%q) = %v", x.info.Client, got)
		}
	}
	if tab.get("zz") != nil || tab.get("missing") != nil {
		t.Fatal("get of an absent id found a client")
	}
	tab.remove(b) // middle of a chain
	tab.remove(b) // absent: no effect
	tab.remove(mk("x9"))
	if tab.len() != 3 || tab.get("b2") != nil || tab.get("a1") != a || tab.get("c3") != c {
		t.Fatalf("after removing b: len %d", tab.len())
	}
	tab.remove(c) // head of the chain
	tab.remove(d) // alone in its bucket
	if tab.len() != 1 || tab.get("a1") != a || tab.get("long-id") != nil {
		t.Fatalf("after removing c and d: len %d", tab.len())
	}
	var all []string
	tab.each(func(c *client) { all = append(all, c.info.Client) })
	if !slices.Equal(all, []string{"a1"}) {
		t.Fatalf("each: %v", all)
	}
	tab.remove(a)
	if tab.len() != 0 || len(tab.byHash) != 0 {
		t.Fatalf("table not empty: len %d, %d buckets", tab.len(), len(tab.byHash))
	}
}

func TestSubscriptionSet(t *testing.T) {
	var ss subscriptionSet
	subs := make([]*subscription, subscriptionSetMapAt+4)
	for i := range subs {
		subs[i] = &subscription{channel: fmt.Sprintf("ch%d", i)}
	}
	check := func(n int) {
		t.Helper()
		if ss.len() != n {
			t.Fatalf("len %d, want %d", ss.len(), n)
		}
		if got := len(ss.appendTo(nil)); got != n {
			t.Fatalf("appendTo gave %d, want %d", got, n)
		}
	}
	check(0)
	if ss.get("ch0") != nil {
		t.Fatal("empty set found a subscription")
	}
	for i, s := range subs {
		ss.add(s)
		check(i + 1)
		for _, o := range subs[:i+1] {
			if ss.get(o.channel) != o {
				t.Fatalf("with %d subscriptions: %s not found", i+1, o.channel)
			}
		}
	}
	if ss.more == nil || ss.more.byCh == nil {
		t.Fatal("a large set does not use a map")
	}
	// A replaced subscription of the same channel is not removed by the
	// old one.
	ss.remove(&subscription{channel: "ch0"})
	check(len(subs))
	for i := len(subs) - 1; i >= 1; i-- {
		ss.remove(subs[i])
		check(i)
		if ss.get(subs[i].channel) != nil {
			t.Fatalf("%s still present", subs[i].channel)
		}
	}
	if ss.one != subs[0] || ss.more != nil {
		t.Fatal("a set of one does not hold it in one word")
	}
	ss.remove(subs[0])
	check(0)
	if ss.one != nil || ss.more != nil {
		t.Fatal("empty set holds memory")
	}
	// From a short list back to one.
	ss.add(subs[1])
	ss.add(subs[2])
	ss.remove(subs[1])
	if ss.one != subs[2] || ss.more != nil || ss.get("ch2") != subs[2] {
		t.Fatal("list of two minus one is not a set of one")
	}
}
