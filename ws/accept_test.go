package ws

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

type upgradeResult struct {
	cfg connConfig
	req *http.Request
	err error
}

// httpUpgradeServer serves every request with upgradeHTTP and reports the
// result of each.
func httpUpgradeServer(t *testing.T, opts *AcceptOptions) (*httptest.Server, <-chan upgradeResult) {
	t.Helper()
	results := make(chan upgradeResult, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg, err := upgradeHTTP(w, r, opts)
		results <- upgradeResult{cfg: cfg, req: r, err: err}
	}))
	t.Cleanup(srv.Close)
	return srv, results
}

// connUpgradeServer accepts connections on 127.0.0.1 and runs upgradeConn
// on each.
func connUpgradeServer(t *testing.T, opts *AcceptOptions) (string, <-chan upgradeResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan upgradeResult, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			cfg, r, err := upgradeConn(nc, nil, opts)
			results <- upgradeResult{cfg: cfg, req: r, err: err}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), results
}

// roundTrip sends raw bytes to addr and returns the response as the
// client reads it, plus the connection and its reader.
func roundTrip(t *testing.T, addr, raw string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", raw, err)
	}
	return resp, c, br
}

func wait(t *testing.T, ch <-chan upgradeResult) upgradeResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.err == nil && r.cfg.netConn != nil {
			t.Cleanup(func() { r.cfg.netConn.Close() })
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake result")
		return upgradeResult{}
	}
}

const testKey = "dGhlIHNhbXBsZSBub25jZQ=="

