package httpapi

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
	"testing"

	"github.com/heraldhq/herald/internal/wire"
)

// checkScanned fails unless body, which a scanner accepted, decodes with
// the reference decoders to the same publish commands.
func checkScanned(t *testing.T, a *API, body string) {
	t.Helper()
	b := []byte(body)
	if cmds, ok := scanPublishBatch(b, a.opts.MaxBatchCommands); ok {
		ref, err := a.decodeBatch(b)
		if err != nil {
			t.Fatalf("scanned batch %q, reference refuses it: %v", body, err)
		}
		if len(ref) != len(cmds) {
			t.Fatalf("batch %q: %d commands scanned, %d decoded", body, len(cmds), len(ref))
		}
		for i := range ref {
			want := ref[i]
			want.Publish = nil
			if want != (batchCommand{}) || ref[i].Publish == nil || cmds[i].Publish == nil {
				t.Fatalf("batch %q command %d: scanned %+v, decoded %+v", body, i, cmds[i], ref[i])
			}
			samePublish(t, body, cmds[i].Publish, ref[i].Publish)
		}
	}
	var req publishRequest
	if scanPublishRequest(b, &req) {
		var ref publishRequest
		if err := decode(b, &ref); err != nil {
			t.Fatalf("scanned publish %q, reference refuses it: %v", body, err)
		}
		samePublish(t, body, &req, &ref)
	}
}

func samePublish(t *testing.T, body string, got, want *publishRequest) {
	t.Helper()
	if got.Channel != want.Channel || !bytes.Equal(got.Data, want.Data) || (got.Data == nil) != (want.Data == nil) {
		t.Fatalf("%q: scanned channel %q data %q, decoded channel %q data %q", body, got.Channel, got.Data, want.Channel, want.Data)
	}
}

