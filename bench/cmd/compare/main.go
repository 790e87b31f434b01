// Command compare runs the side-by-side benchmarks: it builds herald and
// the comparison servers (bench/cmd/peer), starts each as its own process,
// drives every workload against each with the same load generator
// (`herald bench`, also its own process) and writes the measured figures
// into docs/benchmarks.md between the results markers.
//
//	cd bench && go run ./cmd/compare --quick      # about 5 minutes
//	cd bench && go run ./cmd/compare              # full sizes, under 25 minutes
//	cd bench && go run ./cmd/compare --quick --only herald --profile DIR   # pprof files in DIR
//
// Workloads:
//
//	W1 idle memory: N idle subscribed connections; server RSS, heap, stack
//	   and goroutines per connection (marginal over the empty server).
//	W2 fan-out: S subscribers of one channel; rate steps of ~100-byte
//	   publications through the HTTP publish endpoint. A server's ramp
//	   ends at its first step with loss, duplicates, errors or a missed
//	   rate, or after two consecutive steps over the p99 bound.
//	W3 echo: E connections, each publishing 1 KiB messages to its own
//	   channel over its own connection and waiting for them to come back.
//	W4 many channels: C clients, each on its own channel and one shared
//	   channel; publications spread over all channels, those due within
//	   each 5 ms sent as one POST /api/batch request (each publication
//	   reaches about two subscribers, so an HTTP request, or a client
//	   command and its reply, each would dominate the cost; a backend
//	   publishing thousands per second batches them). Every server
//	   answers the same batch request. Its server CPU per delivery is compared
//	   with W2's at a comparable delivery rate, raw and marginal (less
//	   the server's idle CPU with every client connected).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/heraldhq/herald/internal/loadgen"
)

// sizes are one mode's workload parameters.
type sizes struct {
	idleConns     int
	idleHold      time.Duration
	fanoutSubs    int
	fanoutRates   string
	fanoutStep    time.Duration
	echoConns     int
	echoDuration  time.Duration
	manyClients   int
	manyRates     string
	manyStep      time.Duration
	publishers    int
	publishBatch  time.Duration // W4: publications due within this interval go out as one POST /api/batch
	connectConcur int
}

var (
	quickSizes = sizes{
		idleConns: 2000, idleHold: 3 * time.Second,
		fanoutSubs: 1000, fanoutRates: "10,20,30,40,60,80,100,120,160,200,240,320,400,480,640,800", fanoutStep: 5 * time.Second,
		echoConns: 200, echoDuration: 5 * time.Second,
		manyClients: 2000, manyRates: "1000,2000,4000,8000", manyStep: 5 * time.Second,
		publishers: 32, publishBatch: 5 * time.Millisecond, connectConcur: 64,
	}
	fullSizes = sizes{
		idleConns: 15000, idleHold: 10 * time.Second,
		fanoutSubs: 5000, fanoutRates: "5,10,15,20,25,30,40,50,60,70,80,100,120,140,160,200,240,280,320", fanoutStep: 20 * time.Second,
		echoConns: 1000, echoDuration: 20 * time.Second,
		manyClients: 10000, manyRates: "2000,4000,8000,12000,16000", manyStep: 20 * time.Second,
		publishers: 32, publishBatch: 5 * time.Millisecond, connectConcur: 128,
	}
)

// target is one server under test.
type target struct {
	name     string
	protocol loadgen.Protocol
	cmd      func(port int) []string
	wsURL    func(port int) string
	metrics  func(port int) string
	prefix   string
	version  string
	// unavailable, when set, says why the server cannot run here; each
	// workload is then reported as not measured with this reason.
	unavailable string
}

const apiKey = "bench-api-key-0123456789abcdef"

// heraldConfig is the configuration herald serves the benchmarks with:
// one namespace without history or presence (the peers keep neither),
// anonymous clients, client publishing, generous queues.
const heraldConfig = `listen: 127.0.0.1:%d
api_key: %s
allow_anonymous: true
log:
  level: warn
demo:
  enabled: false
client_queue:
  bytes: 16777216
  messages: 65536
namespaces:
  - name: bench
    allow_publish: true
    allow_anonymous: true
`

