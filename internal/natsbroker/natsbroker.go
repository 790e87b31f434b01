// Package natsbroker is herald's NATS Broker and PresenceManager, for a
// cluster of herald nodes sharing a NATS server (or NATS cluster) with
// JetStream enabled (nats-server 2.9 or newer).
//
// # Subjects and streams
//
// A channel name is encoded as one subject token (base64url, which never
// contains '.', '*', '>' or spaces) and used in
//
//	<prefix>.h.<token>   JetStream history subject (stream <Prefix>_history)
//	<prefix>.c.<token>   core subject every subscribed node listens on
//	<prefix>.control     core subject for PublishControl
//
// and a KV bucket <prefix>_presence keeps presence.
//
// # Offsets and ordering
//
// Every message on a channel's history subject carries its offset and epoch
// in headers. Publish reads the last message of the subject and appends the
// next one with the JetStream header Nats-Expected-Last-Subject-Sequence set
// to that message's stream sequence: JetStream accepts exactly one of
// several concurrent appends (from any node) and the others retry with the
// new last message. Offsets are therefore gap-free and the stream order of
// a subject is its offset order.
//
// Delivery does not come from the publisher: the stream republishes every
// stored message (JetStream RePublish, from <prefix>.h.> to <prefix>.c.>)
// in stream order, so every node receives a channel's publications in
// offset order whichever node published them, and only publications that
// were stored. Joins, leaves and publications without history are plain
// core messages on the same subject. Subscribe returns after a flush round
// trip, when the connected server has registered the interest; in a NATS
// cluster the interest reaches the other servers asynchronously, usually
// within milliseconds.
//
// Publish remembers the last head it appended per channel (a bounded
// cache) and appends against it directly. Appends of one node to one
// channel take turns, so they never reject each other and each costs one
// round trip; only appends of different nodes to the same channel
// conflict. A rejected append learns the channel's new last sequence from
// the rejection and, when this node already received that message (it is
// subscribed to the channel), retries against it without reading the
// head; repeated conflicts back off with jitter. A stale head only costs a
// rejected append and a fresh read.
//
// # History, TTLs and epochs
//
// The history size, history TTL and metadata TTL of each publication travel
// in its headers. Reads keep only the newest HistorySize publications of
// the current epoch that are not expired; publishing purges older messages
// of the subject from time to time, always keeping the last message, which
// holds the stream position. RemoveHistory appends a marker that hides every
// earlier publication, then purges them. When the last message is older
// than its metadata TTL the stream is forgotten: the next read or
// publication appends a marker of a new epoch (offset 0). The stream's
// MaxAge (Options.StreamMaxAge) must be at least the longest metadata TTL
// in use; otherwise epochs change earlier than configured. Expiry compares
// the server's storage time with this node's clock, so node clocks should
// be synchronised.
//
// # Failures
//
// Publishes are never buffered: while the connection is down every
// operation fails at once with an error wrapping hub.ErrBrokerUnavailable,
// and JetStream requests are bounded by Options.OpTimeout. nats.go
// reconnects by itself and resubscribes; the broker then makes sure the
// stream and bucket exist (a server without persistence lost them) and
// calls EventHandler.HandleReconnect. It also calls HandleReconnect when
// the delivery queue overflowed, so the hub checks positions and
// subscribers recover the dropped publications.
//
// # Goroutines
//
// Run starts one dispatcher goroutine that hands every received message to
// the event handler, in arrival order, and one maintenance goroutine that
// handles reconnects. Close stops and waits for both and closes the
// connection.
package natsbroker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/brokercodec"
	"github.com/heraldhq/herald/internal/hub"
)

// Defaults for Options fields left zero.
const (
	DefaultURL               = nats.DefaultURL
	DefaultPrefix            = "herald"
	DefaultOpTimeout         = 2 * time.Second
	DefaultHistoryMetaTTL    = 24 * time.Hour
	DefaultStreamMaxAge      = 24 * time.Hour
	DefaultPresenceTTL       = 60 * time.Second
	DefaultPresenceMaxAge    = time.Hour
	DefaultReconnectWait     = 500 * time.Millisecond
	DefaultDeliveryQueueSize = 8192
)

