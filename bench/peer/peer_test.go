package peer

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPublishRejectsBadRequests(t *testing.T) {
	srv := httptest.NewServer(NewMux(http.NotFoundHandler(), func(string, []byte) {}))
	defer srv.Close()
	for _, body := range []string{`{}`, `nope`, `{"channel":"a"}`} {
		resp, err := http.Post(srv.URL+"/publish", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d", body, resp.StatusCode)
		}
	}
	resp, err := http.Get(srv.URL + "/publish")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestBatchAnswersEachCommand: POST /api/batch answers one reply per
// command in order, an error for a command that is not a publish with
// channel and data, and 400 with a JSON error for a malformed or too
// large batch.
func TestBatchAnswersEachCommand(t *testing.T) {
	srv := httptest.NewServer(NewMux(http.NotFoundHandler(), func(string, []byte) {}))
	defer func() {
		srv.Close()
		http.DefaultClient.CloseIdleConnections()
	}()
	post := func(body string) (int, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/api/batch", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := post(`{"commands":[{"publish":{"channel":"a","data":1}},{"publish":{"channel":"a"}},{}]}`)
	var out struct {
		Replies []struct {
			Result *struct{}
			Error  *struct{ Code int }
		}
	}
	if err := json.Unmarshal([]byte(body), &out); code != 200 || err != nil || len(out.Replies) != 3 ||
		out.Replies[0].Result == nil || out.Replies[1].Error == nil || out.Replies[2].Error == nil {
		t.Fatalf("%d %s", code, body)
	}
	tooMany := `{"commands":[` + strings.Repeat(`{"publish":{"channel":"a","data":1}},`, maxBatchCommands) + `{}]}`
	for _, b := range []string{``, `[]`, `{"commands":[]}`, `{"commands":[1]}`, `{"commands":[{"nope":1}]}`, `{"commands":[{}]} x`, tooMany} {
		code, body := post(b)
		var e struct{ Error struct{ Code int } }
		if code != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != 107 {
			t.Errorf("%.40q: %d %s", b, code, body)
		}
	}
}

// FuzzDecodeBatch: whatever the body, a batch is refused or holds 1 to
// maxBatchCommands commands.
func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`{"commands":[{"publish":{"channel":"a","data":{"x":1}}},{}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		cmds, err := decodeBatch(body)
		if err == nil && (len(cmds) == 0 || len(cmds) > maxBatchCommands) {
			t.Fatalf("%d commands from %q", len(cmds), body)
		}
	})
}
