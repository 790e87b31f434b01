package ws

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// RFC 6455 §1.3: the example key and its accept value.
func TestComputeAcceptRFCExample(t *testing.T) {
	got := string(computeAccept(nil, "dGhlIHNhbXBsZSBub25jZQ=="))
	if got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("computeAccept = %q, want s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", got)
	}
	// Appends to what is there.
	if got := string(computeAccept([]byte("x"), "dGhlIHNhbXBsZSBub25jZQ==")); got != "xs3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("computeAccept with prefix = %q", got)
	}
}

func TestComputeAcceptDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() { computeAccept(buf[:0], "dGhlIHNhbXBsZSBub25jZQ==") })
	if allocs != 0 {
		t.Fatalf("computeAccept allocates %v times", allocs)
	}
}

// RFC 6455 §4.2.1 item 5: the key is base64 of 16 bytes.
func TestValidKey(t *testing.T) {
	for key, want := range map[string]bool{
		"dGhlIHNhbXBsZSBub25jZQ==":     true,
		"AAAAAAAAAAAAAAAAAAAAAA==":     true,
		"dGhlIHNhbXBsZSBub25jZQ":       false, // unpadded
		"dGhlIHNhbXBsZSBub25jZQ===":    false,
		"dGhlIHNhbXBsZSBub25j":         false, // 15 bytes
		"dGhlIHNhbXBsZSBub25jZXg=":     false, // 17 bytes
		"dGhlIHNhbXBsZSBub25jZQ!=":     false,
		"":                             false,
		"dGhlIHNhbXBsZSBub25jZQ==dGhl": false,
	} {
		if got := validKey(key); got != want {
			t.Errorf("validKey(%q) = %v, want %v", key, got, want)
		}
	}
}

// RFC 7230 §7 comma lists, as Connection and Upgrade use them (RFC 6455
// §4.2.1 items 3 and 4).
func TestHeaderHasToken(t *testing.T) {
	cases := []struct {
		values []string
		token  string
		want   bool
	}{
		{[]string{"Upgrade"}, "upgrade", true},
		{[]string{"keep-alive, Upgrade"}, "upgrade", true},
		{[]string{"keep-alive,UPGRADE"}, "upgrade", true},
		{[]string{"keep-alive", " upgrade "}, "upgrade", true},
		{[]string{"\tupgrade\t,close"}, "upgrade", true},
		{[]string{"keep-alive"}, "upgrade", false},
		{[]string{"upgrades"}, "upgrade", false},
		{[]string{"x-upgrade, upgrade-insecure"}, "upgrade", false},
		{[]string{""}, "upgrade", false},
		{nil, "upgrade", false},
		{[]string{"websocket/13, h2c"}, "websocket", false},
		{[]string{"h2c, WebSocket"}, "websocket", true},
	}
	for _, c := range cases {
		if got := headerHasToken(c.values, c.token); got != c.want {
			t.Errorf("headerHasToken(%q, %q) = %v, want %v", c.values, c.token, got, c.want)
		}
	}
}

// RFC 6455 §4.2.2 step 5.4 / §4.1: the client's list is ordered by its
// preference; the first one the server supports wins.
func TestSelectSubprotocol(t *testing.T) {
	cases := []struct {
		offered, supported []string
		want               string
	}{
		{[]string{"a, b"}, []string{"b", "a"}, "a"},
		{[]string{"x", "b , a"}, []string{"a", "b"}, "b"},
		{[]string{"x, y"}, []string{"a"}, ""},
		{nil, []string{"a"}, ""},
		{[]string{"a"}, nil, ""},
		{[]string{"A"}, []string{"a"}, ""}, // subprotocols are case-sensitive
		{[]string{",,a"}, []string{"a"}, "a"},
	}
	for _, c := range cases {
		if got := selectSubprotocol(c.offered, c.supported); got != c.want {
			t.Errorf("selectSubprotocol(%q, %q) = %q, want %q", c.offered, c.supported, got, c.want)
		}
	}
}