// Storage selects where JetStream keeps history and presence.
type Storage string

const (
	// FileStorage (the default) survives a NATS server restart.
	FileStorage Storage = "file"
	// MemoryStorage is faster but lost on restart; epochs then change.
	MemoryStorage Storage = "memory"
)

// ErrClosed is returned by every operation after Close.
var ErrClosed = errors.New("natsbroker: closed")

// Options configure a Broker. The zero value connects to
// nats://127.0.0.1:4222.
type Options struct {
	// URL is a comma-separated list of NATS server URLs. Default
	// nats://127.0.0.1:4222.
	URL string
	// NATSOptions are extra nats.go options (credentials, TLS, name). The
	// broker's own reconnect, buffering and handler options are applied
	// after them and win.
	NATSOptions []nats.Option

	// Prefix starts every subject, the stream name and the bucket name.
	// Default "herald". Letters, digits, '-' and '_' only. Clusters sharing
	// a NATS deployment need distinct prefixes.
	Prefix string
	// Storage for the history stream and presence bucket. Default file.
	Storage Storage
	// Replicas of the stream and bucket in a JetStream cluster. Default 1.
	Replicas int
	// StreamMaxAge bounds how long any history message is kept; it must be
	// at least the longest HistoryMetaTTL in use. Default 24h.
	StreamMaxAge time.Duration
	// PresenceMaxAge bounds how long a presence entry is kept; it must be
	// at least the longest presence TTL. Default 1h.
	PresenceMaxAge time.Duration
	// HistoryMetaTTL is the default for PublishOptions.HistoryMetaTTL and
	// HistoryOptions.MetaTTL when they are 0. Default 24h.
	HistoryMetaTTL time.Duration
	// OpTimeout bounds each JetStream request and each subscription
	// round trip. Default 2s.
	OpTimeout time.Duration
	// ReconnectWait is the pause between reconnection attempts. Default
	// 500ms.
	ReconnectWait time.Duration
	// DeliveryQueueSize bounds the messages received but not yet handed to
	// the event handler. On overflow messages are dropped (counted in
	// Dropped) and HandleReconnect is called. Default 8192.
	DeliveryQueueSize int
	// Logger receives connection loss and recovery messages. nil means
	// slog.Default().
	Logger *slog.Logger
}

var validPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (o *Options) withDefaults() {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Storage == "" {
		o.Storage = FileStorage
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.StreamMaxAge <= 0 {
		o.StreamMaxAge = DefaultStreamMaxAge
	}
	if o.PresenceMaxAge <= 0 {
		o.PresenceMaxAge = DefaultPresenceMaxAge
	}
	if o.HistoryMetaTTL <= 0 {
		o.HistoryMetaTTL = DefaultHistoryMetaTTL
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = DefaultReconnectWait
	}
	if o.DeliveryQueueSize <= 0 {
		o.DeliveryQueueSize = DefaultDeliveryQueueSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Broker is the NATS hub.Broker and hub.PresenceManager. It is safe for
// concurrent use. Create it with New, start it with Run, release it with
// Close.
type Broker struct {
	opts Options

	nc      *nats.Conn
	js      jetstream.JetStream
	stream  atomic.Pointer[jetstream.Stream]
	kv      atomic.Pointer[jetstream.KeyValue]
	handler hub.EventHandler

	streamName, bucketName  string
	histPrefix, livePrefix  string
	controlSubject          string
	msgs                    chan *nats.Msg
	reconnected, overflowed chan struct{}
	dropped                 atomic.Uint64

	mu   sync.Mutex
	subs map[string]*nats.Subscription // channel -> live subscription

	// heads caches the last known head of recently published history
	// subjects, saving Publish the read of the head. A stale entry is
	// harmless: the expected-sequence check rejects the append and the
	// head is read again. Bounded by maxCachedHeads.
	headsMu sync.Mutex
	heads   map[string]streamHead
	// locks gives this node's appends to one channel turns.
	locks appendLocks
	// appendConflicts counts publications rejected because another
	// node appended first.
	appendConflicts atomic.Uint64

	running   atomic.Bool
	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup
}

var (
	_ hub.Broker          = (*Broker)(nil)
	_ hub.PresenceManager = (*Broker)(nil)
)

// New validates opts. It does not connect: Run does.
func New(opts Options) (*Broker, error) {
	opts.withDefaults()
	if !validPrefix.MatchString(opts.Prefix) {
		return nil, fmt.Errorf("natsbroker: prefix %q: only letters, digits, '-' and '_' are allowed", opts.Prefix)
	}
	if opts.Storage != FileStorage && opts.Storage != MemoryStorage {
		return nil, fmt.Errorf("natsbroker: unknown storage %q", opts.Storage)
	}
	p := opts.Prefix
	return &Broker{
		opts:           opts,
		streamName:     p + "_history",
		bucketName:     p + "_presence",
		histPrefix:     p + ".h.",
		livePrefix:     p + ".c.",
		controlSubject: p + ".control",
		msgs:           make(chan *nats.Msg, opts.DeliveryQueueSize),
		reconnected:    make(chan struct{}, 1),
		overflowed:     make(chan struct{}, 1),
		subs:           make(map[string]*nats.Subscription),
		heads:          make(map[string]streamHead),
		stop:           make(chan struct{}),
	}, nil
}

// Dropped reports how many received messages were dropped because the
// delivery queue was full.
func (b *Broker) Dropped() uint64 { return b.dropped.Load() }

// token encodes a channel name as one subject token and KV key part.
func token(channel string) string {
	return "c" + base64.RawURLEncoding.EncodeToString([]byte(channel))
}

func channelOfToken(tok string) (string, bool) {
	if !strings.HasPrefix(tok, "c") {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(tok[1:])
	if err != nil {
		return "", false
	}
	return string(b), true
}

func (b *Broker) histSubject(ch string) string { return b.histPrefix + token(ch) }
func (b *Broker) liveSubject(ch string) string { return b.livePrefix + token(ch) }

// Run implements hub.Broker: it connects, creates the stream and the
// presence bucket when missing, subscribes the control subject and starts
// delivering events to h.
func (b *Broker) Run(ctx context.Context, h hub.EventHandler) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if h == nil {
		return errors.New("natsbroker: nil event handler")
	}
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("natsbroker: Run called twice")
	}
	b.handler = h
	opts := append([]nats.Option{}, b.opts.NATSOptions...)
	opts = append(opts,
		nats.Timeout(b.opts.OpTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(b.opts.ReconnectWait),
		// No buffering while reconnecting: publications fail fast instead.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.opts.Logger.Warn("nats connection lost", "error", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { signal(b.reconnected) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				b.dropped.Add(1)
				signal(b.overflowed)
				return
			}
			b.opts.Logger.Warn("nats asynchronous error", "error", err)
		}),
		nats.NoCallbacksAfterClientClose(),
	)
	nc, err := nats.Connect(b.opts.URL, opts...)
	if err != nil {
		return fmt.Errorf("natsbroker: connect: %w: %w", hub.ErrBrokerUnavailable, err)
	}
	b.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("natsbroker: jetstream: %w", err)
	}
	b.js = js
	if err := b.ensureStorage(ctx); err != nil {
		nc.Close()
		return err
	}
	if _, err := nc.ChanSubscribe(b.controlSubject, b.msgs); err != nil {
		nc.Close()
		return fmt.Errorf("natsbroker: subscribe control subject: %w", err)
	}
	if err := b.flush(ctx); err != nil {
		nc.Close()
		return err
	}
	b.wg.Add(2)
	go b.dispatch()
	go b.maintain()
	return nil
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// ensureStorage creates or updates the history stream and presence bucket.
func (b *Broker) ensureStorage(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, b.opts.OpTimeout)
	defer cancel()
	storage := jetstream.FileStorage
	if b.opts.Storage == MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	s, err := b.js.CreateOrUpdateStream(octx, jetstream.StreamConfig{
		Name:        b.streamName,
		Description: "herald channel history",
		Subjects:    []string{b.histPrefix + ">"},
		Storage:     storage,
		Replicas:    b.opts.Replicas,
		MaxAge:      b.opts.StreamMaxAge,
		Discard:     jetstream.DiscardOld,
		RePublish:   &jetstream.RePublish{Source: b.histPrefix + ">", Destination: b.livePrefix + ">"},
	})
	if err != nil {
		return b.wrapErr(ctx, "create stream", b.streamName, err)
	}
	b.stream.Store(&s)
	kv, err := b.js.CreateOrUpdateKeyValue(octx, jetstream.KeyValueConfig{
		Bucket:      b.bucketName,
		Description: "herald presence",
		History:     1,
		TTL:         b.opts.PresenceMaxAge,
		Storage:     storage,
		Replicas:    b.opts.Replicas,
	})
	if err != nil {
		return b.wrapErr(ctx, "create bucket", b.bucketName, err)
	}
	b.kv.Store(&kv)
	return nil
}