// handshakeRequest builds a valid request for host, applying edits:
// "Name: value" replaces that header, "Name:" (nothing after the colon)
// removes it, "+Name: value" adds another line.
func handshakeRequest(host string, edits ...string) string {
	lines := []string{
		"Host: " + host,
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: " + testKey,
		"Sec-WebSocket-Version: 13",
	}
	for _, e := range edits {
		if extra, ok := strings.CutPrefix(e, "+"); ok {
			lines = append(lines, extra)
			continue
		}
		name, value, ok := strings.Cut(e, ":")
		replaced := false
		for i, l := range lines {
			if ok && strings.EqualFold(strings.SplitN(l, ":", 2)[0], name) {
				if strings.TrimSpace(value) == "" {
					lines[i] = ""
				} else {
					lines[i] = e
				}
				replaced = true
			}
		}
		if !replaced {
			lines = append(lines, e)
		}
	}
	var b strings.Builder
	b.WriteString("GET /ws HTTP/1.1\r\n")
	for _, l := range lines {
		if l != "" {
			b.WriteString(l + "\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

type rejectCase struct {
	name    string
	raw     func(host string) string
	opts    *AcceptOptions
	status  int
	body    string // substring of the body
	header  map[string]string
	rawOnly bool // net/http answers this itself before the handler runs
}

func rejectCases() []rejectCase {
	req := func(edits ...string) func(string) string {
		return func(host string) string { return handshakeRequest(host, edits...) }
	}
	return []rejectCase{
		{name: "RFC 6455 §4.2.1/1 method POST", raw: func(h string) string {
			return strings.Replace(handshakeRequest(h), "GET", "POST", 1)
		}, status: 405, body: "GET", header: map[string]string{"Allow": "GET"}},
		{name: "RFC 6455 §4.2.1/1 HTTP/1.0", raw: func(h string) string {
			return strings.Replace(handshakeRequest(h), "HTTP/1.1", "HTTP/1.0", 1)
		}, status: 505, body: "HTTP/1.1"},
		{name: "RFC 6455 §4.2.1/2 missing Host", raw: req("Host:"), status: 400, body: "Host", rawOnly: true},
		{name: "RFC 6455 §4.2.1/3 missing Upgrade", raw: req("Upgrade:"), status: 426, body: "Upgrade: websocket",
			header: map[string]string{"Upgrade": "websocket", "Sec-WebSocket-Version": "13"}},
		{name: "RFC 6455 §4.2.1/3 Upgrade h2c", raw: req("Upgrade: h2c"), status: 426, body: "Upgrade: websocket"},
		{name: "RFC 6455 §4.2.1/4 Connection keep-alive", raw: req("Connection: keep-alive"), status: 426, body: "Connection: Upgrade",
			header: map[string]string{"Upgrade": "websocket"}},
		{name: "RFC 6455 §4.2.1/4 Connection token inside a word", raw: req("Connection: upgrades"), status: 426, body: "Connection"},
		{name: "RFC 6455 §4.2.1/6 version 8", raw: req("Sec-WebSocket-Version: 8"), status: 426, body: "13",
			header: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "RFC 6455 §4.2.1/6 missing version", raw: req("Sec-WebSocket-Version:"), status: 426,
			header: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "RFC 6455 §4.2.1/6 two versions", raw: req("+Sec-WebSocket-Version: 13"), status: 426},
		{name: "RFC 6455 §4.2.1/5 missing key", raw: req("Sec-WebSocket-Key:"), status: 400, body: "Sec-WebSocket-Key"},
		{name: "RFC 6455 §4.2.1/5 key of 15 bytes", raw: req("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j"), status: 400, body: "Sec-WebSocket-Key"},
		{name: "RFC 6455 §4.2.1/5 key not base64", raw: req("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!!=="), status: 400},
		{name: "RFC 6455 §4.2.1/5 two keys", raw: req("+Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="), status: 400},
		{name: "RFC 6455 §10.2 cross origin", raw: req("Origin: http://evil.example"), status: 403, body: "origin"},
		{name: "RFC 6455 §10.2 opaque origin", raw: req("Origin: null"), status: 403},
		{name: "RFC 6455 §10.2 origin not in patterns", raw: req("Origin: https://a.other.example"),
			opts: &AcceptOptions{OriginPatterns: []string{"*.example.com"}}, status: 403},
		{name: "RFC 6455 §10.2 CheckOrigin refuses", raw: req(),
			opts: &AcceptOptions{CheckOrigin: func(*http.Request) bool { return false }}, status: 403},
		{name: "RFC 6455 §4.2.1 request with a body", raw: func(h string) string {
			return handshakeRequest(h, "Content-Length: 5") + "hello"
		}, status: 400, body: "body"},
	}
}

func checkRejection(t *testing.T, c rejectCase, resp *http.Response) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != c.status {
		t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, c.status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.Contains(string(body), c.body) || len(body) == 0 {
		t.Errorf("body %q, want it to mention %q", body, c.body)
	}
	for k, v := range c.header {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != "" {
		t.Error("rejection carries Sec-WebSocket-Accept")
	}
}

func checkHandshakeError(t *testing.T, err error, status int) {
	t.Helper()
	var he *HandshakeError
	if !errors.As(err, &he) || he.StatusCode != status {
		t.Fatalf("error %v, want *HandshakeError with status %d", err, status)
	}
}

func TestAcceptRejections(t *testing.T) {
	for _, c := range rejectCases() {
		t.Run(c.name, func(t *testing.T) {
			srv, results := httpUpgradeServer(t, c.opts)
			addr := srv.Listener.Addr().String()
			resp, _, _ := roundTrip(t, addr, c.raw(addr))
			if c.rawOnly {
				if resp.StatusCode != c.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
				}
				return
			}
			checkRejection(t, c, resp)
			checkHandshakeError(t, wait(t, results).err, c.status)
		})
	}
}

func TestAcceptConnRejections(t *testing.T) {
	cases := append(rejectCases(),
		rejectCase{name: "RFC 9112 §5.2 folded header", raw: func(h string) string {
			return "GET / HTTP/1.1\r\nHost: " + h + "\r\nX: a\r\n b\r\n\r\n"
		}, status: 400, body: "malformed"},
		rejectCase{name: "RFC 9112 §5.1 space before colon", raw: func(h string) string {
			return "GET / HTTP/1.1\r\nHost : " + h + "\r\n\r\n"
		}, status: 400},
		rejectCase{name: "RFC 9112 §3 bad request line", raw: func(string) string { return "GET\r\n\r\n" }, status: 400},
		rejectCase{name: "RFC 6585 §5 header too large", raw: func(h string) string {
			return handshakeRequest(h, "X-Big: "+strings.Repeat("a", 300))
		}, opts: &AcceptOptions{MaxHeaderBytes: 256}, status: 431, body: "too large"},
		rejectCase{name: "RFC 6455 §4.2.1 chunked body", raw: func(h string) string {
			return handshakeRequest(h, "Transfer-Encoding: chunked") + "0\r\n\r\n"
		}, status: 400, body: "body"},
	)
	for _, c := range cases {
		for _, omit := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/OmitRequest=%v", c.name, omit), func(t *testing.T) {
				testAcceptConnRejection(t, c, withOmitRequest(c.opts, omit))
			})
		}
	}
}

// withOmitRequest returns opts (nil for the defaults) with OmitRequest
// set to omit.
func withOmitRequest(opts *AcceptOptions, omit bool) *AcceptOptions {
	o := AcceptOptions{}
	if opts != nil {
		o = *opts
	}
	o.OmitRequest = omit
	return &o
}

func testAcceptConnRejection(t *testing.T, c rejectCase, opts *AcceptOptions) {
	addr, results := connUpgradeServer(t, opts)
	resp, _, br := roundTrip(t, addr, c.raw(addr))
	checkRejection(t, c, resp)
	checkHandshakeError(t, wait(t, results).err, c.status)
	// AcceptConn closes the connection after a rejection.
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the rejection: %v, want EOF", err)
	}
}

