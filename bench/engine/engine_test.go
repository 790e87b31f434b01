package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestEngines checks that every engine echoes messages of each benchmark
// size unchanged, with and without permessage-deflate, and that Broadcast
// reaches every connection, using gorilla's client in this process.
func TestEngines(t *testing.T) {
	for _, deflate := range []bool{false, true} {
		for _, e := range Engines {
			t.Run(deflateName(deflate)+"/"+string(e), func(t *testing.T) {
				s, err := NewServer(Config{Engine: e, Deflate: deflate, Track: true})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				conns, err := DialMany(ctx, newDialer(deflate), s.URL(), 3, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer func() {
					for _, c := range conns {
						c.Close()
					}
				}()
				// The extension each engine agreed to, as the client saw it.
				c, resp, err := newDialer(deflate).DialContext(ctx, s.URL(), nil)
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				ext := resp.Header.Get("Sec-WebSocket-Extensions")
				if deflate != strings.Contains(ext, "permessage-deflate") ||
					(deflate && !(strings.Contains(ext, "server_no_context_takeover") && strings.Contains(ext, "client_no_context_takeover"))) {
					t.Fatalf("Sec-WebSocket-Extensions: %q", ext)
				}
				t.Logf("Sec-WebSocket-Extensions: %q", ext)
				buf := make([]byte, 64<<10)
				for _, size := range []int{16, 1 << 10, 64 << 10} {
					msg := Payload(size)
					if err := conns[0].WriteMessage(websocket.BinaryMessage, msg); err != nil {
						t.Fatal(err)
					}
					if err := readEcho(conns[0], msg, buf[:size]); err != nil {
						t.Fatalf("%d bytes: %v", size, err)
					}
				}
				if err := waitOpen(s, 3); err != nil {
					t.Fatal(err)
				}
				msg := Payload(broadcastSize)
				if err := s.Broadcast(ctx, msg); err != nil {
					t.Fatal(err)
				}
				for i, c := range conns {
					typ, got, err := c.ReadMessage()
					if err != nil || typ != websocket.BinaryMessage || !bytes.Equal(got, msg) {
						t.Fatalf("conn %d: broadcast received as type %d, %d bytes, err %v", i, typ, len(got), err)
					}
				}
			})
		}
	}
}

// TestClientProcess drives the client process through every command
// against herald's event mode, pipelined and not.
func TestClientProcess(t *testing.T) {
	ss := startSession(t, Config{Engine: HeraldEvent, Deflate: true}, 4, "echo")
	for _, cmd := range []string{"echo 16 40 1", "echo 1024 40 8", "echo 65536 8 2"} {
		if err := ss.cl.do(cmd); err != nil {
			ss.stop(t)
			t.Fatal(err)
		}
	}
	if err := ss.cl.do("echo 0 1 1"); err == nil {
		t.Error("echo of 0-byte messages: no error")
	}
	ss.stop(t)

	ss = startSession(t, Config{Engine: GWS}, 5, "sink")
	defer ss.stop(t)
	for range 3 {
		if err := ss.srv.Broadcast(context.Background(), Payload(100)); err != nil {
			t.Fatal(err)
		}
		if err := ss.cl.waitGot(); err != nil {
			t.Fatal(err)
		}
	}
}

// Environment of TestIdleMemory.
const (
	idleConnsEnv   = "HERALD_BENCH_IDLE_CONNS"   // connections per engine; unset: skipped
	idleEnginesEnv = "HERALD_BENCH_IDLE_ENGINES" // comma-separated subset of Engines
)

// TestIdleMemory measures what an idle upgraded connection costs each
// engine. It runs only with HERALD_BENCH_IDLE_CONNS set (15000 for the
// published figures): for each engine a fresh server process (this binary
// re-executed) samples its memory, this process opens the connections
// (their source addresses spread over 127.0.0.2-127.0.0.254), and the
// server samples again once they are all upgraded and idle. It logs, per
// connection, the Go heap, the goroutine stacks, both together, the
// goroutines and the process RSS. Nothing is asserted: these are
// measurements.
func TestIdleMemory(t *testing.T) {
	nStr := os.Getenv(idleConnsEnv)
	if nStr == "" {
		t.Skipf("set %s (for example 15000) to measure", idleConnsEnv)
	}
	n, err := strconv.Atoi(nStr)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: not a positive count", idleConnsEnv, nStr)
	}
	engines := Engines
	if list := os.Getenv(idleEnginesEnv); list != "" {
		engines = nil
		for name := range strings.SplitSeq(list, ",") {
			e, err := ParseEngine(strings.TrimSpace(name))
			if err != nil {
				t.Fatal(err)
			}
			engines = append(engines, e)
		}
	}
	var ips []net.IP
	for i := 2; i <= 254; i++ {
		ips = append(ips, net.IPv4(127, 0, 0, byte(i)))
	}
	var results []IdleResult
	for _, e := range engines {
		t.Run(string(e), func(t *testing.T) {
			r, err := measureIdle(e, n, ips)
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, r)
		})
	}
	t.Logf("idle connections: %d per engine; figures per connection, (loaded - baseline) / %d", n, n)
	t.Logf("%-16s %10s %10s %12s %10s %10s", "engine", "heap B", "stack B", "heap+stack B", "gorout.", "RSS B")
	for _, r := range results {
		heap := r.PerConn(func(m MemorySample) uint64 { return m.HeapObjects })
		stack := r.PerConn(func(m MemorySample) uint64 { return m.Stacks })
		t.Logf("%-16s %10.0f %10.0f %12.0f %10.3f %10.0f", r.Engine, heap, stack, heap+stack,
			r.PerConn(func(m MemorySample) uint64 { return m.Goroutines }),
			r.PerConn(func(m MemorySample) uint64 { return m.RSS }))
	}
}

