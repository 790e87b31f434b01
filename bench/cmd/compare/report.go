package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/loadgen"
)

// report collects every result of a comparison run.
type report struct {
	mode              string
	sizes             sizes
	started, finished time.Time
	load              string // load average at the start
	targets           []target
	results           map[string]map[string]*loadgen.Result // target -> workload -> result
	errs              map[string]map[string]string
}

func (r *report) get(t, w string) *loadgen.Result {
	if m := r.results[t]; m != nil {
		return m[w]
	}
	return nil
}

// maxP99 is the p99 bound of a passing step (herald bench's default,
// which the comparison keeps).
const maxP99 = 100 * time.Millisecond

// clean reports whether a step delivered everything without errors at
// its rate (whatever its latency) and has server CPU figures.
func clean(s *loadgen.Step) bool {
	return !s.Saturated() && s.Delivered > 0 && s.CPUPerDelivery > 0
}

// comparable picks the W2 and W4 steps whose delivery rates are closest
// (by ratio) among the clean steps of each: CPU per delivery depends on
// the delivery rate (batching, fixed costs), so the two workloads are
// compared at similar rates.
func comparable(w2, w4 *loadgen.Result) (s2, s4 *loadgen.Step) {
	if w2 == nil || w4 == nil {
		return nil, nil
	}
	best := math.Inf(1)
	for i := range w2.Steps {
		for j := range w4.Steps {
			a, b := &w2.Steps[i], &w4.Steps[j]
			if !clean(a) || !clean(b) {
				continue
			}
			if d := math.Abs(math.Log(b.DeliveriesPerSec / a.DeliveriesPerSec)); d < best {
				best, s2, s4 = d, a, b
			}
		}
	}
	return s2, s4
}

// maxClean is the most deliveries/s of a step without loss, duplicates,
// errors or a missed publish rate, whatever its latency.
func maxClean(res *loadgen.Result) float64 {
	m := 0.0
	if res == nil {
		return m
	}
	for i := range res.Steps {
		if !res.Steps[i].Saturated() {
			m = max(m, res.Steps[i].DeliveriesPerSec)
		}
	}
	return m
}

func ratio(v, base float64) string {
	if base == 0 || v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v/base)
}

