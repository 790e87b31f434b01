package main

import (
	"context"
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
