package client

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// Encoding selects the message encoding on tcp:// and tls:// connections.
// WebSocket connections always use JSON.
type Encoding int

// Encodings.
const (
	// EncodingBinary is the compact binary encoding (the default).
	EncodingBinary Encoding = iota
	// EncodingJSON is the JSON encoding, as over WebSocket.
	EncodingJSON
)

// Options configure a Client. The zero value connects anonymously with the
// defaults documented on each field.
type Options struct {
	// Token is the connection token (JWT). Empty connects anonymously
	// unless GetToken is set.
	Token string
	// GetToken returns a fresh token. It is called before connecting when
	// there is no token, after the server reported the token expired
	// (error 109, disconnect 3005), and before the token expires (the
	// connect reply's ttl), in which case the token is replaced on the
	// live connection with the refresh command. Returning an error that
	// wraps ErrUnauthorized stops the client; any other error is retried
	// with backoff. ctx ends when the client is closed.
	GetToken func(ctx context.Context) (string, error)

	// Name and Version identify the client library in the connect command.
	// Defaults "herald-go" and the module version.
	Name    string
	Version string

	// TLSConfig is used for wss:// and tls:// URLs. Default: crypto/tls
	// defaults with the URL's host as ServerName.
	TLSConfig *tls.Config
	// Dialer opens the TCP connection (for every scheme). Default: a
	// net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// Header is sent with the WebSocket handshake request (Origin,
	// Cookie, ...). Ignored for tcp:// and tls://.
	Header http.Header
	// TCPEncoding selects the encoding on tcp:// and tls:// URLs. Default
	// EncodingBinary.
	TCPEncoding Encoding

	// MinReconnectDelay and MaxReconnectDelay bound the reconnect delay:
	// attempt n waits a random time in [0, min(Max, Min*2^n)) (exponential
	// backoff with full jitter). Defaults 500 ms and 20 s.
	MinReconnectDelay time.Duration
	MaxReconnectDelay time.Duration
	// Timeout bounds each command without an earlier context deadline,
	// and each connection attempt (dial, handshake, connect command).
	// Default 10 s.
	Timeout time.Duration
	// MaxServerPingDelay is how long past the server's ping interval the
	// client waits for any data before it considers the connection dead
	// and reconnects. Default 10 s.
	MaxServerPingDelay time.Duration
	// MaxMessageSize is the largest message accepted from the server, in
	// bytes. Default 1 MiB.
	MaxMessageSize int
	// EventQueueSize bounds the events (publications, join/leave,
	// messages, state changes) waiting for the handler goroutine. When a
	// handler falls behind and the queue is full, the client drops the
	// connection and reconnects, recovering the channels' publications
	// from history: handlers never miss a recoverable publication, but a
	// persistently slow handler makes the client reconnect repeatedly.
	// Default 4096.
	EventQueueSize int

	// Logger receives the client's diagnostics. Default: discarded.
	Logger *slog.Logger

	// OnConnected is called when a connection is established (after the
	// connect reply, before the subscriptions are restored).
	OnConnected func(ConnectedEvent)
	// OnDisconnected is called when an established connection ends, with
	// the server's disconnect code (or a client code such as
	// DisconnectNoPing) and whether the client will reconnect, and when a
	// connection attempt fails in a way that stops the client (Reconnect
	// false). Attempts that fail and are retried go to OnError.
	OnDisconnected func(DisconnectedEvent)
	// OnError reports failures the client handles by itself: a connection
	// attempt or token fetch that failed, a refresh the server refused, a
	// malformed server message, an overflowing event queue.
	OnError func(error)
	// OnMessage receives direct messages (server API send, Client.Send).
	OnMessage func(Message)
}

// Client disconnect codes, reported in DisconnectedEvent for reasons of the
// client's own. Server disconnect codes (1001, 3000-3999) and WebSocket
// close codes are reported as received.
const (
	// DisconnectClosed: Close was called.
	DisconnectClosed uint16 = 1
	// DisconnectNoPing: nothing arrived from the server for ping +
	// MaxServerPingDelay.
	DisconnectNoPing uint16 = 4001
	// DisconnectConnectTimeout: the connection was not established within
	// Timeout.
	DisconnectConnectTimeout uint16 = 4002
	// DisconnectTransportFailed: the connection could not be opened or
	// broke without a close code.
	DisconnectTransportFailed uint16 = 4003
	// DisconnectConnectFailed: the connect command failed with a
	// temporary error.
	DisconnectConnectFailed uint16 = 4004
	// DisconnectSlowHandler: the event queue overflowed (EventQueueSize).
	DisconnectSlowHandler uint16 = 4005
	// DisconnectUnauthorized: the server refused the token, or GetToken
	// returned ErrUnauthorized.
	DisconnectUnauthorized uint16 = wire.DisconnectUnauthorized
)

// ErrUnauthorized, wrapped in an error returned by GetToken, tells the
// client to stop: the user may no longer connect.
var ErrUnauthorized = &Error{Code: CodeUnauthorized, Message: "unauthorized"}

func (o *Options) maxMessageSize() int {
	if o.MaxMessageSize <= 0 {
		return 1 << 20
	}
	return o.MaxMessageSize
}

// withDefaults returns a copy of o with every zero field set to its
// default.
func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = "herald-go"
	}
	if o.Version == "" {
		o.Version = moduleVersion()
	}
	if o.MinReconnectDelay <= 0 {
		o.MinReconnectDelay = 500 * time.Millisecond
	}
	if o.MaxReconnectDelay <= 0 {
		o.MaxReconnectDelay = 20 * time.Second
	}
	if o.MaxReconnectDelay < o.MinReconnectDelay {
		o.MaxReconnectDelay = o.MinReconnectDelay
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxServerPingDelay <= 0 {
		o.MaxServerPingDelay = 10 * time.Second
	}
	if o.EventQueueSize <= 0 {
		o.EventQueueSize = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
