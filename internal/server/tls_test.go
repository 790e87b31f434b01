package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/ws"
)

// testCert is a self-signed certificate for 127.0.0.1 written to
// certFile and keyFile.
type testCert struct {
	serial int64
	pool   *x509.CertPool // trusts this certificate
}

// writeTestCert creates a self-signed ECDSA certificate for 127.0.0.1 with
// the given serial number and writes it and its key as PEM files.
func writeTestCert(t *testing.T, certFile, keyFile string, serial int64) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "herald test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return testCert{serial: serial, pool: pool}
}

// tlsFiles returns paths for a certificate and key in a fresh directory.
func tlsFiles(t *testing.T) (certFile, keyFile string) {
	dir := t.TempDir()
	return filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
}

// TestTLSEndToEnd: with tls.cert_file and tls.key_file, a wss:// client and
// a TCP+TLS client that trust the certificate subscribe, a backend
// publishes over https, and both receive the publication. A plain-text
// request to the HTTPS port gets no HTTP answer.
func TestTLSEndToEnd(t *testing.T) {
	certFile, keyFile := tlsFiles(t)
	cert := writeTestCert(t, certFile, keyFile, 1)
	s, out := startServer(t, func(c *config.Config) {
		c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
		c.TCPListen = "127.0.0.1:0"
	})
	httpURL, wsURL := s.URLs()
	if httpURL != "https://"+s.Addr() || wsURL != "wss://"+s.Addr()+"/ws" {
		t.Fatalf("URLs %q %q", httpURL, wsURL)
	}
	if !strings.Contains(out.String(), "wss://"+s.Addr()+"/ws") {
		t.Errorf("start-up output lacks the wss URL:\n%s", out)
	}
	clientTLS := &tls.Config{RootCAs: cert.pool}

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
	certFile, keyFile := tlsFiles(t)
	writeTestCert(t, certFile, keyFile, 1)
	s, _ := startServer(t, func(c *config.Config) {
		c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile, PlainTCP: true}
		c.TCPListen = "127.0.0.1:0"
	})
	tc := dialTCP(t, s.TCPAddr())
	tc.send(`{"id":1,"method":"connect","params":{}}`)
	if m := tc.next(); m["id"] != float64(1) || m["result"] == nil {
		t.Fatalf("plain tcp connect reply %v", m)
	}
	if httpURL, _ := s.URLs(); !strings.HasPrefix(httpURL, "https://") {
		t.Fatalf("HTTP listener not TLS: %s", httpURL)
	}
}

// peerSerial performs a TLS handshake with addr and returns the serial
// number of the certificate the server presented. The client trusts any
// certificate: the test looks at which one it got.
func peerSerial(t *testing.T, addr string) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestTLSReload: after the files are rewritten and Reload runs, new
// handshakes on the HTTP and TCP listeners get the new certificate and an
// established wss connection keeps working; files that fail to load leave
// the current certificate in place and Reload reports why.
func TestTLSReload(t *testing.T) {
	certFile, keyFile := tlsFiles(t)
	first := writeTestCert(t, certFile, keyFile, 1)
	s, _ := startServer(t, func(c *config.Config) {
		c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
		c.TCPListen = "127.0.0.1:0"
	})
	if got := peerSerial(t, s.Addr()); got != 1 {
		t.Fatalf("http listener serves serial %d, want 1", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, wsURL := s.URLs()
	c, _, err := ws.Dial(ctx, wsURL, &ws.DialOptions{TLSConfig: &tls.Config{RootCAs: first.pool}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	wc := &wsClient{t: t, c: c}
	wc.call("connect", map[string]any{})

	second := writeTestCert(t, certFile, keyFile, 2)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{s.Addr(), s.TCPAddr()} {
		if got := peerSerial(t, addr); got != second.serial {
			t.Errorf("%s serves serial %d after reload, want %d", addr, got, second.serial)
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
	if got := peerSerial(t, s.Addr()); got != second.serial {
		t.Errorf("after a failed reload the server serves serial %d, want %d", got, second.serial)
	}
}

// TestTLSBadFilesRefused: New fails, naming the file, when the
// certificate cannot be loaded.
func TestTLSBadFilesRefused(t *testing.T) {
	certFile, keyFile := tlsFiles(t)
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
