package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/loadgen"
)

const benchUsage = `Usage: herald bench [flags]

Opens many client connections to a herald node (or, with --protocol raw or
centrifuge, to a comparison server) and measures what the subscribers see: deliveries per
second, loss, duplicates and latency percentiles, plus the server's CPU and
RSS with --server-pid. A progress line is printed on standard error every
second; --json prints the full result on standard output.

Modes:
  fanout  subscribe --conns connections to --channels channels (and a shared
          one with --shared), publish at --rate (or at each of --rate
          R1,R2,...), or ramp with --ramp FROM:TO:STEP, for --step each,
          through the server API (one request per publication, or with
          --publish-batch one /api/batch request per interval) or
          --publish-via ws (--publish-window commands in flight per
          connection). A step passes with no loss,
          duplicates or errors, the target rate reached and p99 within
          --max-p99; the ramp stops at the first step with loss, duplicates,
          errors or a missed rate, and after --p99-stop consecutive steps
          over --max-p99. Before the first step the server's CPU is sampled
          for --baseline with nothing published (its idle CPU); each step
          reports the server's CPU per delivery raw and marginal (less the
          idle CPU), and the load generator's own CPU per delivery.
  echo    every connection publishes --size-byte messages to a channel of its
          own over its own connection and waits for each to come back
  idle    connect and subscribe, wait --duration, report the server's memory
          per connection (--server-pid, --metrics-url)

With --procs N the connections are split over N processes (this one and
N-1 copies of it started for the run, each dialing from its own slice of
127.0.0.2-254); only this one publishes and it prints one merged report.
By default a run takes as many processes as its connections need file
descriptors.

Examples:
  herald bench --url ws://127.0.0.1:8080/ws --api-key KEY --conns 5000 --ramp 20:200:20 --step 20s --plot run.svg
  herald bench --mode echo --conns 1000 --duration 20s
  herald bench --mode idle --conns 15000 --server-pid $(pidof herald) --metrics-url http://127.0.0.1:8080/metrics

Flags:
`

// benchChildArg is the first argument of a process started by a run over
// several processes (--procs); it is not a flag users give.
const benchChildArg = "--bench-child-process"

