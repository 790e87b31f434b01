package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestBurstTracker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		at      time.Duration
		conns   int
		release bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"a connection storm, released once it is steady", []step{
			{time.Second, 5000, false},
			{2 * time.Second, 15000, false},
			{4 * time.Second, 15000, false},
			{6 * time.Second, 15020, false}, // within the steadiness tolerance
			{7 * time.Second, 15020, true},  // 5s since the count last moved by a tenth of a burst
			{20 * time.Second, 15020, false},
		}},
		{"the count must stay steady for the whole settle time", []step{
			{time.Second, 15000, false},
			{5 * time.Second, 16000, false}, // moved again: the steady period restarts
			{9 * time.Second, 16000, false},
			{10 * time.Second, 16000, true},
		}},
		{"small changes never release", []step{
			{time.Second, 900, false},
			{time.Minute, 900, false},
			{time.Hour, 999, false},
		}},
		{"a burst of disconnections releases too", []step{
			{time.Second, 20000, false},
			{10 * time.Second, 20000, true},
			{11 * time.Second, 1000, false},
			{20 * time.Second, 1000, true},
		}},
		{"large nodes need a tenth of their count", []step{
			{time.Second, 100000, false},
			{10 * time.Second, 100000, true},
			{11 * time.Second, 105000, false}, // 5%: not a burst
			{30 * time.Second, 105000, false},
			{31 * time.Second, 111000, false}, // 11%: a burst, steady from here
			{36 * time.Second, 111000, true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBurstTracker(5*time.Second, t0, 0)
			for _, s := range c.steps {
				if got := b.observe(at(s.at), s.conns); got != s.release {
					t.Fatalf("at %s with %d connections: release %v, want %v", s.at, s.conns, got, s.release)
				}
			}
		})
	}
}

// The releaser's goroutine releases once after a settled burst and ends
// with its context.
func TestMemoryReleaserRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var conns atomic.Int64
		var mu sync.Mutex
		var releases []int64
		r := &memoryReleaser{
			conns: func() int { return int(conns.Load()) },
			release: func() {
				mu.Lock()
				releases = append(releases, conns.Load())
				mu.Unlock()
			},
			settle: 2 * time.Second,
			log:    slog.New(slog.DiscardHandler),
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.run(ctx)
		}()
		for i := 1; i <= 10; i++ { // a burst of 10,000 over 5 s
			time.Sleep(500 * time.Millisecond)
			conns.Store(int64(i * 1000))
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		mu.Lock()
		got := append([]int64(nil), releases...)
		mu.Unlock()
		if len(got) != 1 || got[0] != 10000 {
			t.Errorf("releases at %v, want one at 10000 connections", got)
		}
		cancel()
		<-done
	})
}
