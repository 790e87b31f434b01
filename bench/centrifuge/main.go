// Command centrifuge is the comparison server of the benchmarks built on
// github.com/centrifugal/centrifuge, the library at the core of
// Centrifugo, the way its own benchmark example sets it up: a Node with
// its default in-memory broker (no history, no presence), every client
// accepted anonymously and allowed to subscribe to and publish on any
// channel. Clients speak centrifuge's JSON protocol over WebSocket at /ws
// (the load generator's --protocol centrifuge); publications from HTTP
// (/publish, /api/batch: bench/peer) go through Node.Publish, as a
// Centrifugo server API call does.
//
//	centrifuge -addr 127.0.0.1:18083
//
// It is a module of its own so that the rest of bench/ builds without
// centrifuge's source (see go.mod).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/centrifugal/centrifuge"

	"github.com/heraldhq/herald/bench/peer"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18083", "listen address")
	flag.Parse()
	node, err := newNode()
	if err != nil {
		log.Fatalf("centrifuge: %v", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("centrifuge: %v", err)
	}
	fmt.Printf("centrifuge listening on %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, newMux(node)))
}

// newNode starts a Node that lets every client connect, subscribe and
// publish.
func newNode() (*centrifuge.Node, error) {
	cfg := centrifuge.DefaultConfig
	cfg.LogLevel = centrifuge.LogLevelError
	cfg.LogHandler = func(e centrifuge.LogEntry) { log.Printf("centrifuge: %s %v", e.Message, e.Fields) }
	node, err := centrifuge.New(cfg)
	if err != nil {
		return nil, err
	}
	node.OnConnecting(func(context.Context, centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: ""}}, nil
	})
	node.OnConnect(func(c *centrifuge.Client) {
		c.OnSubscribe(func(_ centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
		c.OnPublish(func(_ centrifuge.PublishEvent, cb centrifuge.PublishCallback) {
			cb(centrifuge.PublishReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		return nil, err
	}
	return node, nil
}

// newMux serves node's WebSocket endpoint with the comparison servers'
// HTTP side.
func newMux(node *centrifuge.Node) *http.ServeMux {
	ws := centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{})
	return peer.NewMux(ws, func(channel string, data []byte) {
		if _, err := node.Publish(channel, data); err != nil {
			log.Printf("centrifuge: publish to %s: %v", channel, err)
		}
	})
}
