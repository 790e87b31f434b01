// Package redisbroker is herald's Redis Broker and PresenceManager, for a
// cluster of herald nodes sharing one or more Redis servers (Redis 6.2 or
// newer; 7.0 or newer for sharded pub/sub).
//
// # Data model
//
// Every key of a channel carries the channel name as a hash tag, so in a
// Redis Cluster all of them live in one slot:
//
//	<prefix>:h:{<channel>}   stream: history, entry id "<offset>-0"
//	<prefix>:m:{<channel>}   hash: e (epoch), o (last offset)
//	<prefix>:p:{<channel>}   hash: client id -> encoded ClientInfo
//	<prefix>:z:{<channel>}   sorted set: client id -> expiry (unix ms)
//	<prefix>:c:{<channel>}   pub/sub channel: publications, joins, leaves
//	<prefix>:control         pub/sub channel for PublishControl
//
// One Lua script per publication creates the epoch when the metadata is
// missing (a new random string, and any history of a forgotten epoch is
// dropped), increments the offset, appends the publication to the stream,
// trims it to the history size and drops expired entries, sets the TTLs of
// the stream and the metadata, and publishes the publication with its
// offset. Redis runs scripts one at a time, so offsets are gap-free and
// pub/sub messages leave in offset order. History reads run one script that
// returns the position and the publications together.
//
// # Sharding
//
// With several addresses, channels are spread over the servers by a
// consistent hash ring with virtual nodes; a channel's history, metadata,
// presence and pub/sub live on its shard, and control messages use the shard
// owning the name "<prefix>:control". Every node must be configured with the
// same address list (in any order) and the same VirtualNodes.
// Alternatively one Redis Cluster (Options.Cluster) or one Sentinel-managed
// master (Options.SentinelMaster) can be used.
//
// In a Redis Cluster pub/sub is classic: messages reach the node holding
// the broker's pub/sub connection through the cluster bus, later than they
// were published. So that order still holds, every message of a channel
// (publications, joins, leaves) is published by a script run on the
// channel's slot owner, and Subscribe, after Redis confirmed the
// subscription, publishes a barrier message the same way and drops the
// channel's messages until it arrives.
//
// # Failures
//
// Commands use short timeouts (Options.OpTimeout) and are never retried or
// queued: while a server is unreachable, Publish and the other operations
// of its channels fail at once with errors wrapping hub.ErrBrokerUnavailable.
// Each shard keeps one pub/sub connection read by one goroutine; when the
// connection breaks it reconnects with backoff, resubscribes every channel
// and then calls EventHandler.HandleReconnect. A restarted Redis without
// persistence has lost the metadata, so the next read or publication starts
// a new epoch and clients learn that they cannot recover.
//
// With a Sentinel, the broker follows the master go-redis resolves through
// the Sentinels: when a connection is dialed to a new master, every
// connection to the old one is closed, including the pub/sub connection, so
// the reader resubscribes on the new master and calls HandleReconnect even
// when the old master is still running (a switchover). An idle reader
// checks for a new master every PingInterval. Replication is asynchronous:
// publications the old master accepted but had not yet replicated are lost,
// and the new master hands out their offsets again.
//
// # Goroutines
//
// Run starts one reader goroutine per shard; Close stops and waits for
// them. Event handler calls come from these goroutines: events of one
// channel come from one goroutine, in offset order.
package redisbroker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/heraldhq/herald/internal/brokercodec"
	"github.com/heraldhq/herald/internal/hub"
)

// Defaults for Options fields left zero.
const (
	DefaultPrefix          = "herald"
	DefaultOpTimeout       = time.Second
	DefaultHistoryMetaTTL  = 24 * time.Hour
	DefaultPresenceTTL     = 60 * time.Second
	DefaultVirtualNodes    = 160
	DefaultPingInterval    = 3 * time.Second
	DefaultMaxReconnectGap = 2 * time.Second
)

// PubSubMode selects the Redis pub/sub commands.
type PubSubMode string

const (
	// PubSubAuto uses sharded pub/sub when the server supports it (Redis 7)
	// and classic pub/sub otherwise. Not with Cluster: see PubSubClassic.
	PubSubAuto PubSubMode = ""
	// PubSubSharded forces SPUBLISH/SSUBSCRIBE.
	PubSubSharded PubSubMode = "sharded"
	// PubSubClassic forces PUBLISH/SUBSCRIBE. Cluster mode always uses it:
	// one pub/sub connection then receives every channel, and Redis
	// Cluster forwards classic messages to every cluster node.
	PubSubClassic PubSubMode = "classic"
)

