package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/loadgen"
	"github.com/heraldhq/herald/internal/server"
)

// startBenchServer runs an in-process herald with the bench namespace and
// the TCP transport.
func startBenchServer(t *testing.T) *server.Server {
	t.Helper()
	c := config.Default()
	c.Listen = "127.0.0.1:0"
	c.TCPListen = "127.0.0.1:0"
	c.Demo.Enabled = false
	c.DrainTimeout = 0
	c.ShutdownTimeout = 5 * time.Second
	c.Namespaces = []config.Namespace{{Name: "bench", AllowPublish: true, AllowAnonymous: true}}
	s, err := server.New(server.Options{Config: c, Version: "test", Logger: slog.New(slog.DiscardHandler), Out: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func runBench(t *testing.T, args ...string) (int, *loadgen.Result, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), nil, Env{Args: append([]string{"bench"}, args...), Stdout: &stdout, Stderr: &stderr})
	if code != 0 {
		return code, nil, stderr.String()
	}
	var res loadgen.Result
	if slices.Contains(args, "--json") {
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("output is not a JSON result: %v\n%s", err, stdout.String())
		}
	}
	return code, &res, stdout.String() + stderr.String()
}

func TestBenchFanoutAgainstHerald(t *testing.T) {
	s := startBenchServer(t)
	plot := filepath.Join(t.TempDir(), "run.svg")
	code, res, out := runBench(t, "--url", "ws://"+s.Addr()+"/ws", "--api-key", s.APIKey(),
		"--conns", "20", "--rate", "50,100", "--step", "1s", "--json", "--plot", plot,
		"--server-pid", strconv.Itoa(os.Getpid()), "--metrics-url", "http://"+s.Addr()+"/metrics", "--max-p99", "1m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	if res.Connected != 20 || res.ConnectErr != 0 || len(res.Steps) != 2 {
		t.Fatalf("connected %d, errors %d (%s), steps %d", res.Connected, res.ConnectErr, res.FirstConnectError, len(res.Steps))
	}
	for _, st := range res.Steps {
		if st.Published == 0 || st.Expected != 20*st.Published || st.Delivered != st.Expected || st.Lost != 0 || st.Duplicates != 0 {
			t.Fatalf("step %+v", st)
		}
		if st.ServerRSS == 0 || st.Latency.Count != st.Delivered {
			t.Fatalf("step without server figures or latencies: %+v", st)
		}
	}
	svg, err := os.ReadFile(plot)
	if err != nil || !bytes.HasPrefix(svg, []byte("<svg")) {
		t.Fatalf("plot: %v %.40q", err, svg)
	}
}

func TestBenchPublishViaWebSocket(t *testing.T) {
	s := startBenchServer(t)
	code, res, out := runBench(t, "--url", "ws://"+s.Addr()+"/ws", "--conns", "10", "--channels", "10", "--shared",
		"--publish-via", "ws", "--publishers", "2", "--rate", "100", "--step", "1s", "--json", "--max-p99", "1m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	st := res.Steps[0]
	if st.Published == 0 || st.Delivered != st.Expected || st.Lost != 0 {
		t.Fatalf("step %+v", st)
	}
}

func TestBenchEchoAndIdle(t *testing.T) {
	s := startBenchServer(t)
	url := "ws://" + s.Addr() + "/ws"
	code, res, out := runBench(t, "--url", url, "--mode", "echo", "--conns", "5", "--duration", "500ms", "--json")
	if code != 0 {
		t.Fatalf("echo: exit %d: %s", code, out)
	}
	if res.Echo == nil || res.Echo.RoundTrips == 0 || res.Echo.Errors != 0 || res.Echo.Latency.Count != res.Echo.RoundTrips {
		t.Fatalf("echo result %+v", res.Echo)
	}
	code, res, out = runBench(t, "--url", url, "--mode", "idle", "--conns", "10", "--duration", "100ms", "--json",
		"--server-pid", strconv.Itoa(os.Getpid()), "--metrics-url", "http://"+s.Addr()+"/metrics")
	if code != 0 {
		t.Fatalf("idle: exit %d: %s", code, out)
	}
	if res.Idle == nil || res.Idle.RSS == 0 || res.Idle.Runtime.HeapInuse == 0 || res.Idle.Runtime.Goroutines == 0 {
		t.Fatalf("idle result %+v", res.Idle)
	}
	// The human-readable form names the figures.
	code, _, out = runBench(t, "--url", url, "--mode", "idle", "--conns", "2", "--duration", "10ms", "--quiet")
	if code != 0 || !strings.Contains(out, "idle: server RSS") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--ramp", "10:5:1"},
		{"--ramp", "1:2"},
		{"--rate", "0"},
		{"--rate", "10,x"},
		{"extra"},
	} {
		if code, _, out := runBench(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, out)
		}
	}
	code, _, out := runBench(t, "--url", "tcp://127.0.0.1:1")
	if code != 1 || !strings.Contains(out, "needs PublishURL") {
		t.Errorf("tcp:// without --publish-url: exit %d: %s", code, out)
	}
}

func TestBenchOverTCPTransport(t *testing.T) {
	s := startBenchServer(t)
	if s.TCPAddr() == "" {
		t.Fatal("no TCP listener")
	}
	code, res, out := runBench(t, "--url", "tcp://"+s.TCPAddr(), "--publish-url", "http://"+s.Addr()+"/api/publish",
		"--api-key", s.APIKey(), "--conns", "10", "--rate", "100", "--step", "1s", "--json", "--max-p99", "1m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	st := res.Steps[0]
	if res.Connected != 10 || st.Published == 0 || st.Delivered != st.Expected || st.Lost != 0 || st.Duplicates != 0 {
		t.Fatalf("connected %d, step %+v", res.Connected, st)
	}
	code, res, out = runBench(t, "--url", "tcp://"+s.TCPAddr(), "--mode", "echo", "--conns", "3", "--duration", "300ms", "--json")
	if code != 0 || res.Echo.RoundTrips == 0 || res.Echo.Errors != 0 {
		t.Fatalf("echo over TCP: exit %d: %+v %s", code, res.Echo, out)
	}
}

func TestParseRates(t *testing.T) {
	got, err := parseRates("", "10000:50000:10000")
	if err != nil || !slices.Equal(got, []int{10000, 20000, 30000, 40000, 50000}) {
		t.Fatalf("ramp = %v, %v", got, err)
	}
	got, err = parseRates("5, 7", "")
	if err != nil || !slices.Equal(got, []int{5, 7}) {
		t.Fatalf("rates = %v, %v", got, err)
	}
}
