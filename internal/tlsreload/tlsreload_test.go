package tlsreload

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// selfSigned returns PEM certificate and key for a new self-signed
// certificate with the given common name.
func selfSigned(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writePair(t *testing.T, dir string, cert, key []byte) (string, string) {
	t.Helper()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cf, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return cf, kf
}

func commonName(t *testing.T, r *Reloader) string {
	t.Helper()
	c, err := r.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || c == nil {
		t.Fatalf("GetCertificate: %v, %v", c, err)
	}
	return c.Leaf.Subject.CommonName
}

func TestReloadExplicit(t *testing.T) {
	dir := t.TempDir()
	c1, k1 := selfSigned(t, "one.test")
	cf, kf := writePair(t, dir, c1, k1)
	r, err := NewWithOptions(Options{CertFile: cf, KeyFile: kf, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := commonName(t, r); got != "one.test" {
		t.Fatalf("CN %q", got)
	}
	c2, k2 := selfSigned(t, "two.test")
	writePair(t, dir, c2, k2)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := commonName(t, r); got != "two.test" {
		t.Fatalf("after reload CN %q, want two.test", got)
	}
}

func TestBadFilesKeepOldCertificate(t *testing.T) {
	dir := t.TempDir()
	c1, k1 := selfSigned(t, "one.test")
	cf, kf := writePair(t, dir, c1, k1)
	r, err := NewWithOptions(Options{CertFile: cf, KeyFile: kf, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// A key that does not match the certificate.
	c2, _ := selfSigned(t, "two.test")
	writePair(t, dir, c2, k1)
	if err := r.Reload(); err == nil {
		t.Fatal("reload of a mismatched pair succeeded")
	}
	if got := commonName(t, r); got != "one.test" {
		t.Fatalf("CN %q after failed reload, want one.test", got)
	}
	// Garbage.
	writePair(t, dir, []byte("not pem"), []byte("nope"))
	if err := r.Reload(); err == nil {
		t.Fatal("reload of garbage succeeded")
	}
	// Missing files.
	os.Remove(cf)
	if err := r.Reload(); err == nil {
		t.Fatal("reload of a missing file succeeded")
	}
	if got := commonName(t, r); got != "one.test" {
		t.Fatalf("CN %q after failed reloads, want one.test", got)
	}
}

func TestNewFailsOnBadFiles(t *testing.T) {
	dir := t.TempDir()
	cf, kf := writePair(t, dir, []byte("x"), []byte("y"))
	if _, err := New(cf, kf, nil); err == nil {
		t.Fatal("New accepted garbage")
	}
	if _, err := New("", kf, nil); err == nil {
		t.Fatal("New accepted an empty file name")
	}
}

func TestReloadOnFileChange(t *testing.T) {
	dir := t.TempDir()
	c1, k1 := selfSigned(t, "one.test")
	cf, kf := writePair(t, dir, c1, k1)
	r, err := NewWithOptions(Options{CertFile: cf, KeyFile: kf, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	c2, k2 := selfSigned(t, "two.test")
	writePair(t, dir, c2, k2)
	// Make the change visible even on file systems with coarse mtimes.
	future := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(cf, future, future); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for commonName(t, r) != "two.test" {
		if time.Now().After(deadline) {
			t.Fatal("file change not picked up")
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}

	// A later bad write keeps two.test.
	if err := os.WriteFile(kf, []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := future.Add(2 * time.Second)
	if err := os.Chtimes(kf, later, later); err != nil {
		t.Fatal(err)
	}
	waitTried := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		tried := r.seen.keyMod.Equal(later)
		r.mu.Unlock()
		if tried {
			break
		}
		if time.Now().After(waitTried) {
			t.Fatal("bad key file never examined")
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if got := commonName(t, r); got != "two.test" {
		t.Fatalf("CN %q after a bad key write, want two.test", got)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeUsesCurrentCertificate(t *testing.T) {
	dir := t.TempDir()
	c1, k1 := selfSigned(t, "one.test")
	cf, kf := writePair(t, dir, c1, k1)
	r, err := NewWithOptions(Options{CertFile: cf, KeyFile: kf, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", r.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	handshakeCN := func() string {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := handshakeCN(); got != "one.test" {
		t.Fatalf("handshake CN %q", got)
	}
	c2, k2 := selfSigned(t, "two.test")
	writePair(t, dir, c2, k2)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := handshakeCN(); got != "two.test" {
		t.Fatalf("handshake CN %q after reload", got)
	}
	ln.Close()
	<-done
}