func main() {
	quick := flag.Bool("quick", false, "small sizes and short steps (about 5 minutes)")
	out := flag.String("out", "../docs/benchmarks.md", "markdown `file` whose results section is replaced")
	only := flag.String("only", "herald,gorilla,gws,centrifuge", "comma-separated `servers` to run")
	workloads := flag.String("workloads", "w1,w2,w3,w4", "comma-separated `workloads` to run")
	profile := flag.String("profile", "", "run herald under bench/cmd/heraldprof and write a CPU profile of each workload, and a heap profile during W1, into this `directory`")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("compare: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sz := fullSizes
	mode := "full"
	if *quick {
		sz, mode = quickSizes, "quick"
	}
	if err := runAll(ctx, sz, mode, *out, split(*only), split(*workloads), *profile); err != nil {
		log.Fatal(err)
	}
}

func split(s string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			m[f] = true
		}
	}
	return m
}

func runAll(ctx context.Context, sz sizes, mode, out string, only, workloads map[string]bool, profile string) error {
	dir, err := os.MkdirTemp("", "herald-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	herald := filepath.Join(dir, "herald")
	peer := filepath.Join(dir, "peer")
	heraldprof := filepath.Join(dir, "heraldprof")
	log.Printf("building herald and the peer servers in %s", dir)
	if err := run(ctx, "..", "go", "build", "-o", herald, "./cmd/herald"); err != nil {
		return err
	}
	if err := run(ctx, ".", "go", "build", "-o", peer, "./cmd/peer"); err != nil {
		return err
	}
	// The centrifuge server is a module of its own (bench/centrifuge/go.mod
	// says where its source comes from); without it the others still run.
	centrifugeBin := filepath.Join(dir, "centrifuge")
	var centrifugeErr string
	if only["centrifuge"] {
		if out, err := exec.CommandContext(ctx, "go", "build", "-C", "centrifuge", "-o", centrifugeBin, ".").CombinedOutput(); err != nil {
			centrifugeErr = fmt.Sprintf("bench/centrifuge does not build (%v: %s); see bench/centrifuge/go.mod", err, lastLines(string(out), 3))
			log.Print(centrifugeErr)
		}
	}
	if profile != "" {
		if err := os.MkdirAll(profile, 0o755); err != nil {
			return err
		}
		if profile, err = filepath.Abs(profile); err != nil {
			return err
		}
		if err := run(ctx, ".", "go", "build", "-o", heraldprof, "./cmd/heraldprof"); err != nil {
			return err
		}
		log.Printf("herald profiles go to %s (go tool pprof -top FILE)", profile)
	}
	cfgFile := filepath.Join(dir, "herald.yaml")
	versions := peerVersions()
	targets := []target{
		{
			name: "herald", protocol: loadgen.ProtocolHerald, prefix: "bench:", version: "this tree",
			cmd: func(port int) []string {
				if err := os.WriteFile(cfgFile, fmt.Appendf(nil, heraldConfig, port, apiKey), 0o600); err != nil {
					log.Fatal(err)
				}
				return []string{herald, "serve", "--config", cfgFile}
			},
			wsURL:   func(port int) string { return fmt.Sprintf("ws://127.0.0.1:%d/ws", port) },
			metrics: func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/metrics", port) },
		},
		{
			name: "gorilla", protocol: loadgen.ProtocolRaw, prefix: "b", version: versions["github.com/gorilla/websocket"],
			cmd: func(port int) []string {
				return []string{peer, "-impl", "gorilla", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}
			},
			wsURL:   func(port int) string { return fmt.Sprintf("ws://127.0.0.1:%d/ws", port) },
			metrics: func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/metrics", port) },
		},
		{
			name: "gws", protocol: loadgen.ProtocolRaw, prefix: "b", version: versions["github.com/lxzan/gws"],
			cmd: func(port int) []string {
				return []string{peer, "-impl", "gws", "-addr", fmt.Sprintf("127.0.0.1:%d", port)}
			},
			wsURL:   func(port int) string { return fmt.Sprintf("ws://127.0.0.1:%d/ws", port) },
			metrics: func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/metrics", port) },
		},
		{
			name: "centrifuge", protocol: loadgen.ProtocolCentrifuge, prefix: "b", version: centrifugeVersion(),
			unavailable: centrifugeErr,
			cmd: func(port int) []string {
				return []string{centrifugeBin, "-addr", fmt.Sprintf("127.0.0.1:%d", port)}
			},
			wsURL:   func(port int) string { return fmt.Sprintf("ws://127.0.0.1:%d/ws", port) },
			metrics: func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/metrics", port) },
		},
	}
	rep := &report{mode: mode, sizes: sz, started: time.Now(), load: loadAverage(), results: map[string]map[string]*loadgen.Result{}, errs: map[string]map[string]string{}}
	port := 18600
	for _, t := range targets {
		if !only[t.name] {
			continue
		}
		rep.targets = append(rep.targets, t)
		rep.results[t.name] = map[string]*loadgen.Result{}
		rep.errs[t.name] = map[string]string{}
		for _, w := range []string{"w1", "w2", "w3", "w4"} {
			if !workloads[w] || ctx.Err() != nil {
				continue
			}
			if t.unavailable != "" {
				rep.errs[t.name][w] = t.unavailable
				continue
			}
			port++
			args := t.cmd(port)
			var extra []string
			if t.name == "herald" && profile != "" {
				pprofAddr := fmt.Sprintf("127.0.0.1:%d", port+1000)
				args = append([]string{heraldprof, "-cpuprofile", filepath.Join(profile, "herald-"+w+".cpu.pprof"),
					"-pprof", pprofAddr}, args[1:]...)
				if w == "w1" {
					args = append(args[:1], append([]string{"-memprofilerate", "512"}, args[1:]...)...)
					extra = []string{"--snapshot-url", "http://" + pprofAddr + "/debug/pprof/heap",
						"--snapshot-file", filepath.Join(profile, "herald-w1.heap.pprof")}
				}
			}
			log.Printf("%s %s", t.name, w)
			res, err := runWorkload(ctx, herald, t, w, sz, port, args, extra)
			if err != nil {
				log.Printf("%s %s: %v", t.name, w, err)
				rep.errs[t.name][w] = err.Error()
			}
			if res != nil {
				rep.results[t.name][w] = res
			}
		}
	}
	rep.finished = time.Now()
	md := rep.markdown()
	if err := replaceResults(out, md); err != nil {
		return err
	}
	log.Printf("wrote %s", out)
	return ctx.Err()
}

func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// runWorkload starts the server, runs one workload against it with
// `herald bench` in a separate process, and stops the server.
func runWorkload(ctx context.Context, herald string, t target, w string, sz sizes, port int, serverArgs, extra []string) (*loadgen.Result, error) {
	srv := exec.Command(serverArgs[0], serverArgs[1:]...)
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", t.name, err)
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	}()
	if err := waitUp(ctx, t.metrics(port)); err != nil {
		return nil, fmt.Errorf("%s did not come up: %w; output: %s", t.name, err, srvOut.String())
	}
	args := []string{"bench", "--json", "--quiet",
		"--url", t.wsURL(port), "--protocol", string(t.protocol), "--prefix", t.prefix,
		"--api-key", apiKey, "--server-pid", strconv.Itoa(srv.Process.Pid), "--metrics-url", t.metrics(port),
		"--publishers", strconv.Itoa(sz.publishers), "--connect-concurrency", strconv.Itoa(sz.connectConcur),
	}
	switch w {
	case "w1":
		args = append(args, "--mode", "idle", "--conns", strconv.Itoa(sz.idleConns), "--duration", sz.idleHold.String())
	case "w2":
		args = append(args, "--mode", "fanout", "--conns", strconv.Itoa(sz.fanoutSubs), "--channels", "1",
			"--rate", sz.fanoutRates, "--step", sz.fanoutStep.String(), "--size", "100")
	case "w3":
		args = append(args, "--mode", "echo", "--conns", strconv.Itoa(sz.echoConns), "--duration", sz.echoDuration.String(), "--size", "1024")
	case "w4":
		// W4 is about cost per delivery, not latency: its shared channel's
		// bursts (one publication to every client) keep p99 high, so p99
		// alone does not stop its ramp.
		args = append(args, "--mode", "fanout", "--conns", strconv.Itoa(sz.manyClients), "--channels", strconv.Itoa(sz.manyClients),
			"--shared", "--rate", sz.manyRates, "--step", sz.manyStep.String(), "--size", "100",
			"--publish-batch", sz.publishBatch.String(), "--p99-stop", "1000")
	}
	args = append(args, extra...)
	cmd := exec.CommandContext(ctx, herald, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res loadgen.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("herald bench %s: %v; stderr: %s", w, runErr, lastLines(stderr.String(), 5))
	}
	if runErr != nil {
		return &res, fmt.Errorf("herald bench %s: %v: %s", w, runErr, lastLines(stderr.String(), 5))
	}
	return &res, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// waitUp polls url until it answers, for up to 20 s.
func waitUp(ctx context.Context, url string) error {
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// centrifugeVersion names the centrifuge the server is built from: the
// version bench/centrifuge/go.mod requires and, when a replace line takes
// its source from a Debian package, that package's version.
func centrifugeVersion() string {
	const mod = "github.com/centrifugal/centrifuge"
	v := modVersions("centrifuge/go.mod")[mod]
	if v == "" {
		return "unknown"
	}
	data, _ := os.ReadFile("centrifuge/go.mod")
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "replace" && f[1] == mod && f[2] == "=>" && strings.HasPrefix(f[3], "/usr/share/gocode/") {
			out, err := exec.Command("dpkg-query", "-S", f[3]).Output()
			pkg, _, ok := strings.Cut(strings.TrimSpace(string(out)), ":")
			if err != nil || !ok {
				return v + " (source from " + f[3] + ")"
			}
			if pv, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output(); err == nil {
				return fmt.Sprintf("%s (Debian %s %s)", v, pkg, pv)
			}
		}
	}
	return v
}

// peerVersions reads the required versions from bench/go.mod.
func peerVersions() map[string]string { return modVersions("go.mod") }

// modVersions reads the required versions from a go.mod file.
func modVersions(file string) map[string]string {
	m := map[string]string{}
	f, err := os.Open(file)
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && strings.Contains(fields[0], "/") && strings.HasPrefix(fields[1], "v") {
			m[fields[0]] = fields[1]
		}
	}
	return m
}

const (
	beginMarker = "<!-- results:begin (written by bench/cmd/compare) -->"
	endMarker   = "<!-- results:end -->"
)

// replaceResults writes md between the markers of file, creating the
// markers at the end when they are missing.
func replaceResults(file, md string) error {
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	block := beginMarker + "\n" + md + endMarker
	if i >= 0 && j > i {
		s = s[:i] + block + s[j+len(endMarker):]
	} else {
		s += "\n" + block + "\n"
	}
	return os.WriteFile(file, []byte(s), 0o644)
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// machine describes the host for the report; load is the load average
// when the run started.
func machine(load string) string {
	var b strings.Builder
	model, mem, kernel := "unknown", "unknown", "unknown"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				mem = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(data))
	}
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	fmt.Fprintf(&b, "- CPU: %d × %s (runtime.NumCPU)\n- memory: %s\n- kernel: Linux %s, %s/%s\n- Go: %s\n- file descriptors per process (hard limit): %d\n- load average when the run started: %s\n",
		runtime.NumCPU(), model, mem, kernel, runtime.GOOS, runtime.GOARCH, runtime.Version(), lim.Max, load)
	return b.String()
}
