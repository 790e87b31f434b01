package ws

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// rejection is a handshake the server refuses before upgrading, with the
// HTTP status, short text body and extra headers the client receives.
type rejection struct {
	status int
	reason string
	header http.Header // read-only, shared
	err    error       // cause worth reporting to the caller, if any
}

func (r *rejection) error() error {
	he := &HandshakeError{StatusCode: r.status, Reason: r.reason}
	if r.err != nil {
		return fmt.Errorf("%w: %w", he, r.err)
	}
	return he
}

// Extra headers of rejections. Shared and never modified.
var (
	rejectHeaderMethod  = http.Header{"Allow": {"GET"}}
	rejectHeaderUpgrade = http.Header{
		hdrUpgrade:    {"websocket"},
		hdrConnection: {"Upgrade"},
		hdrVersion:    {"13"},
	}
	rejectHeaderVersion = http.Header{hdrVersion: {"13"}}
)

// serverHandshake is what checkUpgrade decided for an acceptable request.
type serverHandshake struct {
	key         [keyLen]byte // Sec-WebSocket-Key, copied: the head it came from may be reused
	subprotocol string       // one of AcceptOptions.Subprotocols, or ""
	compress    bool
	deflateResp deflateResponse
	deflate     deflateParams
}

// keyLen is the length of a valid Sec-WebSocket-Key: base64 of 16 bytes.
const keyLen = 24

// upgradeRequest is what the server side of the opening handshake
// checks: taken from an *http.Request (Accept, and AcceptConn when it
// returns the request), or read straight from the fields of the head
// (AcceptConn with OmitRequest), so that both apply the same rules.
type upgradeRequest struct {
	method                 string
	protoMajor, protoMinor int
	host                   string
	hasBody                bool
	header                 http.Header   // the request's header, or
	fields                 []headerField // the head's fields, when there is no request
}

// values returns the values of the header with the canonical name: the
// request's own slice, or those of the head's fields appended to dst.
func (r *upgradeRequest) values(name string, dst []string) []string {
	if r.fields == nil {
		return r.header[name]
	}
	for _, f := range r.fields {
		if f.name == name {
			dst = append(dst, f.value)
		}
	}
	return dst
}

// checkUpgradeRequest is checkUpgrade for a request from net/http or
// parsed by parseRequest.
func checkUpgradeRequest(r *http.Request, opts *AcceptOptions) (serverHandshake, *rejection) {
	hr := upgradeRequest{
		method:     r.Method,
		protoMajor: r.ProtoMajor,
		protoMinor: r.ProtoMinor,
		host:       r.Host,
		hasBody:    r.ContentLength > 0 || len(r.TransferEncoding) > 0,
		header:     r.Header,
	}
	return checkUpgrade(&hr, r, opts)
}

