package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// publisher sends publications and accounts for each outcome with
// run.published or run.pubErrs: synchronously (HTTP), or when the reply
// arrives (publish commands on client connections, which may be
// pipelined). Worker w of a step calls publish from one goroutine only.
type publisher interface {
	publish(ctx context.Context, worker int, ch int, data []byte)
	// drain waits until every publication sent has its outcome, or ctx
	// ends, or the replies stop coming for a while.
	drain(ctx context.Context)
	close()
}

type httpPublisher struct {
	r      *run
	client *http.Client
	url    string
	apiKey string
}

func (p *httpPublisher) publish(ctx context.Context, _ int, ch int, data []byte) {
	if err := p.post(ctx, p.r.names[ch], data); err != nil {
		p.r.pubErrs.Add(1)
		return
	}
	p.r.published(ch)
}

func (p *httpPublisher) post(ctx context.Context, channel string, data []byte) error {
	q, _ := json.Marshal(channel)
	body := make([]byte, 0, len(data)+len(q)+24)
	body = append(body, `{"channel":`...)
	body = append(body, q...)
	body = append(body, `,"data":`...)
	body = append(body, data...)
	body = append(body, '}')
	resp, err := postJSON(ctx, p.client, p.url, p.apiKey, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("publish: status %s", resp.Status)
	}
	return nil
}

// postJSON sends body to url as a server API request; the caller closes
// the response body.
func postJSON(ctx context.Context, client *http.Client, url, apiKey string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if apiKey != "" {
		req.Header.Set("X-API-Key", apiKey)
	}
	return client.Do(req)
}

func (p *httpPublisher) drain(context.Context) {}

func (p *httpPublisher) close() { p.client.CloseIdleConnections() }

// wsPublisher publishes over dedicated client connections, one per
// worker, as a backend holding a persistent connection would: up to
// PublishWindow publish commands in flight per connection, each counted
// when its reply arrives (herald answers every command with its id; the
// raw servers answer {"id":N} to a pub command carrying an id).
type wsPublisher struct {
	r       *run
	conns   []*pubConn
	readers sync.WaitGroup
}

// pubConn is one publishing connection. Its worker sends; its reader
// goroutine matches replies to the channels they published to.
type pubConn struct {
	cn     *conn
	window chan struct{} // one token per command in flight
	buf    []byte        // the worker's frame buffer
	nextID uint32        // the worker's command ids

	mu       sync.Mutex
	inFlight map[uint32]int // command id -> channel index
}

func (r *run) newWSPublisher(ctx context.Context) (*wsPublisher, error) {
	p := &wsPublisher{r: r}
	for i := 0; i < r.cfg.Publishers; i++ {
		cn, err := r.dialer.dial(ctx, r.hi+i)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("loadgen: publisher connection: %w", err)
		}
		pc := &pubConn{cn: cn, window: make(chan struct{}, r.cfg.PublishWindow), nextID: cn.next,
			inFlight: make(map[uint32]int, r.cfg.PublishWindow)}
		p.conns = append(p.conns, pc)
		p.readers.Add(1)
		go func() { defer p.readers.Done(); p.readReplies(pc) }()
	}
	return p, nil
}

// readReplies accounts for the replies of one publishing connection until
// it closes; publications still in flight then count as errors.
func (p *wsPublisher) readReplies(pc *pubConn) {
	var buf []byte
	var err error
	for {
		if buf, err = pc.cn.c.read(context.Background(), buf); err != nil {
			break
		}
		eachMessage(pc.cn.proto, buf, func(msg []byte) bool {
			p.reply(pc, msg)
			return true
		})
	}
	pc.mu.Lock()
	n := len(pc.inFlight)
	clear(pc.inFlight)
	pc.mu.Unlock()
	p.r.pubErrs.Add(int64(n))
	for range n {
		<-pc.window
	}
}