type acceptCase struct {
	name     string
	opts     *AcceptOptions
	edits    []string
	protocol string // expected Sec-WebSocket-Protocol
	ext      string // expected Sec-WebSocket-Extensions
	header   map[string]string
}

func acceptCases() []acceptCase {
	return []acceptCase{
		{name: "RFC 6455 §4.2.1 minimal"},
		{name: "RFC 6455 §4.2.1/4 Connection list, any case", edits: []string{"Connection: keep-alive, UPGRADE", "Upgrade: WebSocket"}},
		{name: "RFC 6455 §4.2.1/4 Connection on two lines", edits: []string{"Connection: keep-alive", "Connection: Upgrade"}},
		{name: "RFC 6455 §4.2.1/3 Upgrade list", edits: []string{"Upgrade: h2c, websocket"}},
		{name: "RFC 6455 §4.2.2/4 same-host origin", edits: []string{"Origin: http://HOST"}},
		{name: "RFC 6455 §4.2.2/4 origin pattern", edits: []string{"Origin: https://App.Example.com"},
			opts: &AcceptOptions{OriginPatterns: []string{"*.example.com"}}},
		{name: "RFC 6455 §4.2.2/4 CheckOrigin replaces the rule", edits: []string{"Origin: https://anything.example"},
			opts: &AcceptOptions{CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "https://anything.example" }}},
		{name: "RFC 6455 §4.2.2/5.4 client preference wins", edits: []string{"Sec-WebSocket-Protocol: v1.chat, v2.chat"},
			opts: &AcceptOptions{Subprotocols: []string{"v2.chat", "v1.chat"}}, protocol: "v1.chat"},
		{name: "RFC 6455 §4.2.2/5.4 no common subprotocol", edits: []string{"Sec-WebSocket-Protocol: mqtt"},
			opts: &AcceptOptions{Subprotocols: []string{"v1.chat"}}},
		{name: "RFC 7692 §5 deflate negotiated", edits: []string{"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"},
			opts: &AcceptOptions{Compression: &CompressionOptions{}},
			ext:  "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{name: "RFC 7692 §5 deflate not enabled", edits: []string{"Sec-WebSocket-Extensions: permessage-deflate"}},
		{name: "response header", opts: &AcceptOptions{ResponseHeader: http.Header{
			"Set-Cookie": {"a=b"}, "Sec-Websocket-Accept": {"forged"}, "Upgrade": {"other"},
		}}, header: map[string]string{"Set-Cookie": "a=b", "Upgrade": "websocket"}},
	}
}

