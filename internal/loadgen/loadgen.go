// Package loadgen is the engine of `herald bench`: it opens many client
// connections to a herald node (or to a comparison server speaking the
// minimal "raw" protocol), subscribes them, publishes at fixed or ramped
// rates and measures what the subscribers see.
//
// Every publication's data carries its channel index, a per-channel
// sequence number and the send time in unix nanoseconds:
//
//	{"bch":3,"bseq":1234,"bts":1763750000000000000,"pad":"xxxx..."}
//
// Each subscriber accounts per channel for the distinct sequence numbers it
// received (a sliding window tolerates the small reorderings concurrent
// publishers cause) and for duplicates; loss is what the publishers
// successfully published, times the subscribers of each channel, minus the
// distinct deliveries. Latency is receive time minus send time on the same
// host clock, recorded in HDR histograms (1 µs to 60 s, 3 digits).
//
// Subscribed connections are event driven (see recv.go): herald's poller
// delivers what they receive, parsed in place without allocating, so the
// generator's own CPU per delivery, which every step reports, stays low.
// A run may spread its connections over several processes (Config.Procs,
// RunChild); only the first publishes and it merges the others' counts
// and histograms.
//
// Modes:
//   - fanout: connections subscribe to Channels channels (connection i to
//     channel i mod Channels, and to one shared channel with Shared); the
//     server's idle CPU is sampled with nothing published, then the
//     publishers send Rates[k] publications per second for Step each,
//     round-robin over the channels, through the server API or through
//     client connections (PublishWindow commands in flight on each).
//     After each step publishing pauses until every expected delivery
//     arrived (or deliveries stop), so each step's loss is exact. The ramp
//     stops at the first saturated step or after P99Stop consecutive steps
//     over MaxP99.
//   - echo: every connection subscribes to a channel of its own and
//     publishes to it over its own connection, one message in flight: the
//     round trip is publish, fan-out to one subscriber, delivery back.
//   - idle: connections subscribe and stay silent; the server's RSS, heap,
//     stacks and goroutines are sampled before and after and divided by the
//     number of connections.
//
// Run may be called concurrently; each call owns its connections and, with
// several processes, its child processes.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what a run measures.
type Mode string

// Modes; see the package documentation.
const (
	ModeFanout Mode = "fanout"
	ModeEcho   Mode = "echo"
	ModeIdle   Mode = "idle"
)

