package ws

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// keyGUID is appended to Sec-WebSocket-Key before hashing (RFC 6455 §1.3).
const keyGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Canonical header names as net/http and the handshake parsers store them
// (textproto canonicalisation lower-cases "Socket").
const (
	hdrHost          = "Host"
	hdrUpgrade       = "Upgrade"
	hdrConnection    = "Connection"
	hdrOrigin        = "Origin"
	hdrKey           = "Sec-Websocket-Key"
	hdrVersion       = "Sec-Websocket-Version"
	hdrProtocol      = "Sec-Websocket-Protocol"
	hdrExtensions    = "Sec-Websocket-Extensions"
	hdrAccept        = "Sec-Websocket-Accept"
	hdrContentLength = "Content-Length"
	hdrTransferEnc   = "Transfer-Encoding"
)

// Defaults of the handshake options.
const (
	defaultMaxHeaderBytes   = 8 << 10
	defaultReadLimit        = 1 << 20
	defaultHandshakeTimeout = 10 * time.Second
)

// HandshakeError reports an opening handshake that failed with an HTTP
// status: on the server, the status sent to the client before the
// connection was upgraded; on the client (Dial), a response other than
// 101 Switching Protocols.
type HandshakeError struct {
	StatusCode int    // HTTP status sent (server) or received (client)
	Reason     string // short explanation; on the client, the start of the body or the status text
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("ws: handshake failed: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Reason)
}

// Errors a client reports when the server's 101 response breaks RFC 6455
// §4.1 or RFC 7692; Dial wraps them with context.
var (
	// ErrBadAccept: Sec-WebSocket-Accept does not match the key sent.
	ErrBadAccept = errors.New("ws: server sent a wrong Sec-WebSocket-Accept")
	// ErrBadUpgrade: the 101 response lacks "Upgrade: websocket" or
	// "Connection: Upgrade".
	ErrBadUpgrade = errors.New("ws: response does not upgrade to websocket")
	// ErrBadSubprotocol: the server selected a subprotocol the client did
	// not offer.
	ErrBadSubprotocol = errors.New("ws: server selected a subprotocol that was not offered")
	// ErrBadExtension: the server's Sec-WebSocket-Extensions names an
	// extension or parameter the client did not offer, or is malformed.
	ErrBadExtension = errors.New("ws: server selected an extension that was not offered or is invalid")
	// ErrHeaderTooLarge: the handshake response exceeded
	// DialOptions.MaxResponseHeaderBytes.
	ErrHeaderTooLarge = errors.New("ws: handshake header too large")
	// ErrMalformedHTTP: the handshake request or response is not valid
	// HTTP/1.1.
	ErrMalformedHTTP = errors.New("ws: malformed HTTP handshake")
)

// acceptKeyLen is the length of base64(SHA-1(...)).
const acceptKeyLen = 28

// computeAccept appends the Sec-WebSocket-Accept value for key to dst
// (RFC 6455 §4.2.2 step 5.4) without allocating.
func computeAccept(dst []byte, key string) []byte {
	var in [64]byte
	var src []byte
	if len(key)+len(keyGUID) <= len(in) {
		n := copy(in[:], key)
		n += copy(in[n:], keyGUID)
		src = in[:n]
	} else {
		src = []byte(key + keyGUID)
	}
	sum := sha1.Sum(src)
	var out [acceptKeyLen]byte
	base64.StdEncoding.Encode(out[:], sum[:])
	return append(dst, out[:]...)
}

// validKey reports whether a Sec-WebSocket-Key is base64 of exactly 16
// bytes (RFC 6455 §4.2.1 item 5).
func validKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	var buf [18]byte
	n, err := base64.StdEncoding.Decode(buf[:], []byte(key))
	return err == nil && n == 16
}

// headerHasToken reports whether any of the comma-separated lists in values
// contains token, compared case-insensitively (RFC 7230 §7 lists, as used
// by Connection and Upgrade).
func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var elem string
			elem, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.Trim(elem, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// appendTokens appends to dst the non-empty elements of the comma lists in
// values.
func appendTokens(dst []string, values []string) []string {
	for _, v := range values {
		for v != "" {
			var elem string
			elem, v, _ = strings.Cut(v, ",")
			if elem = strings.Trim(elem, " \t"); elem != "" {
				dst = append(dst, elem)
			}
		}
	}
	return dst
}

// isTokenChar reports whether c is a tchar (RFC 7230 §3.2.6).
func isTokenChar(c byte) bool {
	return c < 0x80 && tokenTable[c]
}

var tokenTable = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// validHeaderValue rejects values that would break the header block (CR,
// LF, NUL and other controls except HTAB).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// appendHeader appends "name: value\r\n" for every value of h, except the
// names in skip (canonical form), after checking names and values.
func appendHeader(dst []byte, h http.Header, skip func(canonical string) bool) ([]byte, error) {
	for name, values := range h {
		if !isToken(name) {
			return dst, fmt.Errorf("invalid header name %q", name)
		}
		if skip != nil && skip(http.CanonicalHeaderKey(name)) {
			continue
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return dst, fmt.Errorf("invalid value for header %s", name)
			}
			dst = append(dst, name...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	return dst, nil
}

// handshakeBufPool holds the buffers the handshake reads requests and
// responses into and builds its replies in. They go back to the pool when
// the handshake ends, so an established connection keeps none.
var handshakeBufPool sync.Pool

func getHandshakeBuf(size int) *[]byte {
	if p, ok := handshakeBufPool.Get().(*[]byte); ok {
		if cap(*p) >= size {
			*p = (*p)[:size]
			return p
		}
		// Too small for this caller: let it go and make one that fits; the
		// pool then serves the larger size.
	}
	b := make([]byte, size)
	return &b
}

func putHandshakeBuf(p *[]byte) {
	// Refuse to retain oversized buffers someone configured for a rare
	// giant header.
	if cap(*p) > 64<<10 {
		return
	}
	*p = (*p)[:0]
	handshakeBufPool.Put(p)
}

// appendStatusResponse appends a complete HTTP/1.1 response with a
// text/plain body, as written to a rejected client by AcceptConn.
func appendStatusResponse(dst []byte, status int, reason string, extra http.Header) []byte {
	body := reason + "\n"
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(status)...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n"...)
	dst, _ = appendHeader(dst, extra, nil) // extra is built by this package from valid constants
	dst = append(dst, "\r\n"...)
	return append(dst, body...)
}
