package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redisbroker"
	"github.com/heraldhq/herald/internal/testservers"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/ws"
)

func TestClusterRedis(t *testing.T) {
	addrs := testservers.RedisAddrs(t, 1)
	// Every node lists every shard: channels spread over them by
	// consistent hashing. The ring does not depend on the order of the
	// list, so node 2 lists the shards in reverse.
	prefix := "ct" + randomID(6)
	spec := newSpec(redisBroker(prefix, addrs...))
	reversed := slices.Clone(addrs)
	slices.Reverse(reversed)
	spec.BrokerVariants = []string{spec.Broker, redisBroker(prefix, reversed...)}
	nodes := runCluster(t, spec)
	if len(addrs) > 1 {
		t.Run("every shard carries channels", func(t *testing.T) {
			testEveryShard(t, nodes, addrs)
		})
	}
}

// testEveryShard publishes through node 1 to a channel on each Redis
// shard (found with the broker's own ring) and checks that a subscriber
// on node 2, whose address list is reversed, receives each.
func testEveryShard(t *testing.T, nodes []*node, addrs []string) {
	ring, err := redisbroker.New(redisbroker.Options{Addrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close(context.Background())
	sub := dial(t, nodes[1], "shard-sub", "shard-user")
	seen := make(map[int]bool)
	for i := 0; len(seen) < len(addrs) && i < 1000; i++ {
		ch := fmt.Sprintf("chat:shard-%s-%d", randomID(3), i)
		shard := ring.ShardOf(ch)
		if seen[shard] {
			continue
		}
		seen[shard] = true
		sub.subscribe(t, ch, nil)
		for k := 1; k <= 5; k++ {
			nodes[0].publishN(t, ch, k)
		}
		sub.waitNumbers(t, ch, 5)
	}
	if len(seen) != len(addrs) {
		t.Fatalf("found channels on %d of %d shards", len(seen), len(addrs))
	}
}

func TestClusterNATS(t *testing.T) {
	url := testservers.NATSURL(t)
	runCluster(t, newSpec(natsBroker(url)))
}

// startCluster starts n nodes named after the test and returns them once
// each is ready.
func startCluster(t *testing.T, spec clusterSpec, n int) []*node {
	t.Helper()
	closeIdle(t)
	prefix := "n" + randomID(3) + "-"
	nodes := make([]*node, n)
	for i := range nodes {
		sp := spec
		if len(spec.BrokerVariants) > 0 {
			sp.Broker = spec.BrokerVariants[i%len(spec.BrokerVariants)]
		}
		nodes[i] = startNode(t, sp, fmt.Sprintf("%s%d", prefix, i+1), false)
	}
	for _, nd := range nodes {
		nd.waitReady(t, 20*time.Second)
	}
	return nodes
}

// runCluster runs the cluster checks over three nodes and returns them
// (still running) for broker-specific checks.
func runCluster(t *testing.T, spec clusterSpec) []*node {
	outer := t // owns resources that outlive one subtest
	nodes := startCluster(t, spec, 3)
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.name
	}
	slices.Sort(names)

	t.Run("info lists every node", func(t *testing.T) {
		for _, n := range nodes {
			poll(t, 15*time.Second, "/api/info on "+n.name+" listing "+strings.Join(names, ","), func() (bool, string) {
				got := n.infoNames(t)
				// A shared broker may carry other clusters' nodes: only
				// this test's names are checked.
				var mine []string
				for _, g := range got {
					if slices.Contains(names, g) {
						mine = append(mine, g)
					}
				}
				slices.Sort(mine)
				return slices.Equal(mine, names), strings.Join(got, ",")
			})
		}
	})

	channel := "chat:" + randomID(6)
	// User ids are unique per run: a shared broker may carry other
	// clusters' control messages (the NATS broker's subject prefix is not
	// configurable).
	userPrefix := "u" + randomID(4)
	users := make([]string, len(nodes)) // sorted
	for i := range users {
		users[i] = fmt.Sprintf("%s-%d", userPrefix, i+1)
	}
	clients := make([]*client, len(nodes))
	for i, n := range nodes {
		clients[i] = dial(t, n, fmt.Sprintf("client%d", i+1), users[i])
		if clients[i].node != n.name {
			t.Fatalf("client %d connected to node %q, want %q", i+1, clients[i].node, n.name)
		}
		clients[i].subscribe(t, channel, nil)
	}

	t.Run("presence is global", func(t *testing.T) {
		for _, n := range nodes {
			poll(t, 10*time.Second, "presence_stats on "+n.name, func() (bool, string) {
				var st struct {
					NumClients int `json:"num_clients"`
					NumUsers   int `json:"num_users"`
				}
				n.apiOK(t, "presence_stats", map[string]string{"channel": channel}, &st)
				return st.NumClients == 3 && st.NumUsers == 3, fmt.Sprintf("%+v", st)
			})
		}
		var p struct {
			Presence map[string]struct {
				User string `json:"user"`
			} `json:"presence"`
		}
		nodes[2].apiOK(t, "presence", map[string]string{"channel": channel}, &p)
		var got []string
		for _, ci := range p.Presence {
			got = append(got, ci.User)
		}
		slices.Sort(got)
		if !slices.Equal(got, users) {
			t.Fatalf("presence users %v, want %v", got, users)
		}
	})

	t.Run("channels are counted across nodes", func(t *testing.T) {
		// Other nodes' counts arrive with their periodic reports.
		for _, n := range nodes {
			poll(t, 15*time.Second, "/api/channels on "+n.name, func() (bool, string) {
				var res struct {
					Channels map[string]struct {
						NumClients int `json:"num_clients"`
					} `json:"channels"`
				}
				n.apiOK(t, "channels", struct{}{}, &res)
				return res.Channels[channel].NumClients == 3, fmt.Sprintf("%+v", res.Channels[channel])
			})
		}
	})

	const first = 60
	t.Run("publications reach every node in order", func(t *testing.T) {
		for k := 1; k <= first; k++ {
			// Alternate the publishing node: the order is the broker's,
			// whichever node publishes.
			pos := nodes[k%3].publishN(t, channel, k)
			if pos.Offset == 0 || pos.Epoch == "" {
				t.Fatalf("publish %d: position %+v", k, pos)
			}
		}
		for _, c := range clients {
			c.waitNumbers(t, channel, first)
		}
	})

	t.Run("direct message reaches the user's node", func(t *testing.T) {
		nodes[0].apiOK(t, "send", map[string]any{"user": users[1], "data": map[string]string{"hello": "user2"}}, nil)
		clients[1].waitFor(t, 10*time.Second, "direct message", func(c *client) bool { return len(c.messages) == 1 })
		clients[1].mu.Lock()
		got := string(clients[1].messages[0])
		clients[1].mu.Unlock()
		if got != `{"hello":"user2"}` {
			t.Fatalf("message %s", got)
		}
		for _, c := range []*client{clients[0], clients[2]} {
			c.mu.Lock()
			n := len(c.messages)
			c.mu.Unlock()
			if n != 0 {
				t.Fatalf("%s got %d messages meant for %s", c.name, n, users[1])
			}
		}
	})

	t.Run("recovery on another node", func(t *testing.T) {
		// client1 leaves node 1; publications continue through node 2;
		// it comes back on node 3 with its last position.
		left := clients[0].snapshot(channel)
		clients[0].close()
		const missed = 25
		for k := first + 1; k <= first+missed; k++ {
			nodes[1].publishN(t, channel, k)
		}
		back := dial(outer, nodes[2], "client1-again", users[0])
		back.subscribe(t, channel, &left)
		s := back.snapshot(channel)
		if s.recovered != 1 || len(s.got) != missed || s.got[0] != first+1 || s.got[missed-1] != first+missed {
			t.Fatalf("recovered %d (want 1) with numbers %v, want %d..%d", s.recovered, s.got, first+1, first+missed)
		}
		back.requireClean(t, channel)
		// Live delivery continues exactly after what was recovered.
		nodes[0].publishN(t, channel, first+missed+1)
		back.waitNumbers(t, channel, first+missed+1)
		clients[0] = back
	})

	t.Run("server unsubscribe and disconnect reach the user's node", func(t *testing.T) {
		nodes[0].apiOK(t, "unsubscribe", map[string]string{"user": users[2], "channel": channel}, nil)
		clients[2].waitFor(t, 10*time.Second, "unsubscribe push", func(c *client) bool {
			return len(c.unsubs) == 1
		})
		if u := clients[2].unsubs[0]; u.Code != wire.UnsubscribeServer || u.Channel != channel || u.Resubscribe {
			t.Fatalf("unsubscribe push %+v", u)
		}
		nodes[1].apiOK(t, "disconnect", map[string]any{"user": users[2], "code": wire.DisconnectForceNoReconnect, "reason": "bye"}, nil)
		clients[2].waitFor(t, 10*time.Second, "connection closed", func(c *client) bool { return c.readErr != nil })
		if code := clients[2].closeCode; code != ws.StatusCode(wire.DisconnectForceNoReconnect) {
			t.Fatalf("close code %d, want %d", code, wire.DisconnectForceNoReconnect)
		}
		// The other users were not touched.
		clients[1].ping(t)
		clients[0].ping(t)
	})
	return nodes
}

// apiErrorCode decodes the JSON error code of a failed API call.
func apiErrorCode(t testing.TB, status int, body []byte) uint32 {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		t.Fatalf("status %d with body %q: not a JSON error", status, body)
	}
	if status == http.StatusOK {
		t.Fatalf("status 200 with error body %s", body)
	}
	return e.Error.Code
}
