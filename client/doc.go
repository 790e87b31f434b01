// Package client is the Go SDK for herald: it connects to a herald server
// over WebSocket or TCP, keeps the connection alive, and delivers channel
// publications in order, exactly once, across reconnects.
//
// # Connecting
//
// New takes the server URL and Options:
//
//	ws://host:8080/ws, wss://host/ws   WebSocket, JSON encoding
//	tcp://host:9090, tls://host:9090   TCP transport, binary encoding (Options.TCPEncoding for JSON)
//
// Connect starts the client and reports the first connection attempt;
// from then on the client reconnects by itself until Close, with
// exponential backoff and full jitter (Options.MinReconnectDelay,
// MaxReconnectDelay), except after a disconnect code that forbids it
// (3500-3999, docs/protocol.md), for example a refused token. Ready waits
// for a connection.
//
// Tokens: Options.Token is sent in the connect command. With
// Options.GetToken the client fetches a token when it has none, fetches a
// fresh one when the server reports it expired, and replaces it on the
// live connection (refresh command) shortly before it expires.
//
// Heartbeats: the client answers the server's ping pushes and, when
// nothing at all arrived for the server's ping interval plus
// Options.MaxServerPingDelay, considers the connection dead and replaces
// it.
//
// # Subscriptions and recovery
//
// Subscribe registers a handler for a channel. After a reconnect every
// subscription subscribes again from the offset of the last publication
// queued for its handler; the server replies with the missed publications,
// which are delivered before any live one, so the handler sees every
// publication once and in order. Publications at or below the last
// delivered offset are dropped defensively (Stats.DuplicatesDropped). When
// the server no longer has the missed publications (history too short or
// expired, epoch changed) the OnSubscribed handler receives
// SubscribedEvent{WasRecovering: true, Recovered: false}: the application
// should reload its state, for example with History.
//
// # Commands
//
// Publish, Send, Presence, PresenceStats, History and Ping send a command
// and wait for its reply, bounded by ctx and, when ctx has no deadline, by
// Options.Timeout. While the client is reconnecting they wait for the
// connection. Failures are *Error values carrying the server's error code
// (docs/protocol.md) or one of the client's codes (CodeTimeout,
// CodeDisconnected, ...); Temporary says whether retrying may help. A
// command whose connection was lost before the reply (CodeDisconnected)
// may or may not have been applied.
//
// # Concurrency and goroutines
//
// A Client and its Subscriptions are safe for concurrent use. Every handler
// (the Options On* fields, subscription handlers and OnSubscribed,
// OnUnsubscribed, OnJoin, OnLeave) runs on one goroutine per client, one
// call at a time, in the order the events happened; handlers may call the
// client, including Close. Events wait for that goroutine in a bounded
// queue (Options.EventQueueSize): a handler that falls far behind makes
// the client drop the connection and recover, instead of buffering without
// limit.
//
// Connect starts the handler goroutine, a goroutine that keeps the client
// connected, and one reader per connection. Close ends all of them and
// waits for them.
package client
