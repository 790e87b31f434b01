package cli

import (
	"bytes"
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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/server"
)

// syncBuffer is a bytes.Buffer safe for a logger writing while the test
// reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeCert writes a self-signed certificate for 127.0.0.1 with serial
// number serial, and its key, as PEM files.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "herald cli test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
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
}

// servedSerial returns the serial number of the certificate addr presents.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the test checks which certificate, not trust
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestServeSIGHUPReloadsTLS: herald serve with tls.cert_file and
// tls.key_file serves HTTPS, prints https/wss URLs, and on SIGHUP loads
// the rewritten files: new handshakes get the new certificate.
func TestServeSIGHUPReloadsTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, 1)
	environ := []string{
		"HERALD_TLS_CERT_FILE=" + certFile,
		"HERALD_TLS_KEY_FILE=" + keyFile,
		"HERALD_DRAIN_TIMEOUT=10ms",
		"HERALD_DEMO_ENABLED=false",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	started := make(chan *server.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, nil, Env{Environ: environ, Stdout: &out, Stderr: &errb},
			[]string{"--listen", "127.0.0.1:0"}, func(s *server.Server) { started <- s })
	}()
	var s *server.Server
	select {
	case s = <-started:
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, errb.String())
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	if !strings.Contains(out.String(), "https://"+s.Addr()) || !strings.Contains(out.String(), "wss://"+s.Addr()+"/ws") {
		t.Errorf("start-up output lacks the https and wss URLs:\n%s", out.String())
	}
	if got := servedSerial(t, s.Addr()); got != 1 {
		t.Fatalf("serves serial %d, want 1", got)
	}

	writeCert(t, certFile, keyFile, 2)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errb.String(), "SIGHUP: TLS certificate reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged after SIGHUP:\n%s", errb.String())
		}
		time.Sleep(5 * time.Millisecond) // polling interval for the log line
	}
	if got := servedSerial(t, s.Addr()); got != 2 {
		t.Fatalf("serves serial %d after SIGHUP, want 2", got)
	}
}
