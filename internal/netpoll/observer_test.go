package netpoll

import (
	"sync"
	"testing"

	"github.com/heraldhq/herald/internal/testwait"
)

// observingRecorder is a recorder that also implements WriteObserver.
type observingRecorder struct {
	*recorder
	mu      sync.Mutex
	sum     uint64 // sum of n over OnWritten calls
	written uint64 // last running total reported
	bad     bool   // the running total did not equal the sum
}

func (o *observingRecorder) OnWritten(_ *Conn, n int, written uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sum += uint64(n)
	if written != o.sum {
		o.bad = true
	}
	o.written = written
}

func (o *observingRecorder) state() (sum, written uint64, bad bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sum, o.written, o.bad
}

// TestWriteObserver: on both paths, a Handler implementing WriteObserver
// is told about every byte written, its running total matches
// Conn.Totals, and every queued byte is eventually reported written.
func TestWriteObserver(t *testing.T) {
	for _, path := range []string{"epoll", "fallback"} {
		t.Run(path, func(t *testing.T) {
			p := newTestPoller(t, Options{})
			server, client := connPair(t, path)
			obs := &observingRecorder{recorder: newRecorder(false)}
			c := register(t, p, server, obs)
			if path == "epoll" && c.Fallback() {
				t.Skip("epoll unavailable")
			}
			msgs := [][]byte{[]byte("hello "), []byte("observed "), []byte("world")}
			total := 0
			for _, m := range msgs {
				if err := c.Write(m); err != nil {
					t.Fatal(err)
				}
				total += len(m)
			}
			readFull(t, client, total)
			testwait.Until(t, "every byte reported written", func() bool {
				sum, _, _ := obs.state()
				return sum == uint64(total)
			})
			sum, written, bad := obs.state()
			if bad || written != sum {
				t.Fatalf("running total %d inconsistent with the writes (sum %d)", written, sum)
			}
			q, w := c.Totals()
			if q != uint64(total) || w != uint64(total) {
				t.Fatalf("Totals = %d queued, %d written; want %d, %d", q, w, total, total)
			}
			c.Close()
			obs.waitClosed(t)
		})
	}
}
