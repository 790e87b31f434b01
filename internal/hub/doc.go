// Package hub is the per-node core of herald: the registry of connected
// clients and their channel subscriptions, fan-out of publications to local
// subscribers, recovery of missed publications on subscribe, presence, and
// cluster-wide commands (direct messages, disconnects, server-side
// unsubscribes, node stats). It is independent of transports and of the
// broker: a Broker (broker.go) moves events between nodes and keeps
// history, a PresenceManager keeps presence, and Subscribers (sessions)
// receive pushes.
//
// # Using a Hub
//
//	h, err := hub.New(hub.Config{Broker: b, Presence: pm, Namespaces: nsMap})
//	err = h.Run(ctx)              // starts the broker and the background goroutine
//	err = h.AddClient(sess)       // after the connect command authenticated
//	err = h.Subscribe(ctx, sess, "chat:room1", hub.SubscribeOptions{Since: pos}, sess.replySubscribe)
//	pos, err := h.Publish(ctx, "chat:room1", data, nil)
//	h.RemoveClient(ctx, sess)     // when the connection ends, whatever the reason
//	err = h.Shutdown(ctx)
//
// # Fan-out
//
// For every publication the broker delivers, HandlePublication builds one
// Delivery and calls Subscriber.Deliver with that same pointer for every
// live subscriber of the channel on this node: no per-subscriber
// allocation and no encoding. Transports encode lazily through
// Delivery.Encoded, once per wire format, and every connection's queue
// references the same bytes. Deliver must not block (sessions queue and
// apply their own slow-consumer policy), so a slow client only affects
// itself. A broker in the same process (the in-memory one) hands a
// channel's publications to the target the hub gives it for the channel
// (ChannelTargets), so a publication is looked up by name once, in the
// broker, rather than once on each side.
//
// # Recovery
//
// A subscriber is registered as a joiner with the channel's state before
// the hub reads the channel's history. Live publications arriving while
// history is read are buffered for the joiner (bounded by
// Config.RecoveryBufferSize) and merged by offset with what was read:
// duplicates are dropped, and if history reports publications the broker
// has not delivered yet, the joiner waits (bounded by Config.RecoveryWait)
// until live delivery reaches its position. Then, under the channel's lock,
// the hub hands the subscribe reply to the session and adds the subscriber
// to the live set, so the reply precedes every live push and live delivery
// continues exactly after the reply's offset. The same mechanism works for
// a single-node broker that delivers synchronously and for cluster brokers
// where subscribing and reading history are separate round trips.
//
// The hub remembers each channel's last delivered position. A live
// publication that does not follow it (a gap, or another epoch) means the
// node lost publications: every live subscriber of the channel gets an
// unsubscribe push with wire.UnsubscribeInsufficientState and resubscribe
// set, and recovers by subscribing again with its last position. After a
// broker reconnect (EventHandler.HandleReconnect) the hub compares every
// channel's position with the broker's and does the same for channels that
// fell behind.
//
// # Concurrency
//
// Hub is safe for concurrent use. Locks, always taken in this order:
//
//  1. Hub.clientsMu: the client registry (by client id and user id).
//  2. shard.mu: one of 64 shards of the channel map, by channel name hash.
//  3. channel.mu: one channel's subscribers, joiners and position. It is
//     held while a publication is handed to the channel's subscribers, so
//     deliveries, joins and unsubscribes of one channel are serialised
//     (that is what keeps replies before live pushes and unsubscribes
//     final); other channels are not affected. A fan-out to 10,000
//     subscribers holds it for a fraction of a millisecond
//     (BenchmarkFanout10k), and a subscribe holds it only briefly at the
//     start and end: its broker round trips happen outside it.
//  4. client.mu: one client's set of subscriptions.
//  5. Subscriber methods (the session's own locks), called with the locks
//     above held; they must not call back into the Hub.
//
// The hub never calls the Broker or PresenceManager while holding any of
// its locks. A Broker may call EventHandler methods while holding its own
// per-channel lock (the in-memory broker does), so broker locks come before
// all of the above.
//
// # Goroutines
//
// The hub owns one background goroutine, started by Run and ended (and
// waited for) by Shutdown. It refreshes presence entries of live
// subscriptions at a third of their TTL, releases broker subscriptions of
// channels left without subscribers, performs presence removals and leave
// events deferred from broker goroutines (a bounded queue; overflow is
// counted and presence then expires by TTL), publishes node info every
// Config.NodeInfoInterval (and at once when a node it did not know
// reports, so a joining node learns the cluster within one round trip),
// and checks positions after broker reconnects.
//
// # Cluster-wide stats
//
// Each node's report (NodeInfo) carries its counts and the channels with
// the most local subscribers, at most Config.NodeInfoChannels of them.
// Nodes lists the nodes heard from within three intervals;
// ClusterChannels adds this node's exact channel counts to the other
// nodes' last reports, so it is as fresh as the interval and as complete
// as that bound (see ClusterChannels).
// Everything else runs on the caller's goroutine: sessions for
// Subscribe/Unsubscribe, the broker's goroutines for EventHandler calls.
package hub
