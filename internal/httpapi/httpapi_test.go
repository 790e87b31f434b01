package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testKey = "test-api-key-0123456789"

// fakeBackend records calls and refuses channels outside the "ok"
// namespace the way the hub does. Channel "down:x" simulates a broker
// outage.
type fakeBackend struct {
	mu          sync.Mutex
	published   map[string][]string
	sent        map[string][]string
	disconnects map[string]wire.Disconnect
	unsubs      []string
	historyOpts hub.HistoryOptions
	offset      uint64
}

func newFake() *fakeBackend {
	return &fakeBackend{published: map[string][]string{}, sent: map[string][]string{}, disconnects: map[string]wire.Disconnect{}}
}

func checkChannel(ch string) error {
	switch {
	case strings.HasPrefix(ch, "ok:"):
		return nil
	case strings.HasPrefix(ch, "down:"):
		return fmt.Errorf("publish %s: %w", ch, hub.ErrBrokerUnavailable)
	case strings.HasPrefix(ch, "ro:"):
		return &wire.Error{Code: wire.ErrPermissionDenied, Message: "publishing is not allowed"}
	case strings.HasPrefix(ch, "boom:"):
		return errors.New("disk on fire")
	}
	ns, _, _ := strings.Cut(ch, ":")
	return &wire.Error{Code: wire.ErrUnknownChannel, Message: fmt.Sprintf("unknown channel namespace %q", ns)}
}

