package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/heraldhq/herald/internal/wire"
)

const numShards = 64

var (
	_ EventHandler   = (*Hub)(nil)
	_ ChannelTargets = (*Hub)(nil)
)

// Hub is a node's channel registry and fan-out engine. It is safe for
// concurrent use. Create it with New, start it with Run, stop it with
// Shutdown. Its Handle* methods implement EventHandler and are called by
// the Broker only.
type Hub struct {
	cfg     Config
	nodeID  string
	started time.Time

	runMu    sync.Mutex
	running  bool
	stopOnce sync.Once
	closing  atomic.Bool
	ready    atomic.Bool
	loopCtx  context.Context
	stop     context.CancelFunc
	loopDone chan struct{}

	clientsMu sync.RWMutex
	clients   clientTable
	users     map[string]map[string]*client

	seed   maphash.Seed
	shards [numShards]shard

	cleanups  chan cleanupTask
	reconnect chan struct{}
	// announce asks the loop to publish node info now: a node joined, and
	// it should learn about this one without waiting a whole interval.
	announce chan struct{}

	nodesMu sync.Mutex
	nodes   map[string]*NodeInfo
	// selfNodeReport is the prefix of this node's own reports.
	selfNodeReport []byte

	counters counters
}

// shard is one of the channel map's shards, padded to a cache line of its
// own so that the read locks of neighbouring shards, taken by different
// cores for every publication, do not contend.
type shard struct {
	mu       sync.RWMutex
	channels map[string]*channel
	_        [64 - (unsafe.Sizeof(sync.RWMutex{})+unsafe.Sizeof(map[string]*channel(nil)))%64]byte
}

// client is a registered Subscriber and its subscriptions. An idle server
// holds one per connection, so its fields are kept to 48 bytes (a size
// class): the flag that the client was removed lives in subs.
type client struct {
	sub Subscriber
	// info holds the client's id and user (fixed while it is registered)
	// and describes it in presence and join/leave events; it is shared by
	// every subscription without channel info of its own.
	info *ClientInfo

	mu   sync.Mutex
	subs subscriptionSet // live and in-progress subscriptions by channel
}

// subscriptionSet holds a client's subscriptions by channel name in two
// words. Most clients hold one subscription, which needs nothing more;
// a few are a short slice, a fraction of a map's memory; past
// subscriptionSetMapAt entries a map keeps lookups constant-time.
//
// The set also records that its client was removed (markRemoved): a
// removed set always uses more, whose removed flag says so, so that live
// clients pay no word for a flag set once at the end of their life.
type subscriptionSet struct {
	one  *subscription // the only subscription; nil when more is in use
	more *moreSubscriptions
}

// moreSubscriptions is a subscriptionSet of two or more subscriptions
// (or of any number once removed): list up to subscriptionSetMapAt of
// them, byCh beyond.
type moreSubscriptions struct {
	list    []*subscription
	byCh    map[string]*subscription
	removed bool
}

// markRemoved records that the client was removed; its subscriptions stay
// until each is ended.
func (ss *subscriptionSet) markRemoved() {
	if ss.more == nil {
		ss.more = &moreSubscriptions{}
		if ss.one != nil {
			ss.more.list = []*subscription{ss.one}
			ss.one = nil
		}
	}
	ss.more.removed = true
}

// removed reports whether markRemoved was called.
func (ss *subscriptionSet) removed() bool { return ss.more != nil && ss.more.removed }

const subscriptionSetMapAt = 16

func (ss *subscriptionSet) get(channel string) *subscription {
	if ss.more == nil {
		if ss.one != nil && ss.one.ch.name == channel {
			return ss.one
		}
		return nil
	}
	if ss.more.byCh != nil {
		return ss.more.byCh[channel]
	}
	for _, s := range ss.more.list {
		if s.ch.name == channel {
			return s
		}
	}
	return nil
}

