package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAPI sends arbitrary bodies to every method. Whatever the body, the
// answer is a JSON object with a status the API documents, and an error
// response carries a code and a message.
func FuzzAPI(f *testing.F) {
	f.Add("publish", `{"channel":"ok:a","data":{"x":1}}`)
	f.Add("broadcast", `{"channels":["ok:a","ok:b"],"data":[1,2]}`)
	f.Add("history", `{"channel":"ok:a","limit":-1,"since":{"offset":1,"epoch":"e"},"reverse":true}`)
	f.Add("disconnect", `{"user":"u","code":3001,"reason":"r","reconnect":true}`)
	f.Add("info", ``)
	f.Add("send", `{"user":"u","data":"\ud800"}`)
	api, err := New(newFake(), Options{APIKey: testKey, MaxBodyBytes: 4096, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	allowed := map[int]bool{200: true, 400: true, 403: true, 404: true, 413: true, 503: true}
	f.Fuzz(func(t *testing.T, method, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/", strings.NewReader(body))
		req.URL.Path = "/api/" + method
		req.Header.Set("X-API-Key", testKey)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("status %d for %s %q: %s", rec.Code, method, body, rec.Body)
		}
		var out map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("response is not a JSON object: %q", rec.Body)
		}
		if rec.Code != 200 {
			var e errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == 0 || e.Error.Message == "" {
				t.Fatalf("error response %q", rec.Body)
			}
		}
	})
}
