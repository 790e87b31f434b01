package ws

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// CompressionOptions enable permessage-deflate (RFC 7692). A nil
// *CompressionOptions in AcceptOptions or DialOptions disables compression.
type CompressionOptions struct {
	// Threshold is the smallest message, in bytes, that is compressed;
	// smaller ones are sent uncompressed (RSV1 clear). Default 256.
	Threshold int
	// Level is the flate level (1-9). Default 1 (fastest): on a gateway the
	// CPU spent per message matters more than the last few percent of size.
	Level int
	// ContextTakeover keeps the LZ77 window between messages, in both
	// directions, when the peer agrees. It compresses small similar
	// messages much better but pins a compressor and a decompressor (about
	// 32 KiB + 32 KiB with the default window) to every connection for its
	// whole life. Default false: no context takeover, so compressors come
	// from pools and idle connections hold none. Prepared messages are
	// compressed once and shared only without context takeover on the
	// server side.
	ContextTakeover bool
	// MaxWindowBits limits the LZ77 window (8-15) this side asks for and
	// accepts. Default 15.
	MaxWindowBits int
}

// AcceptOptions configure the server side of the opening handshake and the
// connection. The zero value is a safe default.
type AcceptOptions struct {
	// Subprotocols this server speaks, in order of preference. The first
	// of the client's offered subprotocols that appears here is selected.
	Subprotocols []string
	// OriginPatterns lists the Origin hosts (path.Match patterns, compared
	// case-insensitively against the Origin's host[:port]) allowed besides
	// the request's own Host. Default: only same-host origins, and requests
	// with no Origin header (non-browser clients). Others get 403.
	OriginPatterns []string
	// CheckOrigin, when set, replaces the Origin check entirely.
	// Returning false rejects the handshake with 403.
	CheckOrigin func(r *http.Request) bool
	// Compression enables permessage-deflate when the client offers it.
	Compression *CompressionOptions
	// ResponseHeader is added to the 101 response (for example Set-Cookie).
	ResponseHeader http.Header
	// ReadLimit is the largest message (after decompression) or frame the
	// connection accepts; larger ones fail the connection with 1009 before
	// the payload is buffered. Default 1 MiB.
	ReadLimit int64
	// MaxHeaderBytes bounds the request read by AcceptConn. Default 8 KiB.
	MaxHeaderBytes int
	// HandshakeTimeout bounds reading the request in AcceptConn. Default 10 s.
	HandshakeTimeout time.Duration
	// OmitRequest makes AcceptConn and AcceptConnBuffered return a nil
	// *http.Request: the handshake is checked straight from the request
	// head, exactly as otherwise, without building a request, its header
	// map and URL. That is about 1 KB less garbage per connection, which
	// after a burst of connections the process holds as heap until the
	// next collections. Set it when the caller does not use the request.
	// With CheckOrigin set the request is still built, for CheckOrigin
	// alone. Accept ignores it. Default false.
	OmitRequest bool
	// Conn holds the connection's runtime options.
	Conn ConnOptions
}

// DialOptions configure the client side. The zero value is a sensible
// default.
type DialOptions struct {
	// HTTPHeader is sent with the handshake request (Origin, Cookie,
	// Authorization, ...).
	HTTPHeader http.Header
	// Subprotocols offered, in order of preference.
	Subprotocols []string
	// Compression offers permessage-deflate.
	Compression *CompressionOptions
	// TLSConfig for wss:// URLs. Default: crypto/tls defaults with the
	// URL's host as ServerName.
	TLSConfig *tls.Config
	// NetDialContext dials the TCP connection. Default: a net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// ReadLimit as in AcceptOptions. Default 1 MiB.
	ReadLimit int64
	// MaxResponseHeaderBytes bounds the handshake response. Default 8 KiB.
	MaxResponseHeaderBytes int
	// Conn holds the connection's runtime options.
	Conn ConnOptions
}

// ConnOptions are runtime options of an established connection.
type ConnOptions struct {
	// CloseTimeout bounds how long Close waits for the peer's close frame
	// (and, on the client, for the server to close TCP) before it closes the
	// socket. Default 5 s.
	CloseTimeout time.Duration
	// QueueBytes bounds the bytes waiting in the outbound queue used by
	// Enqueue (and by writes in event mode). Default 4 MiB.
	QueueBytes int
	// QueueMessages bounds the number of messages waiting in that queue.
	// Default 4096.
	QueueMessages int
}

// connConfig is what a finished opening handshake hands to newConn: the
// socket, any bytes read past the handshake, and what was negotiated.
type connConfig struct {
	netConn     net.Conn
	buffered    []byte // bytes read after the handshake (already frames); may be nil
	isServer    bool
	subprotocol string
	// deflate is non-nil when permessage-deflate was negotiated.
	deflate   *deflateParams
	readLimit int64
	opts      ConnOptions
}

// deflateParams are the negotiated permessage-deflate parameters
// (RFC 7692 §7.1), seen from this endpoint.
type deflateParams struct {
	// writeNoContextTakeover: this side resets its compressor after each
	// message (server_no_context_takeover for a server, client_... for a
	// client).
	writeNoContextTakeover bool
	// readNoContextTakeover: the peer resets its compressor after each
	// message, so this side may reset its decompressor too.
	readNoContextTakeover bool
	writeWindowBits       int // LZ77 window this side compresses with (8-15)
	readWindowBits        int // window the peer compresses with (8-15)
	threshold             int
	level                 int
}
