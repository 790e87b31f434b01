package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/wire"
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

// FuzzBatch sends arbitrary batch bodies. The answer is 200 with exactly
// one reply per command, each either a result or an error with a code and
// a message, or a 400/413 JSON error; never more commands than the limit.
func FuzzBatch(f *testing.F) {
	f.Add(`{"commands":[{"publish":{"channel":"ok:a","data":1}},{"publish":{"channel":"nope:a","data":2}}]}`)
	f.Add(`{"commands":[{"batch":{"commands":[]}},{"info":{}},{}]}`)
	f.Add(`{"commands":[{"broadcast":{"channels":["ok:a","down:b"],"data":null}},{"info":null,"channels":{}}]}`)
	f.Add(`{"commands":[1,2]}`)
	const limit = 8
	api, err := New(newFake(), Options{APIKey: testKey, MaxBodyBytes: 4096, MaxBatchCommands: limit, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/batch", strings.NewReader(body))
		req.Header.Set("X-API-Key", testKey)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		switch rec.Code {
		case 400, 413:
			var e errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == 0 || e.Error.Message == "" {
				t.Fatalf("error response %q", rec.Body)
			}
			return
		case 200:
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		var in struct{ Commands []json.RawMessage }
		if err := json.Unmarshal([]byte(body), &in); err != nil {
			t.Fatalf("accepted a body encoding/json refuses (%v): %q", err, body)
		}
		var out struct {
			Replies []map[string]json.RawMessage
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("response %q: %v", rec.Body, err)
		}
		if len(out.Replies) != len(in.Commands) || len(out.Replies) == 0 || len(out.Replies) > limit {
			t.Fatalf("%d replies for %d commands: %q", len(out.Replies), len(in.Commands), body)
		}
		for i, r := range out.Replies {
			_, res := r["result"]
			e, isErr := r["error"]
			if res == isErr || len(r) != 1 {
				t.Fatalf("reply %d is not one result or one error: %v", i, r)
			}
			var we wire.Error
			if isErr && (json.Unmarshal(e, &we) != nil || we.Code == 0 || we.Message == "") {
				t.Fatalf("reply %d: error %s", i, e)
			}
		}
	})
}