// Config describes one run. The zero value of every field but URL is a
// sensible default.
type Config struct {
	// URL of the server: ws://host:port/ws (herald's WebSocket endpoint,
	// or a peer server's), wss://, or tcp://host:port and tcps://host:port
	// for herald's TCP transport (JSON encoding; publishing through the
	// server API then needs PublishURL).
	URL string
	// Protocol spoken on connections. Default ProtocolHerald.
	Protocol Protocol
	// Mode. Default ModeFanout.
	Mode Mode
	// Conns is the number of client connections. Default 100.
	Conns int
	// Channels is the number of channels the connections spread over in
	// fanout mode. Default 1.
	Channels int
	// Shared also subscribes every connection to one shared channel, which
	// gets its share of the publications (fanout mode).
	Shared bool
	// ChannelPrefix starts every channel name; for herald it names the
	// namespace. Default "bench:".
	ChannelPrefix string
	// Rates are the publications per second of each step (fanout). Default
	// one step of 1000/s.
	Rates []int
	// Step is the length of each fanout step. Default 10 s.
	Step time.Duration
	// PublishVia is "http" (default: herald's POST /api/publish, or the
	// raw servers' POST /publish) or "ws" (publish commands on dedicated
	// client connections).
	PublishVia string
	// PublishURL overrides the publish endpoint. Default derived from URL.
	PublishURL string
	// PublishBatchInterval, with PublishVia "http", groups the
	// publications due within each interval into one POST /api/batch
	// request (herald's, or the raw servers' of the same shape; the path
	// is derived from PublishURL), at most 1000 per request. Each keeps
	// its own sequence number and send time, so its latency includes the
	// wait for its batch. Zero: one request per publication.
	PublishBatchInterval time.Duration
	// APIKey is sent as X-API-Key to herald's server API.
	APIKey string
	// Publishers is the number of concurrent publishers. Default 8.
	Publishers int
	// PayloadSize is the size of each publication's data in bytes. Default
	// 100 (fanout, idle) or 1024 (echo).
	PayloadSize int
	// Duration of an echo run, and how long an idle run holds its
	// connections before sampling. Default 10 s.
	Duration time.Duration
	// Procs is the number of processes holding the connections (fanout
	// and idle): this one and Procs-1 started with ChildCommand, each with
	// its share of Conns; only this one publishes. Zero: one, or as many
	// as the file descriptor limit requires when ChildCommand is set.
	Procs int
	// ChildCommand returns the command that starts one more process of a
	// run (one whose body is RunChild), not yet started. Its standard
	// input and output are the run's; a nil Stderr becomes os.Stderr.
	ChildCommand func() (*exec.Cmd, error) `json:"-"`
	// ConnectConcurrency bounds dials in progress. Default 64.
	ConnectConcurrency int
	// NoSpread disables spreading loopback connections over the source
	// addresses 127.0.0.2-127.0.0.254.
	NoSpread bool
	// InsecureTLS skips certificate verification for wss:// (self-signed
	// test servers only).
	InsecureTLS bool
	// ServerPID, when set, is sampled from /proc for CPU and RSS.
	ServerPID int
	// MetricsURL, when set, is scraped (Prometheus text) for the Go
	// runtime's heap, stack and goroutine figures.
	MetricsURL string
	// MaxP99 is the p99 above which a fanout step fails. Default 100 ms.
	MaxP99 time.Duration
	// P99Stop is how many consecutive steps over MaxP99 (and otherwise
	// clean) stop the ramp. Default 2.
	P99Stop int
	// KeepGoing runs every rate step. By default the ramp stops at the
	// first saturated step (see Step.Saturated) and after P99Stop
	// consecutive steps over MaxP99.
	KeepGoing bool
	// Baseline is how long the server's CPU is sampled with every
	// connection open and nothing published, before the first fanout
	// step (with ServerPID). Default 3 s; negative: none.
	Baseline time.Duration
	// Warmup is how long the first rate runs, unmeasured, before the
	// first step: the first publication of a fresh run costs both sides
	// more (per-connection state made on first delivery, heaps and
	// pools growing), and at low rates one slow publication is the whole
	// p99 of a step. It lasts at least long enough to publish once to
	// every channel and at most one step. Default 2 s; negative: none.
	Warmup time.Duration
	// PublishWindow is how many publish commands may be in flight on each
	// publishing connection (PublishVia "ws"). Default 16.
	PublishWindow int
	// SnapshotURL, in idle mode, is fetched once the connections have been
	// held for Duration (before the server is sampled) and its body saved
	// to SnapshotFile: for example a heap profile from a pprof endpoint.
	SnapshotURL  string
	SnapshotFile string
	// Progress receives one status line per second. Nil: none.
	Progress io.Writer `json:"-"`
}

