package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/loadgen"
)

func TestReplaceResultsKeepsProse(t *testing.T) {
	f := filepath.Join(t.TempDir(), "b.md")
	if err := os.WriteFile(f, []byte("# title\n\nprose\n\n"+beginMarker+"\nold\n"+endMarker+"\n\ntail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceResults(f, "new\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(f)
	want := "# title\n\nprose\n\n" + beginMarker + "\nnew\n" + endMarker + "\n\ntail\n"
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	// Without markers the block is appended.
	g := filepath.Join(t.TempDir(), "c.md")
	if err := replaceResults(g, "x\n"); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(g)
	if !strings.Contains(string(got), beginMarker+"\nx\n"+endMarker) {
		t.Fatalf("got %q", got)
	}
}

func step(rate int, dps, p99, cpuNs float64, lost int64) loadgen.Step {
	s := loadgen.Step{TargetRate: rate, PublishRate: float64(rate), Published: 1, Expected: 1, Delivered: 1,
		Lost: lost, DeliveriesPerSec: dps, Latency: loadgen.Latency{P99: p99}, CPUPerDelivery: cpuNs, MarginalCPUPerDelivery: cpuNs / 2}
	s.OK = !s.Saturated() && p99 < 100
	return s
}

func TestVerdicts(t *testing.T) {
	r := &report{
		mode: "quick", sizes: quickSizes, started: time.Now(), finished: time.Now(),
		targets: []target{{name: "herald"}, {name: "gws", version: "v1"}},
		results: map[string]map[string]*loadgen.Result{
			"herald": {
				"w1": {Connected: 10, Idle: &loadgen.IdleResult{RSSPerConn: 900}},
				"w2": {Best: 1, FirstFailed: 2, Stopped: "2 consecutive steps over p99 100ms", IdleCPU: 1.5,
					Steps: []loadgen.Step{step(10, 1000, 5, 100, 0), step(20, 4000, 5, 120, 0), step(40, 5000, 500, 100, 0), step(80, 9000, 600, 90, 0)}},
				"w3": {Echo: &loadgen.EchoResult{PerSec: 50}},
				// W4's 3200 deliveries/s are closest to W2's 4000 (its 5000 and 9000 are
				// farther; the lossy step does not count).
				"w4": {Best: -1, FirstFailed: 0, IdleCPU: 7, Steps: []loadgen.Step{step(10, 3200, 150, 156, 0), step(20, 20000, 150, 50, 9)}},
			},
			"gws": {
				"w1": {Connected: 10, Idle: &loadgen.IdleResult{RSSPerConn: 5000}},
				"w2": {Best: 0, FirstFailed: 1, Stopped: "step 20/s: 3 lost", Steps: []loadgen.Step{step(10, 1000, 5, 100, 0), step(20, 1500, 5, 100, 3)}},
				"w3": {Echo: &loadgen.EchoResult{PerSec: 100}},
			},
		},
		errs: map[string]map[string]string{"gws": {"w4": "boom | bang"}},
	}
	md := r.markdown()
	for _, want := range []string{
		"| W1: herald ≤ 1 KiB RSS per idle connection and below every peer | met: 900 B/conn |",
		"| W2: herald ≥ 3× the best peer's deliveries/s at p99 < 100 ms | met: 4.00× gws |",
		"| W3: herald echo messages/s ≥ the best peer | **not met**: 0.50× gws |",
		"| W4: herald marginal CPU per delivery ≤ 1.2× W2's at a comparable delivery rate | **not met**: 1.30× (W4 10/s, 3200 deliveries/s, against W2 20/s, 4000 deliveries/s; raw 1.30×) |",
		"| gws | not measured: boom / bang |",
		"| herald | 40 / 40 | 5000 | 0 | 0 |", // steps that failed only on p99 are listed too
		// The W2 summary names the best passing step and the first failing one.
		"| herald | 20/s | 4000 | 0.00 | 5.00 | 40/s: p99 500.0 ms over 100ms | 2 consecutive steps over p99 100ms | 1.5% | 120 / 60 |",
		"| gws | 10/s | 1000 | 0.00 | 5.00 | 20/s: 3 lost | step 20/s: 3 lost |",
		"| herald | 7.0% | 10/s: 3200 deliveries/s | 20/s: 4000 deliveries/s | 156 / 78 | 120 / 60 | 1.30× | 1.30× |",
		// W4's heading says how it publishes.
		"publications spread over all 2001 channels, those due within each 5ms sent as one POST /api/batch request, up to 32 requests in flight;",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
}
