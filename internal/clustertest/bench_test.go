package clustertest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testservers"
)

// Benchmark shape: benchSubscribers WebSocket clients spread round-robin
// over the nodes, all subscribed to one channel; publishers goroutines
// publish b.N publications through the server API, also round-robin over
// the nodes; the clock stops when every subscriber has received every
// publication. Both brokers run with the same publishers: with NATS they
// all append to one channel's stream, the hardest case for its appends.
const (
	benchSubscribers = 60
	benchPublishers  = 8
)

// BenchmarkCluster measures API publishes/s and WebSocket deliveries/s
// through one node and through three nodes sharing Redis (and NATS).
// Every process (nodes, broker, these clients) shares the machine's
// cores, so compare the ratios between runs of one machine, not the
// absolute numbers. docs/scaling.md has the command and results.
func BenchmarkCluster(b *testing.B) {
	brokers := []struct {
		name       string
		publishers int
		broker     func(b *testing.B) string
	}{
		{"redis", benchPublishers, func(b *testing.B) string {
			return redisBroker("cb"+randomID(6), testservers.RedisAddrs(b, 1)[0])
		}},
		{"nats", benchPublishers, func(b *testing.B) string { return natsBroker(testservers.NATSURL(b)) }},
	}
	for _, br := range brokers {
		for _, nodes := range []int{1, 3} {
			b.Run(fmt.Sprintf("%s/nodes=%d", br.name, nodes), func(b *testing.B) {
				benchCluster(b, newSpec(br.broker(b)), nodes, br.publishers)
			})
		}
	}
}

func benchCluster(b *testing.B, spec clusterSpec, numNodes, publishers int) {
	closeIdle(b)
	nodes := make([]*node, numNodes)
	for i := range nodes {
		nodes[i] = startNode(b, spec, fmt.Sprintf("bench-%s-%d", randomID(3), i+1), true)
	}
	channel := "chat:" + randomID(6)
	subs := make([]*client, benchSubscribers)
	for i := range subs {
		subs[i] = dial(b, nodes[i%numNodes], fmt.Sprintf("sub%d", i), fmt.Sprintf("u%d", i))
		subs[i].countOnly = true
		subs[i].subscribe(b, channel, nil)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: publishers}
	b.Cleanup(transport.CloseIdleConnections)
	hc := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	body := []byte(fmt.Sprintf(`{"channel":%q,"data":{"payload":"0123456789abcdef0123456789abcdef"}}`, channel))

	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				n := nodes[int(i)%numNodes]
				req, _ := http.NewRequest(http.MethodPost, "http://"+n.addr+"/api/publish", bytes.NewReader(body))
				req.Header.Set("X-API-Key", spec.APIKey)
				resp, err := hc.Do(req)
				if err != nil {
					failed.Store(err.Error())
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Store(fmt.Sprintf("status %d", resp.StatusCode))
					return
				}
			}
		}()
	}
	wg.Wait()
	published := time.Since(start)
	if f := failed.Load(); f != nil {
		b.Fatalf("publish failed: %v", f)
	}
	for _, c := range subs {
		c.waitFor(b, 60*time.Second, fmt.Sprintf("%d publications", b.N), func(c *client) bool {
			return c.streamLocked(channel).count >= b.N
		})
	}
	delivered := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/published.Seconds(), "publishes/s")
	b.ReportMetric(float64(b.N*benchSubscribers)/delivered.Seconds(), "deliveries/s")
	b.ReportMetric(0, "ns/op") // the rates above are the result
}
