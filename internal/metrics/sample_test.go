package metrics

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSampleOnce: among concurrent callers exactly one takes the sample.
func TestSampleOnce(t *testing.T) {
	var s SampleOnce
	var taken atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.Take() {
				taken.Add(1)
			}
		}()
	}
	wg.Wait()
	if taken.Load() != 1 || s.Take() {
		t.Fatalf("Take succeeded %d times, want 1", taken.Load())
	}
}

// TestWriteSample: a sample is observed once, when the written total
// reaches the queued total it started at; a second sample is refused
// while one is in flight and accepted afterwards.
func TestWriteSample(t *testing.T) {
	m := New()
	tr := m.Transport("tcp")
	count := func() string {
		for _, line := range strings.Split(scrape(t, m), "\n") {
			if strings.HasPrefix(line, `herald_publish_to_write_seconds_count{transport="tcp"}`) {
				return strings.Fields(line)[1]
			}
		}
		return "absent"
	}
	var w WriteSample
	if w.Start(time.Now(), 0) {
		t.Fatal("a sample with end 0 was taken")
	}
	if !w.Start(time.Now().Add(-time.Millisecond), 100) {
		t.Fatal("first sample refused")
	}
	if w.Start(time.Now(), 200) {
		t.Fatal("second sample taken while the first is in flight")
	}
	w.Written(tr, 99)
	if c := count(); c != "absent" {
		t.Fatalf("observed before its bytes were written: count %s", c)
	}
	w.Written(tr, 150)
	w.Written(tr, 300)
	if c := count(); c != "1" {
		t.Fatalf("count %s after completion, want 1", c)
	}
	if !w.Start(time.Now(), 400) {
		t.Fatal("sample refused after the previous one completed")
	}
	w.Written(nil, 400) // a nil Transport observes nothing but ends the sample
	if !w.Start(time.Now(), 500) {
		t.Fatal("sample refused after one ended without a Transport")
	}
}

// TestWriteSampleConcurrent: Start and Written racing observe each
// completed sample exactly once (run with -race).
func TestWriteSampleConcurrent(t *testing.T) {
	m := New()
	tr := m.Transport("ws")
	var w WriteSample
	var written atomic.Uint64
	var started atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := uint64(1); i <= 2000; i++ {
			if w.Start(time.Now(), i*10) {
				started.Add(1)
			}
			written.Store(i * 10)
		}
	}()
	go func() {
		defer wg.Done()
		for range 2000 {
			w.Written(tr, written.Load())
		}
	}()
	wg.Wait()
	w.Written(tr, 1<<62) // complete any sample still in flight
	page := scrape(t, m)
	want := `herald_publish_to_write_seconds_count{transport="ws"} ` + strconv.FormatInt(started.Load(), 10)
	if !strings.Contains(page, want) {
		t.Fatalf("started %d samples; metrics lack %q", started.Load(), want)
	}
}