// maxNesting is the deepest nesting of arrays and objects in a JSON text.
func maxNesting(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// FuzzFastDecode checks the hand-written scanners against encoding/json:
// a body a scanner accepts decodes to the same requests with the
// reference decoders; a value scanValue accepts is valid JSON, and valid
// JSON within its depth is accepted; a batch response encodes exactly as
// encoding/json encodes it.
func FuzzFastDecode(f *testing.F) {
	f.Add(`{"commands":[{"publish":{"channel":"ok:a","data":{"x":[1,2.5e-3,true,null,"\u00e9\n"]}}}]}`)
	f.Add(" {\n\"commands\" : [ { \"publish\" : { \"data\" : -0 , \"channel\" : \"ok:b\" } } , {\"publish\":{}} ] } \t")
	f.Add(`{"channel":"ok:a","data":"\ud800<>&\u2028"}`)
	f.Add(`{"channel":"ok:a","data":[[[[]]],{}],"channel":"ok:b"}`)
	f.Add(`{"commands":[{"publish":{"channel":"ok:a","data":1}},{"send":{"user":"u","data":2}}]}`)
	f.Add(`{"Channel":"ok:a","data":01}`)
	a, err := New(newFake(), Options{APIKey: testKey, MaxBatchCommands: 8, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		checkScanned(t, a, body)

		b := []byte(body)
		end := scanValue(b, 0)
		switch {
		case end == len(b) && !json.Valid(b):
			t.Fatalf("scanValue accepts invalid JSON %q", body)
		case end > len(b) || end < -1:
			t.Fatalf("scanValue(%q) = %d", body, end)
		case end >= 0 && end < len(b) && !json.Valid(b[:end]):
			t.Fatalf("scanValue accepts invalid prefix %q of %q", b[:end], body)
		case end < 0 && len(b) > 0 && !isSpace(b[0]) && !isSpace(b[len(b)-1]) &&
			json.Valid(b) && maxNesting(b) <= maxScanDepth:
			t.Fatalf("scanValue refuses valid JSON %q", body)
		}

		replies := []commandReply{
			{pos: positionJSON{Offset: uint64(len(body)), Epoch: body}, isPos: true},
			{err: &wire.Error{Code: wire.ErrUnknownChannel, Message: body, Temporary: len(body)%2 == 0}},
			{result: map[string]string{body: body}},
		}
		checkEncoded(t, replies)
	})
}

// checkEncoded fails unless encodeReplies writes what encoding/json
// writes for the same replies.
func checkEncoded(t *testing.T, replies []commandReply) {
	t.Helper()
	ref := batchResponse{make([]batchReply, len(replies))}
	for i := range replies {
		ref.Replies[i] = replies[i].batchReply()
	}
	want, err := json.Marshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := encodeReplies(replies).(encodedJSON)
	if !ok || !bytes.Equal(got, want) {
		t.Fatalf("encoded replies\n%s\nencoding/json\n%s", got, want)
	}
	for _, r := range replies {
		if !r.isPos {
			continue
		}
		// The publish endpoint's response.
		want, err := json.Marshal(r.pos)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendPosition(nil, r.pos); !bytes.Equal(got, want) {
			t.Fatalf("encoded position %s, encoding/json %s", got, want)
		}
	}
}

// TestScanUsualBodies: the bodies backends send take the scanners' path
// (else the speed-up is lost silently) and decode as encoding/json
// decodes them; bodies outside the scanned subset are left to the
// reference decoder.
func TestScanUsualBodies(t *testing.T) {
	a, err := New(newFake(), Options{APIKey: testKey, MaxBatchCommands: 3, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	pub := `{"publish":{"channel":"ok:a","data":{"text":"hi","n":[1,-2.5E+3,0.1],"ok":true,"none":null}}}`
	for _, body := range []string{
		`{"commands":[` + pub + `]}`,
		`{"commands":[` + pub + `,` + pub + `,` + pub + `]}`,
		"\r\n{ \"commands\" :\t[\n" + pub + " ,\n{ \"publish\" : { } } ] }\n",
		`{"commands":[{"publish":{"data":"x","channel":"ok:b"}}]}`,
		`{"commands":[{"publish":{"channel":"","data":null}}]}`,
		`{"commands":[{"publish":{"channel":"ok:a"}}]}`,
	} {
		if _, ok := scanPublishBatch([]byte(body), a.opts.MaxBatchCommands); !ok {
			t.Errorf("batch not scanned: %s", body)
		}
		checkScanned(t, a, body)
	}
	for _, body := range []string{
		`{"channel":"ok:a","data":{"text":"h\"i\\u00e9","list":[[],{},[{}]]}}`,
		` {"data":12,"channel":"ok:a"} `,
		`{"channel":"ok:a"}`,
		`{}`,
	} {
		if !scanPublishRequest([]byte(body), &publishRequest{}) {
			t.Errorf("publish not scanned: %s", body)
		}
		checkScanned(t, a, body)
	}
	// Outside the subset: the reference decoder answers (accepting or
	// refusing).
	for _, body := range []string{
		`{"commands":[` + pub + `,` + pub + `,` + pub + `,` + pub + `]}`, // over the limit
		`{"commands":[]}`,
		`{"commands":[{"send":{"user":"u","data":1}}]}`,
		`{"commands":[{"Publish":{"channel":"ok:a","data":1}}]}`,
		`{"commands":[{"publish":{"channel":"ok:\u0061","data":1}}]}`,
		`{"commands":[{"publish":{"channel":"ok:a","data":1,"data":2}}]}`,
		`{"commands":[{"publish":null}]}`,
		`{"commands":[{"publish":{"channel":"ok:a","data":1}}]} x`,
		`{"commands":[{"publish":{"channel":"ok:a","data":01}}]}`,
		`{"commands":[{"publish":{"channel":"ok:a","data":` + strings.Repeat("[", maxScanDepth+1) + strings.Repeat("]", maxScanDepth+1) + `}}]}`,
		`{"commands":[{"publish":{"channel":"ok:é","data":1}}]}`,
	} {
		if _, ok := scanPublishBatch([]byte(body), a.opts.MaxBatchCommands); ok {
			t.Errorf("batch scanned: %s", body)
		}
	}
	for _, body := range []string{
		`{"channel":"ok:a","data":1} {}`,
		`{"channel":"ok:a","data":1,"extra":2}`,
		`{"channel":"ok:a","data":tru}`,
		`{"channel":"ok:a","data":"\x"}`,
		`{"channel":"ok:a","data":"` + "\x01" + `"}`,
		`{"channel":null,"data":1}`,
		``,
	} {
		if scanPublishRequest([]byte(body), &publishRequest{}) {
			t.Errorf("publish scanned: %q", body)
		}
	}
}

// TestEncodeReplies: a batch's response is what encoding/json writes,
// including strings it escapes.
func TestEncodeReplies(t *testing.T) {
	for _, epoch := range []string{"", "k3Jd9a", `a"b\c`, "<&>", "\u2028é", "\xff", "\x00\x1f"} {
		checkEncoded(t, []commandReply{
			{pos: positionJSON{Offset: 1<<64 - 1, Epoch: epoch}, isPos: true},
			{pos: positionJSON{}, isPos: true},
			{err: &wire.Error{Code: wire.ErrBrokerUnavailable, Message: "retry " + epoch, Temporary: true}},
			{err: &wire.Error{Code: wire.ErrBadRequest, Message: epoch}},
			{result: empty{}},
			{result: struct {
				Nodes []NodeInfo `json:"nodes"`
			}{[]NodeInfo{{Name: epoch}}}},
		})
	}
}

// retainingBackend keeps the data slices it is given, as a hub keeps
// publications in history.
type retainingBackend struct {
	*fakeBackend
	data [][]byte
}

func (rb *retainingBackend) Publish(_ context.Context, _ string, data []byte) (wire.StreamPosition, error) {
	rb.data = append(rb.data, data)
	return wire.StreamPosition{}, nil
}

// TestBodiesAreNotRetained: request bodies are read into reused buffers,
// so what a request published must not change with later requests, for
// bodies of any size, with and without a declared length.
func TestBodiesAreNotRetained(t *testing.T) {
	rb := &retainingBackend{fakeBackend: newFake()}
	a, err := New(rb, Options{APIKey: testKey, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, size := range []int{10, minBodyBuffer, 3 * minBodyBuffer, maxPooledBodyBuffer + 10, 10} {
		for _, lengthKnown := range []bool{true, false} {
			data := fmt.Sprintf(`"%d%s"`, i, strings.Repeat(string(rune('a'+i)), size))
			for _, tc := range []struct{ path, body string }{
				{"/api/publish", `{"channel":"ok:a","data":` + data + `}`},
				{"/api/batch", `{"commands":[{"publish":{"channel":"ok:a","data":` + data + `}}]}`},
				{"/api/batch", `{"commands":[{"publish":{"channel":"ok:a","data":` + data + `}},{"info":{}}]}`},
			} {
				var body io.Reader = strings.NewReader(tc.body)
				if !lengthKnown {
					body = io.MultiReader(body) // hides the length
				}
				req := httptest.NewRequest(http.MethodPost, tc.path, body)
				req.Header.Set("X-API-Key", testKey)
				rec := httptest.NewRecorder()
				a.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), `"error"`) {
					t.Fatalf("%s of %d bytes: %d %s", tc.path, len(tc.body), rec.Code, rec.Body)
				}
				want = append(want, data)
			}
		}
	}
	if len(rb.data) != len(want) {
		t.Fatalf("%d publications, want %d", len(rb.data), len(want))
	}
	for i := range want {
		if string(rb.data[i]) != want[i] {
			t.Fatalf("publication %d changed after its request: %.40q..., want %.40q...", i, rb.data[i], want[i])
		}
	}
}
