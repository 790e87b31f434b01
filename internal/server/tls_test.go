package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/testcert"
	"github.com/heraldhq/herald/ws"
)

// startTLSServer starts a server with a TCP listener whose tls.cert_file
// and tls.key_file hold cert, and returns it, its start-up output and the
// two files. plainTCP sets tls.plain_tcp.
func startTLSServer(t *testing.T, cert testcert.Cert, plainTCP bool) (s *Server, out *bytes.Buffer, certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = cert.Files(t)
	s, out = startServer(t, func(c *config.Config) {
		c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile, PlainTCP: plainTCP}
		c.TCPListen = "127.0.0.1:0"
	})
	return s, out, certFile, keyFile
}

// TestTLSEndToEnd: with tls.cert_file and tls.key_file, a wss:// client and
// a TCP+TLS client that trust the certificate subscribe, a backend
// publishes over https, and both receive the publication. A plain-text
// request to the HTTPS port gets no HTTP answer.
func TestTLSEndToEnd(t *testing.T) {
	cert := testcert.New(t, "127.0.0.1")
	s, out, _, _ := startTLSServer(t, cert, false)
	httpURL, wsURL := s.URLs()
	if httpURL != "https://"+s.Addr() || wsURL != "wss://"+s.Addr()+"/ws" {
		t.Fatalf("URLs %q %q", httpURL, wsURL)
	}
	if !strings.Contains(out.String(), "wss://"+s.Addr()+"/ws") {
		t.Errorf("start-up output lacks the wss URL:\n%s", out)
	}
	if s.front != nil {
		// net/http must see the *tls.Conn to fill in r.TLS.
		t.Fatal("TLS listener routed through the WebSocket front")
	}
	clientTLS := cert.ClientConfig("")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, wsURL, &ws.DialOptions{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	wc := &wsClient{t: t, c: c}
	wc.call("connect", map[string]any{})
	wc.call("subscribe", map[string]any{"channel": "chat:tls"})

	tlsConn, err := tls.Dial("tcp", s.TCPAddr(), clientTLS)
	if err != nil {
		t.Fatalf("tcp+tls: %v", err)
	}
	tc := newTCPClient(t, tlsConn)
	tc.send(`{"id":1,"method":"connect","params":{}}`)
	if m := tc.next(); m["id"] != float64(1) || m["result"] == nil {
		t.Fatalf("tcp connect reply %v", m)
	}
	tc.send(`{"id":2,"method":"subscribe","params":{"channel":"chat:tls"}}`)
	if m := tc.next(); m["id"] != float64(2) || m["result"] == nil {
		t.Fatalf("tcp subscribe reply %v", m)
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}}
	defer client.CloseIdleConnections()
	if status, body := apiCallWith(t, client, httpURL, s.APIKey(), "publish", `{"channel":"chat:tls","data":{"secure":true}}`); status != 200 {
		t.Fatalf("publish over https: %d %v", status, body)
	}
	for {
		msg := wc.read(ctx)
		if msg["type"] == "publication" {
			if d, _ := msg["data"].(map[string]any); d["secure"] != true {
				t.Fatalf("wss publication %v", msg)
			}
			break
		}
	}
	for {
		m := tc.next()
		if m == nil {
			t.Fatal("tcp+tls connection closed before the publication")
		}
		if m["type"] == "publication" {
			if d, _ := m["data"].(map[string]any); d["secure"] != true {
				t.Fatalf("tcp+tls publication %v", m)
			}
			break
		}
	}

	// Plain HTTP to the TLS listener: the server answers with its
	// plain-text "client sent an HTTP request to an HTTPS server" 400 and
	// serves nothing.
	resp, err := http.Get("http://" + s.Addr() + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS listener: %d, want 400", resp.StatusCode)
		}
	}
}

// TestTLSPlainTCP: tls.plain_tcp keeps the TCP transport in plain text
// while HTTP serves TLS.
func TestTLSPlainTCP(t *testing.T) {
	s, _, _, _ := startTLSServer(t, testcert.New(t, "127.0.0.1"), true)
	tc := dialTCP(t, s.TCPAddr())
	tc.send(`{"id":1,"method":"connect","params":{}}`)
	if m := tc.next(); m["id"] != float64(1) || m["result"] == nil {
		t.Fatalf("plain tcp connect reply %v", m)
	}
	if httpURL, _ := s.URLs(); !strings.HasPrefix(httpURL, "https://") {
		t.Fatalf("HTTP listener not TLS: %s", httpURL)
	}
}

// TestTLSReload: after the files are rewritten and Reload runs, new
// handshakes on the HTTP and TCP listeners get the new certificate and an
// established wss connection keeps working; files that fail to load leave
// the current certificate in place and Reload reports why.
func TestTLSReload(t *testing.T) {
	first := testcert.New(t, "127.0.0.1")
	s, _, certFile, keyFile := startTLSServer(t, first, false)
	if got := testcert.Presented(t, s.Addr()); !got.Equal(first.TLS.Leaf) {
		t.Fatalf("http listener serves serial %v, want %v", got.SerialNumber, first.TLS.Leaf.SerialNumber)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, wsURL := s.URLs()
	c, _, err := ws.Dial(ctx, wsURL, &ws.DialOptions{TLSConfig: first.ClientConfig("")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	wc := &wsClient{t: t, c: c}
	wc.call("connect", map[string]any{})

	second := testcert.New(t, "127.0.0.1")
	second.WriteFiles(t, certFile, keyFile)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{s.Addr(), s.TCPAddr()} {
		if got := testcert.Presented(t, addr); !got.Equal(second.TLS.Leaf) {
			t.Errorf("%s serves serial %v after reload, want %v", addr, got.SerialNumber, second.TLS.Leaf.SerialNumber)
		}
	}
	// The established connection keeps its session.
	if res := wc.call("subscribe", map[string]any{"channel": "chat:reload"}); res["result"] == nil {
		t.Fatalf("subscribe after reload: %v", res)
	}

	// A key that does not match the certificate: the reload fails and the
	// second certificate stays.
	if err := os.WriteFile(keyFile, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("reload of a broken key: error %v, want one naming %s", err, keyFile)
	}
	if got := testcert.Presented(t, s.Addr()); !got.Equal(second.TLS.Leaf) {
		t.Errorf("after a failed reload the server serves serial %v, want %v", got.SerialNumber, second.TLS.Leaf.SerialNumber)
	}
}

// TestTLSBadFilesRefused: New fails, naming the file, when the
// certificate cannot be loaded.
func TestTLSBadFilesRefused(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, f := range []string{certFile, keyFile} {
		if err := os.WriteFile(f, []byte("not pem"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(func(c *config.Config) { c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile} })
	_, err := New(Options{Config: cfg, Out: new(strings.Builder)})
	if err == nil || !strings.Contains(err.Error(), "tls") || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("New with unloadable certificate: %v", err)
	}
}

// TestReloadWithoutTLS: Reload is a no-op without TLS.
func TestReloadWithoutTLS(t *testing.T) {
	s, _ := startServer(t, nil)
	if err := s.Reload(); err != nil || s.TLSEnabled() {
		t.Fatalf("Reload %v, TLSEnabled %v", err, s.TLSEnabled())
	}
}
