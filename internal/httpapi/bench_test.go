package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
	"github.com/heraldhq/herald/internal/wire"
)

// BenchmarkPublish measures the API's own cost per publish request
// (authentication, body limit, decoding, response) over a backend that
// does nothing.
func BenchmarkPublish(b *testing.B) {
	api, err := New(newFake(), Options{APIKey: testKey, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	body := `{"channel":"ok:room","data":{"text":"hello","n":[1,2,3],"from":"bench"}}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/api/publish", strings.NewReader(body))
		req.Header.Set("X-API-Key", testKey)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// benchBatchCommands is the size of the benchmarks' batches, about what a
// backend publishing 12,000 messages per second every 5 ms from 32
// senders puts in one request.
const benchBatchCommands = 60

// publishBatchBody returns a batch of n publish commands, one to each of the
// channels prefix0..prefix(n-1), with data of about 100 bytes.
func publishBatchBody(prefix string, n int) []byte {
	body := []byte(`{"commands":[`)
	for i := range n {
		if i > 0 {
			body = append(body, ',')
		}
		body = fmt.Appendf(body, `{"publish":{"channel":"%s%d","data":{"bch":%d,"bseq":123456,"bts":1763781234567890123,"pad":"%s"}}}`,
			prefix, i, i, strings.Repeat("x", 34))
	}
	return append(body, "]}"...)
}

// runBatchBench posts body to /api/batch b.N times and reports the cost
// per publication.
func runBatchBench(b *testing.B, api *API, body []byte, n int) {
	b.Helper()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/api/batch", strings.NewReader(string(body)))
		req.Header.Set("X-API-Key", testKey)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), `"error"`) {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/pub")
}

// BenchmarkBatchDecode measures the API's own cost per batch of publish
// commands (decoding, dispatch, replies) over a backend that only records
// the publications.
func BenchmarkBatchDecode(b *testing.B) {
	api, err := New(nopBackend{newFake()}, Options{APIKey: testKey, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	runBatchBench(b, api, publishBatchBody("ok:c", benchBatchCommands), benchBatchCommands)
}

// nopBackend publishes nowhere.
type nopBackend struct{ *fakeBackend }

func (nopBackend) Publish(context.Context, string, []byte) (wire.StreamPosition, error) {
	return wire.StreamPosition{}, nil
}

// BenchmarkBatchPublishHub is the whole publish path of a batch: the API
// over a hub with the in-memory broker, each command publishing to its
// own channel with one local subscriber (the shape of the W4 load).
func BenchmarkBatchPublishHub(b *testing.B) {
	mb := membroker.New(membroker.Options{})
	h, err := hub.New(hub.Config{Broker: mb, Presence: mb, Namespaces: hub.NamespaceMap{"bench": {AllowAnonymous: true}},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := h.Run(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = h.Shutdown(ctx)
		_ = mb.Close(ctx)
	})
	subs := make([]*countingSubscriber, benchBatchCommands)
	for i := range subs {
		subs[i] = &countingSubscriber{id: "c" + strconv.Itoa(i)}
		if err := h.AddClient(subs[i]); err != nil {
			b.Fatal(err)
		}
		if err := h.Subscribe(ctx, subs[i], "bench:c"+strconv.Itoa(i), hub.SubscribeOptions{}, func(*wire.SubscribeResult) {}); err != nil {
			b.Fatal(err)
		}
	}
	api, err := New(hubBackend{newFake(), h}, Options{APIKey: testKey, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	runBatchBench(b, api, publishBatchBody("bench:c", benchBatchCommands), benchBatchCommands)
	if got := subs[len(subs)-1].n.Load(); got != int64(b.N) {
		b.Fatalf("last subscriber got %d of %d publications", got, b.N)
	}
}

// hubBackend publishes through a hub; the other methods are the fake's.
type hubBackend struct {
	*fakeBackend
	h *hub.Hub
}

func (hb hubBackend) Publish(ctx context.Context, channel string, data []byte) (wire.StreamPosition, error) {
	return hb.h.Publish(ctx, channel, data, nil)
}

// countingSubscriber only counts its deliveries.
type countingSubscriber struct {
	id string
	n  atomic.Int64
}

func (c *countingSubscriber) ClientID() string                               { return c.id }
func (c *countingSubscriber) UserID() string                                 { return "" }
func (c *countingSubscriber) ConnInfo() []byte                               { return nil }
func (c *countingSubscriber) Deliver(*hub.Delivery)                          { c.n.Add(1) }
func (c *countingSubscriber) ServerUnsubscribe(string, uint32, string, bool) {}
func (c *countingSubscriber) ServerDisconnect(uint16, string)                {}
