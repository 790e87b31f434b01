package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serveHandshake accepts one connection on ln and reports the result of a
// server handshake on it with cfg.
func serveHandshake(ln net.Listener, cfg *tls.Config) <-chan error {
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		done <- tls.Server(conn, cfg).Handshake()
	}()
	return done
}

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
		// Loopback TCP, not net.Pipe: its buffers let both sides write
		// their flights and alerts without waiting for the other to read.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := serveHandshake(ln, c.ServerConfig())
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		err = tls.Client(conn, c.ClientConfig(tc.name)).Handshake()
		conn.Close()
		<-done
		ln.Close()
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

// TestFilesAndPresented checks that the files written load as a key pair
// and that Presented reports the certificate a server serves.
func TestFilesAndPresented(t *testing.T) {
	c := New(t, "127.0.0.1")
	certFile, keyFile := c.Files(t)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("load written files: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := serveHandshake(ln, &tls.Config{Certificates: []tls.Certificate{pair}})
	got := Presented(t, ln.Addr().String())
	if err := <-done; err != nil {
		t.Errorf("server handshake: %v", err)
	}
	ln.Close()
	if !got.Equal(c.TLS.Leaf) {
		t.Errorf("presented serial %v, want %v", got.SerialNumber, c.TLS.Leaf.SerialNumber)
	}
}
