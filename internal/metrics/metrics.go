// Package metrics holds herald's Prometheus collectors on a registry of its
// own (nothing is registered globally), served at /metrics.
//
// Hot paths do not look up labelled series per event: a transport asks once
// for its *Transport handle and increments plain counters. Every method is
// safe for concurrent use, and every method of a nil *Metrics (or a nil
// *Transport) does nothing, so packages take metrics as an optional
// dependency.
//
// Series (all prefixed herald_):
//
//	connections{transport}                  gauge     open client connections
//	connections_total{transport}            counter   accepted client connections
//	messages_received_total{transport}      counter   messages read from clients
//	bytes_received_total{transport}         counter
//	bytes_sent_total{transport}             counter   bytes written to client sockets
//
// The traffic series and publish_to_write_seconds appear for a transport
// once it reports them (Transport.Received, Wrote, ObservePublishToWrite);
// they are never exported as zeros for transports that do not.
//
//	messages_sent_total{kind}               counter   messages handed to transports: reply, push, delivery
//	commands_total{method,code}             counter   client commands by method and reply error code (0: success)
//	publish_to_write_seconds{transport}     histogram time from a publication entering the node's fan-out to its
//	                                                  bytes reaching a client socket, sampled: one recipient per
//	                                                  publication and transport (see WriteSample)
//	disconnects_total{reason}               counter   server-side disconnects by reason (slow_consumer, no_pong, ...)
//	history_read_publications               histogram publications returned per history read
//	api_requests_total{method,status}       counter   server API requests
//	api_request_duration_seconds{method}    histogram
//
// plus the Go runtime and process collectors, and the gauges and counters
// other packages register with GaugeFunc and CounterFunc (the server adds
// channels, subscriptions and the hub's counters).
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldhq/herald/internal/wire"
)

const namespace = "herald"

// Metrics is the set of herald's collectors. Create it with New.
type Metrics struct {
	reg *prometheus.Registry

	connections      *prometheus.GaugeVec
	connectionsTotal *prometheus.CounterVec
	messagesIn       *prometheus.CounterVec
	messagesOut      *prometheus.CounterVec
	commands         *prometheus.CounterVec
	bytesIn          *prometheus.CounterVec
	bytesOut         *prometheus.CounterVec
	deliveryLatency  *prometheus.HistogramVec
	disconnects      *prometheus.CounterVec
	historyRead      prometheus.Histogram
	apiRequests      *prometheus.CounterVec
	apiDuration      *prometheus.HistogramVec

	mu         sync.Mutex
	transports map[string]*Transport
}

// New creates the collectors and registers them, with the Go runtime and
// process collectors, on a new registry.
func New() *Metrics {
	m := &Metrics{
		reg:        prometheus.NewRegistry(),
		transports: make(map[string]*Transport),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "connections",
			Help: "Open client connections.",
		}, []string{"transport"}),
		connectionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "connections_total",
			Help: "Client connections accepted.",
		}, []string{"transport"}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "messages_received_total",
			Help: "Messages read from clients.",
		}, []string{"transport"}),
		messagesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "messages_sent_total",
			Help: "Messages handed to client transports, by kind (reply, push, delivery).",
		}, []string{"kind"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "commands_total",
			Help: "Client commands by method and the error code of their reply (0: success).",
		}, []string{"method", "code"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "bytes_received_total",
			Help: "Bytes of messages read from clients (payloads, without transport framing).",
		}, []string{"transport"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "bytes_sent_total",
			Help: "Bytes written to client sockets (framing included).",
		}, []string{"transport"}),
		deliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "publish_to_write_seconds",
			Help: "Time from a publication entering this node's fan-out to its bytes being written to a client socket. " +
				"Sampled: one recipient per publication and transport (the first one it is queued for), " +
				"so a fan-out to many subscribers costs one observation.",
			// 50 µs .. ~3.3 s
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 9),
		}, []string{"transport"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "disconnects_total",
			Help: "Client disconnects initiated by the server or the client, by reason.",
		}, []string{"reason"}),
		historyRead: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "history_read_publications",
			Help:    "Publications returned per history read (history calls and recovery).",
			Buckets: []float64{0, 1, 10, 100, 1000, 10000},
		}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "api_requests_total",
			Help: "Server API requests by method and HTTP status.",
		}, []string{"method", "status"}),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "api_request_duration_seconds",
			Help:    "Server API request duration.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 4, 9),
		}, []string{"method"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.connections, m.connectionsTotal,
		m.messagesIn, m.messagesOut, m.commands, m.bytesIn, m.bytesOut,
		m.deliveryLatency, m.disconnects, m.historyRead,
		m.apiRequests, m.apiDuration,
	)
	return m
}

