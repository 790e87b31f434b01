package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of one batch request: herald's default command limit, and a body
// well under its default 1 MiB body limit whatever the payload size.
const (
	maxBatchCommands = 1000
	maxBatchBytes    = 512 << 10
)

// checkBatch validates PublishBatchInterval against the publishing mode.
func (c *Config) checkBatch() error {
	switch {
	case c.PublishBatchInterval < 0:
		return fmt.Errorf("loadgen: negative publish batch interval %s", c.PublishBatchInterval)
	case c.PublishBatchInterval > 0 && c.PublishVia != "http":
		return errors.New("loadgen: publish batches need publishing via http")
	}
	return nil
}

// batchURL derives the batch endpoint from the publish endpoint: herald's
// /api/publish and the raw servers' /publish both become /api/batch.
func batchURL(publishURL string) (string, error) {
	u, err := url.Parse(publishURL)
	if err != nil {
		return "", fmt.Errorf("loadgen: publish url: %w", err)
	}
	switch {
	case strings.HasSuffix(u.Path, "/api/publish"):
		u.Path = strings.TrimSuffix(u.Path, "/api/publish")
	case strings.HasSuffix(u.Path, "/publish"):
		u.Path = strings.TrimSuffix(u.Path, "/publish")
	default:
		return "", fmt.Errorf("loadgen: cannot derive the batch endpoint from %q (want a path ending in /publish)", publishURL)
	}
	u.Path += "/api/batch"
	return u.String(), nil
}

// batchPublisher groups the publications made within each
// PublishBatchInterval into one POST /api/batch request, as a busy
// backend would: {"commands":[{"publish":{"channel":C,"data":D}},...]},
// answered {"replies":[{"result":...} or {"error":...},...]}, one reply
// per command in order. Each publication keeps the sequence number and
// send time its worker gave it when it was due, so latency includes the
// time it waited for its batch.
//
// Workers append under mu; a flusher goroutine takes the pending batch
// every interval (a batch that reaches the size limits is handed over by
// the worker that filled it) and queues it to Publishers sender
// goroutines. The queue is bounded: when the server falls behind,
// workers block, the publish rate drops and the step shows saturation.
type batchPublisher struct {
	r        *run
	client   *http.Client
	url      string
	apiKey   string
	interval time.Duration

	mu      sync.Mutex
	pending *pubBatch

	queue    chan *pubBatch
	inFlight atomic.Int64 // batches taken from pending and not yet accounted for
	pool     sync.Pool    // *pubBatch
	stop     chan struct{}
	wg       sync.WaitGroup // flusher and senders
	stopOnce sync.Once
}

// pubBatch is one request being built or sent: its body and the channel
// index of each of its commands.
type pubBatch struct {
	body  []byte
	chans []int
}

func (r *run) newBatchPublisher() (*batchPublisher, error) {
	u, err := batchURL(r.cfg.PublishURL)
	if err != nil {
		return nil, err
	}
	p := &batchPublisher{r: r, client: r.httpClient(), url: u, apiKey: r.cfg.APIKey,
		interval: r.cfg.PublishBatchInterval,
		queue:    make(chan *pubBatch, r.cfg.Publishers), stop: make(chan struct{})}
	p.wg.Add(1 + r.cfg.Publishers)
	go func() { defer p.wg.Done(); p.flushEvery() }()
	for range r.cfg.Publishers {
		go func() { defer p.wg.Done(); p.sendLoop() }()
	}
	return p, nil
}

func (p *batchPublisher) publish(ctx context.Context, _ int, ch int, data []byte) {
	q, _ := json.Marshal(p.r.names[ch])
	p.mu.Lock()
	b := p.pending
	if b == nil {
		b = p.newBatch()
		p.pending = b
	}
	if len(b.chans) > 0 {
		b.body = append(b.body, ',')
	}
	b.body = append(b.body, `{"publish":{"channel":`...)
	b.body = append(b.body, q...)
	b.body = append(b.body, `,"data":`...)
	b.body = append(b.body, data...)
	b.body = append(b.body, `}}`...)
	b.chans = append(b.chans, ch)
	full := len(b.chans) >= maxBatchCommands || len(b.body) >= maxBatchBytes
	if full {
		p.pending = nil
		p.inFlight.Add(1)
	}
	p.mu.Unlock()
	if full {
		p.enqueue(ctx.Done(), b)
	}
}