// reply accounts for one message read from a publishing connection.
func (p *wsPublisher) reply(pc *pubConn, msg []byte) {
	id, isErr, ok := parseReply(msg)
	if !ok {
		return // a ping push, anything else
	}
	pc.mu.Lock()
	ch, known := pc.inFlight[id]
	delete(pc.inFlight, id)
	pc.mu.Unlock()
	if !known {
		return
	}
	if isErr {
		p.r.pubErrs.Add(1)
	} else {
		p.r.published(ch)
	}
	<-pc.window
}

// parseReply finds the command id of a reply: {"id":N,...}, an error when
// it carries "error". ok is false for frames without an id.
func parseReply(b []byte) (id uint32, isErr, ok bool) {
	if len(b) > 4096 || bytes.Contains(b, keyCh) {
		return 0, false, false // a publication, not a reply
	}
	v, found := intAfter(b, keyID)
	if !found || v == 0 || v > math.MaxUint32 {
		return 0, false, false
	}
	return uint32(v), bytes.Contains(b, keyError), true
}

var (
	keyID    = []byte(`"id":`)
	keyError = []byte(`"error":`)
)

func (p *wsPublisher) publish(ctx context.Context, w int, ch int, data []byte) {
	pc := p.conns[w]
	select {
	case pc.window <- struct{}{}:
	case <-ctx.Done():
		p.r.pubErrs.Add(1)
		return
	}
	pc.nextID++
	id := pc.nextID
	pc.mu.Lock()
	pc.inFlight[id] = ch
	pc.mu.Unlock()
	pc.buf = publishFrame(pc.buf[:0], pc.cn.proto, id, p.r.names[ch], data)
	if err := pc.cn.c.write(ctx, pc.buf); err != nil {
		pc.mu.Lock()
		_, mine := pc.inFlight[id]
		delete(pc.inFlight, id)
		pc.mu.Unlock()
		if mine { // else the reader already gave up on it
			p.r.pubErrs.Add(1)
			<-pc.window
		}
	}
}

// drain waits until no command is in flight, for at most 10 s.
func (p *wsPublisher) drain(ctx context.Context) {
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		busy := false
		for _, pc := range p.conns {
			if len(pc.window) > 0 {
				busy = true
				break
			}
		}
		if !busy || time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *wsPublisher) close() {
	for _, pc := range p.conns {
		pc.cn.c.close()
	}
	p.readers.Wait()
}

// published accounts for one successful publication to channel ch.
func (r *run) published(ch int) {
	r.pubOK.Add(1)
	r.expected.Add(r.subs[ch])
}

func (r *run) fanout(ctx context.Context, res *Result) error {
	var pub publisher
	if r.cfg.PublishVia == "ws" {
		wp, err := r.newWSPublisher(ctx)
		if err != nil {
			return err
		}
		pub = wp
	} else if r.cfg.PublishBatchInterval > 0 {
		bp, err := r.newBatchPublisher()
		if err != nil {
			return err
		}
		pub = bp
	} else {
		pub = &httpPublisher{r: r, client: r.httpClient(), url: r.cfg.PublishURL, apiKey: r.cfg.APIKey}
	}
	defer pub.close()
	if err := r.quietBaseline(ctx, res); err != nil {
		return err
	}
	if len(r.cfg.Rates) > 0 && r.cfg.Warmup > 0 {
		// Unmeasured: its deliveries are waited for, then forgotten (each
		// step counts from its own start).
		rate := r.cfg.Rates[0]
		d := r.cfg.Warmup
		d = max(d, time.Duration(int64(len(r.names))*int64(time.Second)/int64(rate))+time.Millisecond)
		r.stepFor(ctx, pub, rate, res.IdleCPU, min(d, r.cfg.Step))
	}
	p99Fails := 0
	for _, rate := range r.cfg.Rates {
		if ctx.Err() != nil {
			break
		}
		st := r.step(ctx, pub, rate, res.IdleCPU)
		res.Steps = append(res.Steps, st)
		k := len(res.Steps) - 1
		if st.OK && (res.Best < 0 || st.DeliveriesPerSec > res.Steps[res.Best].DeliveriesPerSec) {
			res.Best = k
		}
		if !st.OK && res.FirstFailed < 0 {
			res.FirstFailed = k
		}
		if st.Saturated() {
			if !r.cfg.KeepGoing {
				res.Stopped = fmt.Sprintf("step %d/s: %s", rate, st.Failure(r.cfg.MaxP99))
				break
			}
			continue
		}
		if st.OK {
			p99Fails = 0
			continue
		}
		p99Fails++
		if p99Fails >= r.cfg.P99Stop && !r.cfg.KeepGoing {
			res.Stopped = fmt.Sprintf("%d consecutive steps over p99 %s", p99Fails, r.cfg.MaxP99)
			break
		}
	}
	return ctx.Err()
}

