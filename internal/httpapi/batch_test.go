package httpapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/wire"
)

type batchBody struct {
	Replies []struct {
		Result json.RawMessage
		Error  *struct {
			Code    uint32
			Message string
		}
	}
}

func decodeBatchReply(t *testing.T, r response) batchBody {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	var b batchBody
	if err := json.Unmarshal([]byte(r.raw), &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBatchRunsEveryCommand: each command reports its own outcome at its
// index, failures (refused channel, broker down, missing or invalid
// parameters, not exactly one method, internal error) do not stop the
// commands after them, and publications keep their order.
func TestBatchRunsEveryCommand(t *testing.T) {
	srv, fb := newServer(t, Options{})
	r := post(t, srv, "/api/batch", `{"commands":[
		{"publish":{"channel":"ok:a","data":1}},
		{"publish":{"channel":"nope:a","data":2}},
		{"publish":{"channel":"ok:a","data":{"n":3}}},
		{"publish":{"channel":"down:a","data":4}},
		{"publish":{"channel":"ok:a"}},
		{"publish":{"data":5}},
		{"publish":{"channel":"ro:a","data":5}},
		{},
		{"publish":{"channel":"ok:a","data":5},"send":{"user":"u1","data":"x"}},
		{"publish":{"channel":"boom:a","data":6}},
		{"send":{"user":"u1","data":"hi"}},
		{"info":{}},
		{"publish":{"channel":"ok:a","data":7}},
		{"disconnect":{"user":"u2","code":1000}},
		{"history":{"channel":"ok:a","limit":0}}
	]}`)
	b := decodeBatchReply(t, r)
	want := []uint32{0, wire.ErrUnknownChannel, 0, wire.ErrBrokerUnavailable, wire.ErrDataNotJSON, wire.ErrBadRequest,
		wire.ErrPermissionDenied, wire.ErrBadRequest, wire.ErrBadRequest, wire.ErrInternal, 0, 0, 0, wire.ErrBadRequest, 0}
	if len(b.Replies) != len(want) {
		t.Fatalf("%d replies for %d commands: %s", len(b.Replies), len(want), r.raw)
	}
	for i, code := range want {
		got := b.Replies[i]
		switch {
		case code == 0 && (got.Error != nil || len(got.Result) == 0):
			t.Errorf("reply %d: want a result, got %s", i, r.raw)
		case code != 0 && (got.Error == nil || got.Error.Code != code || got.Error.Message == "" || got.Result != nil):
			t.Errorf("reply %d: want error code %d, got %+v", i, code, got)
		}
	}
	if b.Replies[9].Error.Message != "internal error" {
		t.Errorf("internal error leaks its text: %q", b.Replies[9].Error.Message)
	}
	var pos struct {
		Offset uint64
		Epoch  string
	}
	if err := json.Unmarshal(b.Replies[12].Result, &pos); err != nil || pos.Offset != 3 || pos.Epoch != "ep1" {
		t.Errorf("last publish result %s", b.Replies[12].Result)
	}
	if got := strings.Join(fb.published["ok:a"], " "); got != `1 {"n":3} 7` {
		t.Errorf("published to ok:a in order: %s", got)
	}
	if len(fb.sent["u1"]) != 1 {
		t.Errorf("send in a batch: %v", fb.sent)
	}
}

// TestBatchKeepsOrder: many publications to one channel in one batch
// arrive in the order they were listed.
func TestBatchKeepsOrder(t *testing.T) {
	srv, fb := newServer(t, Options{})
	var sb strings.Builder
	sb.WriteString(`{"commands":[`)
	for i := range 500 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"publish":{"channel":"ok:seq","data":%d}}`, i)
	}
	sb.WriteString(`]}`)
	b := decodeBatchReply(t, post(t, srv, "/api/batch", sb.String()))
	if len(b.Replies) != 500 {
		t.Fatalf("%d replies", len(b.Replies))
	}
	for i, d := range fb.published["ok:seq"] {
		if d != fmt.Sprint(i) {
			t.Fatalf("publication %d is %s", i, d)
		}
	}
	if len(fb.published["ok:seq"]) != 500 {
		t.Fatalf("published %d", len(fb.published["ok:seq"]))
	}
}

// TestBatchRefusesWholeRequest: a malformed body or too many commands is
// a 400 with a JSON error and nothing runs.
func TestBatchRefusesWholeRequest(t *testing.T) {
	srv, fb := newServer(t, Options{MaxBatchCommands: 3})
	pub := `{"publish":{"channel":"ok:a","data":1}}`
	for _, tc := range []struct{ body, msg string }{
		{``, "empty body"},
		{`[]`, "want a JSON object"},
		{`{"commands":[` + pub, "malformed JSON"},
		{`{"commands":[` + pub + `]} {}`, "trailing data"},
		{`{"commands":[` + pub + `],"x":1}`, `unknown field "x"`},
		{`{"commands":[` + pub + `],"commands":[]}`, "twice"},
		{`{"commands":{}}`, "must be an array"},
		{`{"commands":[]}`, "commands is required"},
		{`{}`, "commands is required"},
		{`{"commands":[1]}`, "malformed JSON"},
		{`{"commands":[{"publish":{"channel":"ok:a","data":1,"bogus":1}}]}`, `unknown field "bogus"`},
		{`{"commands":[{"publish":{"channel":7,"data":1}}]}`, "malformed JSON"},
		{`{"commands":[{"nosuch":{}}]}`, `unknown field "nosuch"`},
		{`{"commands":[{"batch":{"commands":[]}}]}`, `unknown field "batch"`},
		{`{"commands":[` + strings.Repeat(pub+",", 3) + pub + `]}`, "more than the limit of 3 commands"},
	} {
		r := post(t, srv, "/api/batch", tc.body)
		msg, _ := r.body["error"].(map[string]any)["message"].(string)
		if r.status != http.StatusBadRequest || errCode(t, r) != float64(wire.ErrBadRequest) || !strings.Contains(msg, tc.msg) {
			t.Errorf("%q: %d %s, want 400 mentioning %q", tc.body, r.status, r.raw, tc.msg)
		}
	}
	if len(fb.published) != 0 {
		t.Errorf("refused batches published: %v", fb.published)
	}
	// Exactly the limit passes.
	b := decodeBatchReply(t, post(t, srv, "/api/batch", `{"commands":[`+strings.Repeat(pub+",", 2)+pub+`]}`))
	if len(b.Replies) != 3 || len(fb.published["ok:a"]) != 3 {
		t.Errorf("batch at the limit: %+v, published %v", b, fb.published)
	}
}

// TestBatchHTTPChecks: batch shares the other methods' authentication,
// method and body size checks.
func TestBatchHTTPChecks(t *testing.T) {
	srv, fb := newServer(t, Options{MaxBodyBytes: 256})
	body := `{"commands":[{"publish":{"channel":"ok:a","data":1}}]}`
	if r := do(t, srv, http.MethodPost, "/api/batch", "", strings.NewReader(body)); r.status != 401 || errCode(t, r) != float64(wire.ErrUnauthorized) {
		t.Errorf("no key: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, http.MethodPost, "/api/batch", "wrong", strings.NewReader(body)); r.status != 401 {
		t.Errorf("wrong key: %d %s", r.status, r.raw)
	}
	if r := do(t, srv, http.MethodGet, "/api/batch", testKey, nil); r.status != 405 || r.header.Get("Allow") != "POST" {
		t.Errorf("GET: %d %s", r.status, r.raw)
	}
	big := `{"commands":[` + strings.Repeat(`{"info":{}},`, 30) + `{"info":{}}]}`
	if r := post(t, srv, "/api/batch", big); r.status != 413 || errCode(t, r) != float64(wire.ErrLimitExceeded) {
		t.Errorf("too large: %d %s", r.status, r.raw)
	}
	if len(fb.published) != 0 {
		t.Errorf("refused requests published: %v", fb.published)
	}
}

// BenchmarkBatchPublish measures the API's cost per publication when 100
// come in one batch request, to compare with BenchmarkPublish's one per
// request.
func BenchmarkBatchPublish(b *testing.B) {
	api, err := New(newFake(), Options{APIKey: testKey, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	const n = 100
	cmd := `{"publish":{"channel":"ok:room","data":{"text":"hello","n":[1,2,3],"from":"bench"}}}`
	body := `{"commands":[` + strings.Repeat(cmd+",", n-1) + cmd + `]}`
	runBatchBench(b, api, []byte(body), n)
}

// TestBatchCoversEveryMethod: every method but batch can be a command, so
// a method added to the API cannot be forgotten in batches.
func TestBatchCoversEveryMethod(t *testing.T) {
	api, err := New(newFake(), Options{APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]bool{}
	typ := reflect.TypeFor[batchCommand]()
	for i := range typ.NumField() {
		fields[typ.Field(i).Tag.Get("json")] = true
	}
	for name := range api.handlers {
		if name != batchMethod && !fields[name] {
			t.Errorf("method %q cannot be a batch command", name)
		}
		delete(fields, name)
	}
	if len(fields) != 0 {
		t.Errorf("batch commands without a method: %v", fields)
	}
}

// TestRunCommandDispatchesEveryMethod: each field of batchCommand, set
// alone, is counted as the command's one method and run.
func TestRunCommandDispatchesEveryMethod(t *testing.T) {
	api, err := New(newFake(), Options{APIKey: testKey, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[batchCommand]()
	for i := range typ.NumField() {
		var c batchCommand
		field := reflect.ValueOf(&c).Elem().Field(i)
		field.Set(reflect.New(field.Type().Elem()))
		r := api.runCommand(t.Context(), &c)
		if r.err != nil && strings.Contains(r.err.Message, "exactly one method") {
			t.Errorf("command %s not run: %s", typ.Field(i).Tag.Get("json"), r.err.Message)
		}
		if r.err == nil && !r.isPos && r.result == nil {
			t.Errorf("command %s: no result and no error", typ.Field(i).Tag.Get("json"))
		}
	}
}