func (p *batchPublisher) newBatch() *pubBatch {
	b, _ := p.pool.Get().(*pubBatch)
	if b == nil {
		b = &pubBatch{}
	}
	b.body = append(b.body[:0], `{"commands":[`...)
	b.chans = b.chans[:0]
	return b
}

// takePending removes the pending batch, if any, counting it in flight.
func (p *batchPublisher) takePending() *pubBatch {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.pending
	p.pending = nil
	if b != nil {
		p.inFlight.Add(1)
	}
	return b
}

// enqueue hands b (already counted in flight) to the senders, or counts
// its publications as errors when done closes first.
func (p *batchPublisher) enqueue(done <-chan struct{}, b *pubBatch) {
	select {
	case p.queue <- b:
	case <-done:
		p.fail(b)
	case <-p.stop:
		p.fail(b)
	}
}

func (p *batchPublisher) fail(b *pubBatch) {
	p.r.pubErrs.Add(int64(len(b.chans)))
	p.finish(b)
}

func (p *batchPublisher) finish(b *pubBatch) {
	p.pool.Put(b)
	p.inFlight.Add(-1)
}

func (p *batchPublisher) flushEvery() {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			if b := p.takePending(); b != nil {
				p.enqueue(nil, b)
			}
		}
	}
}

func (p *batchPublisher) sendLoop() {
	var reply batchReplies
	for {
		select {
		case <-p.stop:
			return
		case b := <-p.queue:
			p.send(b, &reply)
		}
	}
}

// batchReplies is the part of a batch response the accounting needs.
type batchReplies struct {
	Replies []struct {
		Error json.RawMessage `json:"error"`
	} `json:"replies"`
}

// send posts b and accounts for each of its publications.
func (p *batchPublisher) send(b *pubBatch, reply *batchReplies) {
	defer p.finish(b)
	b.body = append(b.body, "]}"...)
	// Unmarshal reuses the elements without zeroing the fields a reply
	// leaves out.
	clear(reply.Replies[:cap(reply.Replies)])
	reply.Replies = reply.Replies[:0]
	if err := p.post(b.body, reply); err != nil || len(reply.Replies) != len(b.chans) {
		p.r.pubErrs.Add(int64(len(b.chans)))
		return
	}
	for i, ch := range b.chans {
		if len(reply.Replies[i].Error) > 0 && string(reply.Replies[i].Error) != "null" {
			p.r.pubErrs.Add(1)
			continue
		}
		p.r.published(ch)
	}
}

// maxBatchReply bounds a batch response read by the publisher.
const maxBatchReply = 8 << 20

func (p *batchPublisher) post(body []byte, reply *batchReplies) error {
	// The send loop outlives the run's context on purpose: a batch already
	// taken is answered or failed (bounded by the client's timeout), so
	// every publication in it is accounted for.
	resp, err := postJSON(context.Background(), p.client, p.url, p.apiKey, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBatchReply))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("batch: status %s", resp.Status)
	}
	if err := json.Unmarshal(raw, reply); err != nil {
		return fmt.Errorf("batch: reply: %w", err)
	}
	return nil
}

// drain sends the pending batch now and waits until every batch has been
// accounted for, for at most 10 s.
func (p *batchPublisher) drain(ctx context.Context) {
	if b := p.takePending(); b != nil {
		p.enqueue(ctx.Done(), b)
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for p.inFlight.Load() > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// close stops the flusher and the senders, waits for them, and counts
// what was never sent as errors.
func (p *batchPublisher) close() {
	p.stopOnce.Do(func() {
		close(p.stop)
		p.wg.Wait()
		if b := p.takePending(); b != nil {
			p.fail(b)
		}
		for {
			select {
			case b := <-p.queue:
				p.fail(b)
			default:
				p.client.CloseIdleConnections()
				return
			}
		}
	})
}