// Registry returns the registry the collectors live on, for packages that
// add collectors of their own.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// GaugeFunc registers a gauge herald_<name> whose value f computes at
// scrape time (for counts another package already keeps, such as the
// hub's channel count). f must be safe for concurrent use and fast.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: name, Help: help,
	}, f))
}

// CounterFunc registers a counter herald_<name> whose value f reads at
// scrape time from a monotonic count another package keeps.
func (m *Metrics) CounterFunc(name, help string, f func() float64) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: name, Help: help,
	}, f))
}

// Transport is the pre-resolved set of per-transport series. Its methods
// are safe for concurrent use; a nil *Transport does nothing.
type Transport struct {
	m                *Metrics
	name             string
	connections      prometheus.Gauge
	connectionsTotal prometheus.Counter

	trafficOnce sync.Once // resolves the series below on first report
	messagesIn  prometheus.Counter
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	latencyOnce sync.Once
	latency     prometheus.Observer
}

// Transport returns the handle for the transport named name ("websocket",
// "tcp", "udp"). The same name returns the same handle.
func (m *Metrics) Transport(name string) *Transport {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.transports[name]; ok {
		return t
	}
	t := &Transport{
		m:                m,
		name:             name,
		connections:      m.connections.WithLabelValues(name),
		connectionsTotal: m.connectionsTotal.WithLabelValues(name),
	}
	m.transports[name] = t
	return t
}

// Connected counts a new connection.
func (t *Transport) Connected() {
	if t == nil {
		return
	}
	t.connections.Inc()
	t.connectionsTotal.Inc()
}

// Disconnected counts a closed connection.
func (t *Transport) Disconnected() {
	if t == nil {
		return
	}
	t.connections.Dec()
}

func (t *Transport) traffic() {
	t.trafficOnce.Do(func() {
		t.messagesIn = t.m.messagesIn.WithLabelValues(t.name)
		t.bytesIn = t.m.bytesIn.WithLabelValues(t.name)
		t.bytesOut = t.m.bytesOut.WithLabelValues(t.name)
	})
}

// Received counts one message of n bytes read from a client.
func (t *Transport) Received(n int) {
	if t == nil {
		return
	}
	t.traffic()
	t.messagesIn.Inc()
	t.bytesIn.Add(float64(n))
}

// Wrote counts n bytes written to a client socket.
func (t *Transport) Wrote(n int) {
	if t == nil {
		return
	}
	t.traffic()
	t.bytesOut.Add(float64(n))
}

// ObservePublishToWrite records the time from a publication entering the
// hub (since) to its write to a socket of this transport.
func (t *Transport) ObservePublishToWrite(since time.Time) {
	if t == nil {
		return
	}
	t.latencyOnce.Do(func() { t.latency = t.m.deliveryLatency.WithLabelValues(t.name) })
	t.latency.Observe(time.Since(since).Seconds())
}

// SampleOnce picks the one recipient of a publication whose write is
// timed: embed it in the value a transport encodes once per publication.
// The zero value is ready; it is safe for concurrent use.
type SampleOnce struct{ taken atomic.Bool }

// Take reports true exactly once. After that it costs one atomic load.
func (s *SampleOnce) Take() bool {
	return !s.taken.Load() && s.taken.CompareAndSwap(false, true)
}

