// Package membroker is herald's in-memory Broker and PresenceManager, for a
// single node (the default). History, stream positions and presence live in
// this process and are lost on restart; every stream then starts a new
// epoch, so clients notice that they cannot recover.
//
// # Ordering
//
// Publish holds the channel's lock while it assigns the offset, appends to
// history and calls EventHandler.HandlePublication (or the channel's
// hub.ChannelTarget, when the handler provides one), so the handler sees a
// channel's publications one at a time in offset order, and a history read
// (which takes the same lock) never observes a publication the handler has
// not been given. Join and leave events take the same lock. Control
// messages are handed to the handler on the publisher's goroutine.
// Consequently the handler must not call back into the Broker for the same
// channel from HandlePublication, HandleJoin or HandleLeave.
//
// # Expiry
//
// Publications older than HistoryTTL are dropped lazily on every access to
// the channel and by one janitor goroutine that also forgets streams whose
// metadata TTL ran out (their next publication starts a new epoch) and
// expired presence entries. The janitor is started by New and stopped by
// Close; there is no timer per channel.
package membroker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/heraldhq/herald/internal/hub"
)

// ErrClosed is returned by every operation after Close.
var ErrClosed = errors.New("membroker: closed")

// DefaultHistoryMetaTTL is how long a stream's position outlives its last
// publication when neither PublishOptions nor Options say otherwise.
const DefaultHistoryMetaTTL = 24 * time.Hour

// DefaultPresenceTTL applies to AddPresence calls with ttl 0.
const DefaultPresenceTTL = 60 * time.Second

// Options configure a Broker. The zero value is ready for production.
type Options struct {
	// HistoryMetaTTL is the default for PublishOptions.HistoryMetaTTL and
	// HistoryOptions.MetaTTL when they are 0. 0 means 24h.
	HistoryMetaTTL time.Duration
	// JanitorInterval is how often expired history, stream metadata and
	// presence are purged from memory. 0 means 1s. Expiry is also applied
	// on every read, so this only bounds memory, not visibility.
	JanitorInterval time.Duration
	// Now is the clock; nil means time.Now. Tests inject a fake clock to
	// check expiry without waiting.
	Now func() time.Time
}

