package hub

import (
	"container/heap"
	"sort"
	"sync/atomic"
	"time"
)

// counters are the hub's monotonic counters, read through Hub.Counters.
type counters struct {
	publicationsIn     atomic.Uint64
	published          atomic.Uint64
	deliveries         atomic.Uint64
	subscribes         atomic.Uint64
	unsubscribes       atomic.Uint64
	serverUnsubscribes atomic.Uint64
	recovered          atomic.Uint64
	notRecovered       atomic.Uint64
	gaps               atomic.Uint64
	duplicates         atomic.Uint64
	insufficientState  atomic.Uint64
	recoveryOverflows  atomic.Uint64
	recoveryTimeouts   atomic.Uint64
	controlIn          atomic.Uint64
	controlErrors      atomic.Uint64
	brokerErrors       atomic.Uint64
	presenceErrors     atomic.Uint64
	cleanupsDropped    atomic.Uint64
}

// Counters is a snapshot of the hub's monotonic counters, for metrics.
type Counters struct {
	// PublicationsReceived counts publications the broker delivered to
	// this node; Published counts successful Publish calls on this node.
	PublicationsReceived uint64
	Published            uint64
	// Deliveries counts Subscriber.Deliver calls (pushes handed to local
	// subscribers).
	Deliveries uint64
	// Subscribes and Unsubscribes count successful client subscribes
	// (replies sent) and client unsubscribes; ServerUnsubscribes counts subscriptions the
	// server removed (API, insufficient state).
	Subscribes         uint64
	Unsubscribes       uint64
	ServerUnsubscribes uint64
	// Recovered and NotRecovered count subscribes with Since by outcome.
	Recovered    uint64
	NotRecovered uint64
	// Gaps counts live publications that did not follow the previous
	// one; Duplicates counts publications dropped as already delivered;
	// InsufficientState counts subscribers told to resubscribe.
	Gaps              uint64
	Duplicates        uint64
	InsufficientState uint64
	// RecoveryOverflows counts subscribes that failed because too many
	// live publications arrived while history was read; RecoveryTimeouts
	// counts subscribes whose wait for live delivery to reach the history
	// position ran out (publications were lost; see Hub.Subscribe).
	RecoveryOverflows uint64
	RecoveryTimeouts  uint64
	// ControlReceived counts control messages handled; ControlErrors
	// malformed ones dropped.
	ControlReceived uint64
	ControlErrors   uint64
	// BrokerErrors and PresenceErrors count failed broker and presence
	// calls, including those made in the background.
	BrokerErrors   uint64
	PresenceErrors uint64
	// CleanupsDropped counts deferred presence/leave updates dropped
	// because the cleanup queue was full (presence then expires by TTL).
	CleanupsDropped uint64
}

// Counters returns a snapshot of the hub's counters. Safe for concurrent
// use; cheap enough to call on every metrics scrape.
func (h *Hub) Counters() Counters {
	c := &h.counters
	return Counters{
		PublicationsReceived: c.publicationsIn.Load(),
		Published:            c.published.Load(),
		Deliveries:           c.deliveries.Load(),
		Subscribes:           c.subscribes.Load(),
		Unsubscribes:         c.unsubscribes.Load(),
		ServerUnsubscribes:   c.serverUnsubscribes.Load(),
		Recovered:            c.recovered.Load(),
		NotRecovered:         c.notRecovered.Load(),
		Gaps:                 c.gaps.Load(),
		Duplicates:           c.duplicates.Load(),
		InsufficientState:    c.insufficientState.Load(),
		RecoveryOverflows:    c.recoveryOverflows.Load(),
		RecoveryTimeouts:     c.recoveryTimeouts.Load(),
		ControlReceived:      c.controlIn.Load(),
		ControlErrors:        c.controlErrors.Load(),
		BrokerErrors:         c.brokerErrors.Load(),
		PresenceErrors:       c.presenceErrors.Load(),
		CleanupsDropped:      c.cleanupsDropped.Load(),
	}
}

// NodeInfo describes one node of the cluster as it last reported itself.
type NodeInfo struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	// Clients is the number of registered connections, Users the number
	// of distinct authenticated users among them.
	Clients int `json:"clients"`
	Users   int `json:"users"`
	// Channels with local subscribers, and Subscriptions summed over them.
	Channels      int `json:"channels"`
	Subscriptions int `json:"subscriptions"`
	// UptimeSeconds since the node's hub was created.
	UptimeSeconds int64 `json:"uptime"`
	// TopChannels maps the node's channels with the most local
	// subscribers, at most Config.NodeInfoChannels of them, to their
	// local subscriber counts. It is set in published reports (and so in
	// Nodes for other nodes), not by LocalInfo; the list is complete when
	// its length equals Channels. Read-only: Nodes shares it.
	TopChannels map[string]int `json:"top_channels,omitempty"`
	// Updated is when this node received the report (local clock; not
	// transmitted).
	Updated time.Time `json:"-"`
}