// ErrClosed is returned by every operation after Close.
var ErrClosed = errors.New("redisbroker: closed")

// Options configure a Broker. Only Addrs is required.
type Options struct {
	// Addrs lists "host:port" addresses. Without Cluster or SentinelMaster
	// each address is one shard; every node must list the same addresses
	// (their order does not matter, but changing the list moves channels
	// between shards and so loses their history and epochs). With Cluster
	// they are seed nodes of one Redis Cluster; with SentinelMaster they
	// are Sentinel addresses.
	Addrs []string
	// Cluster selects Redis Cluster mode (go-redis ClusterClient). Keys of
	// a channel share the hash tag {channel}; pub/sub is classic.
	Cluster bool
	// SentinelMaster, when set, is the master name monitored by the
	// Sentinels in Addrs; the broker follows failovers, moving its pub/sub
	// connection within about PingInterval of the Sentinel's announcement
	// and reporting it as a reconnect. Publications not yet replicated when
	// the old master is abandoned are lost (see Failures in the package
	// documentation).
	SentinelMaster string
	// SentinelPassword authenticates to the Sentinels.
	SentinelPassword string

	// Username, Password and DB select the Redis account and database
	// (DB is ignored by Cluster).
	Username string
	Password string
	DB       int
	// TLS, when non-nil, is used for every connection.
	TLS *tls.Config

	// Prefix starts every key and pub/sub channel name. Default "herald".
	// Clusters sharing Redis servers need distinct prefixes.
	Prefix string
	// OpTimeout bounds connecting, each command and each subscription.
	// Default 1s. Publish fails after at most this long when Redis is
	// unreachable (at once when the connection is refused).
	OpTimeout time.Duration
	// PoolSize is the command connections per shard. 0 means go-redis's
	// default (10 per CPU).
	PoolSize int
	// HistoryMetaTTL is the default for PublishOptions.HistoryMetaTTL and
	// HistoryOptions.MetaTTL when they are 0. Default 24h.
	HistoryMetaTTL time.Duration
	// PubSub selects the pub/sub commands; default auto-detect.
	PubSub PubSubMode
	// VirtualNodes is the number of hash ring points per shard. Default 160.
	// Every node must use the same value.
	VirtualNodes int
	// PingInterval is how often an idle pub/sub connection is checked
	// (with SentinelMaster, also whether the master has moved). Default 3s.
	PingInterval time.Duration
	// MaxReconnectGap caps the backoff between reconnection attempts of a
	// pub/sub connection. Default 2s.
	MaxReconnectGap time.Duration
	// Logger receives connection loss and recovery messages. nil means
	// slog.Default().
	Logger *slog.Logger
}