// measureIdle runs one engine's idle-memory measurement: the server in a
// child process, n client connections in this one.
func measureIdle(e Engine, n int, ips []net.IP) (IdleResult, error) {
	ch, err := startChild("idle-server:" + string(e))
	if err != nil {
		return IdleResult{}, err
	}
	defer ch.stop()
	line, err := ch.readLine()
	if err != nil {
		return IdleResult{}, fmt.Errorf("server process: %w", err)
	}
	url, ok := strings.CutPrefix(line, "ready ")
	if !ok {
		return IdleResult{}, fmt.Errorf("server process: %s", line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Small client buffers: this process holds all the clients.
	d := &websocket.Dialer{ReadBufferSize: 1 << 10, WriteBufferSize: 1 << 10}
	conns, err := DialMany(ctx, d, url, n, ips)
	if err != nil {
		return IdleResult{}, err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err := ch.send("wait " + strconv.Itoa(n)); err != nil {
		return IdleResult{}, err
	}
	if line, err = ch.readLine(); err != nil {
		return IdleResult{}, fmt.Errorf("server process: %w", err)
	}
	js, ok := strings.CutPrefix(line, "result ")
	if !ok {
		return IdleResult{}, fmt.Errorf("server process: %s", line)
	}
	var r IdleResult
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		return IdleResult{}, fmt.Errorf("server process result: %w", err)
	}
	return r, nil
}

// TestIdleServerProcess runs the idle-memory machinery at a small scale
// for two engines, checking that the server process counts the
// connections and reports a plausible sample.
func TestIdleServerProcess(t *testing.T) {
	for _, e := range []Engine{HeraldEvent, Gorilla} {
		r, err := measureIdle(e, 20, nil)
		if err != nil {
			t.Fatal(e, err)
		}
		if r.Engine != e || r.Conns != 20 || r.Loaded.RSS == 0 || r.Loaded.HeapObjects == 0 {
			t.Fatalf("%s: implausible result %+v", e, r)
		}
		if e == Gorilla && r.Loaded.Goroutines < r.Baseline.Goroutines+20 {
			t.Errorf("gorilla: %d goroutines with 20 connections, %d before", r.Loaded.Goroutines, r.Baseline.Goroutines)
		}
	}
}
