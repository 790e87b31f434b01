package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/testservers"
	"github.com/heraldhq/herald/internal/testwait"
	"github.com/heraldhq/herald/ws"
)

func testConfig(mutate func(*config.Config)) *config.Config {
	c := config.Default()
	c.Listen = "127.0.0.1:0"
	c.Demo.Enabled = false
	c.DrainTimeout = 100 * time.Millisecond
	c.ShutdownTimeout = 5 * time.Second
	if mutate != nil {
		mutate(c)
	}
	return c
}

// startServer starts a server on 127.0.0.1:0 and shuts it down at the end
// of the test.
func startServer(t *testing.T, mutate func(*config.Config)) (*Server, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	s, err := New(Options{Config: testConfig(mutate), Version: "test", Logger: slog.New(slog.DiscardHandler), Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, &out
}

// apiCall posts body to /api/method and returns the status and the decoded
// JSON object.
func apiCall(t *testing.T, s *Server, key, method, body string) (int, map[string]any) {
	t.Helper()
	return apiCallWith(t, http.DefaultClient, "http://"+s.Addr(), key, method, body)
}

// apiCallWith is apiCall through client to the server at baseURL.
func apiCallWith(t *testing.T, client *http.Client, baseURL, key, method, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, baseURL+"/api/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: response not JSON: %v", method, err)
	}
	return resp.StatusCode, out
}

// wsClient is a minimal protocol client for tests.
type wsClient struct {
	t    *testing.T
	c    *ws.Conn
	next uint32
}

func dialClient(t *testing.T, s *Server) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := ws.Dial(ctx, "ws://"+s.Addr()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c}
}

// call sends a command and returns its reply, skipping pushes.
func (w *wsClient) call(method string, params any) map[string]any {
	w.t.Helper()
	w.next++
	cmd := map[string]any{"id": w.next, "method": method}
	if params != nil {
		cmd["params"] = params
	}
	b, _ := json.Marshal(cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, ws.MessageText, b); err != nil {
		w.t.Fatal(err)
	}
	for {
		msg := w.read(ctx)
		if id, ok := msg["id"].(float64); ok && uint32(id) == w.next {
			if e, ok := msg["error"]; ok {
				w.t.Fatalf("%s: error %v", method, e)
			}
			return msg
		}
	}
}

func (w *wsClient) read(ctx context.Context) map[string]any {
	w.t.Helper()
	_, data, err := w.c.Read(ctx)
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	var msg map[string]any
	if err := json.Unmarshal(data, &msg); err != nil {
		w.t.Fatalf("message not JSON: %q", data)
	}
	return msg
}

// closeCode reads until the connection ends and returns the close code the
// server sent.
func (w *wsClient) closeCode(ctx context.Context) ws.StatusCode {
	for {
		_, _, err := w.c.Read(ctx)
		if err != nil {
			return ws.CloseStatus(err)
		}
	}
}