// Broker is the in-memory hub.Broker and hub.PresenceManager. It is safe for
// concurrent use. Create it with New and release it with Close.
type Broker struct {
	opts Options

	handler atomic.Pointer[handlerBox]

	// Channel states live in shards by a hash of the name, each with its
	// own lock: a publication looks its channel up under a read lock, and
	// one lock for every channel would have the cores that publish at the
	// same time contend for its counter.
	seed   maphash.Seed
	shards [numShards]channelShard

	presMu   sync.Mutex
	presence map[string]*presenceSet

	// purgeScratch is the janitor's reused list of channel states.
	purgeScratch []namedState

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

type handlerBox struct{ h hub.EventHandler }

// channelState is one channel's subscription flag and stream. Guarded by mu.
type channelState struct {
	mu sync.Mutex
	// dead is set when the janitor removed the state from the map; a
	// caller that locked it afterwards looks the channel up again.
	dead       bool
	subscribed bool
	// target receives the publications of the current subscription
	// (hub.ChannelTargets); nil until the first one, or when the handler
	// has none.
	target hub.ChannelTarget

	hasStream   bool
	epoch       string
	offset      uint64
	metaExpires time.Time
	// ring holds the retained publications, oldest at head.
	ring []entry
	head int
	n    int
}

type entry struct {
	pub     *hub.Publication
	expires time.Time // zero: no expiry by age
}

// presenceEntry is one client's presence in a channel. A channel's
// entries are map values, two words each: the shared description and the
// expiry in unix nanoseconds (not a time.Time, three words).
type presenceEntry struct {
	info    *hub.ClientInfo
	expires int64
}

func (e presenceEntry) live(now time.Time) bool { return now.UnixNano() < e.expires }

// presenceSet is one channel's presence entries by client id.
type presenceSet struct {
	entries map[string]presenceEntry
	// nextExpiry is no later than the earliest expiry among entries
	// (unix nanoseconds): until then the janitor has nothing to purge in
	// this channel and does not scan it.
	nextExpiry int64
}

// numShards is the number of channel-map shards.
const numShards = 64

// channelShard is one shard of the channel map, padded to a cache line of
// its own so that the read locks of neighbouring shards do not contend.
type channelShard struct {
	mu       sync.RWMutex
	channels map[string]*channelState
	_        [64 - (unsafe.Sizeof(sync.RWMutex{})+unsafe.Sizeof(map[string]*channelState(nil)))%64]byte
}

// namedState is a channel state and its name, as the janitor lists them.
type namedState struct {
	name string
	cs   *channelState
}

var (
	_ hub.Broker          = (*Broker)(nil)
	_ hub.PresenceManager = (*Broker)(nil)
)

// New returns a Broker and starts its janitor goroutine; Close stops it.
func New(opts Options) *Broker {
	if opts.HistoryMetaTTL <= 0 {
		opts.HistoryMetaTTL = DefaultHistoryMetaTTL
	}
	if opts.JanitorInterval <= 0 {
		opts.JanitorInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Broker{
		opts:     opts,
		seed:     maphash.MakeSeed(),
		presence: make(map[string]*presenceSet),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for i := range b.shards {
		b.shards[i].channels = make(map[string]*channelState)
	}
	go b.janitor()
	return b
}

// Run implements hub.Broker: events go to h from now on.
func (b *Broker) Run(_ context.Context, h hub.EventHandler) error {
	if b.closed.Load() {
		return ErrClosed
	}
	b.handler.Store(&handlerBox{h})
	return nil
}

func (b *Broker) eventHandler() hub.EventHandler {
	if hb := b.handler.Load(); hb != nil && !b.closed.Load() {
		return hb.h
	}
	return nil
}

// Close implements hub.Broker and hub.PresenceManager: it stops the janitor
// and event delivery. Idempotent.
func (b *Broker) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.stop)
	})
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("membroker: close: %w", ctx.Err())
	}
}

func (b *Broker) shardFor(channel string) *channelShard {
	return &b.shards[maphash.String(b.seed, channel)%numShards]
}

// lockChannel returns the locked state of channel, creating it when create
// is set (otherwise it may return nil).
func (b *Broker) lockChannel(channel string, create bool) *channelState {
	sh := b.shardFor(channel)
	for {
		sh.mu.RLock()
		cs := sh.channels[channel]
		sh.mu.RUnlock()
		if cs == nil {
			if !create {
				return nil
			}
			sh.mu.Lock()
			cs = sh.channels[channel]
			if cs == nil {
				cs = &channelState{}
				sh.channels[channel] = cs
			}
			sh.mu.Unlock()
		}
		cs.mu.Lock()
		if !cs.dead {
			return cs
		}
		cs.mu.Unlock()
	}
}

// Subscribe implements hub.Broker.
func (b *Broker) Subscribe(_ context.Context, channel string) error {
	if b.closed.Load() {
		return ErrClosed
	}
	cs := b.lockChannel(channel, true)
	cs.subscribed = true
	cs.target = nil // a new subscription has a new target
	cs.mu.Unlock()
	return nil
}

// Unsubscribe implements hub.Broker.
func (b *Broker) Unsubscribe(_ context.Context, channel string) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if cs := b.lockChannel(channel, false); cs != nil {
		cs.subscribed = false
		cs.target = nil
		cs.mu.Unlock()
	}
	return nil
}