func checkSwitching(t *testing.T, c acceptCase, resp *http.Response, res upgradeResult) {
	t.Helper()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %q", resp.StatusCode, body)
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	if got := resp.Header.Values("Sec-WebSocket-Accept"); len(got) != 1 || got[0] != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("Sec-WebSocket-Accept %q", got)
	}
	if !headerHasToken(resp.Header.Values("Upgrade"), "websocket") || !headerHasToken(resp.Header.Values("Connection"), "upgrade") {
		t.Errorf("Upgrade %q Connection %q", resp.Header.Values("Upgrade"), resp.Header.Values("Connection"))
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != c.protocol || res.cfg.subprotocol != c.protocol {
		t.Errorf("subprotocol sent %q, kept %q, want %q", got, res.cfg.subprotocol, c.protocol)
	}
	if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != c.ext || (res.cfg.deflate != nil) != (c.ext != "") {
		t.Errorf("extensions sent %q (params %+v), want %q", got, res.cfg.deflate, c.ext)
	}
	for k, v := range c.header {
		if got := resp.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if !res.cfg.isServer || res.cfg.readLimit != defaultReadLimit {
		t.Errorf("config %+v", res.cfg)
	}
}

// A client's first frame, sent together with its request.
const pipelinedFrame = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58" // masked "Hello" (RFC 6455 §5.7)

// firstBytes returns the bytes a connection sees first: cfg.buffered, then
// what is still in the socket, until want bytes were seen.
func firstBytes(t *testing.T, cfg connConfig, want int) string {
	t.Helper()
	got := append([]byte(nil), cfg.buffered...)
	if err := cfg.netConn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for len(got) < want {
		b := make([]byte, want-len(got))
		n, err := cfg.netConn.Read(b)
		got = append(got, b[:n]...)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
	}
	return string(got)
}

func TestAcceptSuccess(t *testing.T) {
	for _, c := range acceptCases() {
		t.Run(c.name, func(t *testing.T) {
			srv, results := httpUpgradeServer(t, c.opts)
			addr := srv.Listener.Addr().String()
			edits := make([]string, len(c.edits))
			for i, e := range c.edits {
				edits[i] = strings.ReplaceAll(e, "HOST", addr)
			}
			resp, conn, br := roundTrip(t, addr, handshakeRequest(addr, edits...)+pipelinedFrame)
			res := wait(t, results)
			checkSwitching(t, c, resp, res)
			if got := firstBytes(t, res.cfg, len(pipelinedFrame)); got != pipelinedFrame {
				t.Errorf("first bytes %q, want %q", got, pipelinedFrame)
			}
			// Nothing follows the 101 response: the socket is the
			// connection's now.
			if _, err := res.cfg.netConn.Write([]byte("\x82\x00")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 2)
			if _, err := io.ReadFull(br, b); err != nil || string(b) != "\x82\x00" {
				t.Fatalf("after 101: %q %v", b, err)
			}
			_ = conn
		})
	}
}

func TestAcceptConnSuccess(t *testing.T) {
	for _, c := range acceptCases() {
		for _, omit := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/OmitRequest=%v", c.name, omit), func(t *testing.T) {
				testAcceptConnSuccess(t, c, withOmitRequest(c.opts, omit))
			})
		}
	}
}

func testAcceptConnSuccess(t *testing.T, c acceptCase, opts *AcceptOptions) {
	addr, results := connUpgradeServer(t, opts)
	edits := make([]string, len(c.edits))
	for i, e := range c.edits {
		edits[i] = strings.ReplaceAll(e, "HOST", addr)
	}
	resp, conn, _ := roundTrip(t, addr, handshakeRequest(addr, edits...)+pipelinedFrame)
	res := wait(t, results)
	checkSwitching(t, c, resp, res)
	// Sent with the request in one write, the frame was read with
	// it (or, if TCP split the write, is still in the socket).
	if got := firstBytes(t, res.cfg, len(pipelinedFrame)); got != pipelinedFrame {
		t.Errorf("first bytes %q, want %q", got, pipelinedFrame)
	}
	r := res.req
	if opts.OmitRequest {
		if r != nil {
			t.Errorf("request %v returned with OmitRequest", r)
		}
		return
	}
	if r.Method != "GET" || r.URL.Path != "/ws" || r.Host != addr || r.RemoteAddr != conn.LocalAddr().String() {
		t.Errorf("request %s %s host %q remote %q", r.Method, r.URL, r.Host, r.RemoteAddr)
	}
}

// RFC 6455 §4.2.1 (server may bound the handshake): AcceptConn's deadline
// drops a client that does not finish its request, without a response.
func TestAcceptConnHandshakeTimeout(t *testing.T) {
	addr, results := connUpgradeServer(t, &AcceptOptions{HandshakeTimeout: 50 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	res := wait(t, results)
	if !errors.Is(res.err, os.ErrDeadlineExceeded) {
		t.Fatalf("error %v, want a deadline error", res.err)
	}
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client read %d, %v; want EOF", n, err)
	}
}

// RFC 6455 §4.2.1: a request cut short is not a handshake.
func TestAcceptConnEOF(t *testing.T) {
	addr, results := connUpgradeServer(t, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if res := wait(t, results); !errors.Is(res.err, io.ErrUnexpectedEOF) {
		t.Fatalf("error %v, want ErrUnexpectedEOF", res.err)
	}
}

// RFC 6455 §4.2.2: a server that cannot take the connection over answers
// 500 instead of 101.
func TestAcceptNotHijackable(t *testing.T) {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "http://example.com/ws", nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Key", testKey)
	r.Header.Set("Sec-WebSocket-Version", "13")
	_, err := upgradeHTTP(rec, r, nil)
	if !errors.Is(err, errNotHijackable) {
		t.Fatalf("error %v, want errNotHijackable", err)
	}
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", rec.Code)
	}
}

// RFC 9112 §5: ResponseHeader values cannot inject header lines; such a
// response is refused with 500.
func TestAcceptBadResponseHeader(t *testing.T) {
	opts := &AcceptOptions{ResponseHeader: http.Header{"X-Injected": {"a\r\nSet-Cookie: evil=1"}}}
	srv, results := httpUpgradeServer(t, opts)
	addr := srv.Listener.Addr().String()
	resp, _, _ := roundTrip(t, addr, handshakeRequest(addr))
	if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Set-Cookie") != "" {
		t.Fatalf("status %d header %q", resp.StatusCode, resp.Header)
	}
	if err := wait(t, results).err; err == nil {
		t.Fatal("no error for an invalid response header")
	}

	addr2, results2 := connUpgradeServer(t, opts)
	resp, _, _ = roundTrip(t, addr2, handshakeRequest(addr2))
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("AcceptConn status %d", resp.StatusCode)
	}
	checkHandshakeError(t, wait(t, results2).err, http.StatusInternalServerError)
}