func (b *Broker) flush(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, b.opts.OpTimeout)
	defer cancel()
	if err := b.nc.FlushWithContext(octx); err != nil {
		return b.wrapErr(ctx, "flush", "", err)
	}
	return nil
}

// maintain handles reconnects and queue overflows: it recreates storage a
// restarted server may have lost and tells the hub to check positions.
func (b *Broker) maintain() {
	defer b.wg.Done()
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-b.overflowed:
			b.opts.Logger.Warn("nats delivery queue overflowed; publications were dropped", "dropped", b.dropped.Load())
			b.enqueueReconnect()
		case <-b.reconnected:
			for {
				err := b.ensureStorage(context.Background())
				if err == nil {
					break
				}
				b.opts.Logger.Warn("nats: recreating stream after reconnect failed", "error", err)
				timer.Reset(b.opts.ReconnectWait)
				select {
				case <-b.stop:
					return
				case <-timer.C:
				}
			}
			b.forgetAllHeads()
			b.opts.Logger.Info("nats connection restored")
			b.enqueueReconnect()
		}
	}
}

// reconnectMsg is queued to have the dispatcher call HandleReconnect after
// the messages received before it.
var reconnectMsg = &nats.Msg{}

func (b *Broker) enqueueReconnect() {
	select {
	case b.msgs <- reconnectMsg:
	case <-b.stop:
	}
}

// Close implements hub.Broker and hub.PresenceManager. Idempotent.
func (b *Broker) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.stop)
		if b.nc != nil {
			b.nc.Close()
		}
	})
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natsbroker: close: %w", ctx.Err())
	}
}

func (b *Broker) check() error {
	if b.closed.Load() {
		return ErrClosed
	}
	if b.nc == nil {
		return errors.New("natsbroker: not running")
	}
	if !b.nc.IsConnected() {
		return fmt.Errorf("natsbroker: %w: not connected (%v)", hub.ErrBrokerUnavailable, b.nc.Status())
	}
	return nil
}

