package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// publisher sends publications. Worker w of a step calls publish from one
// goroutine only.
type publisher interface {
	publish(ctx context.Context, worker int, channel string, data []byte) error
	close()
}

type httpPublisher struct {
	client *http.Client
	url    string
	apiKey string
}

func (p *httpPublisher) publish(ctx context.Context, _ int, channel string, data []byte) error {
	q, _ := json.Marshal(channel)
	body := make([]byte, 0, len(data)+len(q)+24)
	body = append(body, `{"channel":`...)
	body = append(body, q...)
	body = append(body, `,"data":`...)
	body = append(body, data...)
	body = append(body, '}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.apiKey != "" {
		req.Header.Set("X-API-Key", p.apiKey)
	}
	resp, err := p.client.Do(req)
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

func (p *httpPublisher) close() { p.client.CloseIdleConnections() }

// wsPublisher publishes over dedicated client connections, one per worker;
// a reader per connection discards the replies.
type wsPublisher struct {
	proto   Protocol
	conns   []*conn
	ids     []uint32
	bufs    [][]byte
	readers sync.WaitGroup
}

func (r *run) newWSPublisher(ctx context.Context) (*wsPublisher, error) {
	p := &wsPublisher{proto: r.cfg.Protocol}
	for i := 0; i < r.cfg.Publishers; i++ {
		cn, err := r.dialer.dial(ctx, r.cfg.Conns+i)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("loadgen: publisher connection: %w", err)
		}
		p.conns = append(p.conns, cn)
		p.ids = append(p.ids, cn.next)
		p.bufs = append(p.bufs, nil)
		p.readers.Add(1)
		go func() {
			defer p.readers.Done()
			var buf []byte
			var err error
			for {
				if buf, err = cn.c.read(context.Background(), buf); err != nil {
					return
				}
			}
		}()
	}
	return p, nil
}

func (p *wsPublisher) publish(ctx context.Context, w int, channel string, data []byte) error {
	p.ids[w]++
	p.bufs[w] = publishFrame(p.bufs[w][:0], p.proto, p.ids[w], channel, data)
	return p.conns[w].c.write(ctx, p.bufs[w])
}

func (p *wsPublisher) close() {
	for _, cn := range p.conns {
		cn.c.close()
	}
	p.readers.Wait()
}

func (r *run) fanout(ctx context.Context, res *Result) error {
	var pub publisher
	if r.cfg.PublishVia == "ws" {
		wp, err := r.newWSPublisher(ctx)
		if err != nil {
			return err
		}
		pub = wp
	} else {
		pub = &httpPublisher{client: r.httpClient(), url: r.cfg.PublishURL, apiKey: r.cfg.APIKey}
	}
	defer pub.close()
	for _, rate := range r.cfg.Rates {
		if ctx.Err() != nil {
			break
		}
		st := r.step(ctx, pub, rate)
		res.Steps = append(res.Steps, st)
		if st.OK && (res.Best < 0 || st.DeliveriesPerSec > res.Steps[res.Best].DeliveriesPerSec) {
			res.Best = len(res.Steps) - 1
		}
		if st.Saturated() && !r.cfg.KeepGoing {
			break
		}
	}
	return ctx.Err()
}

// maxAhead is how far ahead of its schedule a publisher may run before it
// sleeps; sleeping for less costs more than it paces.
const maxAhead = time.Millisecond

// step publishes at rate for cfg.Step, then waits for the deliveries.
func (r *run) step(ctx context.Context, pub publisher, rate int) Step {
	st := Step{TargetRate: rate}
	d0, dup0 := r.totals()
	e0 := r.expected.Load()
	r.lat.takeStep()
	var p0 ProcSample
	if r.cfg.ServerPID > 0 {
		p0, _ = readProc(r.cfg.ServerPID)
	}
	var published, errs atomic.Int64
	start := time.Now()
	end := start.Add(r.cfg.Step)
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
				if err := pub.publish(ctx, w, r.names[ch], buf); err != nil {
					errs.Add(1)
					continue
				}
				published.Add(1)
				r.expected.Add(r.subs[ch])
			}
		}()
	}
	wg.Wait()
	pubDur := time.Since(start)

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

	st.Published = published.Load()
	st.PublishErrors = errs.Load()
	st.PublishRate = float64(st.Published) / pubDur.Seconds()
	st.Expected = want
	st.Delivered = d1 - d0
	st.Lost = max(want-st.Delivered, 0)
	st.Duplicates = dup1 - dup0
	st.DeliveriesPerSec = float64(st.Delivered) / elapsed.Seconds()
	st.Latency = summarize(r.lat.takeStep())
	if r.cfg.ServerPID > 0 {
		if p1, err := readProc(r.cfg.ServerPID); err == nil {
			st.ServerCPU = cpuPercent(p0, p1)
			st.ServerRSS = p1.RSS
			if st.Delivered > 0 {
				cpuNs := float64(p1.CPUTicks-p0.CPUTicks) / clockTicks * 1e9
				st.CPUPerDelivery = cpuNs / float64(st.Delivered)
			}
		}
	}
	st.OK = !st.Saturated() && st.Latency.P99 <= float64(r.cfg.MaxP99)/float64(time.Millisecond)
	return st
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
		cn.next++
		frame = publishFrame(frame[:0], r.cfg.Protocol, cn.next, r.names[i], data)
		if err := cn.c.write(rctx, frame); err != nil {
			return err
		}
		for {
			var err error
			if rbuf, err = cn.c.read(rctx, rbuf); err != nil {
				return err
			}
			b := rbuf
			if p, ok := parseFrame(b); ok && p.ch == i && p.seq == seq {
				r.lat.record(i, time.Since(time.Unix(0, p.sent)))
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