func (r *report) markdown() string {
	var b strings.Builder
	sz := r.sizes
	fmt.Fprintf(&b, "\n## Results (%s mode, %s, %s)\n\n", r.mode, r.started.UTC().Format("2006-01-02 15:04 MST"),
		r.finished.Sub(r.started).Round(time.Second))
	b.WriteString("**The machine is shared and noisy (other builds and tests ran at the same time); absolute figures " +
		"move from run to run, the ratios between servers measured in the same invocation matter more.** " +
		"The load generator runs on the same two cores as the server, so it caps what can be measured: a server " +
		"whose last rate step still passed was not saturated.\n\n")
	b.WriteString("Machine:\n\n")
	b.WriteString(machine(r.load))
	b.WriteString("\nServers: herald (this tree)")
	for _, t := range r.targets {
		if t.name != "herald" {
			fmt.Fprintf(&b, ", %s %s", t.name, t.version)
		}
	}
	b.WriteString(".\n\nReproduce: `cd bench && go run ./cmd/compare")
	if r.mode == "quick" {
		b.WriteString(" --quick")
	}
	b.WriteString("`\n\n")

	// W1
	fmt.Fprintf(&b, "### W1 idle memory (%d connections, held %s)\n\n", sz.idleConns, sz.idleHold)
	b.WriteString("| server | connected | RSS/conn | heap/conn | stack/conn | goroutines/conn | RSS/conn vs herald |\n|---|---|---|---|---|---|---|\n")
	var hRSS float64
	if h := r.get("herald", "w1"); h != nil && h.Idle != nil {
		hRSS = h.Idle.RSSPerConn
	}
	for _, t := range r.targets {
		res := r.get(t.name, "w1")
		if res == nil || res.Idle == nil {
			fmt.Fprintf(&b, "| %s | not measured: %s | | | | | |\n", t.name, r.errText(t.name, "w1"))
			continue
		}
		i := res.Idle
		fmt.Fprintf(&b, "| %s | %d | %.0f B | %.0f B | %.0f B | %.2f | %s |\n", t.name, res.Connected,
			i.RSSPerConn, i.HeapPerConn, i.StackPerConn, i.GoroutinesPer, ratio(i.RSSPerConn, hRSS))
	}

	// W2
	fmt.Fprintf(&b, "\n### W2 fan-out (%d subscribers of one channel, ~100-byte publications via HTTP publish, steps of %s at %s publications/s)\n\n",
		sz.fanoutSubs, sz.fanoutStep, sz.fanoutRates)
	b.WriteString("A step passes with no loss, no duplicates, no publish errors, the publish rate reached and p99 < 100 ms. " +
		"A server's ramp stops at its first step with loss, duplicates, errors or a missed rate, or after two consecutive steps over the p99 bound. " +
		"Server CPU per delivery is given raw (all the server's CPU during the step) and marginal (less its idle CPU, measured with every subscriber connected and nothing published); " +
		"bench CPU is the load generator's own, on the same cores.\n\n")
	b.WriteString("| server | best passing step | deliveries/s | p50 ms | p99 ms | first failing step | ramp stopped | server idle CPU | server CPU ns/delivery raw / marginal | bench CPU ns/delivery | vs herald | most loss-free deliveries/s (any p99) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var hBest float64
	if h := r.get("herald", "w2"); h != nil && h.Best >= 0 {
		hBest = h.Steps[h.Best].DeliveriesPerSec
	}
	for _, t := range r.targets {
		res := r.get(t.name, "w2")
		if res == nil || len(res.Steps) == 0 {
			fmt.Fprintf(&b, "| %s | not measured: %s | | | | | | | | | | |\n", t.name, r.errText(t.name, "w2"))
			continue
		}
		fail, stopped := "none", "no (every rate run)"
		if res.FirstFailed >= 0 {
			f := res.Steps[res.FirstFailed]
			fail = fmt.Sprintf("%d/s: %s", f.TargetRate, f.Failure(maxP99))
		}
		if res.Stopped != "" {
			stopped = res.Stopped
		}
		if res.Best < 0 {
			fmt.Fprintf(&b, "| %s | none | | | | %s | %s | %.1f%% | | | | %.0f |\n", t.name, fail, stopped, res.IdleCPU, maxClean(res))
			continue
		}
		s := res.Steps[res.Best]
		fmt.Fprintf(&b, "| %s | %d/s | %.0f | %.2f | %.2f | %s | %s | %.1f%% | %.0f / %.0f | %.0f | %s | %.0f |\n", t.name, s.TargetRate,
			s.DeliveriesPerSec, s.Latency.P50, s.Latency.P99, fail, stopped, res.IdleCPU, s.CPUPerDelivery, s.MarginalCPUPerDelivery,
			s.ClientCPUPerDelivery, ratio(s.DeliveriesPerSec, hBest), maxClean(res))
	}
	b.WriteString(stepHeader)
	for _, t := range r.targets {
		r.stepRows(&b, t.name, "w2")
	}

	// W3
	fmt.Fprintf(&b, "\n### W3 echo (%d connections, 1 KiB messages, %s)\n\n", sz.echoConns, sz.echoDuration)
	b.WriteString("Each connection publishes to a channel of its own over its own connection and waits for the publication to come back (one in flight per connection).\n\n")
	b.WriteString("| server | round trips/s | p50 ms | p99 ms | p99.9 ms | errors | server CPU | vs herald |\n|---|---|---|---|---|---|---|---|\n")
	var hEcho float64
	if h := r.get("herald", "w3"); h != nil && h.Echo != nil {
		hEcho = h.Echo.PerSec
	}
	for _, t := range r.targets {
		res := r.get(t.name, "w3")
		if res == nil || res.Echo == nil {
			fmt.Fprintf(&b, "| %s | not measured: %s | | | | | | |\n", t.name, r.errText(t.name, "w3"))
			continue
		}
		e := res.Echo
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.2f | %.2f | %d | %.0f%% | %s |\n", t.name, e.PerSec, e.Latency.P50,
			e.Latency.P99, e.Latency.P999, e.Errors, e.ServerCPU, ratio(e.PerSec, hEcho))
	}

	// W4
	fmt.Fprintf(&b, "\n### W4 many channels (%d clients, each on its own channel and one shared channel; publications spread over all %d channels, those due within each %s sent as one POST /api/batch request, up to %d requests in flight; steps of %s at %s publications/s)\n\n",
		sz.manyClients, sz.manyClients+1, sz.publishBatch, sz.publishers, sz.manyStep, sz.manyRates)
	b.WriteString("W4's cost per delivery is compared with W2's at comparable delivery rates: of each server's steps without loss, duplicates, errors or a missed rate, " +
		"the W4 and W2 steps whose deliveries/s are closest. Marginal = (server CPU during the step − its idle CPU over the same time) / deliveries; " +
		"idle CPU is measured before the first step with every client connected and nothing published. The raw figure divides all the server's CPU.\n\n")
	b.WriteString("| server | server idle CPU | W4 step | W2 step | W4 ns/delivery raw / marginal | W2 ns/delivery raw / marginal | W4/W2 marginal | W4/W2 raw |\n|---|---|---|---|---|---|---|---|\n")
	for _, t := range r.targets {
		res := r.get(t.name, "w4")
		if res == nil || len(res.Steps) == 0 {
			fmt.Fprintf(&b, "| %s | not measured: %s | | | | | | |\n", t.name, r.errText(t.name, "w4"))
			continue
		}
		s2, s4 := comparable(r.get(t.name, "w2"), res)
		if s4 == nil {
			fmt.Fprintf(&b, "| %s | %.1f%% | no clean step to compare | | | | | |\n", t.name, res.IdleCPU)
			continue
		}
		fmt.Fprintf(&b, "| %s | %.1f%% | %d/s: %.0f deliveries/s | %d/s: %.0f deliveries/s | %.0f / %.0f | %.0f / %.0f | %s | %s |\n", t.name, res.IdleCPU,
			s4.TargetRate, s4.DeliveriesPerSec, s2.TargetRate, s2.DeliveriesPerSec, s4.CPUPerDelivery, s4.MarginalCPUPerDelivery,
			s2.CPUPerDelivery, s2.MarginalCPUPerDelivery, ratio(s4.MarginalCPUPerDelivery, s2.MarginalCPUPerDelivery), ratio(s4.CPUPerDelivery, s2.CPUPerDelivery))
	}
	b.WriteString(stepHeader)
	for _, t := range r.targets {
		r.stepRows(&b, t.name, "w4")
	}

	b.WriteString("\n### Targets\n\n| target | this run |\n|---|---|\n")
	for _, line := range r.verdicts() {
		b.WriteString(line + "\n")
	}
	b.WriteString("\n")
	return b.String()
}

