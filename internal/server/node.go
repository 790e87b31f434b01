package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/netpoll"
	"github.com/heraldhq/herald/internal/session"
	tcptransport "github.com/heraldhq/herald/internal/transport/tcp"
	udptransport "github.com/heraldhq/herald/internal/transport/udp"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/web"
)

// brokerBackend is a broker that also keeps presence, as every herald
// broker does.
type brokerBackend interface {
	hub.Broker
	hub.PresenceManager
}

// node is the messaging core of a Server: broker, hub, token verifier and
// session manager. Its parts own their goroutines; close ends them.
type node struct {
	cfg      *config.Config
	log      *slog.Logger
	metrics  *metrics.Metrics
	broker   brokerBackend
	hub      *hub.Hub
	verifier *auth.Verifier
	sessions *session.Manager
	tcp      *tcptransport.Server // nil unless tcp_listen
	tcpTLS   bool                 // the TCP transport serves TLS
	udp      *udptransport.Server // nil unless udp_listen
}

// newNode builds the node; tcpTLS, when set, makes the TCP transport serve
// TLS.
func newNode(cfg *config.Config, tokenSecret, version string, log *slog.Logger, m *metrics.Metrics, tcpTLS *tls.Config) (*node, error) {
	n := &node{cfg: cfg, log: log, metrics: m}
	b, berr := newBroker(cfg, log)
	if berr != nil {
		return nil, berr
	}
	n.broker = b
	ok := false
	defer func() {
		if !ok {
			n.close(context.Background())
		}
	}()

	var err error
	n.hub, err = hub.New(hub.Config{
		Broker:     n.broker,
		Presence:   n.broker,
		Namespaces: namespaceMap(cfg),
		NodeName:   cfg.Node,
		Version:    version,
		Logger:     log,

		MaxConnectionsPerUser: cfg.MaxConnectionsPerUser,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	n.verifier, err = newVerifier(cfg, tokenSecret)
	if err != nil {
		return nil, err
	}
	n.sessions, err = session.NewManager(session.Config{
		Hub:              n.hub,
		Verifier:         n.verifier,
		AllowAnonymous:   cfg.AllowAnonymous,
		AllowSend:        cfg.AllowClientSend,
		MaxSubscriptions: cfg.MaxSubscriptions,
		PingInterval:     cfg.PingInterval,
		PongTimeout:      cfg.PongTimeout,
		ConnectTimeout:   cfg.ConnectTimeout,
		MaxDataSize:      int(cfg.MaxMessageSize),
		HistoryMaxLimit:  cfg.History.MaxLimit,
		Node:             cfg.Node,
		Version:          version,
		Metrics:          newSessionMetrics(m),
		Logger:           log,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := n.newSocketTransports(tcpTLS); err != nil {
		return nil, err
	}
	if err := n.registerMetrics(); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	ok = true
	return n, nil
}

// namespaceMap turns the configured namespaces into the hub's options.
// Clients may read history where it is kept and presence where it is
// tracked; the configuration has no separate switches for those.
func namespaceMap(cfg *config.Config) hub.NamespaceMap {
	m := make(hub.NamespaceMap, len(cfg.Namespaces))
	for _, ns := range cfg.Namespaces {
		m[ns.Name] = hub.ChannelOptions{
			HistorySize:    ns.HistorySize,
			HistoryTTL:     ns.HistoryTTL,
			HistoryMetaTTL: cfg.History.MetaTTL,
			AllowHistory:   ns.HistorySize > 0,
			Presence:       ns.Presence,
			AllowPresence:  ns.Presence,
			JoinLeave:      ns.JoinLeave,
			AllowPublish:   ns.AllowPublish,
			AllowAnonymous: ns.AllowAnonymous,
			UserLimited:    ns.UserLimited,
			RequireGrant:   ns.RequireGrant,
		}
	}
	return m
}

func newVerifier(cfg *config.Config, secret string) (*auth.Verifier, error) {
	ac := auth.Config{Issuer: cfg.Token.Issuer, Audience: cfg.Token.Audience}
	if secret != "" {
		ac.HMACSecret = []byte(secret)
	}
	var err error
	if p := cfg.Token.RSAPublicKeyFile; p != "" {
		if ac.RSAPublicKeyPEM, err = os.ReadFile(p); err != nil {
			return nil, fmt.Errorf("server: token.rsa_public_key_file: %w", err)
		}
	}
	if p := cfg.Token.ECDSAPublicKeyFile; p != "" {
		if ac.ECDSAPublicKeyPEM, err = os.ReadFile(p); err != nil {
			return nil, fmt.Errorf("server: token.ecdsa_public_key_file: %w", err)
		}
	}
	v, err := auth.NewVerifier(ac)
	if err != nil {
		return nil, fmt.Errorf("server: token keys: %w", err)
	}
	return v, nil
}

func (n *node) registerMetrics() error {
	m := n.metrics
	h := n.hub
	counters := []struct {
		name, help string
		f          func(hub.Counters) uint64
	}{
		{"published_total", "Successful publishes on this node (server API and clients).", func(c hub.Counters) uint64 { return c.Published }},
		{"publications_received_total", "Publications the broker delivered to this node.", func(c hub.Counters) uint64 { return c.PublicationsReceived }},
		{"deliveries_total", "Pushes handed to local subscribers.", func(c hub.Counters) uint64 { return c.Deliveries }},
		{"recovered_total", "Subscribes with recovery that recovered every missed publication.", func(c hub.Counters) uint64 { return c.Recovered }},
		{"not_recovered_total", "Subscribes with recovery that could not recover.", func(c hub.Counters) uint64 { return c.NotRecovered }},
		{"gaps_total", "Live publications that did not follow the previous one.", func(c hub.Counters) uint64 { return c.Gaps }},
		{"broker_errors_total", "Failed broker calls.", func(c hub.Counters) uint64 { return c.BrokerErrors }},
		{"presence_errors_total", "Failed presence calls.", func(c hub.Counters) uint64 { return c.PresenceErrors }},
	}
	for _, c := range counters {
		f := c.f
		if err := m.CounterFunc(c.name, c.help, func() float64 { return float64(f(h.Counters())) }); err != nil {
			return err
		}
	}
	if err := m.GaugeFunc("channels", "Channels with at least one subscriber on this node.",
		func() float64 { return float64(h.LocalInfo().Channels) }); err != nil {
		return err
	}
	if err := m.GaugeFunc("subscriptions", "Client subscriptions on this node.",
		func() float64 { return float64(h.LocalInfo().Subscriptions) }); err != nil {
		return err
	}
	if err := m.GaugeFunc("sessions", "Client sessions on this node (every transport).",
		func() float64 { return float64(n.sessions.Len()) }); err != nil {
		return err
	}
	// The socket engine every event-mode connection is registered with.
	poller := netpoll.Default()
	poller.SetWriteDelay(n.cfg.ClientQueue.WriteDelay)
	sockets := []struct {
		name, help string
		f          func(netpoll.Stats) uint64
	}{
		{"socket_reads_total", "Socket reads that returned data.", func(s netpoll.Stats) uint64 { return s.Reads }},
		{"socket_writes_total", "Socket write system calls (each writev may carry many messages).", func(s netpoll.Stats) uint64 { return s.Writes }},
		{"socket_write_messages_total", "Messages queued for writing to client sockets.", func(s netpoll.Stats) uint64 { return s.WriteMessages }},
		{"socket_queue_full_total", "Messages refused because a connection's outbound queue was full.", func(s netpoll.Stats) uint64 { return s.QueueFull }},
		{"socket_write_blocked_total", "Flushes that found a socket's send buffer full and waited.", func(s netpoll.Stats) uint64 { return s.WriteBlocked }},
	}
	for _, c := range sockets {
		f := c.f
		if err := m.CounterFunc(c.name, c.help, func() float64 { return float64(f(poller.Stats())) }); err != nil {
			return err
		}
	}
	return nil
}

// start starts the broker and the hub.
func (n *node) start(ctx context.Context) error {
	if err := n.hub.Run(ctx); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// drain disconnects every session with 1001 spread over spread and waits
// for them to end, or until ctx ends.
func (n *node) drain(ctx context.Context, spread time.Duration) error {
	if err := n.sessions.Drain(ctx, shutdownDisconnect, spread); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

// close stops the hub, the session manager and the broker. Safe to call
// on a partly built node and more than once.
func (n *node) close(ctx context.Context) error {
	var errs []error
	if err := n.shutdownSockets(ctx); err != nil {
		errs = append(errs, err)
	}
	if n.hub != nil {
		if err := n.hub.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("hub: %w", err))
		}
	}
	if n.sessions != nil {
		if err := n.sessions.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sessions: %w", err))
		}
	}
	if n.broker != nil {
		if err := n.broker.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("broker: %w", err))
		}
	}
	return errors.Join(errs...)
}

// runDemo publishes the demo ticker until ctx ends. It needs the demo
// namespace; without it the ticker stays off.
func (n *node) runDemo(ctx context.Context) {
	ns, _, _ := strings.Cut(web.TickerChannel, ":")
	if _, ok := n.cfg.Namespace(ns); !ok {
		n.log.Info("demo ticker off: namespace not configured", "namespace", ns)
		return
	}
	web.RunTicker(ctx, func(ctx context.Context, channel string, data []byte) error {
		_, err := n.hub.Publish(ctx, channel, data, nil)
		return err
	})
}

func (n *node) demoHandler() http.Handler { return web.Handler() }

// sessionMetrics feeds the session layer's counts into the collectors.
type sessionMetrics struct {
	m    *metrics.Metrics
	sent [3]metrics.Counter // by session.MessageKind
}

func newSessionMetrics(m *metrics.Metrics) *sessionMetrics {
	sm := &sessionMetrics{m: m}
	for _, k := range []session.MessageKind{session.SentReply, session.SentPush, session.SentDelivery} {
		sm.sent[k] = m.MessagesSent(k.String())
	}
	return sm
}

func (sm *sessionMetrics) SessionOpened(transport string) { sm.m.Transport(transport).Connected() }

func (sm *sessionMetrics) SessionClosed(transport string, code uint16) {
	sm.m.Transport(transport).Disconnected()
	sm.m.Disconnect(code)
}

func (sm *sessionMetrics) Command(method wire.Method, errCode uint32) {
	name := method.String()
	if name == "" {
		name = "unknown"
	}
	sm.m.ObserveCommand(name, errCode)
}

func (sm *sessionMetrics) Sent(kind session.MessageKind) {
	if int(kind) < len(sm.sent) {
		sm.sent[kind].Inc()
	}
}
