package hub

import (
	"fmt"
	"math/rand/v2"
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
	if tab.len() != 0 || tab.slots != nil {
		t.Fatalf("table not empty: len %d, %d slots", tab.len(), len(tab.slots))
	}
}

// TestClientTableAgainstMap drives the table through growth, shrinking and
// backward-shift deletion (with a hash that puts many ids in one probe
// run, wrapping around the array's end) and compares it with a map after
// every step.
func TestClientTableAgainstMap(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hashOf func(string) uint64
	}{
		{"maphash", nil},
		{"clustered", func(id string) uint64 { return ^uint64(0) - uint64(len(id)%3) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := newClientTable()
			tab.hashOf = tc.hashOf
			want := make(map[string]*client)
			rng := rand.New(rand.NewPCG(1, 2))
			check := func(step int) {
				if tab.len() != len(want) {
					t.Fatalf("step %d: len %d, want %d", step, tab.len(), len(want))
				}
				for id, c := range want {
					if got := tab.get(id); got != c {
						t.Fatalf("step %d: get(%q) = %p, want %p", step, id, got, c)
					}
				}
				seen := 0
				tab.each(func(c *client) {
					if want[c.info.Client] != c {
						t.Fatalf("step %d: each yielded %q, not in the table", step, c.info.Client)
					}
					seen++
				})
				if seen != len(want) {
					t.Fatalf("step %d: each yielded %d clients, want %d", step, seen, len(want))
				}
				if n := len(tab.slots); n != 0 && (tab.len()*clientTableMaxLoadDen > n*clientTableMaxLoadNum) {
					t.Fatalf("step %d: %d clients in %d slots", step, tab.len(), n)
				}
			}
			for step := range 3000 {
				id := fmt.Sprintf("c%d", rng.IntN(400))
				// Grow to about 400 clients, then shed nearly all of them.
				if c, ok := want[id]; ok && (step > 2000 || rng.IntN(3) == 0) {
					tab.remove(c)
					delete(want, id)
				} else if !ok && step <= 2000 {
					c := &client{info: &ClientInfo{Client: id}}
					tab.add(c)
					want[id] = c
				}
				if tab.get(id+"x") != nil {
					t.Fatalf("step %d: absent id found", step)
				}
				if step%50 == 0 || step > 2900 {
					check(step)
				}
			}
			check(3000)
			if len(want) < 60 && len(tab.slots) > 8*clientTableMinSlots*2 && len(tab.slots) > len(want)*clientTableShrinkDen*2 {
				t.Fatalf("%d clients still hold %d slots", len(want), len(tab.slots))
			}
		})
	}
}

func TestSubscriptionSet(t *testing.T) {
	var ss subscriptionSet
	subs := make([]*subscription, subscriptionSetMapAt+4)
	for i := range subs {
		subs[i] = &subscription{ch: &channel{name: fmt.Sprintf("ch%d", i)}}
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
			if ss.get(o.ch.name) != o {
				t.Fatalf("with %d subscriptions: %s not found", i+1, o.ch.name)
			}
		}
	}
	if ss.more == nil || ss.more.byCh == nil {
		t.Fatal("a large set does not use a map")
	}
	// A replaced subscription of the same channel is not removed by the
	// old one.
	ss.remove(&subscription{ch: &channel{name: "ch0"}})
	check(len(subs))
	for i := len(subs) - 1; i >= 1; i-- {
		ss.remove(subs[i])
		check(i)
		if ss.get(subs[i].ch.name) != nil {
			t.Fatalf("%s still present", subs[i].ch.name)
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

// BenchmarkClientTableGet looks up ids in a table of 15,000 clients, the
// idle-memory workload's size (the array is then 46% full).
func BenchmarkClientTableGet(b *testing.B) {
	tab := newClientTable()
	ids := make([]string, 15000)
	for i := range ids {
		ids[i] = fmt.Sprintf("client-%016x", i*7919)
		tab.add(&client{info: &ClientInfo{Client: ids[i]}})
	}
	for i := 0; b.Loop(); i++ {
		if tab.get(ids[i%len(ids)]) == nil {
			b.Fatal("client not found")
		}
	}
}