// add stores s; the caller has checked that its channel is not present.
func (ss *subscriptionSet) add(s *subscription) {
	switch {
	case ss.more == nil && ss.one == nil:
		ss.one = s
		return
	case ss.more == nil:
		ss.more = &moreSubscriptions{list: []*subscription{ss.one, s}}
		ss.one = nil
		return
	}
	m := ss.more
	if m.byCh != nil {
		m.byCh[s.ch.name] = s
		return
	}
	if len(m.list) < subscriptionSetMapAt {
		m.list = append(m.list, s)
		return
	}
	m.byCh = make(map[string]*subscription, len(m.list)+1)
	for _, o := range m.list {
		m.byCh[o.ch.name] = o
	}
	m.byCh[s.ch.name] = s
	m.list = nil
}

// remove deletes s if it is still the subscription of its channel.
func (ss *subscriptionSet) remove(s *subscription) {
	if ss.more == nil {
		if ss.one == s {
			ss.one = nil
		}
		return
	}
	m := ss.more
	if m.byCh != nil {
		if m.byCh[s.ch.name] == s {
			delete(m.byCh, s.ch.name)
		}
	} else {
		for i, o := range m.list {
			if o == s {
				last := len(m.list) - 1
				m.list[i] = m.list[last]
				m.list[last] = nil
				m.list = m.list[:last]
				break
			}
		}
	}
	if m.removed {
		return // keeps the flag
	}
	// Back to one word when one subscription is left: an idle client
	// keeps no slice or map.
	switch ss.len() {
	case 0:
		ss.more = nil
	case 1:
		ss.more = nil
		ss.one = m.only()
	}
}

// only returns the one subscription of a set of one.
func (m *moreSubscriptions) only() *subscription {
	for _, s := range m.byCh {
		return s
	}
	return m.list[0]
}

func (ss *subscriptionSet) len() int {
	switch {
	case ss.more == nil && ss.one == nil:
		return 0
	case ss.more == nil:
		return 1
	case ss.more.byCh != nil:
		return len(ss.more.byCh)
	}
	return len(ss.more.list)
}

// appendTo appends every subscription to dst.
func (ss *subscriptionSet) appendTo(dst []*subscription) []*subscription {
	switch {
	case ss.more == nil && ss.one == nil:
		return dst
	case ss.more == nil:
		return append(dst, ss.one)
	case ss.more.byCh != nil:
		for _, s := range ss.more.byCh {
			dst = append(dst, s)
		}
		return dst
	}
	return append(dst, ss.more.list...)
}

// lookup returns the client's subscription to name and the channel state
// it is registered with (nil while not registered yet).
func (c *client) lookup(name string) (*subscription, *channel) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.subs.get(name)
	if s == nil {
		return nil, nil
	}
	return s, s.ch
}

// New validates cfg and returns a Hub that is not running yet.
func New(cfg Config) (*Hub, error) {
	if cfg.Broker == nil {
		return nil, errors.New("hub: Config.Broker is required")
	}
	if cfg.Presence == nil {
		return nil, errors.New("hub: Config.Presence is required")
	}
	if cfg.Namespaces == nil {
		return nil, errors.New("hub: Config.Namespaces is required")
	}
	cfg.withDefaults()
	if cfg.NodeID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.NodeID = hex.EncodeToString(b[:])
	}
	if cfg.NodeName == "" {
		cfg.NodeName = cfg.NodeID
	}
	h := &Hub{
		cfg:       cfg,
		nodeID:    cfg.NodeID,
		started:   time.Now(),
		clients:   newClientTable(),
		users:     make(map[string]map[string]*client),
		seed:      maphash.MakeSeed(),
		cleanups:  make(chan cleanupTask, cleanupQueueSize),
		reconnect: make(chan struct{}, 1),
		announce:  make(chan struct{}, 1),
		nodes:     make(map[string]*NodeInfo),
		loopDone:  make(chan struct{}),
	}
	h.selfNodeReport = nodeReportPrefix(h.nodeID)
	for i := range h.shards {
		h.shards[i].channels = make(map[string]*channel)
	}
	return h, nil
}

