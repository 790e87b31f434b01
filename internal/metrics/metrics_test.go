package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	b, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSeries(t *testing.T) {
	m := New()
	ws := m.Transport("ws")
	if m.Transport("ws") != ws {
		t.Fatal("Transport does not return the same handle for a name")
	}
	ws.Connected()
	ws.Connected()
	ws.Disconnected()
	ws.Received(10)
	ws.Wrote(300)
	sent := m.MessagesSent("delivery")
	sent.Inc()
	sent.Inc()
	sent.Inc()
	m.ObserveCommand("subscribe", 0)
	m.ObserveCommand("subscribe", wire.ErrUnknownChannel)
	m.Transport("tcp").Connected()
	if err := m.CounterFunc("hub_published_total", "test counter", func() float64 { return 9 }); err != nil {
		t.Fatal(err)
	}
	ws.ObservePublishToWrite(time.Now().Add(-time.Millisecond))
	m.ObserveHistoryRead(7)
	m.Disconnect(wire.DisconnectSlowConsumer)
	m.Disconnect(wire.DisconnectSlowConsumer)
	m.Disconnect(4999)
	m.ObserveAPIRequest("publish", 200, time.Millisecond)
	m.ObserveAPIRequest("publish", 401, time.Millisecond)
	if err := m.GaugeFunc("hub_channels", "test gauge", func() float64 { return 42 }); err != nil {
		t.Fatal(err)
	}
	out := scrape(t, m)
	for _, want := range []string{
		`herald_connections{transport="ws"} 1`,
		`herald_connections_total{transport="ws"} 2`,
		`herald_connections{transport="tcp"} 1`,
		`herald_messages_received_total{transport="ws"} 1`,
		`herald_bytes_received_total{transport="ws"} 10`,
		`herald_messages_sent_total{kind="delivery"} 3`,
		`herald_commands_total{code="0",method="subscribe"} 1`,
		`herald_commands_total{code="102",method="subscribe"} 1`,
		`herald_bytes_sent_total{transport="ws"} 300`,
		`herald_hub_published_total 9`,
		`herald_publish_to_write_seconds_count{transport="ws"} 1`,
		`herald_history_read_publications_sum 7`,
		`herald_disconnects_total{reason="slow_consumer"} 2`,
		`herald_disconnects_total{reason="other"} 1`,
		`herald_api_requests_total{method="publish",status="200"} 1`,
		`herald_api_requests_total{method="publish",status="401"} 1`,
		`herald_api_request_duration_seconds_count{method="publish"} 2`,
		`herald_hub_channels 42`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	// A transport that reports no traffic exports no traffic series.
	for _, absent := range []string{
		`herald_bytes_sent_total{transport="tcp"}`,
		`herald_messages_received_total{transport="tcp"}`,
		`herald_publish_to_write_seconds_count{transport="tcp"}`,
	} {
		if strings.Contains(out, absent) {
			t.Errorf("scrape has %q although tcp reported no traffic", absent)
		}
	}
}

func TestNilIsNoop(t *testing.T) {
	var m *Metrics
	tr := m.Transport("ws")
	tr.Connected()
	tr.Disconnected()
	tr.Received(1)
	tr.Wrote(1)
	m.MessagesSent("reply").Inc()
	m.ObserveCommand("ping", 0)
	if err := m.CounterFunc("y", "y", func() float64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	tr.ObservePublishToWrite(time.Now())
	m.ObserveHistoryRead(1)
	m.Disconnect(1000)
	m.ObserveAPIRequest("x", 200, 0)
	if err := m.GaugeFunc("x", "x", func() float64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	if m.Registry() != nil {
		t.Fatal("nil Metrics has a registry")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("nil Metrics handler status %d", rec.Code)
	}
}

func TestDisconnectReasonsDistinct(t *testing.T) {
	codes := []uint16{
		wire.DisconnectNormal, wire.DisconnectShutdown, wire.DisconnectMessageTooBig,
		wire.DisconnectServerError, wire.DisconnectSlowConsumer, wire.DisconnectNoPong,
		wire.DisconnectForceReconnect, wire.DisconnectInsufficientState, wire.DisconnectTokenExpired,
		wire.DisconnectConnectTimeout, wire.DisconnectBadRequest, wire.DisconnectUnauthorized,
		wire.DisconnectForceNoReconnect, wire.DisconnectConnectionLimit,
	}
	seen := map[string]uint16{}
	for _, c := range codes {
		r := DisconnectReason(c)
		if r == "other" {
			t.Errorf("code %d has no reason name", c)
		}
		if prev, dup := seen[r]; dup {
			t.Errorf("codes %d and %d share reason %q", prev, c, r)
		}
		seen[r] = c
	}
}