func newEpoch() string {
	var buf [8]byte
	_, _ = rand.Read(buf[:])
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

func (b *Broker) metaTTL(ttl time.Duration) time.Duration {
	if ttl > 0 {
		return ttl
	}
	return b.opts.HistoryMetaTTL
}

// expire drops the stream when its metadata TTL ran out and publications
// whose HistoryTTL ran out.
func (cs *channelState) expire(now time.Time) {
	if cs.hasStream && !now.Before(cs.metaExpires) {
		cs.hasStream = false
		cs.epoch = ""
		cs.offset = 0
		cs.clearRing()
		return
	}
	for cs.n > 0 {
		e := &cs.ring[cs.head]
		if e.expires.IsZero() || now.Before(e.expires) {
			break
		}
		*e = entry{}
		cs.head = (cs.head + 1) % len(cs.ring)
		cs.n--
	}
}

func (cs *channelState) clearRing() {
	clear(cs.ring)
	cs.head, cs.n = 0, 0
}

// ensureStream starts a new epoch when the channel has none.
func (cs *channelState) ensureStream(now time.Time, metaTTL time.Duration) {
	if cs.hasStream {
		return
	}
	cs.hasStream = true
	cs.epoch = newEpoch()
	cs.offset = 0
	cs.metaExpires = now.Add(metaTTL)
	cs.clearRing()
}

// resize makes the ring hold size entries, keeping the newest ones.
func (cs *channelState) resize(size int) {
	if len(cs.ring) == size {
		return
	}
	ring := make([]entry, size)
	keep := min(cs.n, size)
	for i := range keep {
		ring[i] = cs.ring[(cs.head+cs.n-keep+i)%len(cs.ring)]
	}
	cs.ring, cs.head, cs.n = ring, 0, keep
}

func (cs *channelState) append(e entry) {
	if cs.n == len(cs.ring) {
		cs.ring[cs.head] = e
		cs.head = (cs.head + 1) % len(cs.ring)
		return
	}
	cs.ring[(cs.head+cs.n)%len(cs.ring)] = e
	cs.n++
}

// Publish implements hub.Broker. pub is copied; the copy (with its offset)
// is stored and delivered.
func (b *Broker) Publish(_ context.Context, channel string, pub *hub.Publication, opts hub.PublishOptions) (hub.StreamPosition, error) {
	if b.closed.Load() {
		return hub.StreamPosition{}, ErrClosed
	}
	if opts.HistorySize < 0 {
		return hub.StreamPosition{}, fmt.Errorf("membroker: publish to %q: negative history size %d", channel, opts.HistorySize)
	}
	if opts.HistorySize == 0 && pub.Offset == 0 {
		// Nothing to store and no offset to assign: the publication is
		// delivered as it is, without a copy (neither side modifies it).
		return b.deliver(channel, pub)
	}
	now := b.opts.Now()
	p := *pub
	p.Offset = 0
	var pos hub.StreamPosition
	cs := b.lockChannel(channel, true)
	defer cs.mu.Unlock()
	if opts.HistorySize > 0 {
		metaTTL := b.metaTTL(opts.HistoryMetaTTL)
		cs.expire(now)
		cs.ensureStream(now, metaTTL)
		cs.resize(opts.HistorySize)
		cs.offset++
		p.Offset = cs.offset
		e := entry{pub: &p}
		if opts.HistoryTTL > 0 {
			e.expires = now.Add(opts.HistoryTTL)
		}
		cs.append(e)
		cs.metaExpires = now.Add(metaTTL)
		pos = hub.StreamPosition{Offset: cs.offset, Epoch: cs.epoch}
	}
	if h := b.eventHandler(); h != nil && cs.subscribed {
		cs.handOver(h, channel, &p, pos)
	}
	return pos, nil
}

// handOver gives a publication of the subscribed channel to h; cs is
// locked. It resolves the channel's target once per subscription, so
// that neither side looks the channel up by name for every publication.
func (cs *channelState) handOver(h hub.EventHandler, channel string, pub *hub.Publication, pos hub.StreamPosition) {
	if cs.target == nil {
		if ct, ok := h.(hub.ChannelTargets); ok {
			cs.target = ct.PublicationTarget(channel)
		}
		if cs.target == nil {
			h.HandlePublication(channel, pub, pos)
			return
		}
	}
	cs.target.HandleChannelPublication(pub, pos)
}

// deliver hands a publication kept in no history to the handler, in order
// with the channel's other events. A channel nobody subscribed to has
// nothing to deliver, so no state is created for it.
func (b *Broker) deliver(channel string, pub *hub.Publication) (hub.StreamPosition, error) {
	h := b.eventHandler()
	if h == nil {
		return hub.StreamPosition{}, nil
	}
	cs := b.lockChannel(channel, false)
	if cs == nil {
		return hub.StreamPosition{}, nil
	}
	defer cs.mu.Unlock()
	if cs.subscribed {
		cs.handOver(h, channel, pub, hub.StreamPosition{})
	}
	return hub.StreamPosition{}, nil
}

// PublishJoin implements hub.Broker.
func (b *Broker) PublishJoin(_ context.Context, channel string, info *hub.ClientInfo) error {
	return b.publishEvent(channel, info, true)
}

// PublishLeave implements hub.Broker.
func (b *Broker) PublishLeave(_ context.Context, channel string, info *hub.ClientInfo) error {
	return b.publishEvent(channel, info, false)
}

func (b *Broker) publishEvent(channel string, info *hub.ClientInfo, join bool) error {
	if b.closed.Load() {
		return ErrClosed
	}
	h := b.eventHandler()
	if h == nil {
		return nil
	}
	cs := b.lockChannel(channel, false)
	if cs == nil {
		return nil
	}
	defer cs.mu.Unlock()
	if !cs.subscribed {
		return nil
	}
	if join {
		h.HandleJoin(channel, info)
	} else {
		h.HandleLeave(channel, info)
	}
	return nil
}

// PublishControl implements hub.Broker: the handler gets data on the
// caller's goroutine.
func (b *Broker) PublishControl(_ context.Context, data []byte) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if h := b.eventHandler(); h != nil {
		h.HandleControl(data)
	}
	return nil
}