func (o *Options) withDefaults() {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.HistoryMetaTTL <= 0 {
		o.HistoryMetaTTL = DefaultHistoryMetaTTL
	}
	if o.VirtualNodes <= 0 {
		o.VirtualNodes = DefaultVirtualNodes
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.MaxReconnectGap <= 0 {
		o.MaxReconnectGap = DefaultMaxReconnectGap
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Broker is the Redis hub.Broker and hub.PresenceManager. It is safe for
// concurrent use. Create it with New, start it with Run, release it with
// Close.
type Broker struct {
	opts   Options
	shards []*shard
	ring   *hashRing

	handler hub.EventHandler // set by Run before the readers start

	controlChannel string

	running   atomic.Bool
	closed    atomic.Bool
	closeOnce sync.Once
	ctx       context.Context // canceled by Close; ends the readers
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

var (
	_ hub.Broker          = (*Broker)(nil)
	_ hub.PresenceManager = (*Broker)(nil)
)

// New validates opts and creates the clients. It does not connect: Run
// does.
func New(opts Options) (*Broker, error) {
	opts.withDefaults()
	if len(opts.Addrs) == 0 {
		return nil, errors.New("redisbroker: no addresses")
	}
	if opts.Cluster && opts.SentinelMaster != "" {
		return nil, errors.New("redisbroker: Cluster and SentinelMaster are exclusive")
	}
	switch opts.PubSub {
	case PubSubAuto, PubSubSharded, PubSubClassic:
	default:
		return nil, fmt.Errorf("redisbroker: unknown pub/sub mode %q", opts.PubSub)
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redisbroker: prefix %q must not contain braces (they delimit hash tags)", opts.Prefix)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{opts: opts, ctx: ctx, cancel: cancel, controlChannel: opts.Prefix + ":control"}
	switch {
	case opts.Cluster:
		b.shards = []*shard{b.newShard(0, strings.Join(opts.Addrs, ","), redis.NewClusterClient(b.clusterOptions()))}
	case opts.SentinelMaster != "":
		c := redis.NewFailoverClient(b.failoverOptions())
		c.AddHook(newMasterTracker(opts.Logger.With("master", opts.SentinelMaster)))
		b.shards = []*shard{b.newShard(0, opts.SentinelMaster, c)}
	default:
		seen := make(map[string]bool)
		for i, a := range opts.Addrs {
			if seen[a] {
				cancel()
				return nil, fmt.Errorf("redisbroker: address %s listed twice", a)
			}
			seen[a] = true
			b.shards = append(b.shards, b.newShard(i, a, redis.NewClient(b.clientOptions(a))))
		}
	}
	shardAddrs := make([]string, len(b.shards))
	for i, s := range b.shards {
		shardAddrs[i] = s.addr
	}
	b.ring = newHashRing(shardAddrs, opts.VirtualNodes)
	return b, nil
}

func (b *Broker) clientOptions(addr string) *redis.Options {
	o := b.opts
	return &redis.Options{
		Addr: addr, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLS,
		// RESP2: pub/sub replies are plain arrays on the pub/sub connection.
		Protocol:    2,
		DialTimeout: o.OpTimeout, ReadTimeout: o.OpTimeout, WriteTimeout: o.OpTimeout,
		PoolTimeout: o.OpTimeout, PoolSize: o.PoolSize,
		// Never retry: a publication must fail fast rather than wait.
		MaxRetries:            -1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
}

func (b *Broker) failoverOptions() *redis.FailoverOptions {
	o := b.opts
	return &redis.FailoverOptions{
		MasterName: o.SentinelMaster, SentinelAddrs: o.Addrs, SentinelPassword: o.SentinelPassword,
		Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLS,
		Protocol:    2,
		DialTimeout: o.OpTimeout, ReadTimeout: o.OpTimeout, WriteTimeout: o.OpTimeout,
		PoolTimeout: o.OpTimeout, PoolSize: o.PoolSize,
		MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DisableIdentity: true,
	}
}

func (b *Broker) clusterOptions() *redis.ClusterOptions {
	o := b.opts
	return &redis.ClusterOptions{
		Addrs: o.Addrs, Username: o.Username, Password: o.Password, TLSConfig: o.TLS,
		Protocol:    2,
		DialTimeout: o.OpTimeout, ReadTimeout: o.OpTimeout, WriteTimeout: o.OpTimeout,
		PoolTimeout: o.OpTimeout, PoolSize: o.PoolSize,
		MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
}

// NumShards reports how many shards channels are spread over.
func (b *Broker) NumShards() int { return len(b.shards) }

// ShardOf reports the index (into Options.Addrs) of channel's shard; 0 in
// Cluster and Sentinel modes.
func (b *Broker) ShardOf(channel string) int { return b.ring.shard(channel) }

func (b *Broker) shardFor(channel string) *shard { return b.shards[b.ring.shard(channel)] }

// Key names. The channel is the hash tag of every key.
func (b *Broker) streamKey(ch string) string   { return b.opts.Prefix + ":h:{" + ch + "}" }
func (b *Broker) metaKey(ch string) string     { return b.opts.Prefix + ":m:{" + ch + "}" }
func (b *Broker) presenceKey(ch string) string { return b.opts.Prefix + ":p:{" + ch + "}" }
func (b *Broker) expiryKey(ch string) string   { return b.opts.Prefix + ":z:{" + ch + "}" }
func (b *Broker) pubsubName(ch string) string  { return b.opts.Prefix + ":c:{" + ch + "}" }

// channelOf is the inverse of pubsubName.
func (b *Broker) channelOf(name string) (string, bool) {
	p := b.opts.Prefix + ":c:{"
	if !strings.HasPrefix(name, p) || !strings.HasSuffix(name, "}") {
		return "", false
	}
	return name[len(p) : len(name)-1], true
}

// Run implements hub.Broker: it checks every shard, detects the pub/sub
// mode, subscribes the control channel and starts the readers.
func (b *Broker) Run(ctx context.Context, h hub.EventHandler) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if h == nil {
		return errors.New("redisbroker: nil event handler")
	}
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("redisbroker: Run called twice")
	}
	b.handler = h
	for _, s := range b.shards {
		if err := s.detect(ctx); err != nil {
			return err
		}
	}
	for _, s := range b.shards {
		b.wg.Add(1)
		go s.read()
	}
	if err := b.shardFor(b.controlChannel).subscribe(ctx, b.controlChannel, ""); err != nil {
		return fmt.Errorf("redisbroker: subscribe control channel: %w", err)
	}
	return nil
}

// Close implements hub.Broker and hub.PresenceManager: it stops the readers
// and closes every connection. Idempotent.
func (b *Broker) Close(ctx context.Context) error {
	var errs []error
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		b.cancel()
		for _, s := range b.shards {
			if s.ps == nil { // Run was not called
				continue
			}
			if err := s.ps.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
				errs = append(errs, err)
			}
		}
		done := make(chan struct{})
		go func() { b.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("waiting for readers: %w", ctx.Err()))
		}
		for _, s := range b.shards {
			if err := s.client.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
				errs = append(errs, err)
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("redisbroker: close: %w", err)
	}
	return nil
}

func (b *Broker) check() error {
	if b.closed.Load() {
		return ErrClosed
	}
	return nil
}

// opContext bounds one operation by OpTimeout.
func (b *Broker) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opts.OpTimeout)
}

// wrapErr classifies err: failures to reach Redis (network errors,
// timeouts, a server that is loading or failing over) wrap
// hub.ErrBrokerUnavailable; errors Redis replied with do not. The
// caller's own cancellation is reported as such.
func wrapErr(parent context.Context, op, channel string, err error) error {
	if err == nil {
		return nil
	}
	if parent.Err() != nil {
		return fmt.Errorf("redisbroker: %s %q: %w", op, channel, err)
	}
	if isServerError(err) {
		return fmt.Errorf("redisbroker: %s %q: %w", op, channel, err)
	}
	return fmt.Errorf("redisbroker: %s %q: %w: %w", op, channel, hub.ErrBrokerUnavailable, err)
}

// isServerError reports whether err is a reply from a working server (as
// opposed to one that cannot serve at the moment).
func isServerError(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "MOVED", "ASK"} {
		if strings.HasPrefix(msg, p) {
			return false
		}
	}
	return true
}