func (f *fakeBackend) Publish(_ context.Context, ch string, data []byte) (wire.StreamPosition, error) {
	if err := checkChannel(ch); err != nil {
		return wire.StreamPosition{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.offset++
	f.published[ch] = append(f.published[ch], string(data))
	return wire.StreamPosition{Offset: f.offset, Epoch: "ep1"}, nil
}

func (f *fakeBackend) Broadcast(ctx context.Context, chs []string, data []byte) ([]BroadcastOutcome, error) {
	for _, ch := range chs {
		var we *wire.Error
		if err := checkChannel(ch); errors.As(err, &we) && we.Code == wire.ErrUnknownChannel {
			return nil, err
		}
	}
	out := make([]BroadcastOutcome, len(chs))
	for i, ch := range chs {
		out[i].Position, out[i].Err = f.Publish(ctx, ch, data)
	}
	return out, nil
}

func (f *fakeBackend) Send(_ context.Context, user string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent[user] = append(f.sent[user], string(data))
	return nil
}

func (f *fakeBackend) Presence(_ context.Context, ch string) (map[string]*wire.ClientInfo, error) {
	if err := checkChannel(ch); err != nil {
		return nil, err
	}
	return map[string]*wire.ClientInfo{"c1": {Client: "c1", User: "42", ConnInfo: []byte(`{"name":"ann"}`)}}, nil
}

func (f *fakeBackend) PresenceStats(_ context.Context, ch string) (hub.PresenceStats, error) {
	if err := checkChannel(ch); err != nil {
		return hub.PresenceStats{}, err
	}
	return hub.PresenceStats{NumClients: 3, NumUsers: 2}, nil
}

func (f *fakeBackend) History(_ context.Context, ch string, opts hub.HistoryOptions) (hub.HistoryResult, error) {
	if err := checkChannel(ch); err != nil {
		return hub.HistoryResult{}, err
	}
	f.mu.Lock()
	f.historyOpts = opts
	f.mu.Unlock()
	return hub.HistoryResult{
		Publications: []*wire.Publication{{Offset: 7, Data: []byte(`{"n": 7}`), Time: 1}},
		Position:     wire.StreamPosition{Offset: 7, Epoch: "ep1"},
	}, nil
}

func (f *fakeBackend) Unsubscribe(_ context.Context, user, ch string) error {
	if err := checkChannel(ch); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unsubs = append(f.unsubs, user+"@"+ch)
	return nil
}

func (f *fakeBackend) Disconnect(_ context.Context, user string, d wire.Disconnect) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disconnects[user] = d
	return nil
}

func (f *fakeBackend) Channels(context.Context) (map[string]ChannelInfo, error) {
	return map[string]ChannelInfo{"ok:a": {NumClients: 2}}, nil
}

func (f *fakeBackend) Info(context.Context) ([]NodeInfo, error) {
	return []NodeInfo{{Name: "n1", Version: "test", NumClients: 2}}, nil
}

func newServer(t *testing.T, opts Options) (*httptest.Server, *fakeBackend) {
	t.Helper()
	fb := newFake()
	if opts.APIKey == "" {
		opts.APIKey = testKey
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	api, err := New(fb, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(Prefix, api)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, fb
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func do(t *testing.T, srv *httptest.Server, method, path, key string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		t.Fatalf("%s %s: response is not a JSON object: %q", method, path, raw)
	}
	return r
}

func post(t *testing.T, srv *httptest.Server, path, body string) response {
	t.Helper()
	return do(t, srv, http.MethodPost, path, testKey, strings.NewReader(body))
}

func errCode(t *testing.T, r response) float64 {
	t.Helper()
	e, ok := r.body["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", r.raw)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("error without message: %s", r.raw)
	}
	code, _ := e["code"].(float64)
	return code
}

func TestErrorStatuses(t *testing.T) {
	m := metrics.New()
	srv, _ := newServer(t, Options{MaxBodyBytes: 4096, Metrics: m})
	big := `{"channel":"ok:a","data":"` + strings.Repeat("x", 5000) + `"}`
	cases := []struct {
		name   string
		method string
		path   string
		key    string
		body   string
		status int
		code   uint32
	}{
		{"no key", "POST", "/api/publish", "", `{"channel":"ok:a","data":1}`, 401, wire.ErrUnauthorized},
		{"wrong key", "POST", "/api/publish", testKey + "x", `{"channel":"ok:a","data":1}`, 401, wire.ErrUnauthorized},
		{"wrong key same length", "POST", "/api/publish", strings.Repeat("k", len(testKey)), `{}`, 401, wire.ErrUnauthorized},
		{"unknown method", "POST", "/api/nope", testKey, `{}`, 404, wire.ErrMethodNotFound},
		{"GET", "GET", "/api/publish", testKey, ``, 405, wire.ErrBadRequest},
		{"malformed JSON", "POST", "/api/publish", testKey, `{"channel":`, 400, wire.ErrBadRequest},
		{"data not JSON", "POST", "/api/publish", testKey, `{"channel":"ok:a","data":{nope}}`, 400, wire.ErrBadRequest},
		{"data missing", "POST", "/api/publish", testKey, `{"channel":"ok:a"}`, 400, wire.ErrDataNotJSON},
		{"not an object", "POST", "/api/publish", testKey, `[1,2]`, 400, wire.ErrBadRequest},
		{"empty body", "POST", "/api/publish", testKey, ``, 400, wire.ErrBadRequest},
		{"trailing data", "POST", "/api/publish", testKey, `{"channel":"ok:a","data":1} {}`, 400, wire.ErrBadRequest},
		{"unknown field", "POST", "/api/publish", testKey, `{"channel":"ok:a","data":1,"chanel":"x"}`, 400, wire.ErrBadRequest},
		{"channel missing", "POST", "/api/publish", testKey, `{"data":1}`, 400, wire.ErrBadRequest},
		{"unknown namespace", "POST", "/api/publish", testKey, `{"channel":"nope:a","data":1}`, 400, wire.ErrUnknownChannel},
		{"permission denied", "POST", "/api/publish", testKey, `{"channel":"ro:a","data":1}`, 403, wire.ErrPermissionDenied},
		{"broker down", "POST", "/api/publish", testKey, `{"channel":"down:a","data":1}`, 503, wire.ErrBrokerUnavailable},
		{"internal", "POST", "/api/publish", testKey, `{"channel":"boom:a","data":1}`, 500, wire.ErrInternal},
		{"too large", "POST", "/api/publish", testKey, big, 413, wire.ErrLimitExceeded},
		{"disconnect bad code", "POST", "/api/disconnect", testKey, `{"user":"u","code":1000}`, 400, wire.ErrBadRequest},
		{"disconnect contradiction", "POST", "/api/disconnect", testKey, `{"user":"u","code":3503,"reconnect":true}`, 400, wire.ErrBadRequest},
		{"send without user", "POST", "/api/send", testKey, `{"data":1}`, 400, wire.ErrBadRequest},
		{"broadcast without channels", "POST", "/api/broadcast", testKey, `{"data":1}`, 400, wire.ErrBadRequest},
		{"history unknown namespace", "POST", "/api/history", testKey, `{"channel":"x:y"}`, 400, wire.ErrUnknownChannel},
		{"info with params", "POST", "/api/info", testKey, `{"x":1}`, 400, wire.ErrBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, srv, c.method, c.path, c.key, strings.NewReader(c.body))
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.raw)
			}
			if got := errCode(t, r); got != float64(c.code) {
				t.Errorf("code %v, want %d: %s", got, c.code, r.raw)
			}
			if c.status == 405 && r.header.Get("Allow") != "POST" {
				t.Errorf("405 without Allow: POST")
			}
		})
	}
	// The internal error's text stays on the server.
	r := post(t, srv, "/api/publish", `{"channel":"boom:a","data":1}`)
	if strings.Contains(r.raw, "fire") {
		t.Errorf("internal error text leaked: %s", r.raw)
	}
	out := scrapeMetrics(t, m)
	for _, want := range []string{
		`herald_api_requests_total{method="publish",status="401"}`,
		`herald_api_requests_total{method="unknown",status="404"}`,
		`herald_api_requests_total{method="publish",status="413"}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestTooLargeChunked checks the limit when the client does not announce
// a length: the body is cut off by http.MaxBytesReader while read.
func TestTooLargeChunked(t *testing.T) {
	srv, fb := newServer(t, Options{MaxBodyBytes: 2048})
	body := io.MultiReader(strings.NewReader(`{"channel":"ok:a","data":"`),
		strings.NewReader(strings.Repeat("y", 10000)), strings.NewReader(`"}`))
	r := do(t, srv, http.MethodPost, "/api/publish", testKey, struct{ io.Reader }{body})
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if len(fb.published) != 0 {
		t.Fatal("oversized publication reached the backend")
	}
}

