package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBatchURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080/api/publish":    "http://127.0.0.1:8080/api/batch",
		"http://127.0.0.1:9000/publish":        "http://127.0.0.1:9000/api/batch",
		"https://h/prefix/api/publish?x=1":     "https://h/prefix/api/batch?x=1",
		"http://127.0.0.1:8080/something-else": "",
	} {
		got, err := batchURL(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("batchURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestRunRejectsBadBatchConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "ws://127.0.0.1:1/ws", PublishBatchInterval: -time.Millisecond},
		{URL: "ws://127.0.0.1:1/ws", PublishVia: "ws", PublishBatchInterval: time.Millisecond},
	} {
		if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "batch") {
			t.Errorf("%+v: error %v", cfg, err)
		}
	}
}

// batchServer answers POST /api/batch as herald does, refusing publications
// to channels named "x:bad", and records each request's commands.
type batchServer struct {
	mu       sync.Mutex
	requests [][]string // channel of each command, per request
	data     map[string][]string
	status   int // when set, every request gets it
}

func (s *batchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/batch" || r.Header.Get("X-API-Key") != "k" {
		http.Error(w, `{"error":{"code":104,"message":"no"}}`, http.StatusNotFound)
		return
	}
	if s.status != 0 {
		http.Error(w, `{"error":{"code":100,"message":"no"}}`, s.status)
		return
	}
	var req struct {
		Commands []struct {
			Publish struct {
				Channel string
				Data    json.RawMessage
			}
		}
	}
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, `{"error":{"code":107,"message":"malformed"}}`, http.StatusBadRequest)
		return
	}
	var out strings.Builder
	out.WriteString(`{"replies":[`)
	var chans []string
	s.mu.Lock()
	for i, c := range req.Commands {
		if i > 0 {
			out.WriteByte(',')
		}
		chans = append(chans, c.Publish.Channel)
		if c.Publish.Channel == "x:bad" {
			out.WriteString(`{"error":{"code":102,"message":"unknown channel"}}`)
			continue
		}
		s.data[c.Publish.Channel] = append(s.data[c.Publish.Channel], string(c.Publish.Data))
		fmt.Fprintf(&out, `{"result":{"offset":%d,"epoch":"e"}}`, len(s.data[c.Publish.Channel]))
	}
	s.requests = append(s.requests, chans)
	s.mu.Unlock()
	out.WriteString(`]}`)
	_, _ = io.WriteString(w, out.String())
}

func newBatchTestRun(t *testing.T, url string, interval time.Duration, senders int) *run {
	t.Helper()
	cfg := Config{URL: "ws://127.0.0.1:1/ws", PublishURL: url + "/api/publish", APIKey: "k",
		PublishBatchInterval: interval, Publishers: senders}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	return &run{cfg: cfg, dialer: &dialer{}, names: []string{"x:a", "x:b", "x:bad"}, subs: []int64{2, 3, 1}}
}

// TestBatchPublisherAccounts: publications are grouped into requests of at
// most 1000 commands, sent in order, and each is counted published (with
// its channel's expected deliveries) or failed from its own reply.
func TestBatchPublisherAccounts(t *testing.T) {
	bs := &batchServer{data: map[string][]string{}}
	srv := httptest.NewServer(bs)
	defer srv.Close()
	// An interval longer than the test: batches go out when full and on
	// drain only.
	r := newBatchTestRun(t, srv.URL, time.Hour, 1)
	p, err := r.newBatchPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	const n = 2500
	for i := range n {
		p.publish(context.Background(), 0, i%3, fmt.Appendf(nil, `{"n":%d}`, i))
	}
	p.drain(context.Background())
	if ok, bad := r.pubOK.Load(), r.pubErrs.Load(); ok != 1667 || bad != 833 {
		t.Fatalf("published %d, failed %d", ok, bad)
	}
	if want := int64(834*2 + 833*3); r.expected.Load() != want {
		t.Errorf("expected deliveries %d, want %d", r.expected.Load(), want)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	total := 0
	for _, req := range bs.requests {
		if len(req) > maxBatchCommands {
			t.Errorf("a request of %d commands", len(req))
		}
		total += len(req)
	}
	if total != n || len(bs.requests) != 3 {
		t.Errorf("%d commands in %d requests", total, len(bs.requests))
	}
	// With one sender, batches reach the server in the order they were
	// filled, and each keeps its publications' order.
	for ch, data := range bs.data {
		last := -1
		for _, d := range data {
			var v struct{ N int }
			if err := json.Unmarshal([]byte(d), &v); err != nil || v.N <= last {
				t.Fatalf("channel %s: %s after %d", ch, d, last)
			}
			last = v.N
		}
	}
}

// TestBatchPublisherFlushesOnInterval: publications wait at most about an
// interval, without drain, and a refused request fails all of its
// publications.
func TestBatchPublisherFlushesOnInterval(t *testing.T) {
	bs := &batchServer{data: map[string][]string{}}
	srv := httptest.NewServer(bs)
	defer srv.Close()
	r := newBatchTestRun(t, srv.URL, 5*time.Millisecond, 2)
	p, err := r.newBatchPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for i := range 10 {
		p.publish(context.Background(), 0, 0, fmt.Appendf(nil, `{"n":%d}`, i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.pubOK.Load() < 10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling for the flusher, with a deadline
	}
	if r.pubOK.Load() != 10 || r.pubErrs.Load() != 0 {
		t.Fatalf("published %d, failed %d", r.pubOK.Load(), r.pubErrs.Load())
	}

	bs.mu.Lock()
	bs.status = http.StatusServiceUnavailable
	bs.mu.Unlock()
	for range 4 {
		p.publish(context.Background(), 0, 1, []byte(`{}`))
	}
	p.drain(context.Background())
	if r.pubOK.Load() != 10 || r.pubErrs.Load() != 4 {
		t.Fatalf("after a refused batch: published %d, failed %d", r.pubOK.Load(), r.pubErrs.Load())
	}
}
