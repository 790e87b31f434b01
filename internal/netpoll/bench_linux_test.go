//go:build linux

package netpoll

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/heraldhq/herald/internal/testwait"
	"golang.org/x/sys/unix"
)

// nopHandler counts closes and bytes; one instance serves many
// connections so it adds nothing per connection.
type nopHandler struct {
	bytes  atomic.Int64
	closes atomic.Int64
}

func (h *nopHandler) OnData(_ *Conn, data []byte) { h.bytes.Add(int64(len(data))) }
func (h *nopHandler) OnClose(*Conn, error)        { h.closes.Add(1) }

// wrappedConn hides the concrete type so a TCP connection takes the
// fallback path (for comparisons).
type wrappedConn struct{ net.Conn }

// dialMany returns n accepted server ends and n client ends.
func dialMany(t testing.TB, ln net.Listener, n int) (servers, clients []net.Conn) {
	t.Helper()
	accepted := make(chan net.Conn, n)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		t.Cleanup(func() { c.Close() })
	}
	for range n {
		c, ok := <-accepted
		if !ok {
			t.Fatal("accept failed")
		}
		servers = append(servers, c)
	}
	return servers, clients
}

// liveMemory returns the live heap and the goroutine stack memory after
// a full collection.
func liveMemory() (heap, stacks uint64) {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// idleCost is what one idle registered connection costs.
type idleCost struct {
	heap, stacks float64 // bytes per connection
	goroutines   int     // goroutines started for all of them
}

// measureIdle registers n idle loopback connections (2n descriptors with
// their client ends) and measures them: memory with the connections
// registered minus memory after they are closed, and goroutines started.
func measureIdle(t testing.TB, n int, fallback bool) idleCost {
	p := newTestPoller(t, Options{})
	servers, _ := dialMany(t, listen(t), n)
	h := &nopHandler{}
	goroutinesBefore := runtime.NumGoroutine()
	conns := make([]*Conn, n)
	for i, s := range servers {
		if fallback {
			s = wrappedConn{s}
		}
		c := register(t, p, s, h)
		if c.Fallback() != fallback {
			t.Fatalf("Fallback() = %v", c.Fallback())
		}
		conns[i] = c
	}
	clear(servers) // epoll: the original net.Conns are closed and garbage now
	if !fallback {
		// Let every registration's first turn (an EAGAIN read) finish.
		testwait.Until(t, "workers idle", func() bool {
			for _, c := range conns {
				if c.epoll.sched.Load() != 0 {
					return false
				}
			}
			return true
		})
	}
	goroutines := runtime.NumGoroutine() - goroutinesBefore
	heapOpen, stacksOpen := liveMemory()
	for _, c := range conns {
		c.Close()
	}
	testwait.Until(t, "OnClose", func() bool { return h.closes.Load() == int64(n) })
	clear(conns)
	if fallback {
		testwait.Until(t, "readers gone", func() bool { return runtime.NumGoroutine() <= goroutinesBefore })
	}
	heapClosed, stacksClosed := liveMemory()
	return idleCost{
		heap:       (float64(heapOpen) - float64(heapClosed)) / float64(n),
		stacks:     (float64(stacksOpen) - float64(stacksClosed)) / float64(n),
		goroutines: goroutines,
	}
}

// TestIdleConnMemory registers 5,000 idle loopback connections and reports
// the memory each one costs while idle, on the epoll path and, for
// comparison, on the goroutine-per-connection fallback.
func TestIdleConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("dials 5,000 connections")
	}
	const n = 5000
	ep := measureIdle(t, n, false)
	t.Logf("idle epoll connection:    %5.0f heap bytes + %5.0f stack bytes (Conn struct %d bytes), %d goroutines for %d connections",
		ep.heap, ep.stacks, unsafe.Sizeof(Conn{}), ep.goroutines, n)
	if ep.goroutines > 0 {
		t.Errorf("%d goroutines started for idle connections", ep.goroutines)
	}
	// Generous bound: a goroutine stack alone would be 8 KiB.
	if ep.heap+ep.stacks > 2048 {
		t.Errorf("%.0f bytes per idle connection", ep.heap+ep.stacks)
	}
	const nfb = 1000
	fb := measureIdle(t, nfb, true)
	t.Logf("idle fallback connection: %5.0f heap bytes + %5.0f stack bytes (includes its net.Conn), %d goroutines for %d connections",
		fb.heap, fb.stacks, fb.goroutines, nfb)
}