// checkUpgrade applies RFC 6455 §4.2.1 and §4.2.2 to r: method, version,
// Host, Upgrade and Connection tokens, Sec-WebSocket-Version,
// Sec-WebSocket-Key and Origin, then selects the subprotocol and
// negotiates permessage-deflate (RFC 7692). req is the request
// AcceptOptions.CheckOrigin is called with; it may be nil only when
// CheckOrigin is. It reads headers only through canonical keys and keeps
// no string of r, so it allocates nothing on success.
func checkUpgrade(r *upgradeRequest, req *http.Request, opts *AcceptOptions) (serverHandshake, *rejection) {
	var hs serverHandshake
	if r.method != http.MethodGet {
		return hs, &rejection{status: http.StatusMethodNotAllowed, reason: "websocket handshake must be a GET request", header: rejectHeaderMethod}
	}
	if r.protoMajor != 1 || r.protoMinor < 1 {
		return hs, &rejection{status: http.StatusHTTPVersionNotSupported, reason: "websocket handshake requires HTTP/1.1"}
	}
	if r.host == "" {
		return hs, &rejection{status: http.StatusBadRequest, reason: "missing Host header"}
	}
	if r.hasBody {
		// A body would be taken for WebSocket frames after the upgrade.
		return hs, &rejection{status: http.StatusBadRequest, reason: "websocket handshake must not have a body"}
	}
	var buf [4]string // values of one header, when they come from fields
	if !headerHasToken(r.values(hdrConnection, buf[:0]), "upgrade") {
		return hs, &rejection{status: http.StatusUpgradeRequired, reason: `missing "Connection: Upgrade"`, header: rejectHeaderUpgrade}
	}
	if !headerHasToken(r.values(hdrUpgrade, buf[:0]), "websocket") {
		return hs, &rejection{status: http.StatusUpgradeRequired, reason: `missing "Upgrade: websocket"`, header: rejectHeaderUpgrade}
	}
	if v := r.values(hdrVersion, buf[:0]); len(v) != 1 || strings.Trim(v[0], " \t") != "13" {
		return hs, &rejection{status: http.StatusUpgradeRequired, reason: "unsupported Sec-WebSocket-Version, want 13", header: rejectHeaderVersion}
	}
	key := r.values(hdrKey, buf[:0])
	if len(key) != 1 || !validKey(strings.Trim(key[0], " \t")) {
		return hs, &rejection{status: http.StatusBadRequest, reason: "invalid Sec-WebSocket-Key"}
	}
	copy(hs.key[:], strings.Trim(key[0], " \t"))
	allowed, err := checkOrigin(r.host, r.values(hdrOrigin, buf[:0]), req, opts)
	if err != nil || !allowed {
		return hs, &rejection{status: http.StatusForbidden, reason: "origin not allowed", err: err}
	}
	hs.subprotocol = selectSubprotocol(r.values(hdrProtocol, buf[:0]), opts.Subprotocols)
	if opts.Compression != nil {
		if ext := r.values(hdrExtensions, buf[:0]); len(ext) > 0 {
			hs.deflateResp, hs.deflate, hs.compress = negotiateDeflate(ext, opts.Compression)
		}
	}
	return hs, nil
}

// selectSubprotocol returns the first subprotocol in the client's list
// (RFC 6455 §4.1: ordered by the client's preference) that the server
// supports, or "" when there is none; the handshake then succeeds without
// a subprotocol and the client decides whether that is acceptable.
func selectSubprotocol(offered []string, supported []string) string {
	if len(supported) == 0 {
		return ""
	}
	for _, v := range offered {
		for v != "" {
			var elem string
			elem, v, _ = strings.Cut(v, ",")
			elem = strings.Trim(elem, " \t")
			for _, s := range supported {
				if s == elem && elem != "" {
					return s
				}
			}
		}
	}
	return ""
}

// reservedResponseHeader reports the headers the 101 response sets itself
// and AcceptOptions.ResponseHeader may not override.
func reservedResponseHeader(name string) bool {
	switch name {
	case hdrUpgrade, hdrConnection, hdrAccept, hdrProtocol, hdrExtensions, hdrContentLength, hdrTransferEnc:
		return true
	}
	return false
}

// appendSwitchingProtocols appends the 101 response (RFC 6455 §4.2.2 step 5).
func appendSwitchingProtocols(dst []byte, hs *serverHandshake, extra http.Header) ([]byte, error) {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = computeAccept(dst, string(hs.key[:]))
	dst = append(dst, "\r\n"...)
	if hs.subprotocol != "" {
		dst = append(dst, "Sec-WebSocket-Protocol: "...)
		dst = append(dst, hs.subprotocol...)
		dst = append(dst, "\r\n"...)
	}
	if hs.compress {
		dst = append(dst, "Sec-WebSocket-Extensions: "...)
		dst = hs.deflateResp.appendTo(dst)
		dst = append(dst, "\r\n"...)
	}
	var err error
	if len(extra) > 0 {
		if dst, err = appendHeader(dst, extra, reservedResponseHeader); err != nil {
			return dst, fmt.Errorf("ws: AcceptOptions.ResponseHeader: %w", err)
		}
	}
	return append(dst, "\r\n"...), nil
}

// connConfigFor builds the newConn input of a server connection.
func (hs *serverHandshake) connConfig(opts *AcceptOptions) connConfig {
	cfg := connConfig{
		isServer:    true,
		subprotocol: hs.subprotocol,
		readLimit:   opts.ReadLimit,
		opts:        opts.Conn,
	}
	if cfg.readLimit <= 0 {
		cfg.readLimit = defaultReadLimit
	}
	if hs.compress {
		p := hs.deflate
		cfg.deflate = &p
	}
	return cfg
}

var errNotHijackable = errors.New("ws: response writer does not support hijacking")

var defaultAcceptOptions AcceptOptions
