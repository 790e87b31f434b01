// Opening handshake, server side (RFC 6455 §4.2, RFC 7692 §5-7).
//
// Text for the package documentation in doc.go:
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

package ws

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Accept completes the server side of the opening handshake for a request
// received by a net/http server and returns the established connection.
//
// When the request is not an acceptable WebSocket handshake Accept writes
// the HTTP error response itself (see the package documentation) and
// returns a *HandshakeError; the caller must not write to w afterwards.
// On success w has been hijacked and must not be used. The connection's
// read and write deadlines set by the http.Server are cleared.
//
// opts may be nil for the defaults. Accept is safe to call concurrently
// for different requests; opts is only read.
func Accept(w http.ResponseWriter, r *http.Request, opts *AcceptOptions) (*Conn, error) {
	cfg, err := upgradeHTTP(w, r, opts)
	if err != nil {
		return nil, err
	}
	return newConn(cfg), nil
}

// upgradeHTTP is Accept up to the connection's construction.
func upgradeHTTP(w http.ResponseWriter, r *http.Request, opts *AcceptOptions) (connConfig, error) {
	if opts == nil {
		opts = &defaultAcceptOptions
	}
	hs, rej := checkUpgradeRequest(r, opts)
	if rej != nil {
		writeRejection(w, rej)
		return connConfig{}, rej.error()
	}

	bp := getHandshakeBuf(512)
	defer putHandshakeBuf(bp)
	resp, err := appendSwitchingProtocols((*bp)[:0], &hs, opts.ResponseHeader)
	*bp = resp[:0]
	if err != nil {
		http.Error(w, "websocket: invalid response header", http.StatusInternalServerError)
		return connConfig{}, err
	}

	nc, brw, err := hijack(w)
	if err != nil {
		http.Error(w, "websocket: connection cannot be upgraded", http.StatusInternalServerError)
		return connConfig{}, fmt.Errorf("ws: accept: %w", err)
	}
	// Bytes the client sent right after its request (it may pipeline its
	// first frames) sit in the server's bufio.Reader; keep a copy and let
	// the reader and writer go.
	var buffered []byte
	if n := brw.Reader.Buffered(); n > 0 {
		peeked, _ := brw.Reader.Peek(n)
		buffered = append([]byte(nil), peeked...)
	}

	timeout := opts.HandshakeTimeout
	if timeout <= 0 {
		timeout = defaultHandshakeTimeout
	}
	// Clears any read deadline the http.Server left, and bounds the write.
	if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		nc.Close()
		return connConfig{}, fmt.Errorf("ws: accept: %w", err)
	}
	if _, err := nc.Write(resp); err != nil {
		nc.Close()
		return connConfig{}, fmt.Errorf("ws: accept: writing 101 response: %w", err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		nc.Close()
		return connConfig{}, fmt.Errorf("ws: accept: %w", err)
	}
	cfg := hs.connConfig(opts)
	cfg.netConn = nc
	cfg.buffered = buffered
	return cfg, nil
}

// hijack takes the connection over from net/http: through
// http.ResponseController, which follows Unwrap chains of middleware
// wrappers, and failing that through a plain http.Hijacker.
func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err == nil {
		return nc, brw, nil
	}
	if errors.Is(err, http.ErrNotSupported) {
		if h, ok := w.(http.Hijacker); ok {
			return h.Hijack()
		}
		return nil, nil, errNotHijackable
	}
	return nil, nil, err
}

// writeRejection answers a refused handshake through net/http.
func writeRejection(w http.ResponseWriter, rej *rejection) {
	h := w.Header()
	for k, v := range rej.header {
		h[k] = append([]string(nil), v...)
	}
	body := rej.reason + "\n"
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rej.status)
	_, _ = w.Write([]byte(body)) // the client may already be gone; nothing to do
}

// AcceptConn reads the opening handshake request directly from nc, a
// connection just accepted from a net.Listener (plain TCP, or a *tls.Conn
// whose TLS handshake happens on the first read), and completes the
// server side of the handshake without a net/http server. It returns the
// connection and the parsed request (Host moved to r.Host, r.RemoteAddr
// and, for TLS, r.TLS filled in) for authentication and routing by the
// caller.
//
// The request is read into one pooled buffer of opts.MaxHeaderBytes
// (default 8 KiB; a larger head is answered with 431) under a deadline of
// opts.HandshakeTimeout (default 10 s). A request that is not an
// acceptable handshake is answered with an HTTP error (see the package
// documentation), nc is closed and the error is a *HandshakeError; the
// request is returned too when it could be parsed. Read errors and
// timeouts close nc without a response. On success the deadline is
// cleared and any bytes the client sent after its request are kept for
// the connection.
//
// opts may be nil for the defaults. AcceptConn may be called concurrently
// for different connections.
func AcceptConn(nc net.Conn, opts *AcceptOptions) (*Conn, *http.Request, error) {
	return AcceptConnBuffered(nc, nil, opts)
}

