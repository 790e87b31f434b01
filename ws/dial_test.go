package ws

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fakeServer accepts one connection on 127.0.0.1, reads the handshake
// request with net/http's parser and lets respond write whatever it
// wants. The request is sent on the returned channel.
func fakeServer(t *testing.T, respond func(c net.Conn, r *http.Request)) (string, <-chan *http.Request) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reqs := make(chan *http.Request, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		reqs <- r
		respond(c, r)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), reqs
}

func acceptFor(r *http.Request) string {
	return string(computeAccept(nil, r.Header.Get("Sec-WebSocket-Key")))
}

// respondWith writes a 101 with the right accept value plus extra lines,
// then tail.
func respondWith(extra string, tail string) func(net.Conn, *http.Request) {
	return func(c net.Conn, r *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
			acceptFor(r)+"\r\n"+extra+"\r\n"+tail)
		// Keep the socket open until the client is done with it.
		_, _ = c.Read(make([]byte, 1))
	}
}

func dialCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// RFC 6455 §4.1: the request the client sends.
func TestDialRequest(t *testing.T) {
	addr, reqs := fakeServer(t, respondWith("Sec-WebSocket-Protocol: v2\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n", "\x81\x02hi"))
	cfg, resp, err := dialHandshake(dialCtx(t), "ws://"+addr+"/path?q=1", &DialOptions{
		HTTPHeader:   http.Header{"Origin": {"http://example.com"}, "X-Token": {"abc"}},
		Subprotocols: []string{"v1", "v2"},
		Compression:  &CompressionOptions{},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.netConn.Close()
	r := <-reqs
	if r.Method != "GET" || r.RequestURI != "/path?q=1" || r.Proto != "HTTP/1.1" || r.Host != addr {
		t.Errorf("request line %s %s %s host %s", r.Method, r.RequestURI, r.Proto, r.Host)
	}
	if !headerHasToken(r.Header.Values("Upgrade"), "websocket") || !headerHasToken(r.Header.Values("Connection"), "upgrade") {
		t.Errorf("Upgrade %q Connection %q", r.Header.Values("Upgrade"), r.Header.Values("Connection"))
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		t.Errorf("version %q", r.Header.Get("Sec-WebSocket-Version"))
	}
	// §4.1 item 7: a random 16-byte nonce, base64-encoded.
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		t.Errorf("key %q", key)
	}
	if got := r.Header.Get("Sec-WebSocket-Protocol"); got != "v1, v2" {
		t.Errorf("subprotocols %q", got)
	}
	if got := r.Header.Get("Sec-WebSocket-Extensions"); got != "permessage-deflate; client_no_context_takeover; server_no_context_takeover; client_max_window_bits" {
		t.Errorf("extension offer %q", got)
	}
	if r.Header.Get("Origin") != "http://example.com" || r.Header.Get("X-Token") != "abc" {
		t.Errorf("custom headers %q", r.Header)
	}
	if resp.StatusCode != 101 || cfg.subprotocol != "v2" || cfg.isServer {
		t.Errorf("status %d subprotocol %q server %v", resp.StatusCode, cfg.subprotocol, cfg.isServer)
	}
	want := deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true, writeWindowBits: 15, readWindowBits: 15, threshold: 256, level: 1}
	if cfg.deflate == nil || *cfg.deflate != want {
		t.Errorf("deflate %+v, want %+v", cfg.deflate, want)
	}
	// A frame sent right behind the 101 is handed to the connection.
	if got := firstBytes(t, cfg, 4); got != "\x81\x02hi" {
		t.Errorf("first bytes %q", got)
	}
}