func bench(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 && args[0] == benchChildArg {
		in := env.Stdin
		if in == nil {
			in = os.Stdin
		}
		return loadgen.RunChild(ctx, in, env.Stdout)
	}
	fs := newFlagSet("bench", env.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	var cfg loadgen.Config
	var proto, mode, rate, ramp, plot string
	var jsonOut, quiet bool
	fs.StringVar(&cfg.URL, "url", "ws://127.0.0.1:8080/ws", "server `URL`: ws:// or wss:// (WebSocket), tcp:// or tcps:// (herald's TCP transport, JSON; give --publish-url)")
	fs.StringVar(&proto, "protocol", "herald", "`protocol`: herald; raw or centrifuge for the comparison servers (bench/)")
	fs.StringVar(&mode, "mode", "fanout", "`mode`: fanout, echo or idle")
	fs.IntVar(&cfg.Conns, "conns", 100, "number of client `connections`")
	fs.IntVar(&cfg.Channels, "channels", 1, "number of `channels` the connections spread over (fanout)")
	fs.BoolVar(&cfg.Shared, "shared", false, "also subscribe every connection to one shared channel (fanout)")
	fs.StringVar(&cfg.ChannelPrefix, "prefix", "bench:", "channel name `prefix` (herald: the namespace and ':')")
	fs.StringVar(&rate, "rate", "1000", "publications per `second` (fanout); a comma-separated list runs one step each")
	fs.StringVar(&ramp, "ramp", "", "ramp rates `FROM:TO:STEP`, one step of --step each (fanout)")
	fs.DurationVar(&cfg.Step, "step", 10*time.Second, "`duration` of each rate step (fanout)")
	fs.StringVar(&cfg.PublishVia, "publish-via", "http", "publish through the server API (`http`) or client connections (ws)")
	fs.StringVar(&cfg.PublishURL, "publish-url", "", "publish endpoint `URL` (default: derived from --url)")
	fs.DurationVar(&cfg.PublishBatchInterval, "publish-batch", 0, "send the publications due within each `interval` as one POST /api/batch request (--publish-via http; 0: one request each)")
	fs.StringVar(&cfg.APIKey, "api-key", "", "server API `key` (default: env HERALD_API_KEY)")
	fs.IntVar(&cfg.Publishers, "publishers", 8, "concurrent `publishers`")
	fs.IntVar(&cfg.PayloadSize, "size", 0, "publication data size in `bytes` (default 100; echo 1024)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "`duration` of an echo run, or how long idle connections are held")
	fs.IntVar(&cfg.ConnectConcurrency, "connect-concurrency", 64, "`number` of dials in progress at once")
	fs.BoolVar(&cfg.NoSpread, "no-spread", false, "do not spread loopback connections over source addresses 127.0.0.2-254")
	fs.BoolVar(&cfg.InsecureTLS, "insecure-tls", false, "skip certificate verification for wss:// and tcps:// (test servers only)")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "`pid` of the server process, sampled for CPU and RSS")
	fs.StringVar(&cfg.MetricsURL, "metrics-url", "", "Prometheus metrics `URL` of the server, for Go heap/stack/goroutines")
	fs.DurationVar(&cfg.MaxP99, "max-p99", 100*time.Millisecond, "p99 `latency` above which a fanout step fails")
	fs.IntVar(&cfg.P99Stop, "p99-stop", 2, "stop the ramp after this `many` consecutive steps over --max-p99")
	fs.BoolVar(&cfg.KeepGoing, "keep-going", false, "run every rate step, whatever the earlier ones showed")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "run the first rate unmeasured for this `duration` before the first step (at least one publication per channel; 0: none)")
	fs.DurationVar(&cfg.Baseline, "baseline", 3*time.Second, "sample the server's idle CPU for this `duration` before the first step (--server-pid; 0: skip)")
	fs.IntVar(&cfg.PublishWindow, "publish-window", 16, "publish `commands` in flight per publishing connection (--publish-via ws)")
	fs.IntVar(&cfg.Procs, "procs", 0, "split the connections over this `many` processes (0: as the file descriptor limit requires)")
	fs.StringVar(&cfg.SnapshotURL, "snapshot-url", "", "idle mode: after the hold, fetch this `URL` (a heap profile, say) into --snapshot-file")
	fs.StringVar(&cfg.SnapshotFile, "snapshot-file", "snapshot.out", "`file` for --snapshot-url")
	fs.BoolVar(&jsonOut, "json", false, "print the result as JSON on standard output")
	fs.BoolVar(&quiet, "quiet", false, "no progress line")
	fs.StringVar(&plot, "plot", "", "write throughput and latency over time to this SVG `file`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = -1 // as for --baseline
	}
	if cfg.Baseline == 0 {
		cfg.Baseline = -1 // flag 0 means none; the Config zero value means the default
	}
	if cfg.Procs < 0 {
		return fmt.Errorf("%w: bench: --procs %d", errUsage, cfg.Procs)
	}
	// The progress lines and the other processes' error output share
	// standard error.
	stderr := &lockedWriter{w: env.Stderr}
	cfg.ChildCommand = func() (*exec.Cmd, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(exe, "bench", benchChildArg)
		cmd.Env = env.Environ
		cmd.Stderr = stderr
		return cmd, nil
	}
	cfg.Protocol = loadgen.Protocol(proto)
	cfg.Mode = loadgen.Mode(mode)
	if cfg.APIKey == "" {
		cfg.APIKey = lookupEnv(env.Environ, "HERALD_API_KEY")
	}
	rates, err := parseRates(rate, ramp)
	if err != nil {
		return fmt.Errorf("%w: bench: %v", errUsage, err)
	}
	cfg.Rates = rates
	if !quiet {
		cfg.Progress = stderr
	}
	res, runErr := loadgen.Run(ctx, cfg)
	if res == nil {
		return fmt.Errorf("bench: %w", runErr)
	}
	if plot != "" {
		f, err := os.Create(plot)
		if err != nil {
			return fmt.Errorf("bench: plot: %w", err)
		}
		title := fmt.Sprintf("herald bench %s: %d conns, %s", cfg.Mode, res.Connected, cfg.URL)
		if err := loadgen.WriteSVG(f, title, res.Series); err != nil {
			f.Close()
			return fmt.Errorf("bench: plot: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("bench: plot: %w", err)
		}
	}
	if jsonOut {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printBench(env, res)
	}
	if runErr != nil && ctx.Err() == nil {
		return fmt.Errorf("bench: %w", runErr)
	}
	return nil
}

// lockedWriter serializes writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// parseRates turns --rate N or --ramp FROM:TO:STEP into the step rates.
func parseRates(rate, ramp string) ([]int, error) {
	if ramp == "" {
		var out []int
		for _, f := range strings.Split(rate, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("--rate %q: want positive integers separated by commas", rate)
			}
			out = append(out, n)
		}
		return out, nil
	}
	parts := strings.Split(ramp, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("--ramp %q: want FROM:TO:STEP", ramp)
	}
	var v [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--ramp %q: %q is not a positive integer", ramp, p)
		}
		v[i] = n
	}
	if v[1] < v[0] {
		return nil, fmt.Errorf("--ramp %q: TO below FROM", ramp)
	}
	if (v[1]-v[0])/v[2] > 1000 {
		return nil, fmt.Errorf("--ramp %q: more than 1000 steps", ramp)
	}
	var out []int
	for r := v[0]; r <= v[1]; r += v[2] {
		out = append(out, r)
	}
	return out, nil
}