// RFC 9112 §2.2: the head ends at the first empty line; bare LF is
// tolerated as a line terminator.
func TestFindHeadEnd(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", len("GET / HTTP/1.1\r\nHost: a\r\n\r\n")},
		{"GET / HTTP/1.1\nHost: a\n\nrest", len("GET / HTTP/1.1\nHost: a\n\n")},
		{"GET / HTTP/1.1\r\nHost: a\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r", -1},
		{"", -1},
	}
	for _, c := range cases {
		if got := findHeadEnd([]byte(c.in), 0); got != c.want {
			t.Errorf("findHeadEnd(%q) = %d, want %d", c.in, got, c.want)
		}
	}
	// Incremental scanning finds a terminator split across reads.
	full := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	for split := 1; split < len(full); split++ {
		if findHeadEnd(full[:split], 0) >= 0 {
			continue
		}
		if got := findHeadEnd(full, split); got != len(full) {
			t.Fatalf("split at %d: findHeadEnd = %d, want %d", split, got, len(full))
		}
	}
}

const sampleRequest = "GET /chat?room=1 HTTP/1.1\r\n" +
	"host: Server.Example.com\r\n" +
	"upgrade: websocket\r\n" +
	"connection: Upgrade\r\n" +
	"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Origin: http://example.com\r\n" +
	"Sec-WebSocket-Protocol: chat, superchat\r\n" +
	"SEC-WEBSOCKET-PROTOCOL: v2\r\n" +
	"Sec-WebSocket-Version:13\r\n" +
	"X-Empty:\r\n" +
	"\r\n"