func newEpoch() string {
	var buf [9]byte
	_, _ = rand.Read(buf[:])
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

func ms(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return max(int64(d/time.Millisecond), 1)
}

func (b *Broker) metaTTL(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return b.opts.HistoryMetaTTL
}

// Subscribe implements hub.Broker. It returns once Redis has confirmed the
// subscription.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	if err := b.check(); err != nil {
		return err
	}
	return b.shardFor(channel).subscribe(ctx, b.pubsubName(channel), channel)
}

// Unsubscribe implements hub.Broker. It returns once Redis has confirmed
// the unsubscription and every message published before it was handled.
func (b *Broker) Unsubscribe(ctx context.Context, channel string) error {
	if err := b.check(); err != nil {
		return err
	}
	return b.shardFor(channel).unsubscribe(ctx, b.pubsubName(channel))
}

// Publish implements hub.Broker.
func (b *Broker) Publish(ctx context.Context, channel string, pub *hub.Publication, opts hub.PublishOptions) (hub.StreamPosition, error) {
	if err := b.check(); err != nil {
		return hub.StreamPosition{}, err
	}
	if opts.HistorySize < 0 {
		return hub.StreamPosition{}, fmt.Errorf("redisbroker: publish to %q: negative history size %d", channel, opts.HistorySize)
	}
	s := b.shardFor(channel)
	octx, cancel := b.opContext(ctx)
	defer cancel()
	blob := brokercodec.AppendPublication(nil, pub)
	if opts.HistorySize == 0 {
		msg := make([]byte, 0, len(blob)+4)
		msg = append(msg, "p0  "...)
		msg = append(msg, blob...)
		err := b.publishViaOwner(octx, s, b.metaKey(channel), b.pubsubName(channel), msg)
		return hub.StreamPosition{}, wrapErr(ctx, "publish to", channel, err)
	}
	res, err := publishScript.Run(octx, s.client,
		[]string{b.streamKey(channel), b.metaKey(channel)},
		blob, opts.HistorySize, ms(opts.HistoryTTL), ms(b.metaTTL(opts.HistoryMetaTTL)),
		b.pubsubName(channel), newEpoch(), s.publishCmd,
	).Slice()
	if err != nil {
		return hub.StreamPosition{}, wrapErr(ctx, "publish to", channel, err)
	}
	if len(res) != 2 {
		return hub.StreamPosition{}, fmt.Errorf("redisbroker: publish to %q: unexpected script reply %v", channel, res)
	}
	off, ok1 := res[0].(int64)
	epoch, ok2 := res[1].(string)
	if !ok1 || !ok2 || off <= 0 {
		return hub.StreamPosition{}, fmt.Errorf("redisbroker: publish to %q: unexpected script reply %v", channel, res)
	}
	return hub.StreamPosition{Offset: uint64(off), Epoch: epoch}, nil
}

