package tlsreload

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/testcert"
	"github.com/heraldhq/herald/internal/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// selfSigned returns PEM certificate and key for a new self-signed
// certificate with the given common name.
func selfSigned(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	c := testcert.New(t, cn)
	return c.CertPEM, c.KeyPEM
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

// startReloader writes a new certificate for one.test into a temporary
// directory and starts a Reloader on it polling every poll (-1: never). It
// returns the file names and the PEM key, and closes the Reloader when the
// test ends.
func startReloader(t *testing.T, poll time.Duration) (r *Reloader, certFile, keyFile string, keyPEM []byte) {
	t.Helper()
	c1, k1 := selfSigned(t, "one.test")
	cf, kf := writePair(t, t.TempDir(), c1, k1)
	r, err := NewWithOptions(Options{CertFile: cf, KeyFile: kf, PollInterval: poll})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, cf, kf, k1
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
	r, cf, _, _ := startReloader(t, -1)
	if got := commonName(t, r); got != "one.test" {
		t.Fatalf("CN %q", got)
	}
	c2, k2 := selfSigned(t, "two.test")
	writePair(t, filepath.Dir(cf), c2, k2)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := commonName(t, r); got != "two.test" {
		t.Fatalf("after reload CN %q, want two.test", got)
	}
}

func TestBadFilesKeepOldCertificate(t *testing.T) {
	r, cf, _, k1 := startReloader(t, -1)
	dir := filepath.Dir(cf)

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
	r, cf, kf, _ := startReloader(t, 5*time.Millisecond)

	c2, k2 := selfSigned(t, "two.test")
	writePair(t, filepath.Dir(cf), c2, k2)
	// Make the change visible even on file systems with coarse mtimes.
	future := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(cf, future, future); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the file change to be picked up", func() bool { return commonName(t, r) == "two.test" })

	// A later bad write keeps two.test.
	if err := os.WriteFile(kf, []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := future.Add(2 * time.Second)
	if err := os.Chtimes(kf, later, later); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the bad key file to be examined", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.seen.keyMod.Equal(later)
	})
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
	r, cf, _, _ := startReloader(t, -1)
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
	writePair(t, filepath.Dir(cf), c2, k2)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := handshakeCN(); got != "two.test" {
		t.Fatalf("handshake CN %q after reload", got)
	}
	ln.Close()
	<-done
}