// TestEndToEnd: a WebSocket client subscribes, a backend publishes over
// HTTP, the client receives the publication; on shutdown the client gets
// 1001.
func TestEndToEnd(t *testing.T) {
	s, out := startServer(t, nil)
	if !strings.Contains(out.String(), s.APIKey()) || !strings.Contains(out.String(), s.TokenSecret()) {
		t.Fatalf("generated keys not printed: %q", out.String())
	}
	cl := dialClient(t, s)
	res := cl.call("connect", map[string]any{"name": "test"})
	if r, _ := res["result"].(map[string]any); r["client"] == "" || r["client"] == nil {
		t.Fatalf("connect reply %v", res)
	}
	cl.call("subscribe", map[string]any{"channel": "chat:room"})

	status, body := apiCall(t, s, s.APIKey(), "publish", `{"channel":"chat:room","data":{"text":"hi"}}`)
	if status != 200 || body["offset"] != float64(1) || body["epoch"] == "" {
		t.Fatalf("publish: %d %v", status, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		msg := cl.read(ctx)
		if msg["type"] != "publication" {
			continue
		}
		data, _ := json.Marshal(msg["data"])
		if msg["channel"] != "chat:room" || string(data) != `{"text":"hi"}` || msg["offset"] != float64(1) {
			t.Fatalf("publication %v", msg)
		}
		break
	}

	// History and presence through the API see the same state.
	status, body = apiCall(t, s, s.APIKey(), "history", `{"channel":"chat:room"}`)
	if pubs, _ := body["publications"].([]any); status != 200 || len(pubs) != 1 {
		t.Fatalf("history: %d %v", status, body)
	}
	status, body = apiCall(t, s, s.APIKey(), "presence_stats", `{"channel":"chat:room"}`)
	if status != 200 || body["num_clients"] != float64(1) {
		t.Fatalf("presence_stats: %d %v", status, body)
	}
	status, body = apiCall(t, s, s.APIKey(), "channels", `{}`)
	if chs, _ := body["channels"].(map[string]any); status != 200 || chs["chat:room"] == nil {
		t.Fatalf("channels: %d %v", status, body)
	}

	metrics := get(t, "http://"+s.Addr()+"/metrics")
	for _, want := range []string{
		`herald_connections{transport="websocket"} 1`,
		`herald_api_requests_total{method="publish",status="200"} 1`,
		`herald_subscriptions 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(sctx) }()
	if code := cl.closeCode(ctx); code != 1001 {
		t.Fatalf("close code %d, want 1001", code)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("readyz after shutdown: %d", rec.Code)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// TestAPIErrorsThroughHub checks that hub refusals reach API clients with
// the right status and protocol code.
func TestAPIErrorsThroughHub(t *testing.T) {
	s, _ := startServer(t, nil)
	cases := []struct {
		key, method, body string
		status            int
		code              float64
	}{
		{"", "publish", `{"channel":"chat:a","data":1}`, 401, 101},
		{s.APIKey(), "publish", `{"channel":"nope:a","data":1}`, 400, 102},
		{s.APIKey(), "publish", `{"channel":"bad channel","data":1}`, 400, 102},
		{s.APIKey(), "history", `{"channel":"plain"}`, 400, 108},
		{s.APIKey(), "presence", `{"channel":"demo:ticker"}`, 400, 108},
		{s.APIKey(), "publish", `{"channel":"chat:a","data":nope}`, 400, 107},
		{s.APIKey(), "frobnicate", `{}`, 404, 104},
	}
	for _, c := range cases {
		status, body := apiCall(t, s, c.key, c.method, c.body)
		e, _ := body["error"].(map[string]any)
		if status != c.status || e == nil || e["code"] != c.code {
			t.Errorf("%s %s: %d %v, want %d code %v", c.method, c.body, status, body, c.status, c.code)
		}
	}
}

// TestAPIBatchLimitFromConfig: api_max_batch_commands reaches the API: a
// batch at the limit runs, one command more is refused whole with 400.
func TestAPIBatchLimitFromConfig(t *testing.T) {
	s, _ := startServer(t, func(c *config.Config) { c.APIMaxBatchCommands = 2 })
	cmd := `{"publish":{"channel":"chat:a","data":1}}`
	status, body := apiCall(t, s, s.APIKey(), "batch", `{"commands":[`+cmd+`,`+cmd+`]}`)
	if replies, _ := body["replies"].([]any); status != 200 || len(replies) != 2 {
		t.Fatalf("two commands: %d %v", status, body)
	}
	status, body = apiCall(t, s, s.APIKey(), "batch", `{"commands":[`+cmd+`,`+cmd+`,`+cmd+`]}`)
	if e, _ := body["error"].(map[string]any); status != 400 || e == nil || e["code"] != float64(107) {
		t.Fatalf("three commands: %d %v", status, body)
	}
}

func TestHealthAndDemo(t *testing.T) {
	s, _ := startServer(t, func(c *config.Config) { c.Demo.Enabled = true })
	if got := get(t, "http://"+s.Addr()+"/healthz"); !strings.Contains(got, "ok") {
		t.Errorf("healthz: %s", got)
	}
	if got := get(t, "http://"+s.Addr()+"/readyz"); !strings.Contains(got, "ready") {
		t.Errorf("readyz: %s", got)
	}
	if got := get(t, "http://"+s.Addr()+"/"); !strings.Contains(strings.ToLower(got), "<html") {
		t.Errorf("demo page: %.200s", got)
	}
	// The demo ticker publishes to demo:ticker.
	cl := dialClient(t, s)
	cl.call("connect", nil)
	cl.call("subscribe", map[string]any{"channel": "demo:ticker"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if msg := cl.read(ctx); msg["type"] == "publication" && msg["channel"] == "demo:ticker" {
			break
		}
	}
}

// TestShutdownSpreadsDisconnects: clients are closed with 1001 over the
// drain window, not all at once, and Shutdown returns within its bound.
func TestShutdownSpreadsDisconnects(t *testing.T) {
	const clients = 4
	drain := 400 * time.Millisecond
	s, _ := startServer(t, func(c *config.Config) { c.DrainTimeout = drain })
	var cls []*wsClient
	for range clients {
		cl := dialClient(t, s)
		cl.call("connect", nil)
		cls = append(cls, cl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var closedAt []time.Time
	codes := make([]ws.StatusCode, clients)
	for i, cl := range cls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = cl.closeCode(ctx)
			mu.Lock()
			closedAt = append(closedAt, time.Now())
			mu.Unlock()
		}()
	}
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	wg.Wait()
	for i, c := range codes {
		if c != 1001 {
			t.Errorf("client %d: close code %d, want 1001", i, c)
		}
	}
	first, last := closedAt[0], closedAt[0]
	for _, at := range closedAt {
		if at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	// Four clients over 400ms are told at 0, 100, 200 and 300ms.
	if spread := last.Sub(first); spread < drain/3 {
		t.Errorf("disconnects spread over %v, want about %v", spread, drain*3/4)
	}
	if took > 5*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	// Idempotent; Start afterwards is refused.
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := s.Start(ctx); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}

func TestRefuseNonLoopbackWithoutKeys(t *testing.T) {
	shutdown := func(s *Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}
	newServer := func(mutate func(*config.Config)) (*Server, string, error) {
		var out bytes.Buffer
		s, err := New(Options{Config: testConfig(mutate), Logger: slog.New(slog.DiscardHandler), Out: &out})
		return s, out.String(), err
	}
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		_, _, err := newServer(func(c *config.Config) { c.Listen = addr })
		if err == nil || !strings.Contains(err.Error(), "api_key") || !strings.Contains(err.Error(), "--insecure") {
			t.Errorf("%s without keys: %v", addr, err)
		}
	}
	_, _, err := newServer(func(c *config.Config) {
		c.Listen = "127.0.0.1:0"
		c.TCPListen = "0.0.0.0:0"
	})
	if err == nil {
		t.Error("non-loopback tcp_listen without keys accepted")
	}
	_, _, err = newServer(func(c *config.Config) {
		c.Listen = "0.0.0.0:0"
		c.APIKey = "0123456789abcdef0123"
	})
	if err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("non-loopback with api key only: %v", err)
	}
	s, out, err := newServer(func(c *config.Config) {
		c.Listen = "0.0.0.0:0"
		c.APIKey = "0123456789abcdef0123"
		c.Token.Secret = strings.Repeat("k", 32)
	})
	if err != nil {
		t.Fatalf("non-loopback with keys: %v", err)
	}
	if out != "" {
		t.Errorf("configured keys still generated: %q", out)
	}
	shutdown(s)
	s, out, err = newServer(func(c *config.Config) {
		c.Listen = "0.0.0.0:0"
		c.Insecure = true
	})
	if err != nil {
		t.Fatalf("insecure: %v", err)
	}
	if !strings.Contains(out, s.APIKey()) {
		t.Errorf("insecure: generated key not printed: %q", out)
	}
	shutdown(s)
}

func TestShutdownBeforeStart(t *testing.T) {
	s, err := New(Options{Config: testConfig(nil), Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
	if s.Addr() != "" || s.Ready() {
		t.Fatal("server reports an address or readiness without Start")
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	NewLogger(config.Log{Level: "warn", Format: "json"}, &buf).Info("hidden")
	NewLogger(config.Log{Level: "warn", Format: "json"}, &buf).Warn("shown", "k", 1)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line["msg"] != "shown" {
		t.Fatalf("json log %q: %v", buf.String(), err)
	}
	buf.Reset()
	NewLogger(config.Log{Level: "debug", Format: "text"}, &buf).Debug("dbg")
	if !strings.Contains(buf.String(), "level=DEBUG") {
		t.Fatalf("text debug log %q", buf.String())
	}
}

// waitReady polls /readyz until the node's broker connection is up.
func waitReady(t *testing.T, s *Server) {
	t.Helper()
	testwait.UntilNil(t, "the node to be ready", func() error {
		resp, err := http.Get("http://" + s.Addr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz status %d", resp.StatusCode)
		}
		return nil
	})
}

func TestStartFailsOnBusyAddress(t *testing.T) {
	first, _ := startServer(t, nil)
	s, err := New(Options{Config: testConfig(func(c *config.Config) { c.Listen = first.Addr() }),
		Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Start(ctx); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start on a busy address: %v", err)
	}
	if s.Ready() {
		t.Fatal("ready after a failed start")
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown after a failed start: %v", err)
	}
}

// TestRedisCluster and TestNATSCluster run two nodes sharing one broker:
// a client connected to one node receives what a backend publishes through
// the other, and history and presence are shared.
func TestRedisCluster(t *testing.T) {
	redis := testservers.StartRedis(t)
	prefix := "t" + randomKey()[:8]
	testCluster(t, func(c *config.Config) {
		c.Broker.Type = "redis"
		c.Broker.Redis.Addrs = []string{redis.Addr()}
		c.Broker.Redis.Prefix = prefix
	})
}

func TestNATSCluster(t *testing.T) {
	nats := testservers.StartNATS(t)
	testCluster(t, func(c *config.Config) {
		c.Broker.Type = "nats"
		c.Broker.NATS.URL = nats.URL()
	})
}

func testCluster(t *testing.T, withBroker func(*config.Config)) {
	a, _ := startServer(t, withBroker)
	b, _ := startServer(t, withBroker)
	waitReady(t, a)
	waitReady(t, b)

	cl := dialClient(t, a)
	cl.call("connect", nil)
	cl.call("subscribe", map[string]any{"channel": "chat:cluster"})
	status, body := apiCall(t, b, b.APIKey(), "publish", `{"channel":"chat:cluster","data":{"via":"b"}}`)
	if status != 200 || body["offset"] != float64(1) {
		t.Fatalf("publish on b: %d %v", status, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		msg := cl.read(ctx)
		if msg["type"] == "publication" {
			if d, _ := msg["data"].(map[string]any); d["via"] != "b" {
				t.Fatalf("publication %v", msg)
			}
			break
		}
	}
	status, body = apiCall(t, a, a.APIKey(), "history", `{"channel":"chat:cluster"}`)
	if pubs, _ := body["publications"].([]any); status != 200 || len(pubs) != 1 {
		t.Fatalf("history on a: %d %v", status, body)
	}
	status, body = apiCall(t, b, b.APIKey(), "presence_stats", `{"channel":"chat:cluster"}`)
	if status != 200 || body["num_clients"] != float64(1) {
		t.Fatalf("presence on b of a's client: %d %v", status, body)
	}
}

// TestRedisUnavailable: with Redis down, publishing answers 503.
func TestRedisUnavailable(t *testing.T) {
	redis := testservers.StartRedis(t)
	s, _ := startServer(t, func(c *config.Config) {
		c.Broker.Type = "redis"
		c.Broker.Redis.Addrs = []string{redis.Addr()}
		c.Broker.Redis.Prefix = "t" + randomKey()[:8]
	})
	redis.Stop()
	status, body := apiCall(t, s, s.APIKey(), "publish", `{"channel":"chat:x","data":1}`)
	e, _ := body["error"].(map[string]any)
	if status != http.StatusServiceUnavailable || e == nil || e["code"] != float64(114) {
		t.Fatalf("publish with redis down: %d %v", status, body)
	}
}

// TestRedisDownAtStart: a node whose Redis is down at start serves
// anyway (so that a cluster can start in any order) but reports not ready,
// and publishing answers 503 until Redis is reachable.
func TestRedisDownAtStart(t *testing.T) {
	redis := testservers.StartRedis(t)
	addr := redis.Addr()
	redis.Stop()
	s, _ := startServer(t, func(c *config.Config) {
		c.Broker.Type = "redis"
		c.Broker.Redis.Addrs = []string{addr}
		c.Broker.Redis.Prefix = "t" + randomKey()[:8]
	})
	resp, err := http.Get("http://" + s.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with Redis down: %d", resp.StatusCode)
	}
	status, body := apiCall(t, s, s.APIKey(), "publish", `{"channel":"chat:x","data":1}`)
	if e, _ := body["error"].(map[string]any); status != http.StatusServiceUnavailable || e["code"] != float64(114) {
		t.Fatalf("publish with Redis down: %d %v", status, body)
	}
}
