package server

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"time"
)

// A burst is a change in the number of connections of at least
// burstMinConns and burstFraction of the count when memory was last
// released; it has settled once the count has moved by less than a tenth
// of that for memory.release_after_burst.
const (
	burstMinConns = 1000
	burstFraction = 10 // a tenth
)

// burstTracker decides when a burst of connections has settled. With the
// Go runtime's defaults, the heap a burst of connections grows to stays
// resident after the burst: the collector lets the heap reach twice what
// was live at its last cycle, the handshakes of the burst leave garbage
// that no cycle collects while the connections sit idle, and the
// scavenger keeps free memory up to that goal. Once the count is steady
// again, one collection and returning free memory to the OS bring the
// process back to what its connections actually use.
//
// Not safe for concurrent use: the releaser's goroutine owns it.
type burstTracker struct {
	settle time.Duration

	atRelease   int       // connections when memory was last released
	steadyRef   int       // connections when the current steady period began
	steadySince time.Time // when it began
}

func newBurstTracker(settle time.Duration, now time.Time, conns int) *burstTracker {
	return &burstTracker{settle: settle, atRelease: conns, steadyRef: conns, steadySince: now}
}

// observe records the number of connections at now and reports whether
// memory should be released: the count has moved by a burst since the
// last release and has been steady for the settle time.
func (b *burstTracker) observe(now time.Time, conns int) bool {
	burst := max(burstMinConns, b.atRelease/burstFraction)
	if abs(conns-b.steadyRef) >= max(burst/burstFraction, 1) {
		b.steadyRef, b.steadySince = conns, now
		return false
	}
	if abs(conns-b.atRelease) < burst || now.Sub(b.steadySince) < b.settle {
		return false
	}
	b.atRelease, b.steadyRef, b.steadySince = conns, conns, now
	return true
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// releaseMemory collects garbage twice and returns the free heap to the
// OS: the first cycle moves what sync.Pools hold (handshake and read
// buffers sized for the burst's concurrency) to their victim caches, the
// second (debug.FreeOSMemory) frees those too and then returns every free
// page.
func releaseMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}

// memoryReleaser runs a burstTracker over the node's connection count
// and calls release (releaseMemory) when a burst has settled.
type memoryReleaser struct {
	conns   func() int
	release func()
	settle  time.Duration
	log     *slog.Logger
}

// run checks the count four times per settle time until ctx ends. The
// release runs on this goroutine: a garbage collection (concurrent with
// the rest of the process) and returning free pages to the OS.
func (r *memoryReleaser) run(ctx context.Context) {
	t := time.NewTicker(max(r.settle/4, 10*time.Millisecond))
	defer t.Stop()
	b := newBurstTracker(r.settle, time.Now(), r.conns())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			conns := r.conns()
			if !b.observe(now, conns) {
				continue
			}
			start := time.Now()
			r.release()
			r.log.Debug("returned free memory to the OS after a burst of connections settled",
				"connections", conns, "took", time.Since(start).String())
		}
	}
}