func (c *Config) defaults() error {
	if c.URL == "" {
		return errors.New("loadgen: URL is required")
	}
	if c.Protocol == "" {
		c.Protocol = ProtocolHerald
	}
	if c.Mode == "" {
		c.Mode = ModeFanout
	}
	switch c.Mode {
	case ModeFanout, ModeEcho, ModeIdle:
	default:
		return fmt.Errorf("loadgen: unknown mode %q (fanout, echo or idle)", c.Mode)
	}
	if c.Conns <= 0 {
		c.Conns = 100
	}
	if c.Channels <= 0 {
		c.Channels = 1
	}
	if c.ChannelPrefix == "" {
		c.ChannelPrefix = "bench:"
	}
	if len(c.Rates) == 0 {
		c.Rates = []int{1000}
	}
	for _, r := range c.Rates {
		if r <= 0 {
			return fmt.Errorf("loadgen: rate %d must be positive", r)
		}
	}
	if c.Step <= 0 {
		c.Step = 10 * time.Second
	}
	if c.PublishVia == "" {
		c.PublishVia = "http"
	}
	if c.PublishVia != "http" && c.PublishVia != "ws" {
		return fmt.Errorf("loadgen: publish via %q (http or ws)", c.PublishVia)
	}
	if err := c.checkBatch(); err != nil {
		return err
	}
	if c.Publishers <= 0 {
		c.Publishers = 8
	}
	if c.PayloadSize <= 0 {
		c.PayloadSize = 100
		if c.Mode == ModeEcho {
			c.PayloadSize = 1024
		}
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 64
	}
	if c.MaxP99 <= 0 {
		c.MaxP99 = 100 * time.Millisecond
	}
	if c.P99Stop <= 0 {
		c.P99Stop = 2
	}
	if c.Warmup == 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Baseline == 0 {
		c.Baseline = 3 * time.Second
	}
	if c.PublishWindow <= 0 {
		c.PublishWindow = 16
	}
	if c.PublishURL == "" {
		u, err := url.Parse(c.URL)
		if err != nil {
			return fmt.Errorf("loadgen: url: %w", err)
		}
		if u.Scheme == "tcp" || u.Scheme == "tcps" {
			if c.Mode == ModeFanout && c.PublishVia == "http" {
				return errors.New("loadgen: a tcp:// target needs PublishURL (the node's HTTP address, http://host:port/api/publish) or publishing via ws")
			}
			return nil
		}
		u.Scheme = strings.Replace(u.Scheme, "ws", "http", 1)
		u.Path = "/api/publish"
		if c.Protocol != ProtocolHerald { // the comparison servers' endpoint
			u.Path = "/publish"
		}
		u.RawQuery = ""
		c.PublishURL = u.String()
	}
	return nil
}

// Result is what a run measured. Figures not measured (no ServerPID, no
// MetricsURL) are zero.
type Result struct {
	Mode       Mode     `json:"mode"`
	URL        string   `json:"url"`
	Protocol   Protocol `json:"protocol"`
	Conns      int      `json:"conns"`
	Connected  int      `json:"connected"`
	ConnectErr int      `json:"connect_errors"`
	// FirstConnectError describes the first failed connection, if any.
	FirstConnectError string  `json:"first_connect_error,omitempty"`
	ConnectSeconds    float64 `json:"connect_seconds"`
	// Disconnects counts connections the server closed during the run.
	Disconnects int64 `json:"disconnects"`
	// Steps of a fanout run, in order.
	Steps []Step `json:"steps,omitempty"`
	// Best is the index in Steps of the step with the most deliveries per
	// second among those that passed (-1: none passed).
	Best int `json:"best_step"`
	// FirstFailed is the index in Steps of the first step that did not
	// pass (-1: none failed).
	FirstFailed int `json:"first_failed_step"`
	// Stopped says why the ramp ended before its last rate, if it did.
	Stopped string `json:"stopped,omitempty"`
	// IdleCPU is the server's CPU use (percent of one core) with every
	// connection open and nothing published, sampled for Config.Baseline
	// before the first fanout step.
	IdleCPU float64     `json:"server_idle_cpu_percent"`
	Echo    *EchoResult `json:"echo,omitempty"`
	Idle    *IdleResult `json:"idle,omitempty"`
	// Procs is the number of processes that held the connections.
	Procs int `json:"procs"`
	// Series has one point per second of the run.
	Series []Point `json:"series"`
}