// LocalInfo returns this node's current stats.
func (h *Hub) LocalInfo() NodeInfo {
	h.clientsMu.RLock()
	clients, users := h.clients.len(), len(h.users)
	h.clientsMu.RUnlock()
	n := NodeInfo{
		ID:            h.nodeID,
		Name:          h.cfg.NodeName,
		Version:       h.cfg.Version,
		Clients:       clients,
		Users:         users,
		UptimeSeconds: int64(time.Since(h.started) / time.Second),
		Updated:       time.Now(),
	}
	for _, ch := range h.channelsSnapshot() {
		ch.mu.Lock()
		k := len(ch.live)
		ch.mu.Unlock()
		if k > 0 {
			n.Channels++
			n.Subscriptions += k
		}
	}
	return n
}

// Bounds of the channel list in node reports. A channel name is at most
// MaxChannelLength printable ASCII bytes (at most twice that once JSON
// escaped), so MaxNodeInfoChannels entries stay well under MaxControlSize.
const (
	DefaultNodeInfoChannels = 1000
	MaxNodeInfoChannels     = 1500
)

// reportInfo is LocalInfo plus, when other nodes are listening, the
// bounded channel list, for publishing. A node that knows of no other node
// leaves the list out: nobody would read it, and a node that joins hears
// a full report at once (its own first report makes this one answer).
func (h *Hub) reportInfo(withChannels bool) NodeInfo {
	limit := h.cfg.NodeInfoChannels
	if limit <= 0 || !withChannels {
		return h.LocalInfo()
	}
	h.clientsMu.RLock()
	clients, users := h.clients.len(), len(h.users)
	h.clientsMu.RUnlock()
	n := NodeInfo{
		ID:            h.nodeID,
		Name:          h.cfg.NodeName,
		Version:       h.cfg.Version,
		Clients:       clients,
		Users:         users,
		UptimeSeconds: int64(time.Since(h.started) / time.Second),
		Updated:       time.Now(),
	}
	// One pass counts every channel and keeps the limit largest in a
	// min-heap: O(channels x log limit), no map of every channel.
	top := make(topChannels, 0, min(limit, 64))
	for _, ch := range h.channelsSnapshot() {
		ch.mu.Lock()
		k := len(ch.live)
		ch.mu.Unlock()
		if k == 0 {
			continue
		}
		n.Channels++
		n.Subscriptions += k
		e := channelCount{ch.name, k}
		switch {
		case len(top) < limit:
			heap.Push(&top, e)
		case top.less(top[0], e):
			top[0] = e
			heap.Fix(&top, 0)
		}
	}
	if len(top) > 0 {
		n.TopChannels = make(map[string]int, len(top))
		for _, e := range top {
			n.TopChannels[e.name] = e.n
		}
	}
	return n
}

// channelCount is a channel and its number of local subscribers.
type channelCount struct {
	name string
	n    int
}

// topChannels is a min-heap of channel counts: the root is the channel
// that leaves the list first. Most subscribers rank first; names break
// ties so the choice is stable from one report to the next.
type topChannels []channelCount

// less reports whether a ranks below b.
func (t topChannels) less(a, b channelCount) bool {
	if a.n != b.n {
		return a.n < b.n
	}
	return a.name > b.name
}

func (t topChannels) Len() int           { return len(t) }
func (t topChannels) Less(i, j int) bool { return t.less(t[i], t[j]) }
func (t topChannels) Swap(i, j int)      { t[i], t[j] = t[j], t[i] }
func (t *topChannels) Push(x any)        { *t = append(*t, x.(channelCount)) }
func (t *topChannels) Pop() any {
	old := *t
	e := old[len(old)-1]
	*t = old[:len(old)-1]
	return e
}

// othersKnown reports whether another node has reported itself within
// the last three NodeInfoIntervals.
func (h *Hub) othersKnown() bool {
	cutoff := time.Now().Add(-3 * h.cfg.NodeInfoInterval)
	h.nodesMu.Lock()
	defer h.nodesMu.Unlock()
	for id, n := range h.nodes {
		if id != h.nodeID && !n.Updated.Before(cutoff) {
			return true
		}
	}
	return false
}

// ClusterChannels returns the channels with subscribers anywhere in the
// cluster and their subscriber counts: this node's exact counts plus the
// last report of every live node. It is bounded by what nodes report:
// counts of other nodes are up to NodeInfoInterval old, and a node whose
// channels exceed its NodeInfoChannels reports only its largest ones, so a
// channel that is small on such a node is undercounted (or missing when it
// has subscribers only there).
func (h *Hub) ClusterChannels() map[string]int {
	out := h.Channels()
	for _, n := range h.Nodes() {
		if n.ID == h.nodeID {
			continue
		}
		for name, k := range n.TopChannels {
			out[name] += k
		}
	}
	return out
}

// Nodes returns the live nodes of the cluster, this one included with its
// current stats, sorted by id. A node is live while its reports arrive at
// least every three NodeInfoIntervals.
func (h *Hub) Nodes() []NodeInfo {
	self := h.LocalInfo()
	out := []NodeInfo{self}
	cutoff := time.Now().Add(-3 * h.cfg.NodeInfoInterval)
	h.nodesMu.Lock()
	for id, n := range h.nodes {
		if id == self.ID {
			continue
		}
		if n.Updated.Before(cutoff) {
			delete(h.nodes, id)
			continue
		}
		out = append(out, *n)
	}
	h.nodesMu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}
