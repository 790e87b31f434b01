package ws

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Dial opens a WebSocket connection to urlStr (ws:// or wss://; http://
// and https:// are accepted as synonyms) and performs the client side of
// the opening handshake (RFC 6455 §4.1).
//
// ctx bounds the whole handshake: its deadline is set on the connection
// while the handshake runs, and cancelling it closes the connection. It
// has no effect on the returned Conn.
//
// The server's response must be 101 Switching Protocols with
// "Upgrade: websocket", "Connection: Upgrade", the Sec-WebSocket-Accept
// matching the key sent, at most one of the offered subprotocols and, if
// any, a permessage-deflate response valid for the offer made (RFC 7692
// §7.1); otherwise Dial fails with ErrBadUpgrade, ErrBadAccept,
// ErrBadSubprotocol or ErrBadExtension (wrapped). A status other than 101
// gives a *HandshakeError and the *http.Response, whose Body holds the part
// of the body received with the head. The response is returned whenever
// one was read.
//
// opts may be nil for the defaults. Dial is safe for concurrent use.
func Dial(ctx context.Context, urlStr string, opts *DialOptions) (*Conn, *http.Response, error) {
	cfg, resp, err := dialHandshake(ctx, urlStr, opts)
	if err != nil {
		return nil, resp, err
	}
	return newConn(cfg), resp, nil
}

// dialHandshake is Dial up to the connection's construction.
func dialHandshake(ctx context.Context, urlStr string, opts *DialOptions) (connConfig, *http.Response, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	u, err := url.Parse(urlStr)
	if err != nil {
		return connConfig{}, nil, fmt.Errorf("ws: dial: %w", err)
	}
	secure := false
	switch strings.ToLower(u.Scheme) {
	case "ws", "http":
	case "wss", "https":
		secure = true
	default:
		return connConfig{}, nil, fmt.Errorf("ws: dial %s: unsupported scheme %q", u.Redacted(), u.Scheme)
	}
	if u.Host == "" {
		return connConfig{}, nil, fmt.Errorf("ws: dial %s: missing host", u.Redacted())
	}
	if u.Fragment != "" {
		// RFC 6455 §3: fragment identifiers are meaningless in WebSocket URIs.
		return connConfig{}, nil, fmt.Errorf("ws: dial %s: URL must not have a fragment", u.Redacted())
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if secure {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}

	var key [24]byte
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	base64.StdEncoding.Encode(key[:], raw[:])

	req, err := appendClientRequest(nil, u, string(key[:]), opts)
	if err != nil {
		return connConfig{}, nil, fmt.Errorf("ws: dial %s: %w", u.Redacted(), err)
	}

	dial := opts.NetDialContext
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return connConfig{}, nil, fmt.Errorf("ws: dial %s: %w", u.Redacted(), err)
	}
	// Cancelling ctx during the handshake closes the socket, which unblocks
	// any read or write in progress.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	cfg, resp, err := clientHandshake(ctx, nc, u, secure, req, string(key[:]), opts)
	if !stop() && err == nil {
		// ctx ended just as the handshake finished: the socket is closed.
		err = ctx.Err()
	}
	if err != nil {
		nc.Close()
		ctxErr := ctx.Err()
		if _, hasDeadline := ctx.Deadline(); ctxErr == nil && hasDeadline && errors.Is(err, os.ErrDeadlineExceeded) {
			// The socket deadline (ctx's) fired before ctx's own timer.
			ctxErr = context.DeadlineExceeded
		}
		if ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return connConfig{}, resp, fmt.Errorf("ws: dial %s: %w", u.Redacted(), err)
	}
	return cfg, resp, nil
}

// clientHandshake runs TLS (for wss), sends req and checks the response.
func clientHandshake(ctx context.Context, nc net.Conn, u *url.URL, secure bool, req []byte, key string, opts *DialOptions) (connConfig, *http.Response, error) {
	deadline, _ := ctx.Deadline() // zero: none
	if err := nc.SetDeadline(deadline); err != nil {
		return connConfig{}, nil, err
	}
	if secure {
		cfg := &tls.Config{}
		if opts.TLSConfig != nil {
			cfg = opts.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		// The upgrade needs HTTP/1.1; never let ALPN pick h2.
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return connConfig{}, nil, fmt.Errorf("TLS handshake: %w", err)
		}
		nc = tc
	}
	if _, err := nc.Write(req); err != nil {
		return connConfig{}, nil, fmt.Errorf("writing handshake request: %w", err)
	}

	maxHeader := opts.MaxResponseHeaderBytes
	if maxHeader <= 0 {
		maxHeader = defaultMaxHeaderBytes
	}
	bp := getHandshakeBuf(maxHeader)
	defer putHandshakeBuf(bp)
	buf := *bp
	n, headLen, err := readHead(nc, buf)
	if err != nil {
		return connConfig{}, nil, fmt.Errorf("reading handshake response: %w", err)
	}
	resp, err := parseResponse(buf[:headLen])
	if err != nil {
		return connConfig{}, nil, err
	}
	rest := buf[headLen:n]
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body := rest
		if resp.ContentLength >= 0 && int64(len(body)) > resp.ContentLength {
			body = body[:resp.ContentLength]
		}
		body = bytes.Clone(body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		reason := strings.TrimSpace(string(body))
		if len(reason) > 200 || reason == "" {
			reason = resp.Status
		}
		return connConfig{}, resp, &HandshakeError{StatusCode: resp.StatusCode, Reason: reason}
	}
	resp.Body = http.NoBody
	cfg, err := checkServerResponse(resp, key, opts)
	if err != nil {
		return connConfig{}, resp, err
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return connConfig{}, resp, err
	}
	if len(rest) > 0 {
		// The server may send frames right behind its 101.
		cfg.buffered = bytes.Clone(rest)
	}
	cfg.netConn = nc
	return cfg, resp, nil
}

// checkServerResponse verifies a 101 response against the request sent
// (RFC 6455 §4.1, client requirements 1-6; RFC 7692 §5).
func checkServerResponse(resp *http.Response, key string, opts *DialOptions) (connConfig, error) {
	var cfg connConfig
	if !headerHasToken(resp.Header[hdrUpgrade], "websocket") || !headerHasToken(resp.Header[hdrConnection], "upgrade") {
		return cfg, ErrBadUpgrade
	}
	var want [acceptKeyLen]byte
	computeAccept(want[:0], key)
	if got := resp.Header[hdrAccept]; len(got) != 1 || got[0] != string(want[:]) {
		return cfg, ErrBadAccept
	}
	if protos := resp.Header[hdrProtocol]; len(protos) > 0 {
		p := protos[0]
		offered := false
		for _, o := range opts.Subprotocols {
			offered = offered || o == p
		}
		if len(protos) > 1 || !offered {
			return cfg, fmt.Errorf("%w: %q", ErrBadSubprotocol, strings.Join(protos, ", "))
		}
		cfg.subprotocol = p
	}
	if ext := resp.Header[hdrExtensions]; len(ext) > 0 {
		p, err := acceptDeflateResponse(ext, opts.Compression)
		if err != nil {
			return cfg, fmt.Errorf("%w: %q", err, strings.Join(ext, ", "))
		}
		cfg.deflate = p
	}
	cfg.readLimit = opts.ReadLimit
	if cfg.readLimit <= 0 {
		cfg.readLimit = defaultReadLimit
	}
	cfg.opts = opts.Conn
	return cfg, nil
}

// reservedRequestHeader reports the headers Dial sets from its own state;
// DialOptions.HTTPHeader may not set them (Host may, to override the URL's).
func reservedRequestHeader(name string) bool {
	switch name {
	case hdrHost, hdrUpgrade, hdrConnection, hdrKey, hdrVersion, hdrProtocol, hdrExtensions, hdrContentLength, hdrTransferEnc:
		return true
	}
	return false
}

// appendClientRequest appends the handshake request (RFC 6455 §4.1).
func appendClientRequest(dst []byte, u *url.URL, key string, opts *DialOptions) ([]byte, error) {
	for name := range opts.HTTPHeader {
		switch c := http.CanonicalHeaderKey(name); {
		case c == hdrHost:
		case reservedRequestHeader(c):
			return nil, fmt.Errorf("header %s is set by Dial and may not be in DialOptions.HTTPHeader", name)
		}
	}
	host := u.Host
	if h := opts.HTTPHeader.Get(hdrHost); h != "" {
		host = h
	}
	if !validHeaderValue(host) {
		return nil, errors.New("invalid Host")
	}
	for _, p := range opts.Subprotocols {
		if !isToken(p) {
			return nil, fmt.Errorf("invalid subprotocol %q", p)
		}
	}
	target := u.RequestURI()
	if strings.ContainsAny(target, " \r\n\t") {
		return nil, errors.New("invalid request target")
	}
	dst = append(dst, "GET "...)
	dst = append(dst, target...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	dst = append(dst, key...)
	dst = append(dst, "\r\nSec-WebSocket-Version: 13\r\n"...)
	if len(opts.Subprotocols) > 0 {
		dst = append(dst, "Sec-WebSocket-Protocol: "...)
		dst = append(dst, strings.Join(opts.Subprotocols, ", ")...)
		dst = append(dst, "\r\n"...)
	}
	if opts.Compression != nil {
		dst = append(dst, "Sec-WebSocket-Extensions: "...)
		dst = appendDeflateOffer(dst, opts.Compression)
		dst = append(dst, "\r\n"...)
	}
	if u.User != nil && opts.HTTPHeader.Get("Authorization") == "" {
		pass, _ := u.User.Password()
		dst = append(dst, "Authorization: Basic "...)
		dst = append(dst, base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))...)
		dst = append(dst, "\r\n"...)
	}
	dst, err := appendHeader(dst, opts.HTTPHeader, func(c string) bool { return c == hdrHost })
	if err != nil {
		return nil, err
	}
	return append(dst, "\r\n"...), nil
}