// PublishJoin implements hub.Broker.
func (b *Broker) PublishJoin(ctx context.Context, channel string, info *hub.ClientInfo) error {
	return b.publishEvent(ctx, channel, 'j', info)
}

// PublishLeave implements hub.Broker.
func (b *Broker) PublishLeave(ctx context.Context, channel string, info *hub.ClientInfo) error {
	return b.publishEvent(ctx, channel, 'l', info)
}

func (b *Broker) publishEvent(ctx context.Context, channel string, kind byte, info *hub.ClientInfo) error {
	if err := b.check(); err != nil {
		return err
	}
	s := b.shardFor(channel)
	octx, cancel := b.opContext(ctx)
	defer cancel()
	msg := brokercodec.AppendClientInfo([]byte{kind}, info)
	err := b.publishViaOwner(octx, s, b.metaKey(channel), b.pubsubName(channel), msg)
	return wrapErr(ctx, "publish event to", channel, err)
}

// publishViaOwner publishes msg on the pub/sub channel name. In cluster
// mode it runs a script keyed by key (a key of the channel), so the slot
// owner publishes every message of the channel and they keep their order
// on their way through the cluster bus.
func (b *Broker) publishViaOwner(ctx context.Context, s *shard, key, name string, msg []byte) error {
	if b.opts.Cluster {
		return eventScript.Run(ctx, s.client, []string{key}, s.publishCmd, name, msg).Err()
	}
	return s.client.Do(ctx, s.publishCmd, name, msg).Err()
}

// PublishControl implements hub.Broker. Control messages go through the
// shard owning the control channel's name on the ring, which every node
// computes alike.
func (b *Broker) PublishControl(ctx context.Context, data []byte) error {
	if err := b.check(); err != nil {
		return err
	}
	s := b.shardFor(b.controlChannel)
	octx, cancel := b.opContext(ctx)
	defer cancel()
	err := b.publishViaOwner(octx, s, b.opts.Prefix+":{control}", b.controlChannel, data)
	return wrapErr(ctx, "publish control", "", err)
}