// NodeID returns this node's id.
func (h *Hub) NodeID() string { return h.nodeID }

// Run starts the broker (Broker.Run with the hub as its EventHandler) and
// the hub's background goroutine (presence refresh, node info, deferred
// cleanups, gap checks after broker reconnects). It returns once the broker
// is ready. ctx bounds the start only. Calling Run again is a no-op; after
// Shutdown it returns ErrShuttingDown.
func (h *Hub) Run(ctx context.Context) error {
	h.runMu.Lock()
	defer h.runMu.Unlock()
	if h.closing.Load() {
		return ErrShuttingDown
	}
	if h.running {
		return nil
	}
	if err := h.cfg.Broker.Run(ctx, h); err != nil {
		return fmt.Errorf("hub: start broker: %w", err)
	}
	h.running = true
	h.loopCtx, h.stop = context.WithCancel(context.WithoutCancel(ctx))
	// Ready before the loop starts: its first act is publishing node info.
	h.ready.Store(true)
	go h.loop()
	return nil
}

// Shutdown stops accepting clients and subscriptions, asks every local
// client to disconnect with wire.DisconnectShutdown (sessions then call
// RemoveClient), and stops the background goroutine, waiting for it or
// until ctx is done. It does not close the Broker or PresenceManager,
// which belong to the caller. Idempotent; safe to call without Run.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.runMu.Lock()
	h.closing.Store(true)
	running := h.running
	h.runMu.Unlock()

	h.stopOnce.Do(func() {
		h.clientsMu.RLock()
		subs := make([]Subscriber, 0, h.clients.len())
		h.clients.each(func(c *client) { subs = append(subs, c.sub) })
		h.clientsMu.RUnlock()
		for _, s := range subs {
			s.ServerDisconnect(wire.DisconnectShutdown, "server shutting down")
		}
		if running {
			h.stop()
		}
	})
	if !running {
		return nil
	}
	select {
	case <-h.loopDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("hub: shutdown: %w", ctx.Err())
	}
}

// AddClient registers a connected client so it can subscribe and be
// reached by SendToUser, Disconnect and ServerUnsubscribe. It fails with
// ErrConnectionLimit when the user already holds MaxConnectionsPerUser
// connections on this node, ErrClientExists for a duplicate client id, and
// ErrShuttingDown during Shutdown.
func (h *Hub) AddClient(sub Subscriber) error {
	if h.closing.Load() {
		return ErrShuttingDown
	}
	c := &client{sub: sub, info: clientInfo(sub)}
	h.clientsMu.Lock()
	defer h.clientsMu.Unlock()
	if h.clients.get(c.info.Client) != nil {
		return fmt.Errorf("hub: add client %q: %w", c.info.Client, ErrClientExists)
	}
	if c.info.User != "" {
		byID := h.users[c.info.User]
		if limit := h.cfg.MaxConnectionsPerUser; limit > 0 && len(byID) >= limit {
			return fmt.Errorf("hub: add client of user %q: %w", c.info.User, ErrConnectionLimit)
		}
		if byID == nil {
			byID = make(map[string]*client)
			h.users[c.info.User] = byID
		}
		byID[c.info.Client] = c
	}
	h.clients.add(c)
	return nil
}

// RemoveClient unregisters a client and removes all its subscriptions
// (presence entries and leave events included). Sessions call it when the
// connection ends, whatever the reason. Unknown clients are ignored. ctx
// bounds the broker calls for presence and leave events.
func (h *Hub) RemoveClient(ctx context.Context, sub Subscriber) {
	id := sub.ClientID()
	h.clientsMu.Lock()
	c := h.clients.get(id)
	if c == nil || c.sub != sub {
		h.clientsMu.Unlock()
		return
	}
	h.clients.remove(c)
	if c.info.User != "" {
		if byID := h.users[c.info.User]; byID != nil {
			delete(byID, id)
			if len(byID) == 0 {
				delete(h.users, c.info.User)
			}
		}
	}
	h.clientsMu.Unlock()

	c.mu.Lock()
	c.subs.markRemoved()
	subs := c.subs.appendTo(make([]*subscription, 0, c.subs.len()))
	c.mu.Unlock()
	for _, s := range subs {
		h.unsubscribe(ctx, s)
	}
}

