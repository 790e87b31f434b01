package hub

import (
	"context"
	"errors"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// Publication is one entry of a channel's stream as the broker stores and
// delivers it. Data is opaque JSON and is never modified after Publish.
type Publication = wire.Publication

// ClientInfo describes a connection in presence and join/leave events.
type ClientInfo = wire.ClientInfo

// StreamPosition is an offset within an epoch of a channel's stream.
type StreamPosition = wire.StreamPosition

// PublishOptions control how a publication is kept.
type PublishOptions struct {
	// HistorySize is how many publications the channel's history keeps.
	// 0 keeps no history: the publication gets no offset and cannot be
	// recovered.
	HistorySize int
	// HistoryTTL is how long publications stay in history. 0 means no
	// expiry by age (size still bounds it).
	HistoryTTL time.Duration
	// HistoryMetaTTL is how long the channel's offset and epoch outlive its
	// last publication. When it runs out the stream is forgotten and the
	// next publication starts a new epoch. 0 means the broker's default.
	HistoryMetaTTL time.Duration
}

// HistoryOptions select publications from a channel's history.
type HistoryOptions struct {
	// Since, when set, selects publications with offsets greater than
	// Since.Offset. If Since.Epoch differs from the stream's epoch the
	// result holds no publications and the caller must treat the position
	// as unrecoverable.
	Since *StreamPosition
	// Limit is the maximum number of publications returned: 0 returns only
	// the current position, a negative value means no limit.
	Limit int
	// Reverse returns the newest publications first. Limit then keeps the
	// newest ones: Since 4, Limit 2, Reverse over offsets 1..10 returns
	// 10, 9 (without Reverse: 5, 6).
	Reverse bool
	// MetaTTL as in PublishOptions; used when the read creates the
	// stream's metadata (an epoch for a channel never published to).
	MetaTTL time.Duration
}

// HistoryResult is what History returns.
type HistoryResult struct {
	Publications []*Publication
	// Position is the stream's latest position: the offset of the newest
	// publication ever appended (not only those still retained) and the
	// current epoch.
	Position StreamPosition
}

// ErrBrokerUnavailable wraps errors caused by the broker's backing service
// being unreachable. Callers map it to HTTP 503 / wire.ErrBrokerUnavailable.
var ErrBrokerUnavailable = errors.New("broker unavailable")

// Broker moves publications, join/leave events and control messages between
// nodes, and keeps per-channel history. The in-memory broker serves one
// node; Redis and NATS brokers serve a cluster.
//
// Semantics every implementation guarantees (checked by the shared suite
// in package brokertest):
//
//   - Ordering: publications to one channel are assigned strictly
//     increasing offsets, starting at 1 in each epoch, with no gaps, and
//     are delivered to every subscribed node in offset order. There is no
//     ordering between different channels.
//   - Atomicity: assigning the offset, appending to history and trimming
//     history happen as one step; a publication is either in history and
//     delivered, or Publish returns an error.
//   - Epoch: a channel's epoch changes whenever continuity is lost (history
//     and its metadata expired or were lost, for example a restart of an
//     in-memory store). Offsets of different epochs are unrelated.
//   - At-most-once delivery of each publication to each subscribed node
//     while the node stays connected to the broker. After a broker outage
//     the broker calls EventHandler.HandleReconnect so the hub can detect
//     gaps by comparing offsets.
//   - Publish fails fast (wrapping ErrBrokerUnavailable) while the backing
//     service is down; it never queues publications for later.
//
// A Broker is safe for concurrent use. Subscribe and Unsubscribe are
// called by the hub when the first local subscriber joins and the last one
// leaves; implementations need no reference counting of their own.
type Broker interface {
	// Run starts delivering events to h and returns once the broker is
	// ready. It is called once, before any other method. ctx bounds the
	// start only: delivery continues until Close.
	Run(ctx context.Context, h EventHandler) error

	// Subscribe makes this node receive publications, joins and leaves
	// of channel. When it returns, every publication assigned an offset
	// after that point will be delivered.
	Subscribe(ctx context.Context, channel string) error
	// Unsubscribe stops delivery of channel's events to this node.
	Unsubscribe(ctx context.Context, channel string) error

	// Publish assigns pub the next offset of channel (when opts keep
	// history), stores it, and delivers it to every subscribed node. pub's
	// Offset field is ignored on input and pub is not modified (a copy
	// carries the offset). It returns the assigned position; without
	// history it returns the zero position and the publication is
	// delivered with offset 0.
	Publish(ctx context.Context, channel string, pub *Publication, opts PublishOptions) (StreamPosition, error)
	// PublishJoin and PublishLeave deliver presence events to the
	// channel's subscribed nodes. They are not kept in history.
	PublishJoin(ctx context.Context, channel string, info *ClientInfo) error
	PublishLeave(ctx context.Context, channel string, info *ClientInfo) error
	// PublishControl delivers data to every node of the cluster, this one
	// included. It carries cluster-wide commands (direct messages,
	// disconnects, unsubscribes, node stats).
	PublishControl(ctx context.Context, data []byte) error

	// History reads channel's history. For a channel without a stream
	// (never published with history, or its metadata expired) it starts
	// one: a new epoch at offset 0, kept for opts.MetaTTL, so that a
	// subscriber's position stays valid for the first publication.
	History(ctx context.Context, channel string, opts HistoryOptions) (HistoryResult, error)
	// RemoveHistory deletes channel's history (the epoch is kept).
	RemoveHistory(ctx context.Context, channel string) error

	// Close stops delivery and releases resources. Idempotent.
	Close(ctx context.Context) error
}

// EventHandler receives a Broker's events. The broker calls it from its own
// goroutines; calls for one channel are never concurrent and come in
// offset order. Implementations must not block for long: the hub hands
// events to subscribers' bounded queues and returns.
type EventHandler interface {
	HandlePublication(channel string, pub *Publication, pos StreamPosition)
	HandleJoin(channel string, info *ClientInfo)
	HandleLeave(channel string, info *ClientInfo)
	HandleControl(data []byte)
	// HandleReconnect is called after the broker lost and regained its
	// connection to the backing service (and resubscribed every channel).
	// Publications may have been missed meanwhile; the hub checks every
	// channel's position and tells subscribers that lost continuity.
	HandleReconnect()
}

// ChannelTargets is an optional extension of EventHandler (the Hub
// implements it) for brokers that deliver in this process, sparing them
// and the handler a lookup of the channel by name for every publication.
//
// Once a broker's Subscribe(channel) has returned, the broker may call
// PublicationTarget(channel) and keep the target until its Unsubscribe of
// channel, and hand that subscription's publications to
// target.HandleChannelPublication instead of HandlePublication, with the
// same guarantees (offset order, never concurrently for one channel). A
// nil target means the handler holds nothing for channel: the broker then
// calls HandlePublication. A new Subscribe needs a new target.
type ChannelTargets interface {
	PublicationTarget(channel string) ChannelTarget
}

// ChannelTarget receives the publications of one channel for one broker
// subscription; see ChannelTargets.
type ChannelTarget interface {
	HandleChannelPublication(pub *Publication, pos StreamPosition)
}

// PresenceStats counts a channel's present clients and distinct users.
type PresenceStats struct {
	NumClients int
	NumUsers   int
}

// PresenceManager keeps who is subscribed to which channel across the
// cluster. Entries expire after ttl unless refreshed by AddPresence again
// (the hub refreshes live entries periodically), so presence of a node
// that died disappears by itself.
type PresenceManager interface {
	AddPresence(ctx context.Context, channel, clientID string, info *ClientInfo, ttl time.Duration) error
	RemovePresence(ctx context.Context, channel, clientID string) error
	Presence(ctx context.Context, channel string) (map[string]*ClientInfo, error)
	PresenceStats(ctx context.Context, channel string) (PresenceStats, error)
	Close(ctx context.Context) error
}
