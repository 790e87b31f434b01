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
		// Node.Shutdown in centrifuge 0.15 leaves these running: its
		// unsubscribe workers, its history cleanup loop and the metrics
		// aggregator of FZambia/eagle.
		goleak.IgnoreAnyFunction("github.com/centrifugal/centrifuge/internal/dissolve.(*Dissolver).runWorker"),
		goleak.IgnoreAnyFunction("github.com/centrifugal/centrifuge.(*historyHub).expireStreams"),
		goleak.IgnoreAnyFunction("github.com/FZambia/eagle.(*Eagle).aggregate"),
	)...)
}

// TestServesCentrifugeProtocol drives the server with the load generator
// the comparison uses: publications from HTTP (one request each and in
// batches) and from client connections reach every subscriber once, and
// echo round trips work.
func TestServesCentrifugeProtocol(t *testing.T) {
	node, err := newNode()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newMux(node))
	defer func() {
		srv.CloseClientConnections()
		srv.Close()
		http.DefaultClient.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := node.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	base := loadgen.Config{
		URL: url, Protocol: loadgen.ProtocolCentrifuge, Conns: 6, Channels: 6, Shared: true,
		Rates: []int{200}, Step: 500 * time.Millisecond, MaxP99: time.Minute, MetricsURL: srv.URL + "/metrics",
	}
	for _, c := range []struct {
		name string
		cfg  func(loadgen.Config) loadgen.Config
	}{
		{"http", func(c loadgen.Config) loadgen.Config { return c }},
		{"batch", func(c loadgen.Config) loadgen.Config {
			c.PublishBatchInterval, c.Publishers = 5*time.Millisecond, 2
			return c
		}},
		{"client connections", func(c loadgen.Config) loadgen.Config {
			c.PublishVia, c.Publishers, c.PublishWindow = "ws", 2, 8
			return c
		}},
	} {
		res, err := loadgen.Run(context.Background(), c.cfg(base))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		st := res.Steps[0]
		if st.Published < 50 || st.Delivered != st.Expected || st.Lost != 0 || st.Duplicates != 0 || st.PublishErrors != 0 {
			t.Fatalf("%s: step %+v", c.name, st)
		}
	}
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: url, Protocol: loadgen.ProtocolCentrifuge, Mode: loadgen.ModeEcho, Conns: 3, Duration: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Echo.RoundTrips == 0 || res.Echo.Errors != 0 {
		t.Fatalf("echo %+v", res.Echo)
	}
}
