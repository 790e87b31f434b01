package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// MemorySample is a process's memory after a full collection.
type MemorySample struct {
	HeapObjects uint64 // /memory/classes/heap/objects:bytes
	Stacks      uint64 // /memory/classes/heap/stacks:bytes
	Goroutines  uint64 // /sched/goroutines:goroutines
	RSS         uint64 // VmRSS of /proc/self/status, bytes
}

// ReadMemory collects garbage, returns freed memory to the OS (so that RSS
// tracks what is live) and samples the process.
func ReadMemory() (MemorySample, error) {
	runtime.GC()
	debug.FreeOSMemory() // a second collection, then scavenges
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(s)
	rss, err := readRSS()
	if err != nil {
		return MemorySample{}, err
	}
	return MemorySample{
		HeapObjects: s[0].Value.Uint64(),
		Stacks:      s[1].Value.Uint64(),
		Goroutines:  s[2].Value.Uint64(),
		RSS:         rss,
	}, nil
}

func readRSS() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("engine: reading RSS: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "1234 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				if err == nil {
					return kb << 10, nil
				}
			}
		}
	}
	return 0, errors.New("engine: no VmRSS in /proc/self/status")
}

// IdleResult is what an idle-memory run measured in the server process.
type IdleResult struct {
	Engine   Engine
	Conns    int
	Baseline MemorySample // listening, before any connection
	Loaded   MemorySample // with Conns idle upgraded connections
}

// PerConn returns (Loaded - Baseline) / Conns for a field.
func (r IdleResult) PerConn(field func(MemorySample) uint64) float64 {
	return (float64(field(r.Loaded)) - float64(field(r.Baseline))) / float64(r.Conns)
}

// RunIdleServer is the server process of an idle-memory run: it starts
// engine (not tracking its connections, so that the figures hold only what
// the engine keeps), samples the baseline and prints "ready <url>". Given
// "wait <n>" on in, it waits until n connections are upgraded and the
// process is quiet (its goroutine count stable), samples again and prints
// "result <IdleResult as JSON>". When heapProfile is not nil, a heap
// profile (runtime/pprof "heap") taken right after that sample is written
// to it; set runtime.MemProfileRate to 1 before anything is allocated for
// it to account for every object. RunIdleServer returns at the end of in;
// the process is expected to exit then, with the clients gone.
func RunIdleServer(engine Engine, in io.Reader, out io.Writer, heapProfile io.Writer) error {
	s, err := NewServer(Config{Engine: engine})
	if err != nil {
		return err
	}
	base, err := ReadMemory()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "ready %s\n", s.URL())
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		arg, ok := strings.CutPrefix(sc.Text(), "wait ")
		if !ok {
			fmt.Fprintf(out, "err unknown command %q\n", sc.Text())
			continue
		}
		n, err := strconv.Atoi(arg)
		if err != nil || n <= 0 {
			fmt.Fprintf(out, "err bad count %q\n", arg)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err = waitIdle(ctx, s, int64(n))
		cancel()
		if err != nil {
			fmt.Fprintf(out, "err %v\n", err)
			continue
		}
		loaded, err := ReadMemory()
		if err != nil {
			fmt.Fprintf(out, "err %v\n", err)
			continue
		}
		if heapProfile != nil {
			if err := pprof.Lookup("heap").WriteTo(heapProfile, 0); err != nil {
				fmt.Fprintf(out, "err heap profile: %v\n", err)
				continue
			}
		}
		var buf bytes.Buffer
		_ = json.NewEncoder(&buf).Encode(IdleResult{Engine: engine, Conns: n, Baseline: base, Loaded: loaded})
		fmt.Fprintf(out, "result %s", buf.Bytes())
	}
	return sc.Err()
}

// waitIdle waits until n connections are upgraded and open, then until the
// goroutine count has been stable for half a second (handshake goroutines
// and net/http handlers have ended, every reader is parked).
func waitIdle(ctx context.Context, s *Server, n int64) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	stable, last := 0, -1
	for stable < 5 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d idle connections (upgraded %d, open %d): %w", n, s.Upgraded(), s.Open(), ctx.Err())
		case <-tick.C:
		}
		if s.Open() < n {
			stable, last = 0, -1
			continue
		}
		if g := runtime.NumGoroutine(); g == last {
			stable++
		} else {
			stable, last = 0, g
		}
	}
	return nil
}