// AcceptConnBuffered is AcceptConn for a connection whose first bytes the
// caller has already read, for example to route it by its request line:
// read is taken as the start of the request and the rest is read from
// nc. When read holds the whole request head, it is parsed and the
// response built in place, so the call needs no buffer of its own: read's
// memory, up to its capacity, is overwritten (reuse it only after the call
// returns). Otherwise read is copied into a pooled buffer and left as it
// is; when it is longer than opts.MaxHeaderBytes and holds no complete
// head the request is answered with 431. read is not retained; bytes of
// it past the request head are kept (copied) for the connection like any
// others the client sent early.
func AcceptConnBuffered(nc net.Conn, read []byte, opts *AcceptOptions) (*Conn, *http.Request, error) {
	cfg, r, err := upgradeConn(nc, read, opts)
	if err != nil {
		return nil, r, err
	}
	return newConn(cfg), r, nil
}

// upgradeConn is AcceptConnBuffered up to the connection's construction.
func upgradeConn(nc net.Conn, read []byte, opts *AcceptOptions) (connConfig, *http.Request, error) {
	if opts == nil {
		opts = &defaultAcceptOptions
	}
	maxHeader := opts.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = defaultMaxHeaderBytes
	}
	timeout := opts.HandshakeTimeout
	if timeout <= 0 {
		timeout = defaultHandshakeTimeout
	}
	if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		nc.Close()
		return connConfig{}, nil, fmt.Errorf("ws: accept: %w", err)
	}

	// A complete head already read is parsed and answered in place;
	// otherwise the request is gathered in a pooled buffer.
	buf := read
	n := len(read)
	headLen := findHeadEnd(read, 0)
	if headLen < 0 {
		bp := getHandshakeBuf(max(maxHeader, len(read)))
		defer putHandshakeBuf(bp)
		buf = *bp
		n = copy(buf, read)
	}
	var err error
	switch {
	case headLen >= 0:
	case n >= maxHeader:
		err = ErrHeaderTooLarge
	default:
		n, headLen, err = continueHead(nc, buf[:maxHeader], n)
	}
	if err == ErrHeaderTooLarge {
		err := rejectConn(nc, buf, &rejection{status: http.StatusRequestHeaderFieldsTooLarge, reason: "request header too large"})
		return connConfig{}, nil, err
	}
	if err != nil {
		nc.Close()
		return connConfig{}, nil, fmt.Errorf("ws: accept: reading handshake request: %w", err)
	}
	var r *http.Request
	var hs serverHandshake
	var rej *rejection
	if opts.OmitRequest && opts.CheckOrigin == nil {
		var fields [maxInlineFields]headerField
		hs, rej = checkUpgradeHead(buf[:headLen], fields[:0], nc, opts)
	} else {
		r, err = parseRequest(buf[:headLen])
		if err != nil {
			return connConfig{}, nil, rejectConn(nc, buf, &rejection{status: http.StatusBadRequest, reason: "malformed HTTP request", err: err})
		}
		r.RemoteAddr = nc.RemoteAddr().String()
		if tc, ok := nc.(*tls.Conn); ok {
			state := tc.ConnectionState()
			r.TLS = &state
		}
		hs, rej = checkUpgradeRequest(r, opts)
		if opts.OmitRequest {
			r = nil // built for CheckOrigin only
		}
	}
	if rej != nil {
		return connConfig{}, r, rejectConn(nc, buf, rej)
	}

	// The client may have sent its first frames with the request.
	var buffered []byte
	if n > headLen {
		buffered = append([]byte(nil), buf[headLen:n]...)
	}
	resp, err := appendSwitchingProtocols(buf[:0], &hs, opts.ResponseHeader)
	if err != nil {
		return connConfig{}, r, rejectConn(nc, buf, &rejection{status: http.StatusInternalServerError, reason: "invalid response header", err: err})
	}
	if _, err := nc.Write(resp); err != nil {
		nc.Close()
		return connConfig{}, r, fmt.Errorf("ws: accept: writing 101 response: %w", err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		nc.Close()
		return connConfig{}, r, fmt.Errorf("ws: accept: %w", err)
	}
	cfg := hs.connConfig(opts)
	cfg.netConn = nc
	cfg.buffered = buffered
	return cfg, r, nil
}