func printBench(env Env, res *loadgen.Result) {
	w := env.Stdout
	fmt.Fprintf(w, "%s %s (%s): %d/%d connected in %.1fs (%d processes), %d connect errors, %d disconnects\n",
		res.Mode, res.URL, res.Protocol, res.Connected, res.Conns, res.ConnectSeconds, res.Procs, res.ConnectErr, res.Disconnects)
	if res.FirstConnectError != "" {
		fmt.Fprintf(w, "first connect error: %s\n", res.FirstConnectError)
	}
	if len(res.Steps) > 0 {
		if res.IdleCPU > 0 {
			fmt.Fprintf(w, "server idle CPU (connections open, nothing published): %.1f%%\n", res.IdleCPU)
		}
		// Server CPU per delivery: raw (all its CPU) and marginal (less
		// the idle CPU); the bench's own CPU per delivery.
		fmt.Fprintf(w, "%8s %8s %10s %6s %6s %8s %8s %8s %8s %6s %8s %8s %6s %8s %s\n",
			"rate", "pub/s", "deliv/s", "lost", "dups", "p50ms", "p99ms", "p99.9ms", "maxms",
			"srv%", "srv-ns/d", "marg-ns", "bench%", "bench-ns", "ok")
		for _, s := range res.Steps {
			fmt.Fprintf(w, "%8d %8.0f %10.0f %6d %6d %8.2f %8.2f %8.2f %8.2f %6.0f %8.0f %8.0f %6.0f %8.0f %v\n",
				s.TargetRate, s.PublishRate, s.DeliveriesPerSec, s.Lost, s.Duplicates,
				s.Latency.P50, s.Latency.P99, s.Latency.P999, s.Latency.Max,
				s.ServerCPU, s.CPUPerDelivery, s.MarginalCPUPerDelivery, s.ClientCPU, s.ClientCPUPerDelivery, s.OK)
		}
		if res.Best >= 0 {
			fmt.Fprintf(w, "best passing step: %.0f deliveries/s at rate %d\n",
				res.Steps[res.Best].DeliveriesPerSec, res.Steps[res.Best].TargetRate)
		} else {
			fmt.Fprintln(w, "no step passed (loss, duplicates, errors, missed rate, or p99 above --max-p99)")
		}
		if res.FirstFailed >= 0 {
			fmt.Fprintf(w, "first failing step: rate %d\n", res.Steps[res.FirstFailed].TargetRate)
		}
		if res.Stopped != "" {
			fmt.Fprintf(w, "ramp stopped: %s\n", res.Stopped)
		}
	}
	if e := res.Echo; e != nil {
		fmt.Fprintf(w, "echo: %d round trips, %.0f/s, %d errors, p50 %.2fms p99 %.2fms p99.9 %.2fms max %.2fms\n",
			e.RoundTrips, e.PerSec, e.Errors, e.Latency.P50, e.Latency.P99, e.Latency.P999, e.Latency.Max)
	}
	if i := res.Idle; i != nil {
		fmt.Fprintf(w, "idle: server RSS %.1f MiB -> %.1f MiB: %.0f bytes/conn; heap %.0f B/conn, stack %.0f B/conn, goroutines %.3f/conn\n",
			float64(i.BaselineRSS)/(1<<20), float64(i.RSS)/(1<<20), i.RSSPerConn, i.HeapPerConn, i.StackPerConn, i.GoroutinesPer)
	}
}