// WriteSample follows at most one timed message on its way through one
// connection's outbound queue, for ObservePublishToWrite. A transport calls
// Start after queuing a sampled publication, with the connection's queued
// byte total at that moment, and Written whenever the socket's written
// total grows; the sample is observed when written reaches that total.
// After a successful Start the transport calls Written once more with the
// written total read after Start returned, because the bytes may have
// left between queuing and Start. A sample started while another is in
// flight on the same connection is skipped. Written's fast path is one atomic load. The zero value is ready;
// it is safe for concurrent use.
type WriteSample struct {
	end   atomic.Uint64 // queued total the sample completes at; 0: none
	mu    sync.Mutex    // guards since and the transitions of end
	since time.Time
}

// Start begins a sample of a publication that entered the node at since
// and completes once end bytes were written to the connection. It reports
// whether the sample was taken.
func (w *WriteSample) Start(since time.Time, end uint64) bool {
	if end == 0 || w.end.Load() != 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.end.Load() != 0 {
		return false
	}
	w.since = since
	w.end.Store(end)
	return true
}

// Written reports that the connection's written total reached written;
// it observes the sample on t when complete.
func (w *WriteSample) Written(t *Transport, written uint64) {
	end := w.end.Load()
	if end == 0 || written < end {
		return
	}
	w.mu.Lock()
	if w.end.Load() != end {
		w.mu.Unlock()
		return
	}
	since := w.since
	w.end.Store(0)
	w.mu.Unlock()
	t.ObservePublishToWrite(since)
}

// Counter is one series that only goes up.
type Counter interface{ Inc() }

type nopCounter struct{}

func (nopCounter) Inc() {}

// MessagesSent returns the counter of messages of kind ("reply", "push",
// "delivery") handed to transports. Resolve it once, not per message.
func (m *Metrics) MessagesSent(kind string) Counter {
	if m == nil {
		return nopCounter{}
	}
	return m.messagesOut.WithLabelValues(kind)
}

// ObserveCommand counts one client command by method name and the error
// code of its reply (0 for success).
func (m *Metrics) ObserveCommand(method string, code uint32) {
	if m == nil {
		return
	}
	m.commands.WithLabelValues(method, strconv.FormatUint(uint64(code), 10)).Inc()
}

// ObserveHistoryRead records the number of publications one history read
// returned.
func (m *Metrics) ObserveHistoryRead(n int) {
	if m == nil {
		return
	}
	m.historyRead.Observe(float64(n))
}

// Disconnect counts a disconnect with code (a wire.Disconnect* code).
func (m *Metrics) Disconnect(code uint16) {
	if m == nil {
		return
	}
	m.disconnects.WithLabelValues(DisconnectReason(code)).Inc()
}

// ObserveAPIRequest counts one server API request.
func (m *Metrics) ObserveAPIRequest(method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.apiRequests.WithLabelValues(method, strconv.Itoa(status)).Inc()
	m.apiDuration.WithLabelValues(method).Observe(d.Seconds())
}

// DisconnectReason names a disconnect code for the reason label. Codes
// without a name map to "other" so the label's cardinality stays bounded.
func DisconnectReason(code uint16) string {
	switch code {
	case wire.DisconnectNormal:
		return "normal"
	case wire.DisconnectShutdown:
		return "shutdown"
	case wire.DisconnectMessageTooBig:
		return "message_too_big"
	case wire.DisconnectServerError:
		return "server_error"
	case wire.DisconnectSlowConsumer:
		return "slow_consumer"
	case wire.DisconnectNoPong:
		return "no_pong"
	case wire.DisconnectForceReconnect:
		return "force_reconnect"
	case wire.DisconnectInsufficientState:
		return "insufficient_state"
	case wire.DisconnectTokenExpired:
		return "token_expired"
	case wire.DisconnectConnectTimeout:
		return "connect_timeout"
	case wire.DisconnectBadRequest:
		return "bad_request"
	case wire.DisconnectUnauthorized:
		return "unauthorized"
	case wire.DisconnectForceNoReconnect:
		return "force_no_reconnect"
	case wire.DisconnectConnectionLimit:
		return "connection_limit"
	}
	return "other"
}
