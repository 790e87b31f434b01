package loadgen

import (
	"runtime"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// seqWindowBits is how far behind the newest sequence number a
// publication may arrive and still be told apart from a duplicate.
// Publishers running concurrently reach the server slightly out of order,
// so a subscriber sees small reorderings that are neither loss nor
// duplication.
const seqWindowBits = 4096

// seqWindow accounts for the sequence numbers one subscriber received on
// one channel: distinct numbers and duplicates. Numbers start at 1. It is
// a sliding bitmap of seqWindowBits starting at base; a number that falls
// below base arrived more than seqWindowBits late and is counted as a
// duplicate (it cannot be told apart from one any more).
//
// Not safe for concurrent use: each subscriber's reader owns its windows.
type seqWindow struct {
	base     uint64 // lowest number still tracked; all below are settled
	bits     [seqWindowBits / 64]uint64
	distinct uint64
	dups     uint64
}

func newSeqWindow() *seqWindow { return &seqWindow{base: 1} }

// add records one received number and reports whether it was new.
func (w *seqWindow) add(seq uint64) bool {
	if seq < w.base {
		w.dups++
		return false
	}
	if seq >= w.base+seqWindowBits {
		w.slide(seq - seqWindowBits + 1)
	}
	// The bitmap is a ring indexed by the number itself, so sliding never
	// moves words: it only clears the ones that leave the window.
	i, m := (seq/64)%(seqWindowBits/64), uint64(1)<<(seq%64)
	if w.bits[i]&m != 0 {
		w.dups++
		return false
	}
	w.bits[i] |= m
	w.distinct++
	return true
}

// slide moves base up to newBase, forgetting the bits that leave the
// window (their publications are settled: received or lost).
func (w *seqWindow) slide(newBase uint64) {
	if newBase-w.base >= seqWindowBits {
		w.bits = [seqWindowBits / 64]uint64{}
		w.base = newBase
		return
	}
	for s := w.base; s < newBase; s++ {
		w.bits[(s/64)%(seqWindowBits/64)] &^= 1 << (s % 64)
	}
	w.base = newBase
}

// Latency histograms record microseconds from 1 µs to 60 s with three
// significant digits.
const (
	histMin    = 1
	histMax    = 60_000_000
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// latencyRecorder collects latencies from many goroutines. Recording goes
// to one of several shards, each with its own lock, so recorders rarely
// contend, and each value is recorded once, into the shard's current
// histogram. Taking the figures of a second or of a step folds every
// shard's current histogram into both the per-second and the per-step
// accumulators (a merge per shard per take, not a second record per
// value), then returns and resets the one asked for.
//
// Safe for concurrent use.
type latencyRecorder struct {
	shards []latencyShard
}

type latencyShard struct {
	mu     sync.Mutex
	cur    *hdrhistogram.Histogram
	step   *hdrhistogram.Histogram
	second *hdrhistogram.Histogram
	_      [32]byte // keep shards' locks on separate cache lines
}

// latencyShards is the number of shards a run records into: enough that
// the goroutines running at once (at most GOMAXPROCS) rarely share one,
// and no more, since every shard's histograms are merged and reset once
// per second (each walks all its buckets, tens of thousands).
func latencyShards() int {
	return 4 * runtime.GOMAXPROCS(0)
}

func newLatencyRecorder(shards int) *latencyRecorder {
	r := &latencyRecorder{shards: make([]latencyShard, max(shards, 1))}
	for i := range r.shards {
		r.shards[i].cur = newHist()
		r.shards[i].step = newHist()
		r.shards[i].second = newHist()
	}
	return r
}

// clampMicros converts a latency in nanoseconds to the histograms' range.
func clampMicros(ns int64) int64 {
	return min(max(ns/1000, histMin), histMax)
}

// record adds one latency to the shard chosen by key (a connection index).
func (r *latencyRecorder) record(key int, d time.Duration) {
	r.recordNanos(key, int64(d))
}

// recordNanos adds one latency in nanoseconds.
func (r *latencyRecorder) recordNanos(key int, ns int64) {
	us := clampMicros(ns)
	s := &r.shards[key%len(r.shards)]
	s.mu.Lock()
	_ = s.cur.RecordValue(us)
	s.mu.Unlock()
}

// fold moves the shard's current values into both accumulators; s.mu held.
func (s *latencyShard) fold() {
	if s.cur.TotalCount() == 0 {
		return
	}
	s.step.Merge(s.cur)
	s.second.Merge(s.cur)
	s.cur.Reset()
}

// takeSecond returns the merged per-second histogram and resets it.
func (r *latencyRecorder) takeSecond() *hdrhistogram.Histogram {
	out := newHist()
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.fold()
		out.Merge(s.second)
		s.second.Reset()
		s.mu.Unlock()
	}
	return out
}

// takeStep returns the merged step histogram and resets it.
func (r *latencyRecorder) takeStep() *hdrhistogram.Histogram {
	out := newHist()
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.fold()
		out.Merge(s.step)
		s.step.Reset()
		s.mu.Unlock()
	}
	return out
}

// Latency is a latency distribution summary in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}