// RFC 9112 §3 (request line) and §5 (field lines, case-insensitive names,
// OWS around values, repeated fields kept in order).
func TestParseRequest(t *testing.T) {
	r, err := parseRequest([]byte(sampleRequest))
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != "GET" || r.RequestURI != "/chat?room=1" || r.URL.Path != "/chat" || r.URL.RawQuery != "room=1" {
		t.Errorf("request line parsed as %q %q %+v", r.Method, r.RequestURI, r.URL)
	}
	if r.Proto != "HTTP/1.1" || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		t.Errorf("proto %q %d.%d", r.Proto, r.ProtoMajor, r.ProtoMinor)
	}
	if r.Host != "Server.Example.com" || r.Header.Get("Host") != "" {
		t.Errorf("Host %q, header Host %q", r.Host, r.Header.Get("Host"))
	}
	want := http.Header{
		"Upgrade":                {"websocket"},
		"Connection":             {"Upgrade"},
		"Sec-Websocket-Key":      {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Origin":                 {"http://example.com"},
		"Sec-Websocket-Protocol": {"chat, superchat", "v2"},
		"Sec-Websocket-Version":  {"13"},
		"X-Empty":                {""},
	}
	if len(r.Header) != len(want) {
		t.Errorf("header = %q, want %q", r.Header, want)
	}
	for k, v := range want {
		if got := r.Header[k]; strings.Join(got, "|") != strings.Join(v, "|") || len(got) != len(v) {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	// The values of one name must not share backing arrays with others.
	r.Header["Origin"] = append(r.Header["Origin"], "x")
	if got := r.Header["Sec-Websocket-Protocol"]; len(got) != 2 || got[0] != "chat, superchat" {
		t.Errorf("appending to one header changed another: %q", got)
	}
}

// RFC 9112 §2.2 (leading empty line, bare LF) and §3.2.2 (absolute-form
// target overrides Host).
func TestParseRequestAbsoluteFormAndLF(t *testing.T) {
	r, err := parseRequest([]byte("\r\nGET http://h.example:8080/p HTTP/1.1\nHost: other\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Host != "h.example:8080" || r.URL.Path != "/p" {
		t.Errorf("absolute form: Host %q path %q", r.Host, r.URL.Path)
	}
}

// RFC 9112 §2-5: malformed heads are refused.
func TestParseRequestMalformed(t *testing.T) {
	for _, in := range []string{
		"",
		"\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n", // unterminated
		"GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
		"GET /\r\nHost: a\r\n\r\n",
		"GET / HTTP/11\r\nHost: a\r\n\r\n",
		"GET / HTTX/1.1\r\nHost: a\r\n\r\n",
		"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n",           // space before colon (§5.1)
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", // obs-fold (§5.2)
		"GET / HTTP/1.1\r\n: a\r\n\r\n",
		"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"GET /\x01 HTTP/1.1\r\n\r\n",
	} {
		if _, err := parseRequest([]byte(in)); err == nil {
			t.Errorf("parseRequest(%q) succeeded, want an error", in)
		}
	}
}

// RFC 9112 §4: status line with or without a reason phrase.
func TestParseResponse(t *testing.T) {
	resp, err := parseResponse([]byte("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nConnection: upgrade\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Status != "101 Switching Protocols" || resp.Header.Get("Upgrade") != "websocket" {
		t.Errorf("parsed %d %q %q", resp.StatusCode, resp.Status, resp.Header)
	}
	if resp, err := parseResponse([]byte("HTTP/1.1 404\r\nContent-Length: 3\r\n\r\n")); err != nil || resp.StatusCode != 404 || resp.ContentLength != 3 {
		t.Errorf("status without reason: %v %v", resp, err)
	}
	for _, in := range []string{
		"HTTP/1.1 1010 x\r\n\r\n",
		"HTTP/1.1 10 x\r\n\r\n",
		"HTTP/1.1 abc x\r\n\r\n",
		"HTTP/1.1 099 x\r\n\r\n",
		"HTTP/1.1\r\n\r\n",
		"ICY 200 OK\r\n\r\n",
	} {
		if _, err := parseResponse([]byte(in)); err == nil {
			t.Errorf("parseResponse(%q) succeeded, want an error", in)
		}
	}
}

// RFC 6585 §5: a head larger than the buffer is refused before more is
// read.
func TestReadHeadLimit(t *testing.T) {
	buf := make([]byte, 32)
	_, _, err := readHead(strings.NewReader("GET / HTTP/1.1\r\nX-Long: "+strings.Repeat("a", 64)+"\r\n\r\n"), buf)
	if err != ErrHeaderTooLarge {
		t.Fatalf("readHead = %v, want ErrHeaderTooLarge", err)
	}
	n, end, err := readHead(bytes.NewReader([]byte("GET / HTTP/1.1\r\n\r\nabc")), buf)
	if err != nil || end != 18 || n != 21 {
		t.Fatalf("readHead = %d, %d, %v", n, end, err)
	}
}

// FuzzParseRequest feeds AcceptConn's parser (head detection, request
// parsing, handshake checks) arbitrary bytes.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(sampleRequest))
	f.Add([]byte("GET / HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: upgrade\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\n\n"))
	f.Add([]byte("GET http://a/b?c HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"))
	opts := &AcceptOptions{Subprotocols: []string{"chat"}, Compression: &CompressionOptions{}}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > defaultMaxHeaderBytes {
			return
		}
		end := findHeadEnd(data, 0)
		if end < 0 {
			return
		}
		head := append([]byte(nil), data[:end]...)
		r, err := parseRequest(head)
		if err != nil {
			if !errors.Is(err, ErrMalformedHTTP) {
				t.Fatalf("error %v does not wrap ErrMalformedHTTP", err)
			}
			return
		}
		if !isToken(r.Method) || r.URL == nil || r.ProtoMajor > 9 || r.ProtoMinor > 9 {
			t.Fatalf("accepted request %q %v %d.%d", r.Method, r.URL, r.ProtoMajor, r.ProtoMinor)
		}
		for name, values := range r.Header {
			if name != http.CanonicalHeaderKey(name) || !isToken(name) {
				t.Fatalf("header name %q not canonical", name)
			}
			for _, v := range values {
				if !validHeaderValue(v) || trimOWS(v) != v {
					t.Fatalf("header %s value %q", name, v)
				}
			}
		}
		hs, rej := checkUpgradeRequest(r, opts)
		if rej != nil {
			if rej.status < 400 || rej.status > 599 || rej.reason == "" {
				t.Fatalf("rejection %+v", rej)
			}
			return
		}
		resp, err := appendSwitchingProtocols(nil, &hs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseResponse(resp); err != nil {
			t.Fatalf("our 101 response %q does not parse: %v", resp, err)
		}
	})
}
