package ws

import (
	"bytes"
	"net/http"
	"net/url"
	"testing"
)

// upgradeBothWays checks head as AcceptConn does with and without
// OmitRequest and returns both outcomes: the status of a refusal (0 when
// accepted) and the 101 response.
func upgradeBothWays(head []byte, opts *AcceptOptions) (viaRequest, direct int, respReq, respDirect []byte) {
	outcome := func(hs serverHandshake, rej *rejection) (int, []byte) {
		if rej != nil {
			return rej.status, nil
		}
		resp, err := appendSwitchingProtocols(nil, &hs, opts.ResponseHeader)
		if err != nil {
			return -1, nil
		}
		return 0, resp
	}
	h1 := append([]byte(nil), head...)
	if r, err := parseRequest(h1); err != nil {
		viaRequest = http.StatusBadRequest
	} else {
		viaRequest, respReq = outcome(checkUpgradeRequest(r, opts))
	}
	h2 := append([]byte(nil), head...)
	var fields [maxInlineFields]headerField
	direct, respDirect = outcome(checkUpgradeHead(h2, fields[:0], nil, opts))
	return viaRequest, direct, respReq, respDirect
}

// The head checked directly (OmitRequest) gets the same answer as the
// same head parsed into an *http.Request, for requests RFC 6455 accepts
// and for every kind of refusal.
func TestUpgradeHeadMatchesRequest(t *testing.T) {
	opts := &AcceptOptions{Subprotocols: []string{"chat"}, Compression: &CompressionOptions{},
		OriginPatterns: []string{"*.example.com"}}
	heads := []string{
		sampleRequest,
		handshakeRequest("a.example"),
		handshakeRequest("a.example", "Origin: https://app.example.com", "Sec-WebSocket-Protocol: x, chat"),
		handshakeRequest("a.example", "Origin: https://evil.example"),
		handshakeRequest("a.example", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"),
		handshakeRequest("a.example", "Content-Length: 0"),
		handshakeRequest("a.example", "Content-Length: 5"),
		handshakeRequest("a.example", "+Content-Length: 0"),
		handshakeRequest("a.example", "Content-Length: -1"),
		handshakeRequest("a.example", "Transfer-Encoding: chunked"),
		handshakeRequest("a.example", "+Host: b.example"),
		handshakeRequest("a.example", "Host:"),
		"GET /p%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /p%4 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /p?%zz HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n",
		"GET ws://b.example/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nOrigin: http://b.example\r\n\r\n",
		"GET http://[::1 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
		"POST /ws HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET\r\n\r\n",
	}
	for _, h := range heads {
		viaReq, direct, r1, r2 := upgradeBothWays([]byte(h), opts)
		if viaReq != direct || !bytes.Equal(r1, r2) {
			t.Errorf("%q: with a request %d %q, directly %d %q", h, viaReq, r1, direct, r2)
		}
	}
}

// The target check that replaces url.ParseRequestURI for origin-form
// targets agrees with it.
func TestValidOriginForm(t *testing.T) {
	for _, target := range []string{"/", "/ws", "/a%20b", "/a%2", "/a%", "/%zz", "/a?%zz", "/a?", "/a??%", "/%41%42", "/%4g", "//x", "/a#%zz"} {
		_, err := url.ParseRequestURI(target)
		if got := validOriginForm(target); got != (err == nil) {
			t.Errorf("validOriginForm(%q) = %v, url.ParseRequestURI: %v", target, got, err)
		}
	}
}

// A handshake checked directly allocates nothing but the connection's own
// state (here: none, with no compression), however many fields it has.
func TestUpgradeHeadDoesNotAllocate(t *testing.T) {
	req := []byte(handshakeRequest("a.example", "User-Agent: test", "Sec-WebSocket-Protocol: chat", "Accept-Encoding: gzip"))
	opts := &AcceptOptions{Subprotocols: []string{"chat"}, OmitRequest: true}
	buf := make([]byte, 0, 1024)
	c := &memConn{}
	allocs := testing.AllocsPerRun(100, func() {
		buf = append(buf[:0], req...)
		c.r.Reset(nil)
		cfg, r, err := upgradeConn(c, buf, opts)
		if err != nil || r != nil || cfg.subprotocol != "chat" {
			t.Fatalf("upgradeConn = %v, %v", r, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("handshake allocates %v times", allocs)
	}
}

// FuzzUpgradeHead checks that AcceptConn answers every head the same with
// and without OmitRequest.
func FuzzUpgradeHead(f *testing.F) {
	f.Add([]byte(sampleRequest))
	f.Add([]byte("GET / HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: upgrade\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\n\n"))
	f.Add([]byte("GET http://a/b?c HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"))
	f.Add([]byte("GET /a%zz?b HTTP/1.1\r\nHost: a\r\nOrigin: http://a\r\nContent-Length: 0\r\n\r\n"))
	opts := &AcceptOptions{Subprotocols: []string{"chat"}, Compression: &CompressionOptions{}, OriginPatterns: []string{"*.a"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > defaultMaxHeaderBytes {
			return
		}
		end := findHeadEnd(data, 0)
		if end < 0 {
			return
		}
		viaReq, direct, r1, r2 := upgradeBothWays(data[:end], opts)
		if viaReq != direct || !bytes.Equal(r1, r2) {
			t.Fatalf("%q: with a request %d %q, directly %d %q", data[:end], viaReq, r1, direct, r2)
		}
	})
}
