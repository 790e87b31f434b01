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
	"github.com/heraldhq/herald/internal/testcert"
)

// A run over several processes starts copies of the running executable
// with benchChildArg; in this package's tests that executable is the test
// binary, which then acts as the child instead of running tests.
func init() {
	if len(os.Args) >= 3 && os.Args[1] == "bench" && os.Args[2] == benchChildArg {
		os.Exit(Run(context.Background(), nil, Env{Args: os.Args[1:], Environ: os.Environ(),
			Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin}))
	}
}

// startBenchServer runs an in-process herald with the bench namespace and
// the TCP transport.
func startBenchServer(t *testing.T) *server.Server {
	t.Helper()
	return startBenchServerWith(t, func(*config.Config) {})
}

func startBenchServerWith(t *testing.T, edit func(*config.Config)) *server.Server {
	t.Helper()
	c := config.Default()
	c.Listen = "127.0.0.1:0"
	c.TCPListen = "127.0.0.1:0"
	c.Demo.Enabled = false
	c.DrainTimeout = 0
	c.ShutdownTimeout = 5 * time.Second
	c.Namespaces = []config.Namespace{{Name: "bench", AllowPublish: true, AllowAnonymous: true}}
	edit(c)
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

// TestBenchPublishBatches publishes through herald's /api/batch: every
// publication of every batch is delivered once and counted.
func TestBenchPublishBatches(t *testing.T) {
	s := startBenchServer(t)
	code, res, out := runBench(t, "--url", "ws://"+s.Addr()+"/ws", "--api-key", s.APIKey(), "--conns", "10", "--channels", "10", "--shared",
		"--publish-batch", "5ms", "--publishers", "2", "--rate", "400", "--step", "1s", "--json", "--max-p99", "1m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	st := res.Steps[0]
	if st.Published < 300 || st.PublishErrors != 0 || st.Delivered != st.Expected || st.Lost != 0 || st.Duplicates != 0 {
		t.Fatalf("step %+v", st)
	}
	if code, _, out := runBench(t, "--url", "ws://"+s.Addr()+"/ws", "--publish-via", "ws", "--publish-batch", "5ms"); code == 0 ||
		!strings.Contains(out, "batch") {
		t.Fatalf("batches over ws: exit %d: %s", code, out)
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

func TestBenchProcsSplitsConnections(t *testing.T) {
	s := startBenchServer(t)
	code, res, out := runBench(t, "--url", "ws://"+s.Addr()+"/ws", "--api-key", s.APIKey(), "--procs", "2",
		"--conns", "20", "--channels", "2", "--rate", "40,80", "--step", "1s", "--baseline", "200ms", "--json",
		"--server-pid", strconv.Itoa(os.Getpid()), "--max-p99", "1m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	if res.Procs != 2 || res.Connected != 20 || res.ConnectErr != 0 || len(res.Steps) != 2 {
		t.Fatalf("procs %d, connected %d, errors %d (%s), steps %d", res.Procs, res.Connected, res.ConnectErr,
			res.FirstConnectError, len(res.Steps))
	}
	for _, st := range res.Steps {
		// Both processes' subscribers are counted: every publication
		// reaches the 10 subscribers of its channel.
		if st.Published == 0 || st.Expected != 10*st.Published || st.Delivered != st.Expected || st.Lost != 0 || st.Duplicates != 0 {
			t.Fatalf("step %+v", st)
		}
		// Both processes' latencies are merged.
		if st.Latency.Count != st.Delivered || !st.OK {
			t.Fatalf("latencies %d of %d deliveries: %+v", st.Latency.Count, st.Delivered, st)
		}
	}
	if res.Disconnects != 0 || len(res.Series) == 0 {
		t.Fatalf("disconnects %d, %d points", res.Disconnects, len(res.Series))
	}
	if n := benchChildren(t); n != 0 {
		t.Fatalf("%d bench processes left after the run", n)
	}
}

func TestBenchProcsEndWithTheRun(t *testing.T) {
	s := startBenchServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		done <- Run(ctx, nil, Env{Args: []string{"bench", "--url", "ws://" + s.Addr() + "/ws", "--api-key", s.APIKey(),
			"--procs", "3", "--conns", "6", "--rate", "10", "--step", "1m", "--quiet", "--json"}, Stdout: &stdout, Stderr: &stderr})
	}()
	// Interrupt the run once its other processes are running.
	deadline := time.Now().Add(20 * time.Second)
	for benchChildren(t) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the bench processes did not start: %s", stderr.String())
		}
		select {
		case code := <-done:
			t.Fatalf("run ended early with %d: %s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the interrupted run did not end")
	}
	if n := benchChildren(t); n != 0 {
		t.Fatalf("%d bench processes outlived the interrupted run", n)
	}
}

// benchChildren counts this process's children started as bench
// processes (including any not reaped yet).
func benchChildren(t *testing.T) int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	n := 0
	me := strconv.Itoa(os.Getpid())
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		cmdline, err1 := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		stat, err2 := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err1 != nil || err2 != nil || !bytes.Contains(cmdline, []byte(benchChildArg)) {
			continue
		}
		// Field 4 of stat, after the parenthesised command name, is the
		// parent's pid.
		i := bytes.LastIndexByte(stat, ')')
		if f := strings.Fields(string(stat[i+1:])); len(f) > 1 && f[1] == me {
			n++
		}
	}
	return n
}

// TLS connections take the poller's portable path (a reading goroutine
// each); the accounting is the same.
func TestBenchOverTLS(t *testing.T) {
	certFile, keyFile := testcert.New(t, "127.0.0.1").Files(t)
	s := startBenchServerWith(t, func(c *config.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
	})
	for _, target := range []string{"wss://" + s.Addr() + "/ws", "tcps://" + s.TCPAddr()} {
		code, res, out := runBench(t, "--url", target, "--publish-url", "https://"+s.Addr()+"/api/publish",
			"--api-key", s.APIKey(), "--insecure-tls", "--conns", "6", "--rate", "50", "--step", "500ms", "--json", "--max-p99", "1m")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", target, code, out)
		}
		st := res.Steps[0]
		if res.Connected != 6 || st.Published == 0 || st.Delivered != st.Expected || st.Lost != 0 || st.Duplicates != 0 {
			t.Fatalf("%s: connected %d, step %+v", target, res.Connected, st)
		}
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
