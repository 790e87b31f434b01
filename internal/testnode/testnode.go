// Package testnode starts an in-process herald node for tests: a hub on an
// in-memory broker and a session.Manager in front of it, with a metrics
// sink that counts how sessions ended. A transport's tests put their
// listener in front of Node.Sessions and talk to it as a client would.
//
// Start registers a cleanup that drains the sessions and stops the manager,
// the hub and the broker when the test ends. Tests that must stop their
// own server between those steps call Drain and Close themselves, in that
// order; both are idempotent, so the cleanup then does nothing more.
//
// Tests that start a whole server (server.Server, the CLI) share its
// process-wide netpoll poller, which lives as long as the process by
// design: their TestMain calls VerifyTestMain, which checks for leaked
// goroutines other than the poller's; IgnorePoller gives the same
// exceptions to goleak.VerifyNone in a single test.
//
// Every function here is for tests only: failures are reported through
// the testing.TB given to Start.
package testnode

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/wire"
)

// Config describes the node to start. The zero value is an anonymous-only
// node whose hub has no namespaces.
type Config struct {
	// Hub configures the hub. Broker and Presence are set by Start to one
	// in-memory broker.
	Hub hub.Config
	// Secret, when set, installs an HS256 verifier for it as the
	// sessions' Verifier; Node.Token signs with it.
	Secret []byte
	// Session adjusts the session configuration before the manager is
	// created. It starts with the hub, the verifier, the node's Metrics
	// and AllowAnonymous set. nil leaves it so.
	Session func(*session.Config)
}

// Node is a running hub and session manager. Its fields are read-only
// after Start; its methods are safe for concurrent use.
type Node struct {
	Hub      *hub.Hub
	Broker   *membroker.Broker
	Sessions *session.Manager
	Metrics  *Metrics

	t         testing.TB
	secret    []byte
	drainOnce sync.Once
	closeOnce sync.Once
}

// Start starts a node and stops it when the test ends.
func Start(t testing.TB, cfg Config) *Node {
	t.Helper()
	b := membroker.New(membroker.Options{})
	hcfg := cfg.Hub
	hcfg.Broker, hcfg.Presence = b, b
	h, err := hub.New(hcfg)
	if err != nil {
		t.Fatalf("hub.New: %v", err)
	}
	if err := h.Run(context.Background()); err != nil {
		t.Fatalf("hub.Run: %v", err)
	}
	n := &Node{Hub: h, Broker: b, Metrics: NewMetrics(), t: t, secret: cfg.Secret}
	scfg := session.Config{Hub: h, AllowAnonymous: true, Metrics: n.Metrics}
	if cfg.Secret != nil {
		v, err := auth.NewVerifier(auth.Config{HMACSecret: cfg.Secret})
		if err != nil {
			n.stopHub(context.Background())
			t.Fatalf("auth.NewVerifier: %v", err)
		}
		scfg.Verifier = v
	}
	if cfg.Session != nil {
		cfg.Session(&scfg)
	}
	m, err := session.NewManager(scfg)
	if err != nil {
		n.stopHub(context.Background())
		t.Fatalf("session.NewManager: %v", err)
	}
	n.Sessions = m
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Drain(ctx)
		n.Close(ctx)
	})
	return n
}

// Drain disconnects every session with DisconnectShutdown, as a node that
// shuts down does. Later calls do nothing.
func (n *Node) Drain(ctx context.Context) {
	n.drainOnce.Do(func() {
		if err := n.Sessions.Drain(ctx, wire.Disconnect{Code: wire.DisconnectShutdown, Reason: "test over", Reconnect: true}, 0); err != nil {
			n.t.Errorf("drain: %v", err)
		}
	})
}

// Close stops the session manager, the hub and the broker. Later calls do
// nothing.
func (n *Node) Close(ctx context.Context) {
	n.closeOnce.Do(func() {
		n.Sessions.Close()
		n.stopHub(ctx)
	})
}

func (n *Node) stopHub(ctx context.Context) {
	if err := n.Hub.Shutdown(ctx); err != nil {
		n.t.Errorf("hub shutdown: %v", err)
	}
	if err := n.Broker.Close(ctx); err != nil {
		n.t.Errorf("broker close: %v", err)
	}
}

// Token returns a connection token for user sub signed with
// Config.Secret.
func (n *Node) Token(sub string) string {
	n.t.Helper()
	tok, err := auth.Sign(auth.Claims{Subject: sub}, auth.HS256, n.secret)
	if err != nil {
		n.t.Fatalf("auth.Sign: %v", err)
	}
	return tok
}

// Metrics is a session.Metrics that counts sessions by how they ended. It
// is safe for concurrent use.
type Metrics struct {
	mu     sync.Mutex
	opened int
	closed map[uint16]int
}

var _ session.Metrics = (*Metrics)(nil)

// NewMetrics returns zeroed counters.
func NewMetrics() *Metrics { return &Metrics{closed: make(map[uint16]int)} }

// SessionOpened implements session.Metrics.
func (m *Metrics) SessionOpened(string) {
	m.mu.Lock()
	m.opened++
	m.mu.Unlock()
}

// SessionClosed implements session.Metrics.
func (m *Metrics) SessionClosed(_ string, code uint16) {
	m.mu.Lock()
	m.closed[code]++
	m.mu.Unlock()
}

// Command implements session.Metrics; commands are not counted.
func (m *Metrics) Command(wire.Method, uint32) {}

// Sent implements session.Metrics; messages are not counted.
func (m *Metrics) Sent(session.MessageKind) {}

// Opened returns how many sessions were opened.
func (m *Metrics) Opened() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.opened
}

// ClosedWith returns how many sessions ended with disconnect code.
func (m *Metrics) ClosedWith(code uint16) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed[code]
}

// IgnorePoller returns goleak options that ignore the goroutines of the
// process-wide netpoll poller (netpoll.Default).
func IgnorePoller() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*epollPoller).loop"),
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*epollPoller).worker"),
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*worker).run"),
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*loop).run"),
	}
}

// VerifyTestMain runs the tests and, when they pass, fails the run if any
// goroutine other than the poller's (see IgnorePoller) is still running.
// Idle keep-alive connections of http.DefaultClient are closed first: their
// goroutines belong to the client, not to the code under test. It exits
// the process with the result.
func VerifyTestMain(m *testing.M) {
	code := m.Run()
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(IgnorePoller()...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