// clientInfo returns sub's description: its own when it offers a
// matching one (ClientInfoSource), otherwise a new one.
func clientInfo(sub Subscriber) *ClientInfo {
	id, user, connInfo := sub.ClientID(), sub.UserID(), sub.ConnInfo()
	if src, ok := sub.(ClientInfoSource); ok {
		if info := src.ClientInfo(); info != nil && info.Client == id && info.User == user &&
			sameSlice(info.ConnInfo, connInfo) && info.ChanInfo == nil {
			return info
		}
	}
	return &ClientInfo{Client: id, User: user, ConnInfo: connInfo}
}

func (h *Hub) lookupClient(sub Subscriber) *client {
	h.clientsMu.RLock()
	c := h.clients.get(sub.ClientID())
	h.clientsMu.RUnlock()
	if c == nil || c.sub != sub {
		return nil
	}
	return c
}

// userClients returns the registered subscribers of user, optionally only
// the one with client id clientID.
func (h *Hub) userClients(user, clientID string) []*client {
	h.clientsMu.RLock()
	defer h.clientsMu.RUnlock()
	if user == "" {
		if c := h.clients.get(clientID); c != nil {
			return []*client{c}
		}
		return nil
	}
	byID := h.users[user]
	if clientID != "" {
		if c := byID[clientID]; c != nil {
			return []*client{c}
		}
		return nil
	}
	out := make([]*client, 0, len(byID))
	for _, c := range byID {
		out = append(out, c)
	}
	return out
}

// resolve validates a channel name and returns its namespace options.
func (h *Hub) resolve(channel string) (ChannelOptions, error) {
	if err := ValidateChannel(channel); err != nil {
		return ChannelOptions{}, err
	}
	ns := Namespace(channel)
	opts, ok := h.cfg.Namespaces.Namespace(ns)
	if !ok {
		return ChannelOptions{}, fmt.Errorf("%w %q", ErrUnknownNamespace, ns)
	}
	return opts, nil
}

// ChannelOptions validates channel and returns the options of its
// namespace, for permission checks that belong to the caller (client
// publish, history and presence).
func (h *Hub) ChannelOptions(channel string) (ChannelOptions, error) {
	return h.resolve(channel)
}

func (h *Hub) shardFor(channel string) *shard {
	return &h.shards[maphash.String(h.seed, channel)%numShards]
}

func (h *Hub) lookupChannel(name string) *channel {
	sh := h.shardFor(name)
	sh.mu.RLock()
	ch := sh.channels[name]
	sh.mu.RUnlock()
	return ch
}

// channelsSnapshot returns every channel state at the time of the call.
func (h *Hub) channelsSnapshot() []*channel {
	var out []*channel
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, ch := range sh.channels {
			out = append(out, ch)
		}
		sh.mu.RUnlock()
	}
	return out
}

// Channels returns the channels with subscribers on this node and how many
// local subscribers each has.
func (h *Hub) Channels() map[string]int {
	out := make(map[string]int)
	for _, ch := range h.channelsSnapshot() {
		ch.mu.Lock()
		n := len(ch.live)
		ch.mu.Unlock()
		if n > 0 {
			out[ch.name] = n
		}
	}
	return out
}

// NumSubscribers returns the number of local subscribers of channel.
func (h *Hub) NumSubscribers(channel string) int {
	ch := h.lookupChannel(channel)
	if ch == nil {
		return 0
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return len(ch.live)
}
