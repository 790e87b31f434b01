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

// serverHandshake is what checkUpgradeRequest decided for an acceptable
// request.
type serverHandshake struct {
	key         string
	subprotocol string
	compress    bool
	deflateResp deflateResponse
	deflate     deflateParams
}

// checkUpgradeRequest applies RFC 6455 §4.2.1 and §4.2.2 to r: method,
// version, Host, Upgrade and Connection tokens, Sec-WebSocket-Version,
// Sec-WebSocket-Key and Origin, then selects the subprotocol and
// negotiates permessage-deflate (RFC 7692). It reads r.Header only through
// canonical keys so it allocates nothing on success.
func checkUpgradeRequest(r *http.Request, opts *AcceptOptions) (serverHandshake, *rejection) {
	var hs serverHandshake
	if r.Method != http.MethodGet {
		return hs, &rejection{status: http.StatusMethodNotAllowed, reason: "websocket handshake must be a GET request", header: rejectHeaderMethod}
	}
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return hs, &rejection{status: http.StatusHTTPVersionNotSupported, reason: "websocket handshake requires HTTP/1.1"}
	}
	if r.Host == "" {
		return hs, &rejection{status: http.StatusBadRequest, reason: "missing Host header"}
	}
	if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
		// A body would be taken for WebSocket frames after the upgrade.
		return hs, &rejection{status: http.StatusBadRequest, reason: "websocket handshake must not have a body"}
	}
	if !headerHasToken(r.Header[hdrConnection], "upgrade") {
		return hs, &rejection{status: http.StatusUpgradeRequired, reason: `missing "Connection: Upgrade"`, header: rejectHeaderUpgrade}
	}
	if !headerHasToken(r.Header[hdrUpgrade], "websocket") {
		return hs, &rejection{status: http.StatusUpgradeRequired, reason: `missing "Upgrade: websocket"`, header: rejectHeaderUpgrade}
	}
	if v := r.Header[hdrVersion]; len(v) != 1 || strings.Trim(v[0], " \t") != "13" {
		return hs, &rejection{status: http.StatusUpgradeRequired, reason: "unsupported Sec-WebSocket-Version, want 13", header: rejectHeaderVersion}
	}
	key := r.Header[hdrKey]
	if len(key) != 1 || !validKey(strings.Trim(key[0], " \t")) {
		return hs, &rejection{status: http.StatusBadRequest, reason: "invalid Sec-WebSocket-Key"}
	}
	hs.key = strings.Trim(key[0], " \t")
	allowed, err := checkOrigin(r, opts)
	if err != nil || !allowed {
		return hs, &rejection{status: http.StatusForbidden, reason: "origin not allowed", err: err}
	}
	hs.subprotocol = selectSubprotocol(r.Header[hdrProtocol], opts.Subprotocols)
	if opts.Compression != nil {
		if ext := r.Header[hdrExtensions]; len(ext) > 0 {
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
	dst = computeAccept(dst, hs.key)
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
