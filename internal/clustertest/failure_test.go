package clustertest

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testservers"
	"github.com/heraldhq/herald/internal/wire"
)

// failFastBound separates failing fast from waiting for the server API's
// own 10 s request timeout; broker operations time out after 1-2 s.
const failFastBound = 5 * time.Second

// TestBrokerOutageRedis stops a private Redis (no persistence) during
// traffic and starts it again: history and epochs are lost, so clients
// must be told they could not recover.
func TestBrokerOutageRedis(t *testing.T) {
	srv := testservers.StartRedis(t)
	runOutage(t, srv, newSpec(redisBroker("ct"+randomID(6), srv.Addr())), false)
}

// TestBrokerOutageNATS stops a private NATS server whose JetStream store
// survives the restart: nothing is lost, clients continue (or recover)
// without a gap.
func TestBrokerOutageNATS(t *testing.T) {
	srv := testservers.StartNATS(t)
	runOutage(t, srv, newSpec(natsBroker(srv.URL())), true)
}

func runOutage(t *testing.T, srv *testservers.Server, spec clusterSpec, durable bool) {
	nodes := startCluster(t, spec, 2)
	channel := "chat:" + randomID(6)
	clients := []*client{dial(t, nodes[0], "a", "ua"), dial(t, nodes[1], "b", "ub")}
	for _, c := range clients {
		c.subscribe(t, channel, nil)
	}
	k := 0
	for ; k < 10; k++ {
		nodes[k%2].publishN(t, channel, k+1)
	}
	for _, c := range clients {
		c.waitNumbers(t, channel, k)
	}

	srv.Stop()
	// Publishing fails fast with 503 and a JSON error on every node.
	for _, n := range nodes {
		poll(t, 10*time.Second, "503 from "+n.name, func() (bool, string) {
			start := time.Now()
			status, body := n.api(t, "publish", map[string]any{"channel": channel, "data": map[string]int{"n": -1}})
			took := time.Since(start)
			if status == http.StatusOK {
				// The node has not noticed yet (a write that raced the
				// kill): it succeeded, so it must still be delivered.
				t.Fatalf("publish succeeded on %s after the broker stopped: %s", n.name, body)
			}
			if status != http.StatusServiceUnavailable {
				return false, fmt.Sprintf("status %d %s", status, body)
			}
			if code := apiErrorCode(t, status, body); code != wire.ErrBrokerUnavailable {
				t.Fatalf("503 with error code %d (%s), want %d", code, body, wire.ErrBrokerUnavailable)
			}
			if took > failFastBound {
				t.Fatalf("publish took %v to fail, want under %v", took, failFastBound)
			}
			return true, ""
		})
	}
	// Clients stay connected and served meanwhile.
	for _, c := range clients {
		c.ping(t)
	}

	srv.Start()
	// Every node reconnects by itself: a publish through each goes
	// through again.
	for _, n := range nodes {
		poll(t, 20*time.Second, "publishing through "+n.name+" after the broker restarted", func() (bool, string) {
			status, body := n.api(t, "publish", map[string]any{"channel": channel, "data": map[string]int{"n": k + 1}})
			if status == http.StatusOK {
				k++
				return true, ""
			}
			return false, fmt.Sprintf("%d %s", status, body)
		})
	}
	if !durable {
		// The restarted Redis lost the stream: every client is told to
		// resubscribe and learns it could not recover.
		for _, c := range clients {
			c.waitFor(t, 15*time.Second, "recovered:false after the history was lost", func(c *client) bool {
				s := c.streamLocked(channel)
				return s.notRecov > 0 && s.subscribed
			})
		}
	}
	for range 5 {
		k++
		nodes[k%2].publishN(t, channel, k)
	}
	for _, c := range clients {
		c.waitNumbers(t, channel, k)
		s := c.snapshot(channel)
		if durable && s.notRecov > 0 {
			t.Fatalf("%s: recovered:false although the broker kept its history: %s", c.name, c.describe())
		}
		if !durable && s.recovered > 0 {
			t.Fatalf("%s: recovered:true across a restart that lost history: %s", c.name, c.describe())
		}
		t.Logf("%s: %d numbers, %d resubscribes recovered, %d not recovered", c.name, len(s.got), s.recovered, s.notRecov)
	}
}

// TestBrokerDownAtStart starts a node while its Redis is down: the node
// serves, reports not ready and answers 503 to publishes, then connects
// by itself when Redis comes up.
func TestBrokerDownAtStart(t *testing.T) {
	srv := testservers.StartRedis(t)
	srv.Stop()
	closeIdle(t)
	n := startNode(t, newSpec(redisBroker("ct"+randomID(6), srv.Addr())), "n-"+randomID(3), false)
	if st := n.readyStatus(t); st != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d with the broker down, want 503", st)
	}
	channel := "chat:" + randomID(6)
	status, body := n.api(t, "publish", map[string]any{"channel": channel, "data": map[string]int{"n": 1}})
	if status != http.StatusServiceUnavailable || apiErrorCode(t, status, body) != wire.ErrBrokerUnavailable {
		t.Fatalf("publish with the broker down: %d %s", status, body)
	}
	srv.Start()
	n.waitReady(t, 20*time.Second)
	c := dial(t, n, "c", "u")
	c.subscribe(t, channel, nil)
	n.publishN(t, channel, 1)
	c.waitNumbers(t, channel, 1)
}