// wrapErr classifies err: failures to reach NATS or JetStream wrap
// hub.ErrBrokerUnavailable; API errors JetStream replied with do not.
func (b *Broker) wrapErr(parent context.Context, op, channel string, err error) error {
	if err == nil {
		return nil
	}
	if parent.Err() != nil {
		return fmt.Errorf("natsbroker: %s %q: %w", op, channel, err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code != 503 {
		return fmt.Errorf("natsbroker: %s %q: %w", op, channel, err)
	}
	return fmt.Errorf("natsbroker: %s %q: %w: %w", op, channel, hub.ErrBrokerUnavailable, err)
}

// dispatch is the only goroutine calling the event handler, so events of a
// channel are handled one at a time in arrival order.
func (b *Broker) dispatch() {
	defer b.wg.Done()
	for {
		select {
		case <-b.stop:
			return
		case m := <-b.msgs:
			b.handle(m)
		}
	}
}

func (b *Broker) handle(m *nats.Msg) {
	if m == reconnectMsg {
		b.handler.HandleReconnect()
		return
	}
	if m.Subject == b.controlSubject {
		b.handler.HandleControl(m.Data)
		return
	}
	channel, ok := channelOfToken(strings.TrimPrefix(m.Subject, b.livePrefix))
	if !ok {
		b.opts.Logger.Warn("nats message on unknown subject", "subject", m.Subject)
		return
	}
	b.mu.Lock()
	current := b.subs[channel] == m.Sub
	b.mu.Unlock()
	if !current {
		return // queued before Unsubscribe
	}
	switch m.Header.Get(hdrKind) {
	case kindPublication:
		pub, err := brokercodec.DecodePublication(m.Data)
		if err != nil {
			b.opts.Logger.Warn("undecodable nats publication", "channel", channel, "error", err)
			return
		}
		var pos hub.StreamPosition
		if e := m.Header.Get(hdrEpoch); e != "" {
			off, err := strconv.ParseUint(m.Header.Get(hdrOffset), 10, 64)
			if err != nil {
				b.opts.Logger.Warn("nats publication without offset", "channel", channel)
				return
			}
			pos = hub.StreamPosition{Offset: off, Epoch: e}
			pub.Offset = off
			b.observeHead(channel, m)
		}
		b.handler.HandlePublication(channel, pub, pos)
	case kindJoin, kindLeave:
		info, err := brokercodec.DecodeClientInfo(m.Data)
		if err != nil {
			b.opts.Logger.Warn("undecodable nats presence event", "channel", channel, "error", err)
			return
		}
		if m.Header.Get(hdrKind) == kindJoin {
			b.handler.HandleJoin(channel, info)
		} else {
			b.handler.HandleLeave(channel, info)
		}
	case kindEpoch, kindRemoved:
		// Markers of the history stream are republished too; they carry
		// no event but move the head.
		b.observeHead(channel, m)
	}
}

// Subscribe implements hub.Broker. It returns after the server confirmed
// the subscription (a flush round trip).
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	if err := b.check(); err != nil {
		return err
	}
	b.mu.Lock()
	if b.subs[channel] != nil {
		b.mu.Unlock()
		return nil
	}
	sub, err := b.nc.ChanSubscribe(b.liveSubject(channel), b.msgs)
	if err != nil {
		b.mu.Unlock()
		return b.wrapErr(ctx, "subscribe", channel, err)
	}
	b.subs[channel] = sub
	b.mu.Unlock()
	if err := b.flush(ctx); err != nil {
		b.mu.Lock()
		if b.subs[channel] == sub {
			delete(b.subs, channel)
		}
		b.mu.Unlock()
		_ = sub.Unsubscribe()
		return err
	}
	return nil
}

// Unsubscribe implements hub.Broker.
func (b *Broker) Unsubscribe(ctx context.Context, channel string) error {
	if b.closed.Load() {
		return ErrClosed
	}
	b.mu.Lock()
	sub := b.subs[channel]
	delete(b.subs, channel)
	b.mu.Unlock()
	if sub == nil {
		return nil
	}
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return b.wrapErr(ctx, "unsubscribe", channel, err)
	}
	if err := b.check(); err != nil {
		// The server drops the interest with the broken connection, and
		// nats.go does not restore removed subscriptions.
		return nil
	}
	return b.flush(ctx)
}

// PublishJoin implements hub.Broker.
func (b *Broker) PublishJoin(ctx context.Context, channel string, info *hub.ClientInfo) error {
	return b.publishCore(ctx, channel, kindJoin, brokercodec.AppendClientInfo(nil, info))
}

// PublishLeave implements hub.Broker.
func (b *Broker) PublishLeave(ctx context.Context, channel string, info *hub.ClientInfo) error {
	return b.publishCore(ctx, channel, kindLeave, brokercodec.AppendClientInfo(nil, info))
}

func (b *Broker) publishCore(ctx context.Context, channel, kind string, data []byte) error {
	if err := b.check(); err != nil {
		return err
	}
	m := &nats.Msg{Subject: b.liveSubject(channel), Header: nats.Header{hdrKind: []string{kind}}, Data: data}
	return b.wrapErr(ctx, "publish to", channel, b.nc.PublishMsg(m))
}

// PublishControl implements hub.Broker.
func (b *Broker) PublishControl(ctx context.Context, data []byte) error {
	if err := b.check(); err != nil {
		return err
	}
	return b.wrapErr(ctx, "publish control", "", b.nc.Publish(b.controlSubject, data))
}

func newEpoch() string {
	var buf [9]byte
	_, _ = rand.Read(buf[:])
	return base64.RawURLEncoding.EncodeToString(buf[:])
}