// History implements hub.Broker.
func (b *Broker) History(_ context.Context, channel string, opts hub.HistoryOptions) (hub.HistoryResult, error) {
	if b.closed.Load() {
		return hub.HistoryResult{}, ErrClosed
	}
	now := b.opts.Now()
	cs := b.lockChannel(channel, true)
	defer cs.mu.Unlock()
	cs.expire(now)
	cs.ensureStream(now, b.metaTTL(opts.MetaTTL))
	res := hub.HistoryResult{Position: hub.StreamPosition{Offset: cs.offset, Epoch: cs.epoch}}
	if opts.Limit == 0 || cs.n == 0 {
		return res, nil
	}
	if opts.Since != nil && opts.Since.Epoch != cs.epoch {
		return res, nil
	}
	// Retained offsets are contiguous: offset-n+1 .. offset.
	first := cs.offset - uint64(cs.n) + 1
	from := first
	if opts.Since != nil && opts.Since.Offset >= first {
		from = opts.Since.Offset + 1
	}
	if from > cs.offset {
		return res, nil
	}
	count := int(cs.offset - from + 1)
	if opts.Limit > 0 && opts.Limit < count {
		count = opts.Limit
	}
	pubs := make([]*hub.Publication, count)
	skip := int(from - first)
	for i := range count {
		var idx int
		if opts.Reverse {
			idx = cs.n - 1 - i // newest first
		} else {
			idx = skip + i
		}
		pubs[i] = cs.ring[(cs.head+idx)%len(cs.ring)].pub
	}
	res.Publications = pubs
	return res, nil
}

// RemoveHistory implements hub.Broker: the retained publications go, the
// epoch and offset stay.
func (b *Broker) RemoveHistory(_ context.Context, channel string) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if cs := b.lockChannel(channel, false); cs != nil {
		cs.clearRing()
		cs.mu.Unlock()
	}
	return nil
}

// AddPresence implements hub.PresenceManager. ttl 0 means
// DefaultPresenceTTL.
func (b *Broker) AddPresence(_ context.Context, channel, clientID string, info *hub.ClientInfo, ttl time.Duration) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if ttl <= 0 {
		ttl = DefaultPresenceTTL
	}
	exp := b.opts.Now().Add(ttl).UnixNano()
	b.presMu.Lock()
	defer b.presMu.Unlock()
	ps := b.presence[channel]
	if ps == nil {
		ps = &presenceSet{entries: make(map[string]presenceEntry), nextExpiry: exp}
		b.presence[channel] = ps
	}
	ps.entries[clientID] = presenceEntry{info: info, expires: exp}
	ps.nextExpiry = min(ps.nextExpiry, exp)
	return nil
}