// quietBaseline samples the server's CPU while the connections are open
// and nothing is published: the fixed cost of holding them (heartbeats,
// timers), subtracted from each step's CPU for the marginal figure.
func (r *run) quietBaseline(ctx context.Context, res *Result) error {
	if r.cfg.ServerPID <= 0 || r.cfg.Baseline <= 0 {
		return nil
	}
	p0, err := readProc(r.cfg.ServerPID)
	if err != nil {
		return fmt.Errorf("loadgen: server pid: %w", err)
	}
	t := time.NewTimer(r.cfg.Baseline)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	p1, err := readProc(r.cfg.ServerPID)
	if err != nil {
		return fmt.Errorf("loadgen: server pid: %w", err)
	}
	res.IdleCPU = cpuPercent(p0, p1)
	return nil
}

// maxAhead is how far ahead of its schedule a publisher may run before it
// sleeps; sleeping for less costs more than it paces.
const maxAhead = time.Millisecond

// step publishes at rate for cfg.Step, then waits for the deliveries.
// idleCPU is the server's CPU use with nothing published (percent).
func (r *run) step(ctx context.Context, pub publisher, rate int, idleCPU float64) Step {
	return r.stepFor(ctx, pub, rate, idleCPU, r.cfg.Step)
}

// stepFor is step for a given duration.
func (r *run) stepFor(ctx context.Context, pub publisher, rate int, idleCPU float64, dur time.Duration) Step {
	st := Step{TargetRate: rate}
	d0, dup0 := r.totals()
	e0 := r.expected.Load()
	ok0, err0 := r.pubOK.Load(), r.pubErrs.Load()
	r.lat.takeStep()
	r.childHists("step", newHist()) // start the children's step afresh
	var p0 ProcSample
	if r.cfg.ServerPID > 0 {
		p0, _ = readProc(r.cfg.ServerPID)
	}
	c0, _ := readProc(os.Getpid())
	c0.CPUTicks += r.childCPUTicks()
	start := time.Now()
	end := start.Add(dur)
	workers := min(r.cfg.Publishers, rate)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for n := int64(w); ; n += int64(workers) {
				at := start.Add(time.Duration(n * int64(time.Second) / int64(rate)))
				if !at.Before(end) || ctx.Err() != nil {
					return
				}
				if wait := time.Until(at); wait > maxAhead {
					timer.Reset(wait)
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					}
				}
				ch := int(n % int64(len(r.names)))
				seq := r.seqs[ch].Add(1)
				buf = payload(buf[:0], ch, seq, time.Now(), r.cfg.PayloadSize)
				pub.publish(ctx, w, ch, buf)
			}
		}()
	}
	wg.Wait()
	pubDur := time.Since(start)
	pub.drain(ctx)

	// Wait until every expected delivery arrived, or deliveries stop.
	want := r.expected.Load() - e0
	lastD, lastAt := int64(-1), time.Now()
	deadline := time.Now().Add(15 * time.Second)
	poll := time.NewTicker(10 * time.Millisecond)
	for {
		d, _ := r.totals()
		now := time.Now()
		if d-d0 >= want {
			lastAt = now
			break
		}
		if d != lastD {
			lastD, lastAt = d, now
		}
		if now.Sub(lastAt) > time.Second || now.After(deadline) || ctx.Err() != nil {
			break
		}
		<-poll.C
	}
	poll.Stop()
	d1, dup1 := r.totals()
	elapsed := max(pubDur, lastAt.Sub(start))

	st.Published = r.pubOK.Load() - ok0
	st.PublishErrors = r.pubErrs.Load() - err0
	st.PublishRate = float64(st.Published) / pubDur.Seconds()
	st.Expected = want
	st.Delivered = d1 - d0
	st.Lost = max(want-st.Delivered, 0)
	st.Duplicates = dup1 - dup0
	st.DeliveriesPerSec = float64(st.Delivered) / elapsed.Seconds()
	h := r.lat.takeStep()
	r.childHists("step", h)
	st.Latency = summarize(h)
	if r.cfg.ServerPID > 0 {
		if p1, err := readProc(r.cfg.ServerPID); err == nil {
			st.ServerCPU = cpuPercent(p0, p1)
			st.ServerRSS = p1.RSS
			if st.Delivered > 0 {
				cpuNs := float64(p1.CPUTicks-p0.CPUTicks) / clockTicks * 1e9
				st.CPUPerDelivery = cpuNs / float64(st.Delivered)
				idleNs := idleCPU / 100 * float64(p1.At.Sub(p0.At))
				st.MarginalCPUPerDelivery = max(cpuNs-idleNs, 0) / float64(st.Delivered)
			}
		}
	}
	if c1, err := readProc(os.Getpid()); err == nil {
		c1.CPUTicks += r.childCPUTicks()
		st.ClientCPU = cpuPercent(c0, c1)
		if st.Delivered > 0 {
			st.ClientCPUPerDelivery = float64(c1.CPUTicks-c0.CPUTicks) / clockTicks * 1e9 / float64(st.Delivered)
		}
	}
	st.OK = !st.Saturated() && st.Latency.P99 <= float64(r.cfg.MaxP99)/float64(time.Millisecond)
	return st
}

