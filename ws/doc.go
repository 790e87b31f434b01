// Package ws is herald's WebSocket engine: RFC 6455 with permessage-deflate
// (RFC 7692), server (Accept, AcceptConn) and client (Dial), with a
// blocking API for clients and simple servers and an event-driven mode
// that holds hundreds of thousands of idle connections with no goroutine
// and no buffer each.
//
// # Accepting connections
//
// Accept upgrades a request received by a net/http server; AcceptConn
// reads the request itself from a freshly accepted net.Conn (no net/http
// server, one pooled buffer of AcceptOptions.MaxHeaderBytes, a deadline of
// AcceptOptions.HandshakeTimeout) and returns it with the connection;
// AcceptConnBuffered does the same for a connection whose first bytes a
// caller already read to route it (a server that serves WebSocket and
// other HTTP on one port without net/http's per-connection buffers for
// its WebSocket clients). With AcceptOptions.OmitRequest they check the
// request head in place and build no *http.Request: a handshake then
// allocates only the connection (and, when the request has an Origin,
// the parsed origin). All three accept only an HTTP/1.1 GET with a
// Host, "Connection: Upgrade" and "Upgrade: websocket" (case-insensitive
// tokens anywhere in the comma-separated lists), "Sec-WebSocket-Version: 13" and a
// Sec-WebSocket-Key of 16 base64-encoded bytes. A request that fails is
// answered before any upgrade with a short text/plain body and the status
// RFC 6455 calls for: 405 (not GET), 505 (not HTTP/1.1), 400 (no Host, a
// body, a bad key, malformed HTTP), 426 with "Sec-WebSocket-Version: 13"
// (no upgrade tokens or another version), 403 (origin refused), 431
// (AcceptConn and AcceptConnBuffered: header larger than MaxHeaderBytes), 500 (an invalid
// ResponseHeader, or a ResponseWriter that cannot be hijacked); the error
// returned is a *HandshakeError with that status for refused requests.
// Browsers are held to the same-origin rule by default: a request without
// Origin, or whose Origin host[:port] equals its Host, passes;
// AcceptOptions.OriginPatterns adds allowed hosts and CheckOrigin replaces
// the rule. The subprotocol chosen is the first of the client's list
// (which RFC 6455 orders by the client's preference) that appears in
// AcceptOptions.Subprotocols; when none does the handshake succeeds
// without one and Conn.Subprotocol returns "". With
// AcceptOptions.Compression set, the first acceptable permessage-deflate
// offer is accepted: offers with unknown, duplicate or invalid parameters
// are declined one by one, any server_max_window_bits the client asks for
// is honoured by compressing with that smaller window, and unless
// ContextTakeover is set the server answers with
// server_no_context_takeover and client_no_context_takeover so that no
// compressor or decompressor is kept between messages. The 101 response is
// written directly on the socket; bytes the client sent after its request
// are kept for the connection, and no handshake buffer outlives the
// handshake.
//
// # Dialing
//
// Dial connects to a ws:// or wss:// URL within the context's deadline
// (cancelling the context aborts the handshake) and checks the server's
// answer strictly: status 101, the Upgrade and Connection tokens, the
// Sec-WebSocket-Accept of its key, a subprotocol it offered and a
// permessage-deflate response valid for its offer. Failures are
// *HandshakeError (another status, with the response) or wrap
// ErrBadUpgrade, ErrBadAccept, ErrBadSubprotocol, ErrBadExtension,
// ErrHeaderTooLarge or ErrMalformedHTTP. With DialOptions.Compression the
// client offers client_max_window_bits (it can compress within any window
// the server asks for), plus both no_context_takeover parameters unless
// ContextTakeover is set and server_max_window_bits when MaxWindowBits is
// below 15; servers that cannot limit their window decline such an offer
// and the connection proceeds uncompressed.
// Every frame a client sends is masked with a fresh key (RFC 6455 §5.3).
//
// # Blocking mode
//
// A new Conn is in blocking mode. Read returns the next whole message;
// Reader streams one message frame by frame (and inflates it as it goes)
// without buffering it, for messages too large to hold. Only one Read or
// Reader may be in progress at a time. Write sends a whole message as one
// frame; Writer streams a message as 16 KiB fragments. Any number of
// goroutines may write at once: each message goes out whole, and frames
// of different messages never interleave. Control frames are handled by
// whoever reads: pings are answered with a pong carrying the same payload,
// pongs resolve the Ping call they echo (unsolicited pongs are ignored),
// and a close frame completes the closing handshake.
//
// Contexts bound reads and writes through socket deadlines. A read
// cancelled between messages leaves the connection usable; one cancelled
// in the middle of a message, or any write that fails or is cancelled
// after part of a frame went out, closes the connection, because the
// stream can no longer be resumed.
//
// While a Read waits, the connection holds one pooled 8 KiB read buffer;
// it goes back to the pool as soon as no unparsed bytes remain after a
// message. Read allocates only the slice it returns, of the message's
// size: a single-frame message is read straight into it, a fragmented or
// compressed one is assembled in pooled buffers and copied into it once.
// Frames are written from pooled buffers (a server's large payloads go
// out with writev, without a copy), so steady-state echo with Reader
// allocates nothing.
//
// # Event mode
//
// Serve hands the connection to herald's poller (internal/netpoll: epoll
// on Linux for plain TCP sockets, one reading goroutine otherwise). The
// poller's workers feed the bytes they read to the connection's frame
// parser, an incremental state machine that keeps only what a partial
// frame needs (at most 13 header bytes, or a pooled 125-byte buffer for a
// split control frame). A message that arrives whole in one read is
// delivered to Handler.OnMessage in place, without a copy (or inflated
// from there when compressed); fragmented messages are assembled, and
// compressed ones inflated, in buffers taken from pools by size class
// (512 B to 1 MiB; a buffer that fills up moves to the next class) that
// return to their pools right after the call, so a steady stream of
// messages of any size allocates nothing to read them. An idle event-mode
// connection therefore holds no goroutine and no buffer: its cost is its
// structs (under 1 KiB including the poller's, about 975 B measured by
// BenchmarkIdleConnMemory).
//
// Writes in event mode never wait for the network. Enqueue queues a
// reference to a prepared message's shared frame; EnqueueMessage, Write
// and Writer copy the message into a frame of its own (a compressed
// message is compressed in a pooled buffer first, so its frame is only as
// large as its compressed form). The connection's
// outbound queue is bounded by ConnOptions.QueueBytes and QueueMessages;
// a message that would exceed them fails with ErrQueueFull, nothing is
// queued, and the connection stays open, so the caller's slow-consumer
// policy decides what happens next. Handler methods run on the poller's
// bounded worker pool, never concurrently for one connection: they must
// not block (in particular, they must not call Ping, whose pong is read by
// the same worker).
//
// Auto-pong, the closing handshake, UTF-8 validation and limits behave
// exactly as in blocking mode; a pong that does not fit the queue is
// dropped.
//
// # Prepared messages
//
// NewPreparedMessage encodes a message once: its server frame (header and
// payload) is built immediately and its permessage-deflate frame on first
// use, once per (level, window) parameter set, then shared by every
// connection that negotiated that set without server context takeover.
// Broadcasting one prepared message to many event-mode connections costs
// one queue entry per connection and no copy. Connections with context
// takeover compress it with their own LZ77 state; client connections must
// mask, so they write a masked copy.
//
// # Compression
//
// With permessage-deflate negotiated, Write, WritePrepared, Enqueue and
// EnqueueMessage compress messages of at least CompressionOptions.Threshold
// bytes (RSV1 set on the first frame; the deflate stream's final
// 0x00 0x00 0xff 0xff is stripped), and Writer compresses every message.
// Compressors and decompressors come from pools, per level and window
// size for compressors. Only with context takeover does a connection keep
// state between messages: its own compressor, and the last window of
// inflated bytes (up to 32 KiB) to prime the pooled decompressor with.
// The read limit applies to the inflated size, checked while inflating,
// so a decompression bomb fails with 1009 after at most ReadLimit bytes.
// In event mode with context takeover, a message that might not fit the
// outbound queue is refused with ErrQueueFull before it is compressed, so
// the shared window stays in step with the peer's. If a Writer's fragment
// cannot be queued once part of its message is, the connection is closed:
// the message can no longer be completed.
//
// # Closing
//
// Close sends a close frame, waits at most ConnOptions.CloseTimeout for
// the peer's, and closes the socket: a server closes TCP as soon as the
// handshake is complete; a client waits, within the timeout, for the
// server to close first (RFC 6455 §7.1.1). When the peer starts the
// handshake, the connection answers with the peer's code and ends; reads
// then return a *CloseError with the peer's code and reason (CloseStatus
// extracts the code). Every path that sees an error, an EOF or a timeout
// closes the socket, so no connection lingers in CLOSE_WAIT. Close and
// CloseNow are idempotent and safe from any goroutine.
//
// # Protocol errors and limits
//
// The connection fails, sending a close frame with the code below and
// closing the socket, when the peer breaks RFC 6455:
//
//   - 1002: an unmasked client frame or a masked server frame; RSV bits
//     not granted by a negotiated extension (RSV1 is granted by
//     permessage-deflate, on the first frame of a data message only); a
//     reserved opcode (3-7, 0xB-0xF); a fragmented or longer than 125
//     bytes control frame; a continuation frame with no message open, or
//     a new data frame inside an open fragmented message; a 64-bit length
//     with its most significant bit set; a close frame with a 1-byte
//     payload or a code not valid on the wire (valid: 1000-1003,
//     1007-1011, 3000-4999).
//   - 1007: a text message (or close reason) that is not UTF-8. Text is
//     validated incrementally, frame by frame, so the connection fails at
//     the first frame that makes the message invalid, without waiting for
//     the last one; a code point split across frames is fine. Compressed
//     text is validated as it is inflated, which in event mode happens
//     once the message is complete. Corrupt deflate data fails with 1007
//     too.
//   - 1009: a frame or message larger than the read limit
//     (AcceptOptions.ReadLimit, DialOptions.ReadLimit; default 1 MiB). The
//     check uses the frame header, before any payload is buffered.
//
// Non-minimal length encodings (a short payload announced with the 16- or
// 64-bit form) are accepted: RFC 6455 asks senders for the minimal form,
// but the length is unambiguous and every limit applies to its value.
// The error a local failure returns is a *ProtocolError carrying the code
// that was sent.
//
// # Heartbeats
//
// LastRead reports when bytes last arrived, so a server can sweep its
// connections for dead peers without a timer per connection. Ping sends a
// ping and returns the round-trip time once the matching pong arrives; in
// blocking mode another goroutine must be reading for the pong to be
// seen.
package ws
