package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
	"github.com/heraldhq/herald/internal/natsbroker"
	"github.com/heraldhq/herald/internal/redisbroker"
)

// Broker start-up retry bounds: the first retry comes quickly (a broker
// started at the same moment as herald), later ones no more often than
// every brokerRetryMax so a long outage costs one log line per attempt.
const (
	brokerRetryMin = 100 * time.Millisecond
	brokerRetryMax = 5 * time.Second
)

// newBroker builds the broker and presence manager selected by
// cfg.Broker. It validates the options but does not connect.
//
// A memory broker is returned as is. A Redis or NATS broker is wrapped in
// a retryingBroker: when its backing service is unreachable at start the
// node starts anyway, /readyz answers 503 and every broker operation fails
// with hub.ErrBrokerUnavailable (the API answers 503) until a background
// attempt connects. Other start errors (a wrong password, a server that
// refuses the configuration) still fail the start.
func newBroker(cfg *config.Config, log *slog.Logger) (brokerBackend, error) {
	switch cfg.Broker.Type {
	case "", "memory":
		return membroker.New(membroker.Options{HistoryMetaTTL: cfg.History.MetaTTL}), nil
	case "redis":
		r := cfg.Broker.Redis
		opts := redisbroker.Options{
			Addrs:          r.Addrs,
			Cluster:        r.Cluster,
			SentinelMaster: r.SentinelMaster,
			Username:       r.Username,
			Password:       r.Password,
			DB:             r.DB,
			Prefix:         r.Prefix,
			HistoryMetaTTL: cfg.History.MetaTTL,
			Logger:         log,
		}
		return newRetryingBroker("redis", log, func() (brokerBackend, error) { return redisbroker.New(opts) })
	case "nats":
		opts := natsbroker.Options{
			URL:            cfg.Broker.NATS.URL,
			Prefix:         cfg.Broker.NATS.Prefix,
			HistoryMetaTTL: cfg.History.MetaTTL,
			Logger:         log,
		}
		if opts.HistoryMetaTTL > natsbroker.DefaultStreamMaxAge {
			// The stream must keep messages at least as long as a
			// channel's position must survive.
			opts.StreamMaxAge = opts.HistoryMetaTTL
		}
		return newRetryingBroker("nats", log, func() (brokerBackend, error) { return natsbroker.New(opts) })
	default:
		return nil, fmt.Errorf("server: broker.type %q is not one of memory, redis, nats", cfg.Broker.Type)
	}
}

// brokerConnected reports whether b can serve: always for the memory
// broker, once connected for a retryingBroker.
func brokerConnected(b hub.Broker) bool {
	if rb, ok := b.(*retryingBroker); ok {
		return rb.Connected()
	}
	return b != nil
}

// errBrokerNotConnected is returned by a retryingBroker's operations until
// its first connection succeeds.
var errBrokerNotConnected = fmt.Errorf("server: broker not connected yet: %w", hub.ErrBrokerUnavailable)

// retryingBroker lets a node start while its broker's backing service is
// down. Broker implementations can Run only once, so each connection
// attempt uses a fresh instance from newInstance; the one that connects
// serves every call from then on, and handles later outages itself
// (reconnecting and resubscribing on its own).
//
// It is safe for concurrent use. It owns one goroutine while the first
// connection is pending, started by Run and ended (and waited for) by
// Close.
type retryingBroker struct {
	kind        string
	log         *slog.Logger
	newInstance func() (brokerBackend, error)
	first       brokerBackend // validated at construction, used for the first attempt

	cur atomic.Pointer[brokerBackend] // the connected instance; nil until connected

	mu      sync.Mutex // guards closed and the hand-over of a connected instance
	closed  bool
	stop    context.CancelFunc
	retrier sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

var (
	_ hub.Broker          = (*retryingBroker)(nil)
	_ hub.PresenceManager = (*retryingBroker)(nil)
)

func newRetryingBroker(kind string, log *slog.Logger, newInstance func() (brokerBackend, error)) (*retryingBroker, error) {
	first, err := newInstance()
	if err != nil {
		return nil, fmt.Errorf("server: %s broker: %w", kind, err)
	}
	return &retryingBroker{kind: kind, log: log, newInstance: newInstance, first: first}, nil
}

// Connected reports whether a broker instance has connected. Later
// outages are the instance's own business and do not change it: the
// node keeps serving its clients and reports broker errors per call.
func (b *retryingBroker) Connected() bool { return b.cur.Load() != nil }

// Run implements hub.Broker. It returns nil when the first attempt
// connects or fails only because the service is unreachable (then it
// keeps trying in the background); any other error is returned.
func (b *retryingBroker) Run(ctx context.Context, h hub.EventHandler) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("server: broker closed")
	}
	if b.first == nil {
		return errors.New("server: broker Run called twice")
	}
	inst := b.first
	b.first = nil
	err := inst.Run(ctx, h)
	if err == nil {
		b.cur.Store(&inst)
		return nil
	}
	b.closeInstance(inst)
	if !errors.Is(err, hub.ErrBrokerUnavailable) || ctx.Err() != nil {
		return fmt.Errorf("server: %s broker: %w", b.kind, err)
	}
	b.log.Warn("broker unreachable at start; serving without it and retrying in the background (/readyz reports not ready)",
		"broker", b.kind, "error", err)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.stop = cancel
	b.retrier.Add(1)
	go b.retry(rctx, h)
	return nil
}