func TestPublishPassesDataThrough(t *testing.T) {
	srv, fb := newServer(t, Options{})
	data := `{ "text" : "hi",  "n": [1, 2.50, "\u00e9"] }`
	r := post(t, srv, "/api/publish", `{"channel":"ok:room","data":`+data+`}`)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if r.body["offset"] != float64(1) || r.body["epoch"] != "ep1" {
		t.Errorf("reply %s", r.raw)
	}
	if got := fb.published["ok:room"]; len(got) != 1 || got[0] != data {
		t.Errorf("backend got %q, want the bytes as sent %q", got, data)
	}
}

func TestBroadcast(t *testing.T) {
	srv, fb := newServer(t, Options{})
	r := post(t, srv, "/api/broadcast", `{"channels":["ok:a","nope:b","ok:d"],"data":"x"}`)
	if r.status != 400 || errCode(t, r) != float64(wire.ErrUnknownChannel) || len(fb.published) != 0 {
		t.Fatalf("broadcast with an unknown namespace: %d %s %v", r.status, r.raw, fb.published)
	}
	r = post(t, srv, "/api/broadcast", `{"channels":["ok:a","ro:b","down:c","ok:d"],"data":"x"}`)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	var body struct {
		Responses []struct {
			Channel string
			Result  *struct{ Offset uint64 }
			Error   *struct{ Code uint32 }
		}
	}
	if err := json.Unmarshal([]byte(r.raw), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Responses) != 4 {
		t.Fatalf("responses: %s", r.raw)
	}
	want := []struct {
		ok   bool
		code uint32
	}{{true, 0}, {false, wire.ErrPermissionDenied}, {false, wire.ErrBrokerUnavailable}, {true, 0}}
	for i, w := range want {
		got := body.Responses[i]
		if (got.Result != nil) != w.ok || (!w.ok && (got.Error == nil || got.Error.Code != w.code)) {
			t.Errorf("response %d: %+v", i, got)
		}
	}
	if len(fb.published["ok:a"]) != 1 || len(fb.published["ok:d"]) != 1 {
		t.Errorf("published: %v", fb.published)
	}
}