// History implements hub.Broker.
func (b *Broker) History(ctx context.Context, channel string, opts hub.HistoryOptions) (hub.HistoryResult, error) {
	if err := b.check(); err != nil {
		return hub.HistoryResult{}, err
	}
	s := b.shardFor(channel)
	octx, cancel := b.opContext(ctx)
	defer cancel()
	since, sinceEpoch := "", ""
	if opts.Since != nil {
		since, sinceEpoch = strconv.FormatUint(opts.Since.Offset, 10), opts.Since.Epoch
	}
	reverse := "0"
	if opts.Reverse {
		reverse = "1"
	}
	res, err := historyScript.Run(octx, s.client,
		[]string{b.streamKey(channel), b.metaKey(channel)},
		ms(b.metaTTL(opts.MetaTTL)), newEpoch(), since, sinceEpoch, opts.Limit, reverse,
	).Slice()
	if err != nil {
		return hub.HistoryResult{}, wrapErr(ctx, "history of", channel, err)
	}
	bad := func() (hub.HistoryResult, error) {
		return hub.HistoryResult{}, fmt.Errorf("redisbroker: history of %q: unexpected script reply", channel)
	}
	if len(res) != 3 {
		return bad()
	}
	off, ok1 := res[0].(int64)
	epoch, ok2 := res[1].(string)
	entries, ok3 := res[2].([]any)
	if !ok1 || !ok2 || !ok3 || len(entries)%2 != 0 || off < 0 {
		return bad()
	}
	out := hub.HistoryResult{Position: hub.StreamPosition{Offset: uint64(off), Epoch: epoch}}
	if len(entries) > 0 {
		out.Publications = make([]*hub.Publication, 0, len(entries)/2)
	}
	for i := 0; i < len(entries); i += 2 {
		id, _ := entries[i].(string)
		data, _ := entries[i+1].(string)
		o, err := strconv.ParseUint(strings.TrimSuffix(id, "-0"), 10, 64)
		if err != nil {
			return bad()
		}
		pub, err := brokercodec.DecodePublication([]byte(data))
		if err != nil {
			return hub.HistoryResult{}, fmt.Errorf("redisbroker: history of %q at offset %d: %w", channel, o, err)
		}
		pub.Offset = o
		out.Publications = append(out.Publications, pub)
	}
	return out, nil
}

// RemoveHistory implements hub.Broker: the stream goes, the metadata stays.
func (b *Broker) RemoveHistory(ctx context.Context, channel string) error {
	if err := b.check(); err != nil {
		return err
	}
	octx, cancel := b.opContext(ctx)
	defer cancel()
	err := b.shardFor(channel).client.Del(octx, b.streamKey(channel)).Err()
	return wrapErr(ctx, "remove history of", channel, err)
}

// AddPresence implements hub.PresenceManager. ttl 0 means
// DefaultPresenceTTL.
func (b *Broker) AddPresence(ctx context.Context, channel, clientID string, info *hub.ClientInfo, ttl time.Duration) error {
	if err := b.check(); err != nil {
		return err
	}
	if ttl <= 0 {
		ttl = DefaultPresenceTTL
	}
	if info == nil {
		info = &hub.ClientInfo{Client: clientID}
	}
	octx, cancel := b.opContext(ctx)
	defer cancel()
	err := addPresenceScript.Run(octx, b.shardFor(channel).client,
		[]string{b.presenceKey(channel), b.expiryKey(channel)},
		clientID, brokercodec.AppendClientInfo(nil, info), ms(ttl)).Err()
	return wrapErr(ctx, "add presence to", channel, err)
}

// RemovePresence implements hub.PresenceManager.
func (b *Broker) RemovePresence(ctx context.Context, channel, clientID string) error {
	if err := b.check(); err != nil {
		return err
	}
	octx, cancel := b.opContext(ctx)
	defer cancel()
	err := removePresenceScript.Run(octx, b.shardFor(channel).client,
		[]string{b.presenceKey(channel), b.expiryKey(channel)}, clientID).Err()
	return wrapErr(ctx, "remove presence from", channel, err)
}

// Presence implements hub.PresenceManager. Expired entries are removed by
// the read.
func (b *Broker) Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	octx, cancel := b.opContext(ctx)
	defer cancel()
	res, err := presenceScript.Run(octx, b.shardFor(channel).client,
		[]string{b.presenceKey(channel), b.expiryKey(channel)}).StringSlice()
	if err != nil {
		return nil, wrapErr(ctx, "presence of", channel, err)
	}
	out := make(map[string]*hub.ClientInfo, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		info, err := brokercodec.DecodeClientInfo([]byte(res[i+1]))
		if err != nil {
			return nil, fmt.Errorf("redisbroker: presence of %q, client %q: %w", channel, res[i], err)
		}
		out[res[i]] = info
	}
	return out, nil
}

// PresenceStats implements hub.PresenceManager.
func (b *Broker) PresenceStats(ctx context.Context, channel string) (hub.PresenceStats, error) {
	p, err := b.Presence(ctx, channel)
	if err != nil {
		return hub.PresenceStats{}, err
	}
	users := make(map[string]struct{})
	for _, info := range p {
		if info.User != "" {
			users[info.User] = struct{}{}
		}
	}
	return hub.PresenceStats{NumClients: len(p), NumUsers: len(users)}, nil
}
