package server

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testwait"
)

// metricValue returns the value of the sample named series (name plus
// labels exactly as exposed, e.g. `herald_bytes_sent_total{transport="tcp"}`)
// in a /metrics page, and whether it is there.
func metricValue(page, series string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(page))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// waitMetrics polls /metrics until every cond holds for the page, and
// returns the page; it fails the test naming what did not hold.
func waitMetrics(t *testing.T, s *Server, conds map[string]func(page string) bool) string {
	t.Helper()
	var page string
	testwait.UntilNil(t, "metrics", func() error {
		page = get(t, "http://"+s.Addr()+"/metrics")
		var failed []string
		for what, cond := range conds {
			if !cond(page) {
				failed = append(failed, what)
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("never showed: %s", strings.Join(failed, "; "))
		}
		return nil
	})
	return page
}

// above returns a condition: series exists with a value above min.
func above(series string, min float64) func(string) bool {
	return func(page string) bool {
		v, ok := metricValue(page, series)
		return ok && v > min
	}
}

// TestWebSocketTrafficMetrics: a WebSocket subscriber's commands are
// counted as messages and bytes received, and a publication delivered to
// it adds to the bytes sent and to the publish-to-write histogram.
func TestWebSocketTrafficMetrics(t *testing.T) {
	s, _ := startServer(t, nil)
	cl := dialClient(t, s)
	cl.call("connect", map[string]any{})
	// The default namespace has no join/leave pushes: the publication is
	// the only delivery.
	cl.call("subscribe", map[string]any{"channel": "metrics"})

	const (
		msgsIn   = `herald_messages_received_total{transport="websocket"}`
		bytesIn  = `herald_bytes_received_total{transport="websocket"}`
		bytesOut = `herald_bytes_sent_total{transport="websocket"}`
		latency  = `herald_publish_to_write_seconds_count{transport="websocket"}`
	)
	page := waitMetrics(t, s, map[string]func(string) bool{
		"two messages received": func(p string) bool { v, _ := metricValue(p, msgsIn); return v == 2 },
		"bytes received":        above(bytesIn, 0),
		"replies written":       above(bytesOut, 0),
	})
	sentBefore, _ := metricValue(page, bytesOut)
	if v, ok := metricValue(page, latency); ok && v != 0 {
		t.Fatalf("publish-to-write observed %v times before any delivery", v)
	}

	if status, body := apiCall(t, s, s.APIKey(), "publish", `{"channel":"metrics","data":{"n":1}}`); status != 200 {
		t.Fatalf("publish: %d %v", status, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for cl.read(ctx)["type"] != "publication" {
	}
	waitMetrics(t, s, map[string]func(string) bool{
		"publication bytes written":      above(bytesOut, sentBefore),
		"publish-to-write observed once": func(p string) bool { v, _ := metricValue(p, latency); return v == 1 },
		"latency histogram has a bucket": func(p string) bool {
			return strings.Contains(p, `herald_publish_to_write_seconds_bucket{transport="websocket",le=`)
		},
	})
}