// retry connects fresh instances with capped exponential backoff until
// one succeeds or ctx ends.
func (b *retryingBroker) retry(ctx context.Context, h hub.EventHandler) {
	defer b.retrier.Done()
	delay := brokerRetryMin
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		inst, err := b.newInstance()
		if err == nil {
			err = inst.Run(ctx, h)
			if err == nil && b.adopt(inst) {
				b.log.Info("broker connected", "broker", b.kind, "attempts", attempt+1)
				return
			}
			b.closeInstance(inst)
		}
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, hub.ErrBrokerUnavailable) {
			b.log.Error("broker start failed; retrying", "broker", b.kind, "error", err)
		} else {
			b.log.Warn("broker still unreachable", "broker", b.kind, "error", err)
		}
		delay = min(delay*2, brokerRetryMax)
		timer.Reset(delay)
	}
}

// adopt makes inst the serving instance unless Close began meanwhile.
func (b *retryingBroker) adopt(inst brokerBackend) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.cur.Store(&inst)
	return true
}

func (b *retryingBroker) closeInstance(inst brokerBackend) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := inst.Close(ctx); err != nil {
		b.log.Debug("closing unused broker instance", "broker", b.kind, "error", err)
	}
}

func (b *retryingBroker) get() (brokerBackend, error) {
	if p := b.cur.Load(); p != nil {
		return *p, nil
	}
	return nil, errBrokerNotConnected
}

// Close implements hub.Broker and hub.PresenceManager: it stops the
// background attempts, waits for them and closes the connected instance.
// Idempotent.
func (b *retryingBroker) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		stop := b.stop
		first := b.first
		b.first = nil
		b.mu.Unlock()
		if stop != nil {
			stop()
		}
		b.retrier.Wait()
		if first != nil { // Run never called
			b.closeErr = first.Close(ctx)
			return
		}
		if p := b.cur.Load(); p != nil {
			b.closeErr = (*p).Close(ctx)
		}
	})
	return b.closeErr
}

func (b *retryingBroker) Subscribe(ctx context.Context, channel string) error {
	inst, err := b.get()
	if err != nil {
		return err
	}
	return inst.Subscribe(ctx, channel)
}

func (b *retryingBroker) Unsubscribe(ctx context.Context, channel string) error {
	inst, err := b.get()
	if err != nil {
		return err
	}
	return inst.Unsubscribe(ctx, channel)
}

func (b *retryingBroker) Publish(ctx context.Context, channel string, pub *hub.Publication, opts hub.PublishOptions) (hub.StreamPosition, error) {
	inst, err := b.get()
	if err != nil {
		return hub.StreamPosition{}, err
	}
	return inst.Publish(ctx, channel, pub, opts)
}

func (b *retryingBroker) PublishJoin(ctx context.Context, channel string, info *hub.ClientInfo) error {
	inst, err := b.get()
	if err != nil {
		return err
	}
	return inst.PublishJoin(ctx, channel, info)
}

func (b *retryingBroker) PublishLeave(ctx context.Context, channel string, info *hub.ClientInfo) error {
	inst, err := b.get()
	if err != nil {
		return err
	}
	return inst.PublishLeave(ctx, channel, info)
}

func (b *retryingBroker) PublishControl(ctx context.Context, data []byte) error {
	inst, err := b.get()
	if err != nil {
		return err
	}
	return inst.PublishControl(ctx, data)
}

func (b *retryingBroker) History(ctx context.Context, channel string, opts hub.HistoryOptions) (hub.HistoryResult, error) {
	inst, err := b.get()
	if err != nil {
		return hub.HistoryResult{}, err
	}
	return inst.History(ctx, channel, opts)
}

func (b *retryingBroker) RemoveHistory(ctx context.Context, channel string) error {
	inst, err := b.get()
	if err != nil {
		return err
	}
	return inst.RemoveHistory(ctx, channel)
}

func (b *retryingBroker) AddPresence(ctx context.Context, channel, clientID string, info *hub.ClientInfo, ttl time.Duration) error {
	inst, err := b.get()
	if err != nil {
		return err
	}
	return inst.AddPresence(ctx, channel, clientID, info, ttl)
}

func (b *retryingBroker) RemovePresence(ctx context.Context, channel, clientID string) error {
	inst, err := b.get()
	if err != nil {
		return err
	}
	return inst.RemovePresence(ctx, channel, clientID)
}

func (b *retryingBroker) Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	inst, err := b.get()
	if err != nil {
		return nil, err
	}
	return inst.Presence(ctx, channel)
}

func (b *retryingBroker) PresenceStats(ctx context.Context, channel string) (hub.PresenceStats, error) {
	inst, err := b.get()
	if err != nil {
		return hub.PresenceStats{}, err
	}
	return inst.PresenceStats(ctx, channel)
}