func (r *report) errText(t, w string) string {
	if e := r.errs[t][w]; e != "" {
		if len(e) > 160 {
			e = e[:160] + "…"
		}
		return strings.ReplaceAll(e, "|", "/")
	}
	return "not run"
}

const stepHeader = "\nEvery step:\n\n| server | publications/s (target/actual) | deliveries/s | lost | dups | p50 ms | p99 ms | p99.9 ms | max ms | server CPU | server ns/delivery raw | marginal | bench CPU | bench ns/delivery | passed |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"

func (r *report) stepRows(b *strings.Builder, t, w string) {
	res := r.get(t, w)
	if res == nil {
		return
	}
	for _, s := range res.Steps {
		fmt.Fprintf(b, "| %s | %d / %.0f | %.0f | %d | %d | %.2f | %.2f | %.2f | %.2f | %.0f%% | %.0f | %.0f | %.0f%% | %.0f | %v |\n",
			t, s.TargetRate, s.PublishRate, s.DeliveriesPerSec, s.Lost, s.Duplicates, s.Latency.P50, s.Latency.P99,
			s.Latency.P999, s.Latency.Max, s.ServerCPU, s.CPUPerDelivery, s.MarginalCPUPerDelivery, s.ClientCPU, s.ClientCPUPerDelivery, s.OK)
	}
}

