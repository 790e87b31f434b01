package httpapi

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
