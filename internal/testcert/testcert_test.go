package testcert

import (
	"crypto/tls"
	"errors"
	"crypto/x509"
	"net"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHandshake checks that a client trusting the pool completes a TLS
// handshake with a server presenting the certificate, and that a client
// expecting another name is refused.
func TestHandshake(t *testing.T) {
	c := New(t, "127.0.0.1", "herald.test")
	if c.TLS.Leaf.Subject.CommonName != "127.0.0.1" || len(c.TLS.Leaf.IPAddresses) != 1 || len(c.TLS.Leaf.DNSNames) != 1 {
		t.Fatalf("leaf: CN %q, IPs %v, DNS %v", c.TLS.Leaf.Subject.CommonName, c.TLS.Leaf.IPAddresses, c.TLS.Leaf.DNSNames)
	}
	if _, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
		t.Fatalf("PEM pair: %v", err)
	}
	for _, tc := range []struct {
		name   string
		wantOK bool
	}{{"127.0.0.1", true}, {"herald.test", true}, {"other.test", false}} {
		a, b := net.Pipe()
		srv := tls.Server(a, c.ServerConfig())
		done := make(chan error, 1)
		go func() { done <- srv.Handshake(); a.Close() }()
		err := tls.Client(b, c.ClientConfig(tc.name)).Handshake()
		b.Close()
		<-done
		var invalid x509.HostnameError
		switch {
		case tc.wantOK && err != nil:
			t.Errorf("%s: handshake: %v", tc.name, err)
		case !tc.wantOK && (err == nil || !errors.As(err, &invalid)):
			t.Errorf("%s: handshake: %v, want a hostname error", tc.name, err)
		}
	}
	if other := New(t, "127.0.0.1"); other.TLS.Leaf.SerialNumber.Cmp(c.TLS.Leaf.SerialNumber) == 0 {
		t.Fatal("two certificates share a serial number")
	}
}