// RFC 6455 §10.2: origin patterns compare host[:port]; a bad pattern
// refuses rather than allows.
func TestCheckOriginBadPattern(t *testing.T) {
	ok, err := checkOrigin("a.example", []string{"https://b.example"}, nil, &AcceptOptions{OriginPatterns: []string{"[b"}})
	if ok || err == nil {
		t.Fatalf("checkOrigin = %v, %v; want refusal with an error", ok, err)
	}
	// Port is part of the compared host.
	origin := []string{"https://a.example:8443"}
	if ok, _ := checkOrigin("a.example", origin, nil, &AcceptOptions{}); ok {
		t.Fatal("origin with another port allowed")
	}
	if ok, _ := checkOrigin("a.example", origin, nil, &AcceptOptions{OriginPatterns: []string{"a.example:*"}}); !ok {
		t.Fatal("pattern with port wildcard refused")
	}
}

// BenchmarkParseRequest measures the request parser of AcceptConn alone.
func BenchmarkParseRequest(b *testing.B) {
	src := []byte(sampleRequest)
	buf := make([]byte, len(src))
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		copy(buf, src)
		if _, err := parseRequest(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// memConn is a net.Conn that serves one prepared request and discards
// writes, so BenchmarkAcceptConn measures the handshake, not the network.
type memConn struct {
	net.Conn // nil: methods not overridden are not used
	r        bytes.Reader
	written  int
}

var benchAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { c.written += len(p); return len(p), nil }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }
func (c *memConn) RemoteAddr() net.Addr             { return benchAddr }
func (c *memConn) LocalAddr() net.Addr              { return benchAddr }

// BenchmarkAcceptConn is the server handshake of AcceptConn on an
// in-memory connection: read, parse, check and 101 response ("handshake"),
// and the same plus the construction of the Conn ("conn").
func BenchmarkAcceptConn(b *testing.B) {
	req := []byte(handshakeRequest("server.example.com", "Origin: http://server.example.com", "User-Agent: bench"))
	deflateReq := []byte(handshakeRequest("server.example.com", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"))
	plain := &AcceptOptions{}
	compress := &AcceptOptions{Compression: &CompressionOptions{}}
	b.Run("handshake", func(b *testing.B) {
		c := &memConn{}
		b.ReportAllocs()
		for b.Loop() {
			c.r.Reset(req)
			if _, _, err := upgradeConn(c, nil, plain); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("handshake-deflate", func(b *testing.B) {
		c := &memConn{}
		b.ReportAllocs()
		for b.Loop() {
			c.r.Reset(deflateReq)
			if cfg, _, err := upgradeConn(c, nil, compress); err != nil || cfg.deflate == nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("conn", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c := &memConn{}
			c.r.Reset(req)
			conn, _, err := AcceptConn(c, plain)
			if err != nil {
				b.Fatal(err)
			}
			conn.CloseNow()
		}
	})
}

func newTLSUpgradeServer(t *testing.T, results chan<- upgradeResult) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg, err := upgradeHTTP(w, r, nil)
		select {
		case results <- upgradeResult{cfg: cfg, req: r, err: err}:
		default:
			if err == nil {
				cfg.netConn.Close()
			}
		}
	}))
	// The test dials once without trusting the certificate on purpose.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}
