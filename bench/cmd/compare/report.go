package main

import (
	"fmt"
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

// costStep is the step whose CPU cost per delivery is compared: the best
// passing step, or the first step when none passed.
func costStep(res *loadgen.Result) *loadgen.Step {
	if res == nil || len(res.Steps) == 0 {
		return nil
	}
	if res.Best >= 0 {
		return &res.Steps[res.Best]
	}
	return &res.Steps[0]
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
	b.WriteString("Best step = most deliveries/s with no loss, no duplicates, no publish errors, p99 < 100 ms and the publish rate reached.\n\n")
	b.WriteString("| server | best deliveries/s | at publications/s | p50 ms | p99 ms | server CPU | last step passed | vs herald | most loss-free deliveries/s (any p99) |\n|---|---|---|---|---|---|---|---|---|\n")
	var hBest float64
	if h := r.get("herald", "w2"); h != nil && h.Best >= 0 {
		hBest = h.Steps[h.Best].DeliveriesPerSec
	}
	for _, t := range r.targets {
		res := r.get(t.name, "w2")
		if res == nil || len(res.Steps) == 0 {
			fmt.Fprintf(&b, "| %s | not measured: %s | | | | | | | |\n", t.name, r.errText(t.name, "w2"))
			continue
		}
		last := res.Steps[len(res.Steps)-1].OK
		if res.Best < 0 {
			fmt.Fprintf(&b, "| %s | no step passed | | | | | %v | | %.0f |\n", t.name, last, maxClean(res))
			continue
		}
		s := res.Steps[res.Best]
		fmt.Fprintf(&b, "| %s | %.0f | %d | %.2f | %.2f | %.0f%% | %v | %s | %.0f |\n", t.name, s.DeliveriesPerSec, s.TargetRate,
			s.Latency.P50, s.Latency.P99, s.ServerCPU, last, ratio(s.DeliveriesPerSec, hBest), maxClean(res))
	}
	b.WriteString("\nEvery step:\n\n| server | publications/s (target/actual) | deliveries/s | lost | dups | p50 ms | p99 ms | p99.9 ms | max ms | server CPU | CPU ns/delivery | passed |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
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
	fmt.Fprintf(&b, "\n### W4 many channels (%d clients, each on its own channel and one shared channel; publications spread over all %d channels and sent over 32 client connections; steps of %s at %s publications/s)\n\n",
		sz.manyClients, sz.manyClients+1, sz.manyStep, sz.manyRates)
	b.WriteString("| server | best deliveries/s | p99 ms | CPU ns/delivery W4 | CPU ns/delivery W2 | W4/W2 |\n|---|---|---|---|---|---|\n")
	for _, t := range r.targets {
		res := r.get(t.name, "w4")
		s4 := costStep(res)
		if s4 == nil {
			fmt.Fprintf(&b, "| %s | not measured: %s | | | | |\n", t.name, r.errText(t.name, "w4"))
			continue
		}
		best := "no step passed"
		if res.Best >= 0 {
			best = fmt.Sprintf("%.0f", s4.DeliveriesPerSec)
		}
		c2 := 0.0
		if s2 := costStep(r.get(t.name, "w2")); s2 != nil {
			c2 = s2.CPUPerDelivery
		}
		fmt.Fprintf(&b, "| %s | %s | %.2f | %.0f | %.0f | %s |\n", t.name, best, s4.Latency.P99, s4.CPUPerDelivery, c2, ratio(s4.CPUPerDelivery, c2))
	}
	b.WriteString("\nEvery step:\n\n| server | publications/s (target/actual) | deliveries/s | lost | dups | p50 ms | p99 ms | p99.9 ms | max ms | server CPU | CPU ns/delivery | passed |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
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

func (r *report) stepRows(b *strings.Builder, t, w string) {
	res := r.get(t, w)
	if res == nil {
		return
	}
	for _, s := range res.Steps {
		fmt.Fprintf(b, "| %s | %d / %.0f | %.0f | %d | %d | %.2f | %.2f | %.2f | %.2f | %.0f%% | %.0f | %v |\n",
			t, s.TargetRate, s.PublishRate, s.DeliveriesPerSec, s.Lost, s.Duplicates, s.Latency.P50, s.Latency.P99,
			s.Latency.P999, s.Latency.Max, s.ServerCPU, s.CPUPerDelivery, s.OK)
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
	s4, s2 := costStep(r.get("herald", "w4")), costStep(r.get("herald", "w2"))
	if s4 != nil && s2 != nil && s2.CPUPerDelivery > 0 && s4.CPUPerDelivery > 0 {
		q := s4.CPUPerDelivery / s2.CPUPerDelivery
		out = append(out, fmt.Sprintf("| W4: herald CPU per delivery ≤ 1.2× W2's | %s: %.2f× |", met(q <= 1.2), q))
	} else {
		out = append(out, "| W4: herald CPU per delivery ≤ 1.2× W2's | not measured |")
	}
	return out
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}
