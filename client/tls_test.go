package client

import (
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
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

// selfSigned writes a certificate for 127.0.0.1 and its key to dir and
// returns the file names and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "herald client test"},
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
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
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
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLS: wss:// and tls:// URLs with a trusted certificate work; an
// untrusted one is refused.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	s := startServer(t, func(c *config.Config) { c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile} })
	for _, url := range []string{"wss://" + s.srv.Addr() + "/ws", "tls://" + s.srv.TCPAddr()} {
		t.Run(url[:3], func(t *testing.T) {
			ctx := ctxT(t)
			o := fastOptions()
			o.TLSConfig = &tls.Config{RootCAs: pool}
			c := newClient(t, url, o)
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			got := make(chan Publication, 1)
			sub, err := c.Subscribe("chat:tls", func(p Publication) { got <- p })
			if err != nil {
				t.Fatal(err)
			}
			if err := sub.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(ctx, "chat:tls", []byte(`"secure"`)); err != nil {
				t.Fatal(err)
			}
			if p := <-got; string(p.Data) != `"secure"` {
				t.Errorf("publication %s", p.Data)
			}

			untrusted := newClient(t, url, fastOptions())
			if err := untrusted.Connect(ctx); err == nil {
				t.Error("connected with an untrusted certificate")
			}
		})
	}
}