// RemovePresence implements hub.PresenceManager.
func (b *Broker) RemovePresence(_ context.Context, channel, clientID string) error {
	if b.closed.Load() {
		return ErrClosed
	}
	b.presMu.Lock()
	defer b.presMu.Unlock()
	if ps := b.presence[channel]; ps != nil {
		delete(ps.entries, clientID)
		if len(ps.entries) == 0 {
			delete(b.presence, channel)
		}
	}
	return nil
}

// presenceEntries returns channel's entries (nil for none); presMu is held.
func (b *Broker) presenceEntries(channel string) map[string]presenceEntry {
	if ps := b.presence[channel]; ps != nil {
		return ps.entries
	}
	return nil
}

// Presence implements hub.PresenceManager. The returned map is the
// caller's; the infos are shared and read-only.
func (b *Broker) Presence(_ context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	now := b.opts.Now()
	b.presMu.Lock()
	defer b.presMu.Unlock()
	entries := b.presenceEntries(channel)
	out := make(map[string]*hub.ClientInfo, len(entries))
	for id, e := range entries {
		if e.live(now) {
			out[id] = e.info
		}
	}
	return out, nil
}

// PresenceStats implements hub.PresenceManager.
func (b *Broker) PresenceStats(_ context.Context, channel string) (hub.PresenceStats, error) {
	if b.closed.Load() {
		return hub.PresenceStats{}, ErrClosed
	}
	now := b.opts.Now()
	b.presMu.Lock()
	defer b.presMu.Unlock()
	var st hub.PresenceStats
	users := make(map[string]struct{})
	for _, e := range b.presenceEntries(channel) {
		if !e.live(now) {
			continue
		}
		st.NumClients++
		if e.info != nil && e.info.User != "" {
			users[e.info.User] = struct{}{}
		}
	}
	st.NumUsers = len(users)
	return st, nil
}

// janitor purges expired state every JanitorInterval until Close.
func (b *Broker) janitor() {
	defer close(b.done)
	t := time.NewTicker(b.opts.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.purge()
		}
	}
}

// purge drops expired history, streams and presence, and forgets channels
// with neither a stream nor a subscription.
func (b *Broker) purge() {
	now := b.opts.Now()
	// The states are listed first, in a reused slice, so that no channel
	// lock is taken under a shard lock.
	states := b.purgeScratch[:0]
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.RLock()
		for name, cs := range sh.channels {
			states = append(states, namedState{name, cs})
		}
		sh.mu.RUnlock()
	}
	var unused []string
	for _, st := range states {
		cs := st.cs
		cs.mu.Lock()
		cs.expire(now)
		if !cs.hasStream && !cs.subscribed {
			unused = append(unused, st.name)
		}
		cs.mu.Unlock()
	}
	clear(states) // keep no states or names alive until the next purge
	b.purgeScratch = states[:0]
	for _, name := range unused {
		sh := b.shardFor(name)
		sh.mu.Lock()
		if cs := sh.channels[name]; cs != nil {
			cs.mu.Lock()
			if !cs.hasStream && !cs.subscribed {
				cs.dead = true
				delete(sh.channels, name)
			}
			cs.mu.Unlock()
		}
		sh.mu.Unlock()
	}

	nowNano := now.UnixNano()
	b.presMu.Lock()
	for channel, ps := range b.presence {
		if nowNano < ps.nextExpiry {
			continue // nothing expires yet (refreshed entries only move later)
		}
		next := int64(math.MaxInt64)
		for id, e := range ps.entries {
			if !e.live(now) {
				delete(ps.entries, id)
				continue
			}
			next = min(next, e.expires)
		}
		ps.nextExpiry = next
		if len(ps.entries) == 0 {
			delete(b.presence, channel)
		}
	}
	b.presMu.Unlock()
}
