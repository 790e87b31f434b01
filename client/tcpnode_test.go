package client

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/netpoll"
	"github.com/heraldhq/herald/internal/testnode"
	tcptransport "github.com/heraldhq/herald/internal/transport/tcp"
	"github.com/heraldhq/herald/internal/wire"
)

// node is what the transport-independent tests need from a server.
type node struct {
	name       string // transport: ws, tcp-binary, tcp-json
	url        func(addr string) string
	addr       string // address to dial (or to proxy to)
	enc        Encoding
	publish    func(channel string, data []byte)
	disconnect func(user string)
}

// nodes returns a node per transport of the in-process server:
// WebSocket, and TCP with either encoding.
func nodes(t *testing.T, s *testServer) []node {
	publish := func(ch string, data []byte) {
		s.api("publish", map[string]any{"channel": ch, "data": rawJSON(data)})
	}
	disconnect := func(user string) { s.api("disconnect", map[string]any{"user": user}) }
	tcpURL := func(a string) string { return "tcp://" + a }
	return []node{
		{name: "ws", url: func(a string) string { return "ws://" + a + "/ws" }, addr: s.srv.Addr(),
			publish: publish, disconnect: disconnect},
		{name: "tcp-binary", url: tcpURL, addr: s.srv.TCPAddr(), enc: EncodingBinary,
			publish: publish, disconnect: disconnect},
		{name: "tcp-json", url: tcpURL, addr: s.srv.TCPAddr(), enc: EncodingJSON,
			publish: publish, disconnect: disconnect},
	}
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

// tcpNode is a hub, session manager and TCP transport on 127.0.0.1,
// configured like the test server's namespaces. Benchmarks use it to
// publish straight into the hub, so that they measure the client rather
// than the HTTP API.
type tcpNode struct {
	t    testing.TB
	addr string
	hub  *hub.Hub
}

func startTCPNode(t testing.TB) *tcpNode {
	t.Helper()
	node := testnode.Start(t, testnode.Config{
		Secret: []byte(testSecret),
		Hub: hub.Config{Namespaces: hub.NamespaceMap{
			"chat": {HistorySize: 100, HistoryTTL: time.Minute, AllowHistory: true, Presence: true, AllowPresence: true,
				AllowPublish: true, AllowAnonymous: true},
			"stream": {HistorySize: 2000, HistoryTTL: time.Minute, AllowHistory: true, AllowPublish: true, AllowAnonymous: true},
			"tiny":   {HistorySize: 3, HistoryTTL: time.Minute, AllowHistory: true, AllowPublish: true, AllowAnonymous: true},
		}},
	})
	poller, err := netpoll.New(netpoll.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tcptransport.New(tcptransport.Options{Sessions: node.Sessions, Poller: poller, CloseTimeout: 200 * time.Millisecond})
	if err != nil {
		poller.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		poller.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// Registered after testnode.Start, so it runs first: the sessions are
	// drained and the listener stopped before the node's own cleanup.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		node.Drain(ctx)
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("tcp shutdown: %v", err)
		}
		<-served
		node.Close(ctx)
		poller.Close()
	})
	return &tcpNode{t: t, addr: ln.Addr().String(), hub: node.Hub}
}

func (n *tcpNode) publish(channel string, data []byte) {
	if _, err := n.hub.Publish(context.Background(), channel, data, nil); err != nil {
		n.t.Errorf("publish: %v", err)
	}
}

func (n *tcpNode) disconnect(user string) {
	if err := n.hub.Disconnect(context.Background(), user, "", wire.DisconnectForceReconnect, "test"); err != nil {
		n.t.Errorf("disconnect: %v", err)
	}
}