// Step is one fanout rate step.
type Step struct {
	TargetRate       int     `json:"target_rate"`
	PublishRate      float64 `json:"publish_rate"`
	Published        int64   `json:"published"`
	PublishErrors    int64   `json:"publish_errors"`
	Expected         int64   `json:"expected_deliveries"`
	Delivered        int64   `json:"delivered"`
	Lost             int64   `json:"lost"`
	Duplicates       int64   `json:"duplicates"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	Latency          Latency `json:"latency"`
	ServerCPU        float64 `json:"server_cpu_percent"`
	ServerRSS        int64   `json:"server_rss_bytes"`
	// CPUPerDelivery is server CPU time per delivery in nanoseconds: all
	// the CPU the server used during the step, divided by the deliveries.
	CPUPerDelivery float64 `json:"server_cpu_ns_per_delivery"`
	// MarginalCPUPerDelivery leaves out what the server spends anyway
	// holding the connections: (step CPU - Result.IdleCPU over the same
	// time) / deliveries, in nanoseconds.
	MarginalCPUPerDelivery float64 `json:"server_marginal_cpu_ns_per_delivery"`
	// ClientCPU is the load generator's own CPU use during the step (all
	// its processes, 100 per busy core), and ClientCPUPerDelivery its CPU
	// time per delivery in nanoseconds: when the generator shares the
	// server's cores, this is what measuring costs.
	ClientCPU            float64 `json:"client_cpu_percent"`
	ClientCPUPerDelivery float64 `json:"client_cpu_ns_per_delivery"`
	OK                   bool    `json:"ok"`
}

// EchoResult is the outcome of an echo run.
type EchoResult struct {
	RoundTrips  int64   `json:"round_trips"`
	PerSec      float64 `json:"round_trips_per_sec"`
	Errors      int64   `json:"errors"`
	Latency     Latency `json:"latency"`
	ServerCPU   float64 `json:"server_cpu_percent"`
	PayloadSize int     `json:"payload_size"`
}

// IdleResult is the outcome of an idle run: figures before connecting,
// after, and the difference per connection.
type IdleResult struct {
	BaselineRSS   int64        `json:"baseline_rss_bytes"`
	RSS           int64        `json:"rss_bytes"`
	RSSPerConn    float64      `json:"rss_bytes_per_conn"`
	Baseline      RuntimeStats `json:"baseline_runtime"`
	Runtime       RuntimeStats `json:"runtime"`
	HeapPerConn   float64      `json:"heap_bytes_per_conn"`
	StackPerConn  float64      `json:"stack_bytes_per_conn"`
	GoroutinesPer float64      `json:"goroutines_per_conn"`
}

// Point is one second of a run.
type Point struct {
	T          float64 `json:"t"`
	Deliveries float64 `json:"deliveries_per_sec"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
	ServerCPU  float64 `json:"server_cpu_percent,omitempty"`
	ServerRSS  int64   `json:"server_rss_bytes,omitempty"`
}

// run is the state of one Run.
type run struct {
	cfg Config
	// lo and hi bound the indexes of the connections this process holds.
	lo, hi int
	// children are the other processes of the run, in the order started;
	// readyKids points to it once every one is ready for requests (the
	// goroutines that query them read it).
	children  []*childProc
	readyKids atomic.Pointer[[]*childProc]
	dialer    *dialer
	names     []string // channel index -> name
	subs      []int64  // channel index -> subscribers among our connections
	seqs      []atomic.Uint64
	lat       *latencyRecorder
	conns     []*conn
	counters  []subCounters // per connection
	expected  atomic.Int64
	discon    atomic.Int64
	pubOK     atomic.Int64 // publications the server accepted
	pubErrs   atomic.Int64 // publications that failed
	// closing is set when the run closes its connections, so that their
	// ends are not counted as disconnects.
	closing atomic.Bool
	// readers has one count per connection handed to the poller, until
	// its close handler ran.
	readers sync.WaitGroup
	start   time.Time
	// connected counts open client connections for the progress line.
	connected atomic.Int64
	// echoCount counts completed echo round trips.
	echoCount atomic.Int64
	seriesMu  sync.Mutex
}

