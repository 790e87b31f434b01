package engine

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// processCPU returns the CPU time (user + system) this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportServerCPU reports the server process's CPU time per operation
// since start: unlike ns/op it does not count time spent waiting for the
// CPU, which on a loaded machine varies far more than the work done.
func reportServerCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "srv-cpu-ns/op")
}

// session is a server engine with the shared client process connected to
// it.
type session struct {
	srv *Server
	cl  *child
}

// startSession starts cfg's engine and has the client process open conns
// connections to it in mode ("echo" or "sink"); with waitOpen it also
// waits until the server counts them all.
func startSession(tb testing.TB, cfg Config, conns int, mode string) *session {
	tb.Helper()
	cfg.Track = true
	srv, err := NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	cl := getSharedClient(tb)
	deflate := 0
	if cfg.Deflate {
		deflate = 1
	}
	if err := cl.do(fmt.Sprintf("dial %s %d %d %s", srv.URL(), conns, deflate, mode)); err != nil {
		srv.Close()
		tb.Fatal(err)
	}
	ss := &session{srv: srv, cl: cl}
	if err := waitOpen(srv, int64(conns)); err != nil {
		ss.stop(tb)
		tb.Fatal(err)
	}
	return ss
}

// waitOpen polls until the server counts n open connections.
func waitOpen(s *Server, n int64) error {
	deadline := time.Now().Add(30 * time.Second)
	for s.Open() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("server has %d of %d connections after 30 s", s.Open(), n)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	return nil
}

func (ss *session) stop(tb testing.TB) {
	tb.Helper()
	err := ss.cl.do("close")
	ss.srv.Close()
	if err != nil {
		tb.Fatal(err)
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func deflateName(on bool) string {
	if on {
		return "deflate"
	}
	return "plain"
}

// BenchmarkEcho measures one message's round trip over loopback TCP: the
// client process sends a binary message on one connection, the engine
// echoes it, the client reads and checks it, b.N times in a row. ns/op is
// the round trip; MB/s counts the message once; allocs/op and B/op are the
// server process's only (the client runs in another process).
func BenchmarkEcho(b *testing.B) {
	for _, size := range []int{16, 1 << 10, 64 << 10} {
		for _, deflate := range []bool{false, true} {
			for _, e := range Engines {
				b.Run(sizeName(size)+"/"+deflateName(deflate)+"/"+string(e), func(b *testing.B) {
					ss := startSession(b, Config{Engine: e, Deflate: deflate}, 1, "echo")
					defer ss.stop(b)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					b.ResetTimer()
					cpu := processCPU(b)
					if err := ss.cl.do(fmt.Sprintf("echo %d %d 1", size, b.N)); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					reportServerCPU(b, cpu)
				})
			}
		}
	}
}

// Concurrent echo: connections, and messages each keeps in flight.
const (
	concurrentConns  = 100
	concurrentWindow = 16
)

// BenchmarkEchoConcurrent measures echo throughput with 100 connections,
// each keeping up to 16 messages in flight: b.N messages in all, spread
// evenly. msgs/s is the figure to compare; allocs/op are the server's per
// message.
func BenchmarkEchoConcurrent(b *testing.B) {
	for _, size := range []int{16, 1 << 10} {
		for _, e := range Engines {
			b.Run(sizeName(size)+"/"+string(e), func(b *testing.B) {
				ss := startSession(b, Config{Engine: e}, concurrentConns, "echo")
				defer ss.stop(b)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				cpu := processCPU(b)
				if err := ss.cl.do(fmt.Sprintf("echo %d %d %d", size, b.N, concurrentWindow)); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				reportServerCPU(b, cpu)
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

const (
	broadcastConns = 1000
	broadcastSize  = 512
)

// BenchmarkBroadcast sends one 512-byte message to 1,000 connections with
// each engine's encode-once facility (see Server.Broadcast) and waits
// until the client process reports that every connection has received
// it (its 1,000 readers are goroutines, the same for every engine). ns/op
// is one broadcast's delivery time; ns/conn divides it by 1,000;
// send-ns/conn is the time spent in Broadcast itself (writing for gorilla
// and herald's blocking mode, queueing for herald's event mode and gws,
// whose writers then run on other goroutines), per connection.
func BenchmarkBroadcast(b *testing.B) {
	for _, deflate := range []bool{false, true} {
		for _, e := range Engines {
			b.Run(deflateName(deflate)+"/"+string(e), func(b *testing.B) {
				ss := startSession(b, Config{Engine: e, Deflate: deflate}, broadcastConns, "sink")
				defer ss.stop(b)
				payload := Payload(broadcastSize)
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				cpu := processCPU(b)
				var sending time.Duration
				for range b.N {
					start := time.Now()
					if err := ss.srv.Broadcast(ctx, payload); err != nil {
						b.Fatal(err)
					}
					sending += time.Since(start)
					if err := ss.cl.waitGot(); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				reportServerCPU(b, cpu)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*broadcastConns), "ns/conn")
				b.ReportMetric(float64(sending.Nanoseconds())/float64(b.N*broadcastConns), "send-ns/conn")
			})
		}
	}
}