// Failure says why a step did not pass with maxP99 as the p99 bound
// ("passed" when it did).
func (s *Step) Failure(maxP99 time.Duration) string {
	var why []string
	if s.Lost > 0 {
		why = append(why, fmt.Sprintf("%d lost", s.Lost))
	}
	if s.Duplicates > 0 {
		why = append(why, fmt.Sprintf("%d duplicates", s.Duplicates))
	}
	if s.PublishErrors > 0 {
		why = append(why, fmt.Sprintf("%d publish errors", s.PublishErrors))
	}
	if s.Delivered == 0 {
		why = append(why, "nothing delivered")
	}
	if s.PublishRate < 0.9*float64(s.TargetRate) {
		why = append(why, fmt.Sprintf("published %.0f/s of %d/s", s.PublishRate, s.TargetRate))
	}
	if s.Latency.P99 > float64(maxP99)/float64(time.Millisecond) {
		why = append(why, fmt.Sprintf("p99 %.1f ms over %s", s.Latency.P99, maxP99))
	}
	if len(why) == 0 {
		return "passed"
	}
	return strings.Join(why, ", ")
}

// Saturated reports whether the step shows that the system under test (or
// the load generator) could not keep up: loss, duplicates, publish errors,
// no deliveries, or a publish rate below 90% of the target. A step with
// only a high p99 is not saturated: higher rates may still pass, because
// on a shared machine latency is noisier than throughput.
func (s *Step) Saturated() bool {
	return s.Lost > 0 || s.PublishErrors > 0 || s.Duplicates > 0 || s.Delivered == 0 ||
		s.PublishRate < 0.9*float64(s.TargetRate)
}