// subCounters are one connection's delivery counts, written by its reader.
type subCounters struct {
	delivered atomic.Int64
	dups      atomic.Int64
	_         [48]byte
}

// Run performs one run and returns its result. When ctx ends the run stops
// early and returns what it measured so far with ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	limit, err := raiseFDLimit()
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	extra := 0
	if cfg.PublishVia == "ws" && cfg.Mode == ModeFanout {
		extra = cfg.Publishers
	}
	procs, err := chooseProcs(cfg, extra, limit)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	r, err := newRun(cfg, 0, procs)
	if err != nil {
		return nil, err
	}
	res := &Result{Mode: cfg.Mode, URL: cfg.URL, Protocol: cfg.Protocol, Conns: cfg.Conns, Procs: procs, Best: -1, FirstFailed: -1}

	var base ProcSample
	var baseRT RuntimeStats
	if cfg.Mode == ModeIdle {
		base, baseRT, err = r.sampleServer(ctx)
		if err != nil {
			return nil, err
		}
	}
	if procs > 1 {
		if err := r.startChildren(ctx, procs); err != nil {
			return nil, err
		}
		defer r.stopChildren()
	}

	tickCtx, stopTick := context.WithCancel(ctx)
	tickDone := make(chan struct{})
	go func() { defer close(tickDone); r.tick(tickCtx, res) }()
	defer func() {
		stopTick()
		<-tickDone
	}()

	t0 := time.Now()
	r.connect(ctx, res)
	defer r.closeAll()
	if err := r.waitReady(res); err != nil {
		return res, err
	}
	res.ConnectSeconds = time.Since(t0).Seconds()
	if res.Connected == 0 {
		return res, fmt.Errorf("loadgen: no connection succeeded: %s", res.FirstConnectError)
	}

	switch cfg.Mode {
	case ModeFanout:
		err = r.fanout(ctx, res)
	case ModeEcho:
		err = r.echo(ctx, res)
	case ModeIdle:
		err = r.idle(ctx, res, base, baseRT)
	}
	_, _, childDiscon, _ := r.childTotals()
	res.Disconnects = r.discon.Load() + childDiscon
	if err == nil {
		err = r.childErr()
	}
	return res, err
}