func TestOtherMethods(t *testing.T) {
	srv, fb := newServer(t, Options{MaxHistoryLimit: 50})

	if r := post(t, srv, "/api/send", `{"user":"42","data":{"a":1}}`); r.status != 200 || fb.sent["42"][0] != `{"a":1}` {
		t.Errorf("send: %d %s %v", r.status, r.raw, fb.sent)
	}
	r := post(t, srv, "/api/presence", `{"channel":"ok:a"}`)
	if r.status != 200 || !strings.Contains(r.raw, `"conn_info":{"name":"ann"}`) {
		t.Errorf("presence: %d %s", r.status, r.raw)
	}
	r = post(t, srv, "/api/presence_stats", `{"channel":"ok:a"}`)
	if r.status != 200 || r.body["num_clients"] != float64(3) || r.body["num_users"] != float64(2) {
		t.Errorf("presence_stats: %s", r.raw)
	}
	r = post(t, srv, "/api/history", `{"channel":"ok:a","limit":5000,"since":{"offset":3,"epoch":"ep1"},"reverse":true}`)
	if r.status != 200 || !strings.Contains(r.raw, `"data":{"n":7}`) || r.body["epoch"] != "ep1" {
		t.Errorf("history: %s", r.raw)
	}
	if o := fb.historyOpts; o.Limit != 50 || !o.Reverse || o.Since == nil || o.Since.Offset != 3 {
		t.Errorf("history options %+v (limit must be capped at 50)", o)
	}
	post(t, srv, "/api/history", `{"channel":"ok:a","limit":0}`)
	if fb.historyOpts.Limit != 0 {
		t.Errorf("limit 0 became %d", fb.historyOpts.Limit)
	}
	post(t, srv, "/api/history", `{"channel":"ok:a"}`)
	if fb.historyOpts.Limit != 50 {
		t.Errorf("absent limit became %d", fb.historyOpts.Limit)
	}
	if r := post(t, srv, "/api/unsubscribe", `{"user":"42","channel":"ok:a"}`); r.status != 200 || fb.unsubs[0] != "42@ok:a" {
		t.Errorf("unsubscribe: %s %v", r.raw, fb.unsubs)
	}
	disconnects := []struct {
		body string
		want wire.Disconnect
	}{
		{`{"user":"a"}`, wire.Disconnect{Code: 3003, Reconnect: true, Reason: "disconnected by the server API"}},
		{`{"user":"b","reconnect":false}`, wire.Disconnect{Code: 3503, Reason: "disconnected by the server API"}},
		{`{"user":"c","code":3504,"reason":"bye"}`, wire.Disconnect{Code: 3504, Reason: "bye"}},
		{`{"user":"d","code":3001,"reconnect":true}`, wire.Disconnect{Code: 3001, Reconnect: true, Reason: "disconnected by the server API"}},
	}
	for _, d := range disconnects {
		if r := post(t, srv, "/api/disconnect", d.body); r.status != 200 {
			t.Errorf("disconnect %s: %s", d.body, r.raw)
		}
	}
	for i, user := range []string{"a", "b", "c", "d"} {
		if got := fb.disconnects[user]; got != disconnects[i].want {
			t.Errorf("disconnect %s: got %+v want %+v", user, got, disconnects[i].want)
		}
	}
	if r := post(t, srv, "/api/channels", ``); r.status != 200 || !strings.Contains(r.raw, `"ok:a":{"num_clients":2}`) {
		t.Errorf("channels: %s", r.raw)
	}
	if r := post(t, srv, "/api/info", `{}`); r.status != 200 || !strings.Contains(r.raw, `"name":"n1"`) {
		t.Errorf("info: %s", r.raw)
	}
}

func TestNewRequiresKey(t *testing.T) {
	if _, err := New(newFake(), Options{}); err == nil {
		t.Fatal("New accepted an empty API key")
	}
}

func scrapeMetrics(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// TestSlowBody: a client that stops sending its body gets 400 once the
// request timeout passes instead of holding the connection.
func TestSlowBody(t *testing.T) {
	srv, fb := newServer(t, Options{Timeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: " + testKey + "\r\nContent-Length: 100\r\n\r\n{\"channel\":"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	if len(fb.published) != 0 {
		t.Fatal("partial request reached the backend")
	}
}