func (r *run) echo(ctx context.Context, res *Result) error {
	var p0 ProcSample
	if r.cfg.ServerPID > 0 {
		p0, _ = readProc(r.cfg.ServerPID)
	}
	r.lat.takeStep()
	start := time.Now()
	end := start.Add(r.cfg.Duration)
	var errs atomic.Int64
	var wg sync.WaitGroup
	for i, cn := range r.conns {
		if cn == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.echoLoop(ctx, cn, i, end); err != nil {
				errs.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	n := r.echoCount.Load()
	e := &EchoResult{
		RoundTrips:  n,
		PerSec:      float64(n) / elapsed.Seconds(),
		Errors:      errs.Load(),
		Latency:     summarize(r.lat.takeStep()),
		PayloadSize: r.cfg.PayloadSize,
	}
	if r.cfg.ServerPID > 0 {
		if p1, err := readProc(r.cfg.ServerPID); err == nil {
			e.ServerCPU = cpuPercent(p0, p1)
		}
	}
	res.Echo = e
	return ctx.Err()
}

// echoLoop publishes to connection i's own channel over that connection
// and waits for the publication to come back, until end.
func (r *run) echoLoop(ctx context.Context, cn *conn, i int, end time.Time) error {
	rctx, cancel := context.WithDeadline(ctx, end.Add(10*time.Second))
	defer cancel()
	var data, frame, rbuf []byte
	var seq uint64
	for time.Now().Before(end) && ctx.Err() == nil {
		seq++
		data = payload(data[:0], i, seq, time.Now(), r.cfg.PayloadSize)
		id := uint32(0) // the raw protocol's echo goes unanswered, as it always has
		if r.cfg.Protocol != ProtocolRaw {
			cn.next++
			id = cn.next
		}
		frame = publishFrame(frame[:0], r.cfg.Protocol, id, r.names[i], data)
		if err := cn.c.write(rctx, frame); err != nil {
			return err
		}
		for {
			var err error
			if rbuf, err = cn.c.read(rctx, rbuf); err != nil {
				return err
			}
			var sent int64 // when the echoed publication was sent; 0 until it is back
			eachMessage(r.cfg.Protocol, rbuf, func(msg []byte) bool {
				if p, ok := parseFrame(msg); ok && p.ch == i && p.seq == seq {
					sent = p.sent
					return false
				}
				return true
			})
			if sent != 0 {
				r.lat.record(i, time.Since(time.Unix(0, sent)))
				r.echoCount.Add(1)
				break
			}
		}
	}
	return nil
}

func (r *run) idle(ctx context.Context, res *Result, base ProcSample, baseRT RuntimeStats) error {
	t := time.NewTimer(r.cfg.Duration)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if r.cfg.SnapshotURL != "" {
		if err := snapshot(ctx, r.cfg.SnapshotURL, r.cfg.SnapshotFile); err != nil {
			return err
		}
	}
	ps, rt, err := r.sampleServer(ctx)
	if err != nil {
		return err
	}
	n := float64(res.Connected)
	res.Idle = &IdleResult{
		BaselineRSS:   base.RSS,
		RSS:           ps.RSS,
		RSSPerConn:    float64(ps.RSS-base.RSS) / n,
		Baseline:      baseRT,
		Runtime:       rt,
		HeapPerConn:   (rt.HeapInuse - baseRT.HeapInuse) / n,
		StackPerConn:  (rt.StackInuse - baseRT.StackInuse) / n,
		GoroutinesPer: (rt.Goroutines - baseRT.Goroutines) / n,
	}
	return nil
}

// maxSnapshot bounds a saved snapshot.
const maxSnapshot = 256 << 20

func snapshot(ctx context.Context, url, file string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("loadgen: snapshot: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("loadgen: snapshot: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("loadgen: snapshot %s: status %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("loadgen: snapshot: %w", err)
	}
	if _, err := io.Copy(f, io.LimitReader(resp.Body, maxSnapshot)); err != nil {
		f.Close()
		return fmt.Errorf("loadgen: snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("loadgen: snapshot: %w", err)
	}
	return nil
}