// verdicts compares this run's figures with the targets of the spec.
func (r *report) verdicts() []string {
	var out []string
	peers := []string{}
	for _, t := range r.targets {
		if t.name != "herald" {
			peers = append(peers, t.name)
		}
	}
	// W1
	if h := r.get("herald", "w1"); h != nil && h.Idle != nil {
		ok := h.Idle.RSSPerConn <= 1024
		for _, p := range peers {
			if pr := r.get(p, "w1"); pr != nil && pr.Idle != nil && pr.Idle.RSSPerConn <= h.Idle.RSSPerConn {
				ok = false
			}
		}
		out = append(out, fmt.Sprintf("| W1: herald ≤ 1 KiB RSS per idle connection and below every peer | %s: %.0f B/conn |", met(ok), h.Idle.RSSPerConn))
	} else {
		out = append(out, "| W1: herald ≤ 1 KiB RSS per idle connection and below every peer | not measured |")
	}
	// W2
	bestPeer, bestName := 0.0, ""
	for _, p := range peers {
		if pr := r.get(p, "w2"); pr != nil && pr.Best >= 0 && pr.Steps[pr.Best].DeliveriesPerSec > bestPeer {
			bestPeer, bestName = pr.Steps[pr.Best].DeliveriesPerSec, p
		}
	}
	if h := r.get("herald", "w2"); h != nil && h.Best >= 0 && bestPeer > 0 {
		v := h.Steps[h.Best].DeliveriesPerSec
		note := ""
		if h.Steps[len(h.Steps)-1].OK {
			note = " (herald's last step passed: the ramp or the load generator was the limit, not herald)"
		}
		out = append(out, fmt.Sprintf("| W2: herald ≥ 3× the best peer's deliveries/s at p99 < 100 ms | %s: %.2f× %s%s |", met(v >= 3*bestPeer), v/bestPeer, bestName, note))
	} else {
		out = append(out, "| W2: herald ≥ 3× the best peer's deliveries/s at p99 < 100 ms | not measured (no passing step on one side) |")
	}
	// W3
	bestEcho, echoName := 0.0, ""
	for _, p := range peers {
		if pr := r.get(p, "w3"); pr != nil && pr.Echo != nil && pr.Echo.PerSec > bestEcho {
			bestEcho, echoName = pr.Echo.PerSec, p
		}
	}
	if h := r.get("herald", "w3"); h != nil && h.Echo != nil && bestEcho > 0 {
		out = append(out, fmt.Sprintf("| W3: herald echo messages/s ≥ the best peer | %s: %.2f× %s |", met(h.Echo.PerSec >= bestEcho), h.Echo.PerSec/bestEcho, echoName))
	} else {
		out = append(out, "| W3: herald echo messages/s ≥ the best peer | not measured |")
	}
	// W4
	const w4Target = "| W4: herald marginal CPU per delivery ≤ 1.2× W2's at a comparable delivery rate |"
	if s2, s4 := comparable(r.get("herald", "w2"), r.get("herald", "w4")); s4 != nil && s2.MarginalCPUPerDelivery > 0 && s4.MarginalCPUPerDelivery > 0 {
		q := s4.MarginalCPUPerDelivery / s2.MarginalCPUPerDelivery
		out = append(out, fmt.Sprintf("%s %s: %.2f× (W4 %d/s, %.0f deliveries/s, against W2 %d/s, %.0f deliveries/s; raw %.2f×) |", w4Target, met(q <= 1.2), q,
			s4.TargetRate, s4.DeliveriesPerSec, s2.TargetRate, s2.DeliveriesPerSec, s4.CPUPerDelivery/s2.CPUPerDelivery))
	} else {
		out = append(out, w4Target+" not measured |")
	}
	return out
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}