func TestDialBadServers(t *testing.T) {
	cases := []struct {
		name    string
		opts    *DialOptions
		respond func(net.Conn, *http.Request)
		want    error
		status  int
	}{
		{name: "RFC 6455 §4.1 client req. 1: status 403", respond: func(c net.Conn, _ *http.Request) {
			_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\norigin not allowed\r\n")
		}, status: 403},
		{name: "RFC 6455 §4.1 client req. 1: status 200", respond: func(c net.Conn, _ *http.Request) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}, status: 200},
		{name: "RFC 6455 §4.1 client req. 2: no Upgrade", respond: func(c net.Conn, r *http.Request) {
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+acceptFor(r)+"\r\n\r\n")
		}, want: ErrBadUpgrade},
		{name: "RFC 6455 §4.1 client req. 3: no Connection", respond: func(c net.Conn, r *http.Request) {
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: "+acceptFor(r)+"\r\n\r\n")
		}, want: ErrBadUpgrade},
		{name: "RFC 6455 §4.1 client req. 4: wrong accept", respond: func(c net.Conn, _ *http.Request) {
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		}, want: ErrBadAccept},
		{name: "RFC 6455 §4.1 client req. 4: missing accept", respond: func(c net.Conn, _ *http.Request) {
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		}, want: ErrBadAccept},
		{name: "RFC 6455 §4.1 client req. 5: unoffered extension", opts: &DialOptions{Compression: &CompressionOptions{}},
			respond: respondWith("Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n", ""), want: ErrBadExtension},
		{name: "RFC 6455 §4.1 client req. 5: deflate not offered", respond: respondWith("Sec-WebSocket-Extensions: permessage-deflate\r\n", ""), want: ErrBadExtension},
		{name: "RFC 7692 §7.1 unknown deflate parameter", opts: &DialOptions{Compression: &CompressionOptions{}},
			respond: respondWith("Sec-WebSocket-Extensions: permessage-deflate; foo=1\r\n", ""), want: ErrBadExtension},
		{name: "RFC 7692 §7.1.2.1 window larger than asked", opts: &DialOptions{Compression: &CompressionOptions{MaxWindowBits: 9}},
			respond: respondWith("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n", ""), want: ErrBadExtension},
		{name: "RFC 6455 §4.1 client req. 6: unoffered subprotocol", opts: &DialOptions{Subprotocols: []string{"a", "b"}},
			respond: respondWith("Sec-WebSocket-Protocol: c\r\n", ""), want: ErrBadSubprotocol},
		{name: "RFC 6455 §4.1 client req. 6: subprotocol when none offered",
			respond: respondWith("Sec-WebSocket-Protocol: a\r\n", ""), want: ErrBadSubprotocol},
		{name: "RFC 6455 §4.1 client req. 6: two subprotocols", opts: &DialOptions{Subprotocols: []string{"a", "b"}},
			respond: respondWith("Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n", ""), want: ErrBadSubprotocol},
		{name: "response header too large", opts: &DialOptions{MaxResponseHeaderBytes: 128},
			respond: respondWith("X-Big: "+strings.Repeat("x", 200)+"\r\n", ""), want: ErrHeaderTooLarge},
		{name: "malformed status line", respond: func(c net.Conn, _ *http.Request) {
			_, _ = io.WriteString(c, "HTTP/1.1 1O1 Switching\r\n\r\n")
		}, want: ErrMalformedHTTP},
		{name: "connection closed", respond: func(net.Conn, *http.Request) {}, want: io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, _ := fakeServer(t, c.respond)
			_, resp, err := dialHandshake(dialCtx(t), "ws://"+addr+"/", c.opts)
			if c.status != 0 {
				var he *HandshakeError
				if !errors.As(err, &he) || he.StatusCode != c.status {
					t.Fatalf("error %v, want HandshakeError %d", err, c.status)
				}
				if resp == nil || resp.StatusCode != c.status {
					t.Fatalf("response %+v", resp)
				}
				body, _ := io.ReadAll(resp.Body)
				if c.status == 403 && (string(body) != "origin not allowed\r\n" || he.Reason != "origin not allowed") {
					t.Fatalf("body %q reason %q", body, he.Reason)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

// RFC 6455 §3 (ws/wss URIs without fragment) and §4.1 (headers Dial owns):
// invalid arguments fail before any connection is made.
func TestDialInvalidArguments(t *testing.T) {
	ctx := dialCtx(t)
	for _, c := range []struct {
		url  string
		opts *DialOptions
	}{
		{"ftp://example.com/", nil},
		{"ws:///nohost", nil},
		{"ws://example.com/#frag", nil},
		{"ws://example.com/", &DialOptions{HTTPHeader: http.Header{"Sec-WebSocket-Key": {"x"}}}},
		{"ws://example.com/", &DialOptions{HTTPHeader: http.Header{"Upgrade": {"x"}}}},
		{"ws://example.com/", &DialOptions{HTTPHeader: http.Header{"X-Bad": {"a\r\nb: c"}}}},
		{"ws://example.com/", &DialOptions{Subprotocols: []string{"has space"}}},
	} {
		dialed := false
		opts := c.opts
		if opts == nil {
			opts = &DialOptions{}
		}
		opts.NetDialContext = func(context.Context, string, string) (net.Conn, error) {
			dialed = true
			return nil, errors.New("must not dial")
		}
		if _, _, err := dialHandshake(ctx, c.url, opts); err == nil || dialed {
			t.Errorf("Dial(%q, %+v) = %v, dialed %v", c.url, c.opts, err, dialed)
		}
	}
}

// RFC 6455 §4.1 (the client may abandon the handshake): the context's
// deadline bounds it and cancelling it closes the socket.
func TestDialContext(t *testing.T) {
	silent := func(c net.Conn, _ *http.Request) { _, _ = c.Read(make([]byte, 1)) }

	addr, _ := fakeServer(t, silent)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := dialHandshake(ctx, "ws://"+addr+"/", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want DeadlineExceeded", err)
	}

	addr, reqs := fakeServer(t, silent)
	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := dialHandshake(ctx, "ws://"+addr+"/", nil)
		errc <- err
	}()
	<-reqs // the request was sent; the client now waits for the response
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want Canceled", err)
	}
}

// RFC 6455 §4.1-4.2 and RFC 7692 §7.1.2: Dial against AcceptConn; both
// ends agree on the subprotocol and on the window sizes.
func TestDialAcceptConn(t *testing.T) {
	addr, results := connUpgradeServer(t, &AcceptOptions{
		Subprotocols: []string{"b", "a"},
		Compression:  &CompressionOptions{MaxWindowBits: 11},
	})
	cfg, resp, err := dialHandshake(dialCtx(t), "ws://"+addr+"/x", &DialOptions{
		Subprotocols: []string{"a", "b"},
		Compression:  &CompressionOptions{ContextTakeover: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.netConn.Close()
	srv := wait(t, results)
	if srv.err != nil {
		t.Fatal(srv.err)
	}
	if cfg.subprotocol != "a" || srv.cfg.subprotocol != "a" {
		t.Errorf("subprotocol client %q server %q", cfg.subprotocol, srv.cfg.subprotocol)
	}
	if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11; client_max_window_bits=11" {
		t.Errorf("extension response %q", got)
	}
	c, s := cfg.deflate, srv.cfg.deflate
	if c == nil || s == nil {
		t.Fatalf("deflate client %+v server %+v", c, s)
	}
	if c.writeWindowBits != 11 || c.readWindowBits != 11 || s.writeWindowBits != 11 || s.readWindowBits != 11 ||
		!c.readNoContextTakeover || !c.writeNoContextTakeover || !s.readNoContextTakeover || !s.writeNoContextTakeover {
		t.Errorf("client %+v server %+v", *c, *s)
	}
}

// RFC 6455 §3 and §4.1 step 5: wss:// runs TLS with the URL's host as
// server name before the handshake.
func TestDialTLS(t *testing.T) {
	results := make(chan upgradeResult, 1)
	srv := newTLSUpgradeServer(t, results)
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	url := strings.Replace(srv.URL, "https://", "wss://", 1) + "/secure"
	cfg, _, err := dialHandshake(dialCtx(t), url, &DialOptions{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.netConn.Close()
	if _, ok := cfg.netConn.(*tls.Conn); !ok {
		t.Fatalf("connection is %T, want *tls.Conn", cfg.netConn)
	}
	if res := wait(t, results); res.err != nil || res.req.URL.Path != "/secure" || res.req.TLS == nil {
		t.Fatalf("server: %+v", res)
	}
	// Without the test CA the certificate is refused.
	if _, _, err := dialHandshake(dialCtx(t), url, nil); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
}
