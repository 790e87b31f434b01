package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/loadgen"
	"github.com/heraldhq/herald/internal/testnode"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(testnode.IgnorePoller(),
		// A peer's hub lives as long as its process, and so does the
		// process-wide poller the load generator's subscribers use.
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/bench/cmd/peer.(*gorillaHub).run"),
	)...)
}

// TestPeersSpeakRawProtocol drives each peer with the load generator the
// comparison uses: every publication reaches every subscriber once, and
// echo round trips work.
func TestPeersSpeakRawProtocol(t *testing.T) {
	for _, impl := range []string{"gorilla", "gws"} {
		t.Run(impl, func(t *testing.T) {
			var b broker
			if impl == "gorilla" {
				b = newGorillaHub(1024)
			} else {
				b = newGWSHub()
			}
			srv := httptest.NewServer(newMux(b))
			defer func() {
				srv.CloseClientConnections()
				srv.Close()
				http.DefaultClient.CloseIdleConnections()
			}()
			url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
			res, err := loadgen.Run(context.Background(), loadgen.Config{
				URL: url, Protocol: loadgen.ProtocolRaw, Conns: 6, Channels: 3, Shared: true,
				Rates: []int{100}, Step: 500 * time.Millisecond, MaxP99: time.Minute,
				MetricsURL: srv.URL + "/metrics",
			})
			if err != nil {
				t.Fatal(err)
			}
			st := res.Steps[0]
			if st.Published == 0 || st.Delivered != st.Expected || st.Lost != 0 || st.Duplicates != 0 || st.PublishErrors != 0 {
				t.Fatalf("fanout step %+v", st)
			}
			// Publishing over client connections, several commands in
			// flight: every pub carries an id and is counted when the
			// server's {"id":N} answer arrives.
			res, err = loadgen.Run(context.Background(), loadgen.Config{
				URL: url, Protocol: loadgen.ProtocolRaw, Conns: 6, Channels: 6, Shared: true,
				PublishVia: "ws", Publishers: 2, PublishWindow: 8,
				Rates: []int{400}, Step: 500 * time.Millisecond, MaxP99: time.Minute,
			})
			if err != nil {
				t.Fatal(err)
			}
			st = res.Steps[0]
			if st.Published < 150 || st.Delivered != st.Expected || st.Lost != 0 || st.Duplicates != 0 || st.PublishErrors != 0 {
				t.Fatalf("pipelined publishing step %+v", st)
			}
			// Publishing in batches through POST /api/batch: every
			// publication is answered in the reply list and delivered.
			res, err = loadgen.Run(context.Background(), loadgen.Config{
				URL: url, Protocol: loadgen.ProtocolRaw, Conns: 6, Channels: 6, Shared: true,
				PublishBatchInterval: 5 * time.Millisecond, Publishers: 2,
				Rates: []int{400}, Step: 500 * time.Millisecond, MaxP99: time.Minute,
			})
			if err != nil {
				t.Fatal(err)
			}
			st = res.Steps[0]
			if st.Published < 150 || st.Delivered != st.Expected || st.Lost != 0 || st.Duplicates != 0 || st.PublishErrors != 0 {
				t.Fatalf("batch publishing step %+v", st)
			}
			res, err = loadgen.Run(context.Background(), loadgen.Config{
				URL: url, Protocol: loadgen.ProtocolRaw, Mode: loadgen.ModeEcho, Conns: 3, Duration: 300 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Echo.RoundTrips == 0 || res.Echo.Errors != 0 {
				t.Fatalf("echo %+v", res.Echo)
			}
		})
	}
}

func TestPublishRejectsBadRequests(t *testing.T) {
	srv := httptest.NewServer(newMux(newGWSHub()))
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
	srv := httptest.NewServer(newMux(newGWSHub()))
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