// chooseProcs returns how many processes hold the connections: Procs when
// set (checking that each one's share fits its descriptor limit), else
// as few as fit.
func chooseProcs(cfg Config, extra int, limit uint64) (int, error) {
	if cfg.Mode == ModeEcho {
		if cfg.Procs > 1 {
			return 0, errors.New("echo runs in one process: leave --procs unset")
		}
		return 1, checkFDs(cfg.Conns, limit)
	}
	if cfg.Procs > 0 {
		if cfg.Procs > 1 && cfg.ChildCommand == nil {
			return 0, errors.New("several processes need Config.ChildCommand")
		}
		if cfg.Procs > cfg.Conns {
			return 0, fmt.Errorf("%d processes for %d connections", cfg.Procs, cfg.Conns)
		}
		if checkFDs(ceilDiv(cfg.Conns, cfg.Procs)+extra, limit) != nil {
			perProc := int(limit) - fdOverhead - extra
			if perProc < 1 {
				return 0, fmt.Errorf("a file descriptor limit of %d leaves no room for connections", limit)
			}
			return 0, fmt.Errorf("with --procs %d each process needs about %d file descriptors but may open at most %d (hard RLIMIT_NOFILE): use --procs %d, or raise the hard limit",
				cfg.Procs, ceilDiv(cfg.Conns, cfg.Procs)+extra+fdOverhead, limit, ceilDiv(cfg.Conns, perProc))
		}
		return cfg.Procs, nil
	}
	err := checkFDs(cfg.Conns+extra, limit)
	if err == nil {
		return 1, nil
	}
	if cfg.ChildCommand == nil {
		return 0, err
	}
	perProc := int(limit) - fdOverhead - extra
	if perProc < 1 {
		return 0, err
	}
	return ceilDiv(cfg.Conns, perProc), nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// newRun prepares process proc of procs: it holds connections
// [proc*Conns/procs, (proc+1)*Conns/procs) and dials from its own slice
// of the spread source addresses.
func newRun(cfg Config, proc, procs int) (*run, error) {
	d, err := newDialer(cfg.URL, cfg.Protocol, !cfg.NoSpread, cfg.InsecureTLS)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if procs > 1 && len(d.srcAddrs) >= procs {
		n := len(d.srcAddrs)
		d.srcAddrs = d.srcAddrs[proc*n/procs : (proc+1)*n/procs]
	}
	r := &run{cfg: cfg, dialer: d, lat: newLatencyRecorder(latencyShards()), start: time.Now(),
		lo: proc * cfg.Conns / procs, hi: (proc + 1) * cfg.Conns / procs}
	// Made here, before the progress ticker and the children's sampler
	// start reading the counters while connect fills in the connections.
	r.conns = make([]*conn, r.hi-r.lo)
	r.counters = make([]subCounters, r.hi-r.lo)
	r.setupChannels()
	return r, nil
}

func (r *run) setupChannels() {
	switch r.cfg.Mode {
	case ModeEcho:
		r.names = make([]string, r.cfg.Conns)
		for i := range r.names {
			r.names[i] = r.cfg.ChannelPrefix + "e" + strconv.Itoa(i)
		}
		r.subs = make([]int64, r.cfg.Conns)
		for i := range r.subs {
			r.subs[i] = 1
		}
	default:
		n := r.cfg.Channels
		r.names = make([]string, n, n+1)
		for i := range r.names {
			r.names[i] = r.cfg.ChannelPrefix + strconv.Itoa(i)
		}
		if n == 1 && !r.cfg.Shared {
			r.names[0] = r.cfg.ChannelPrefix + "all"
		}
		if r.cfg.Shared {
			r.names = append(r.names, r.cfg.ChannelPrefix+"shared")
		}
		r.subs = make([]int64, len(r.names))
		for i := 0; i < r.cfg.Conns; i++ {
			for _, ch := range r.channelsOf(i) {
				r.subs[ch]++
			}
		}
	}
	r.seqs = make([]atomic.Uint64, len(r.names))
}

// channelsOf lists the channel indexes connection i subscribes to.
func (r *run) channelsOf(i int) []int {
	if r.cfg.Mode == ModeEcho {
		return []int{i}
	}
	chs := []int{i % r.cfg.Channels}
	if r.cfg.Shared {
		chs = append(chs, r.cfg.Channels)
	}
	return chs
}

// connect dials and subscribes every connection, ConnectConcurrency at a
// time; in fanout and idle mode each connection is then handed to the
// poller, which delivers what it receives.
func (r *run) connect(ctx context.Context, res *Result) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.cfg.ConnectConcurrency)
	for i := r.lo; i < r.hi && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			cn, err := r.openConn(ctx, i)
			if err == nil && r.cfg.Mode != ModeEcho {
				r.connected.Add(1) // before serve: the close handler subtracts
				if err = r.serve(cn, i); err != nil {
					r.connected.Add(-1)
					err = fmt.Errorf("conn %d: %w", i, err)
				}
			} else if err == nil {
				r.connected.Add(1)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.ConnectErr++
				if res.FirstConnectError == "" {
					res.FirstConnectError = err.Error()
				}
				return
			}
			r.conns[i-r.lo] = cn
			res.Connected++
		}()
	}
	wg.Wait()
}

func (r *run) openConn(ctx context.Context, i int) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cn, err := r.dialer.dial(dctx, i)
	if err != nil {
		return nil, fmt.Errorf("conn %d: %w", i, err)
	}
	for _, ch := range r.channelsOf(i) {
		if err := cn.subscribe(dctx, r.names[ch]); err != nil {
			cn.c.close()
			return nil, fmt.Errorf("conn %d: %s: %w", i, r.names[ch], err)
		}
	}
	return cn, nil
}

