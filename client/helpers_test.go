package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
	"github.com/heraldhq/herald/internal/testnode"
)

// TestMain checks for leaked goroutines other than those of the
// in-process server's process-wide netpoll poller.
func TestMain(m *testing.M) { testnode.VerifyTestMain(m) }

const testSecret = "0123456789abcdef0123456789abcdef-client-tests"

// testServer is an in-process herald node on 127.0.0.1.
type testServer struct {
	t   testing.TB
	srv *server.Server
}

func startServer(t testing.TB, mutate func(*config.Config)) *testServer {
	t.Helper()
	c := config.Default()
	c.Listen = "127.0.0.1:0"
	c.TCPListen = "127.0.0.1:0"
	c.Demo.Enabled = false
	c.DrainTimeout = 50 * time.Millisecond
	c.ShutdownTimeout = 5 * time.Second
	c.Token.Secret = testSecret
	c.APIKey = "test-api-key-0123456789"
	c.Namespaces = append(c.Namespaces,
		config.Namespace{Name: "stream", HistorySize: 2000, HistoryTTL: time.Minute, AllowPublish: true, AllowAnonymous: true},
		config.Namespace{Name: "tiny", HistorySize: 3, HistoryTTL: time.Minute, AllowPublish: true, AllowAnonymous: true},
	)
	if mutate != nil {
		mutate(c)
	}
	s, err := server.New(server.Options{Config: c, Version: "test", Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	return &testServer{t: t, srv: s}
}

func (s *testServer) wsURL() string  { return "ws://" + s.srv.Addr() + "/ws" }
func (s *testServer) apiURL() string { return "http://" + s.srv.Addr() }

// token signs a connection token for user.
func (s *testServer) token(user string, ttl time.Duration) string {
	s.t.Helper()
	c := auth.Claims{Subject: user, IssuedAt: time.Now()}
	if ttl != 0 {
		c.ExpiresAt = time.Now().Add(ttl)
	}
	tok, err := auth.Sign(c, auth.HS256, []byte(testSecret))
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// api calls a server API method and fails the test unless it succeeds.
func (s *testServer) api(method string, body any) map[string]any {
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, s.apiURL()+"/api/"+method, bytes.NewReader(b))
	if err != nil {
		panic(err)
	}
	req.Header.Set("X-API-Key", "test-api-key-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Errorf("api %s: %v", method, err)
		return nil
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusOK {
		s.t.Errorf("api %s: status %d: %v", method, resp.StatusCode, out)
	}
	return out
}

// proxy forwards TCP connections to a target and can cut them all, or
// refuse new ones while held.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	held  bool
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if held {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cut closes every proxied connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// hold makes the proxy refuse (accept and close) new connections.
func (p *proxy) hold(on bool) {
	p.mu.Lock()
	p.held = on
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// fastOptions reconnect quickly, for tests.
func fastOptions() Options {
	return Options{MinReconnectDelay: 10 * time.Millisecond, MaxReconnectDelay: 50 * time.Millisecond, Timeout: 5 * time.Second}
}

func newClient(t testing.TB, url string, o Options) *Client {
	t.Helper()
	c, err := New(url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// collector records publications delivered to a handler.
type collector struct {
	mu   sync.Mutex
	pubs []Publication
}

func (c *collector) add(p Publication) {
	c.mu.Lock()
	c.pubs = append(c.pubs, p)
	c.mu.Unlock()
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pubs)
}

func (c *collector) all() []Publication {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Publication(nil), c.pubs...)
}
