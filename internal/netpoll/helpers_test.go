package netpoll

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testTimeout = 10 * time.Second

func newTestPoller(t testing.TB, opts Options) *Poller {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// listen returns a loopback TCP listener closed at cleanup.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// tcpPair returns the accepted (server) and dialed (client) ends of a
// loopback TCP connection. The client end is closed at cleanup.
func tcpPair(t testing.TB, ln net.Listener) (server *net.TCPConn, client *net.TCPConn) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { cc.Close() })
	return r.c.(*net.TCPConn), cc.(*net.TCPConn)
}

// recorder is a Handler that records what it sees and optionally echoes.
type recorder struct {
	echo   bool
	onData func(c *Conn, data []byte)

	mu     sync.Mutex
	data   bytes.Buffer
	calls  int
	closes int
	err    error
	closed chan struct{}
	grew   chan struct{} // signalled (non-blocking) on every OnData
}

func newRecorder(echo bool) *recorder {
	return &recorder{echo: echo, closed: make(chan struct{}), grew: make(chan struct{}, 1)}
}

func (r *recorder) OnData(c *Conn, data []byte) {
	r.mu.Lock()
	r.data.Write(data)
	r.calls++
	r.mu.Unlock()
	if r.echo {
		if err := c.Write(bytes.Clone(data)); err != nil {
			panic(err)
		}
	}
	if r.onData != nil {
		r.onData(c, data)
	}
	select {
	case r.grew <- struct{}{}:
	default:
	}
}

func (r *recorder) OnClose(c *Conn, err error) {
	r.mu.Lock()
	r.closes++
	r.err = err
	n := r.closes
	r.mu.Unlock()
	if n == 1 {
		close(r.closed)
	}
}

func (r *recorder) received() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.data.Bytes())
}

// waitClosed waits for OnClose and returns its error; it fails the test if
// OnClose ran more than once.
func (r *recorder) waitClosed(t testing.TB) error {
	t.Helper()
	select {
	case <-r.closed:
	case <-time.After(testTimeout):
		t.Fatal("OnClose not called")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closes != 1 {
		t.Fatalf("OnClose called %d times", r.closes)
	}
	return r.err
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// readFull reads exactly n bytes from c with a deadline.
func readFull(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return buf
}

// expectEOF checks that the peer closed c (after any remaining bytes).
func expectEOF(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	rest, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("want EOF, got %v after %d bytes", err, len(rest))
	}
	if len(rest) != 0 {
		t.Fatalf("want EOF, got %d more bytes", len(rest))
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// testTLSConfigs returns a server config with a fresh self-signed
// certificate for 127.0.0.1 and a client config trusting it.
func testTLSConfigs(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "netpoll test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client
}

func readProcFile(name string) ([]byte, error) { return os.ReadFile(name) }