func benchEcho(b *testing.B, fallback bool) {
	p := newTestPoller(b, Options{})
	ln := listen(b)
	const conns = 16
	servers, clients := dialMany(b, ln, conns)
	for _, s := range servers {
		if fallback {
			s = wrappedConn{s}
		}
		if _, err := p.Register(s, echoHandler{}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	msg := bytes.Repeat([]byte("m"), 64)
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := clients[int(next.Add(1)-1)%conns]
		buf := make([]byte, len(msg))
		for pb.Next() {
			if _, err := c.Write(msg); err != nil {
				b.Error(err)
				return
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// echoHandler writes back what it reads.
type echoHandler struct{}

func (echoHandler) OnData(c *Conn, data []byte) { c.Write(bytes.Clone(data)) }
func (echoHandler) OnClose(*Conn, error)        {}

// BenchmarkEcho measures a 64-byte round trip over loopback TCP, 16
// connections in parallel.
func BenchmarkEcho(b *testing.B) {
	b.Run("epoll", func(b *testing.B) { benchEcho(b, false) })
	b.Run("fallback", func(b *testing.B) { benchEcho(b, true) })
}

// BenchmarkWriteFanout writes one shared 128-byte buffer to 1,000
// connections per op; the client ends are drained by a second Poller.
// writev/msg shows the coalescing of queued messages; the paced variant
// runs with a 2ms WriteDelay.
func BenchmarkWriteFanout(b *testing.B) {
	b.Run("epoll", func(b *testing.B) { benchFanout(b, false, 0) })
	b.Run("epoll-paced", func(b *testing.B) { benchFanout(b, false, 2*time.Millisecond) })
	b.Run("fallback", func(b *testing.B) { benchFanout(b, true, 0) })
}

func benchFanout(b *testing.B, fallback bool, delay time.Duration) {
	const conns = 1000
	p := newTestPoller(b, Options{WriteDelay: delay})
	sink := newTestPoller(b, Options{})
	servers, clients := dialMany(b, listen(b), conns)
	drain := &nopHandler{}
	for _, c := range clients {
		if _, err := sink.Register(c, drain); err != nil {
			b.Fatal(err)
		}
	}
	out := make([]*Conn, conns)
	for i, s := range servers {
		if fallback {
			s = wrappedConn{s}
		}
		c, err := p.Register(s, &nopHandler{})
		if err != nil {
			b.Fatal(err)
		}
		out[i] = c
	}
	msg := bytes.Repeat([]byte("p"), 128)
	var sent int64
	waitDrained := func() {
		deadline := time.Now().Add(testTimeout)
		for drain.bytes.Load() < sent {
			if time.Now().After(deadline) {
				b.Fatalf("fan-out stalled: %d of %d bytes", drain.bytes.Load(), sent)
			}
			runtime.Gosched()
		}
	}
	before := p.Stats()
	b.SetBytes(int64(len(msg)) * conns)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for _, c := range out {
			if err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
		sent += int64(len(msg)) * conns
		if i%64 == 63 {
			waitDrained()
		}
	}
	waitDrained()
	b.StopTimer()
	st := p.Stats()
	msgs := float64(st.WriteMessages - before.WriteMessages)
	b.ReportMetric(float64(st.Writes-before.Writes)/msgs, "writev/msg")
}

// BenchmarkPacedFanout publishes one 128-byte message to 2,000 loopback
// connections per op at 20, 40 and 60 ops per second (a busy channel's
// subscribers), with the client ends drained by a second Poller in the
// process, and reports the process's CPU time per delivery (both ends)
// and the writes per message for several WriteDelay values. Run it with
// -benchtime 60x or so; ns/op is the pacing interval and is not reported.
func BenchmarkPacedFanout(b *testing.B) {
	for _, rate := range []int{20, 40, 60} {
		for _, d := range []time.Duration{0, 20 * time.Millisecond, 50 * time.Millisecond} {
			b.Run(fmt.Sprintf("rate=%d/delay=%s", rate, d), func(b *testing.B) { benchPacedFanout(b, d, rate) })
		}
	}
}

func benchPacedFanout(b *testing.B, delay time.Duration, rate int) {
	const conns = 2000
	p := newTestPoller(b, Options{WriteDelay: delay})
	sink := newTestPoller(b, Options{})
	servers, clients := dialMany(b, listen(b), conns)
	drain := &nopHandler{}
	for _, c := range clients {
		if _, err := sink.Register(c, drain); err != nil {
			b.Fatal(err)
		}
	}
	out := make([]*Conn, conns)
	for i, s := range servers {
		c, err := p.Register(s, &nopHandler{})
		if err != nil {
			b.Fatal(err)
		}
		out[i] = c
	}
	msg := bytes.Repeat([]byte("p"), 128)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	before := p.Stats()
	cpuBefore := processCPU(b)
	var sent int64
	for b.Loop() {
		<-tick.C
		for _, c := range out {
			if err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
		}
		sent += int64(len(msg)) * conns
	}
	deadline := time.Now().Add(testTimeout)
	for drain.bytes.Load() < sent {
		if time.Now().After(deadline) {
			b.Fatalf("fan-out stalled: %d of %d bytes", drain.bytes.Load(), sent)
		}
		<-tick.C
	}
	cpu := processCPU(b) - cpuBefore
	st := p.Stats()
	msgs := float64(st.WriteMessages - before.WriteMessages)
	b.ReportMetric(float64(cpu)/msgs, "cpu-ns/delivery")
	b.ReportMetric(float64(st.Writes-before.Writes)/msgs, "writev/msg")
	b.ReportMetric(0, "ns/op")
}

// processCPU returns the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