// maxInlineFields is how many header fields checkUpgradeHead handles
// without allocating; browsers send about 15.
const maxInlineFields = 24

// checkUpgradeHead is parseRequest and checkUpgradeRequest in one, for
// AcceptConn with OmitRequest (and no CheckOrigin): it checks the head
// (rewriting its header names in place) and the handshake without
// building an *http.Request. fields is scratch space for the head's
// fields.
//
// The request line and fields are read through a string that shares
// head's memory, so nothing is copied: none of those strings may outlive
// this call, nor be used once head is overwritten, which the caller does
// with the response. The serverHandshake holds no string of the head
// (the key is copied), and a rejection refers only to constants and
// copies.
func checkUpgradeHead(head []byte, fields []headerField, nc net.Conn, opts *AcceptOptions) (serverHandshake, *rejection) {
	malformed := func(err error) (serverHandshake, *rejection) {
		return serverHandshake{}, &rejection{status: http.StatusBadRequest, reason: "malformed HTTP request", err: err}
	}
	start, end, _, err := scanHead(head)
	if err != nil {
		return malformed(err)
	}
	s := unsafe.String(&head[start], end-start)
	first, i, _ := nextLine(s, 0)
	rl, err := parseRequestLine(first)
	if err != nil {
		return malformed(err)
	}
	for {
		f, next, ok := nextField(s, i)
		if !ok {
			break
		}
		fields = append(fields, f)
		i = next
	}
	ur := upgradeRequest{method: rl.method, protoMajor: rl.major, protoMinor: rl.minor, fields: fields}
	if ur.fields == nil {
		ur.fields = []headerField{} // no fields at all: still not a header map
	}
	var buf [2]string
	// As parseRequest: one Host at most, overridden by an absolute-form
	// target, whose URL is only built for that rare form.
	switch hosts := ur.values(hdrHost, buf[:0]); len(hosts) {
	case 0:
	case 1:
		ur.host = hosts[0]
	default:
		return malformed(fmt.Errorf("%w: several Host headers", ErrMalformedHTTP))
	}
	if rl.target[0] == '/' {
		if !validOriginForm(rl.target) {
			return malformed(fmt.Errorf("%w: bad request target: invalid URL escape", ErrMalformedHTTP))
		}
	} else {
		u, err := url.ParseRequestURI(strings.Clone(rl.target))
		if err != nil {
			return malformed(fmt.Errorf("%w: bad request target: %w", ErrMalformedHTTP, err))
		}
		if u.Host != "" {
			ur.host = u.Host
		}
	}
	if cl := ur.values(hdrContentLength, buf[:0]); len(cl) > 0 {
		n, err := parseContentLength(cl)
		if err != nil {
			return malformed(err)
		}
		ur.hasBody = n > 0
	}
	if te := ur.values(hdrTransferEnc, buf[:0]); len(te) > 0 {
		ur.hasBody = true
	}
	return checkUpgrade(&ur, nil, opts)
}

// rejectConn writes the HTTP response of a refused handshake on nc (still
// under the handshake deadline), closes nc and returns the error for the
// caller of AcceptConn.
func rejectConn(nc net.Conn, buf []byte, rej *rejection) error {
	_, err := nc.Write(appendStatusResponse(buf[:0], rej.status, rej.reason, rej.header))
	if err == nil && rej.status == http.StatusRequestHeaderFieldsTooLarge {
		lingerClose(nc, buf)
	}
	nc.Close()
	return rej.error()
}

// rejectLinger bounds how long a refused connection is drained.
const rejectLinger = 250 * time.Millisecond

// lingerClose half-closes nc and discards what the client is still
// sending for a short while. Closing a socket with unread input makes the
// kernel send a reset, which can destroy the response before the client
// reads it; this matters when the request was not read to its end.
func lingerClose(nc net.Conn, buf []byte) {
	cw, ok := nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	if nc.SetReadDeadline(time.Now().Add(rejectLinger)) != nil {
		return
	}
	for range 64 { // at most 64 buffers, however fast the client sends
		if _, err := nc.Read(buf[:cap(buf)]); err != nil {
			return
		}
	}
}
