package server

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/ws"
)

const (
	idleClientsEnv  = "HERALD_IDLE_CLIENTS_ADDR"
	idleClientsNEnv = "HERALD_IDLE_CLIENTS_N"
	idleConns       = 2000
)

var idleHeapProfile = flag.String("idleheapprofile", "", "BenchmarkIdleConnectionMemory writes a heap profile `file` while its connections are held")

// BenchmarkIdleConnectionMemory reports the live Go heap an idle WebSocket
// connection costs the server once connected and subscribed (all to one
// shared channel). The clients run in a child process so that only the
// server's memory is counted:
//
//	go test ./internal/server -run '^$' -bench IdleConnectionMemory -benchtime 3x
//
// Add -memprofilerate 512 -idleheapprofile heap.out and look at the
// profile's inuse_space to see what holds the memory.
func BenchmarkIdleConnectionMemory(b *testing.B) {
	s, err := New(Options{Config: testConfig(nil), Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	defer func() {
		if err := s.Shutdown(ctx); err != nil {
			b.Error(err)
		}
	}()
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	before := liveHeap()
	allocsBefore := heapAllocs()
	rssBefore := processRSS(b)

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestIdleClientsChild$", "-test.v")
	cmd.Env = append(os.Environ(), idleClientsEnv+"="+s.Addr(), idleClientsNEnv+"="+strconv.Itoa(idleConns))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child closes its connections and exits
		if err := cmd.Wait(); err != nil {
			b.Errorf("client process: %v", err)
		}
	}()
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if sc.Text() == "READY" {
			ready = true
			break
		}
	}
	if !ready {
		b.Fatal("client process ended before its connections were ready")
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }() // the rest of the child's output; ends at its exit
	if n := s.node.sessions.Len(); n != idleConns {
		b.Fatalf("server has %d sessions, want %d", n, idleConns)
	}

	allocs := heapAllocs() - allocsBefore
	rss := processRSS(b) - rssBefore
	var after uint64
	for b.Loop() {
		after = liveHeap()
	}
	b.ReportMetric(float64(int64(after)-int64(before))/idleConns, "heap-B/conn")
	// Everything the server allocated to accept, upgrade and subscribe a
	// connection, garbage included: the garbage of a burst of handshakes
	// is what lifts RSS above the live heap.
	b.ReportMetric(float64(allocs)/idleConns, "alloc-B/conn")
	// The process's resident memory, before any forced collection; noisy
	// (the test binary's own memory is in it), a rough guide only.
	b.ReportMetric(float64(rss)/idleConns, "rss-B/conn")
	if *idleHeapProfile != "" {
		f, err := os.Create(*idleHeapProfile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.WriteHeapProfile(f); err != nil {
			b.Fatal(err)
		}
	}
}

// liveHeap collects garbage and returns the bytes of live heap objects.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC() // finalizers queued by the first cycle have run
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// heapAllocs returns the bytes allocated on the heap since the process
// started.
func heapAllocs() uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// processRSS returns the process's resident set size in bytes
// (/proc/self/status VmRSS).
func processRSS(b *testing.B) int64 {
	b.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestIdleClientsChild is the client process of
// BenchmarkIdleConnectionMemory: it connects and subscribes N clients,
// prints READY and holds them until its stdin closes.
func TestIdleClientsChild(t *testing.T) {
	addr := os.Getenv(idleClientsEnv)
	if addr == "" {
		t.Skip("runs only as the client process of BenchmarkIdleConnectionMemory")
	}
	n, err := strconv.Atoi(os.Getenv(idleClientsNEnv))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conns := make([]*ws.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.CloseNow()
		}
	}()
	for i := range n {
		c, _, err := ws.Dial(ctx, "ws://"+addr+"/ws", nil)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		for _, cmd := range []string{
			`{"id":1,"method":"connect","params":{}}`,
			`{"id":2,"method":"subscribe","params":{"channel":"idle"}}`,
		} {
			if err := c.Write(ctx, ws.MessageText, []byte(cmd)); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := c.Read(ctx); err != nil {
				t.Fatal(err)
			} else if len(msg) == 0 || msg[0] != '{' {
				t.Fatalf("unexpected reply %q", msg)
			}
		}
	}
	fmt.Println("READY")
	_, _ = io.Copy(io.Discard, os.Stdin)
}