// ownTotals sums the deliveries and duplicates of this process's
// connections.
func (r *run) ownTotals() (delivered, dups int64) {
	for i := range r.counters {
		delivered += r.counters[i].delivered.Load()
		dups += r.counters[i].dups.Load()
	}
	return
}

// totals sums the deliveries and duplicates of every process's
// connections.
func (r *run) totals() (delivered, dups int64) {
	delivered, dups = r.ownTotals()
	if len(r.kids()) > 0 {
		d, u, _, _ := r.childTotals()
		delivered += d
		dups += u
	}
	return
}

func (r *run) closeAll() {
	r.closing.Store(true)
	for _, cn := range r.conns {
		if cn != nil {
			cn.c.close()
		}
	}
	r.readers.Wait()
}

func (r *run) sampleServer(ctx context.Context) (ProcSample, RuntimeStats, error) {
	var ps ProcSample
	var rs RuntimeStats
	var err error
	if r.cfg.ServerPID > 0 {
		if ps, err = readProc(r.cfg.ServerPID); err != nil {
			return ps, rs, fmt.Errorf("loadgen: server pid: %w", err)
		}
	}
	if r.cfg.MetricsURL != "" {
		if rs, err = scrapeRuntime(ctx, r.cfg.MetricsURL); err != nil {
			return ps, rs, fmt.Errorf("loadgen: %w", err)
		}
	}
	return ps, rs, nil
}

// tick prints the progress line and records the series once a second.
func (r *run) tick(ctx context.Context, res *Result) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastDelivered int64
	var lastProc ProcSample
	if r.cfg.ServerPID > 0 {
		lastProc, _ = readProc(r.cfg.ServerPID)
	}
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			delivered, dups := r.totals()
			if r.cfg.Mode == ModeEcho {
				delivered = r.echoCount.Load()
			}
			h := r.lat.takeSecond()
			r.childHists("second", h)
			pt := Point{
				T:          now.Sub(r.start).Seconds(),
				Deliveries: float64(delivered-lastDelivered) / now.Sub(last).Seconds(),
				P50:        float64(h.ValueAtQuantile(50)) / 1000,
				P99:        float64(h.ValueAtQuantile(99)) / 1000,
			}
			lastDelivered, last = delivered, now
			if r.cfg.ServerPID > 0 {
				if ps, err := readProc(r.cfg.ServerPID); err == nil {
					pt.ServerCPU = cpuPercent(lastProc, ps)
					pt.ServerRSS = ps.RSS
					lastProc = ps
				}
			}
			r.seriesMu.Lock()
			res.Series = append(res.Series, pt)
			r.seriesMu.Unlock()
			if r.cfg.Progress != nil {
				line := fmt.Sprintf("%5.0fs conns=%d deliv/s=%.0f p50=%.2fms p99=%.2fms in-flight=%d dups=%d disc=%d",
					pt.T, r.connectedNow(), pt.Deliveries, pt.P50, pt.P99,
					max(r.expected.Load()-delivered, 0), dups, r.discon.Load())
				if r.cfg.ServerPID > 0 {
					line += fmt.Sprintf(" cpu=%.0f%% rss=%.1fMiB", pt.ServerCPU, float64(pt.ServerRSS)/(1<<20))
				}
				fmt.Fprintln(r.cfg.Progress, line)
			}
		}
	}
}

func (r *run) connectedNow() int64 {
	n := r.connected.Load()
	for _, c := range r.kids() {
		c.mu.Lock()
		n += c.last.Connected
		c.mu.Unlock()
	}
	return n
}

// httpClient returns a client for the publishers with enough idle
// connections for all of them.
func (r *run) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = r.cfg.Publishers * 2
	tr.MaxIdleConnsPerHost = r.cfg.Publishers * 2
	if r.dialer.tls != nil {
		tr.TLSClientConfig = r.dialer.tls
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
