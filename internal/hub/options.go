package hub

import (
	"log/slog"
	"time"
)

// ChannelOptions configure the channels of one namespace. The zero value is
// a namespace with no history, no presence, no join/leave events, where only
// authenticated clients may subscribe and only the server API may publish.
type ChannelOptions struct {
	// HistorySize is how many publications each channel keeps for history
	// and recovery. 0 disables history and recovery for the namespace.
	HistorySize int
	// HistoryTTL is how long a publication stays in history. 0 keeps
	// publications until HistorySize pushes them out.
	HistoryTTL time.Duration
	// HistoryMetaTTL is how long a channel's stream position (offset and
	// epoch) outlives its last publication; afterwards the next publication
	// starts a new epoch and clients cannot recover across it. 0 uses the
	// broker's default. Setting it shorter than the longest expected client
	// disconnect makes recovery fail for those clients.
	HistoryMetaTTL time.Duration
	// AllowHistory lets clients call history on the namespace's channels
	// (the server API always can when HistorySize > 0).
	AllowHistory bool

	// Presence tracks which clients are subscribed (Hub.Presence).
	Presence bool
	// AllowPresence lets clients call presence and presence_stats (the
	// server API always can when Presence is on).
	AllowPresence bool
	// PresenceTTL is how long a presence entry survives without being
	// refreshed; the hub refreshes entries of live subscriptions at about
	// a third of it, so only entries of dead nodes expire. 0 means 60s.
	PresenceTTL time.Duration
	// JoinLeave sends join and leave pushes to subscribers when clients
	// subscribe and unsubscribe.
	JoinLeave bool

	// AllowPublish lets clients publish (the server API always can).
	AllowPublish bool
	// AllowAnonymous lets connections without a user id subscribe.
	AllowAnonymous bool
	// UserLimited restricts channel "ns:ID" to the connections of user ID;
	// other users get permission denied.
	UserLimited bool
	// RequireGrant lets a client subscribe only when its token grants the
	// channel (SubscribeOptions.Granted).
	RequireGrant bool
}

// Recoverable reports whether the namespace keeps history, so that
// subscribers can recover missed publications.
func (o ChannelOptions) Recoverable() bool { return o.HistorySize > 0 }

// DefaultPresenceTTL is used when ChannelOptions.PresenceTTL is 0.
const DefaultPresenceTTL = 60 * time.Second

func (o ChannelOptions) presenceTTL() time.Duration {
	if o.PresenceTTL > 0 {
		return o.PresenceTTL
	}
	return DefaultPresenceTTL
}

// NamespaceResolver returns the options of a namespace ("" is the default
// namespace, for channel names without ':'). ok is false for namespaces
// that are not configured; their channels are refused. Implementations
// must be safe for concurrent use and fast: the hub calls Namespace on
// every publish and subscribe.
type NamespaceResolver interface {
	Namespace(name string) (opts ChannelOptions, ok bool)
}

// NamespaceMap is a fixed NamespaceResolver: the configured namespaces and
// their options. Include the key "" to allow channels without a namespace.
// The hub only reads it; do not modify it after passing it to New.
type NamespaceMap map[string]ChannelOptions

// Namespace implements NamespaceResolver.
func (m NamespaceMap) Namespace(name string) (ChannelOptions, bool) {
	o, ok := m[name]
	return o, ok
}

// Config configures a Hub. Broker, Presence and Namespaces are required;
// every other field's zero value is a sensible default. New copies it.
type Config struct {
	// Broker moves publications between nodes and keeps history. The
	// caller owns it: the hub calls Broker.Run in Hub.Run but never Close.
	Broker Broker
	// Presence keeps presence entries. The caller owns it.
	Presence PresenceManager
	// Namespaces resolves channel namespaces to their options.
	Namespaces NamespaceResolver

	// NodeID identifies this node in the cluster (node info, connect
	// replies). Empty means a random id.
	NodeID string
	// NodeName is a human-readable name reported in node info (for
	// example the host name). Empty means NodeID.
	NodeName string
	// Version is the server version reported in node info.
	Version string

	// MaxConnectionsPerUser limits connections one user may hold on this
	// node; AddClient fails with ErrConnectionLimit beyond it. 0 means no
	// limit. Anonymous connections are not limited by it.
	MaxConnectionsPerUser int

	// Logger receives the hub's few operational messages (broker errors
	// in background work). nil discards them.
	Logger *slog.Logger

	// HousekeepingInterval is how often the hub refreshes presence entries
	// that are due, releases broker subscriptions of channels left without
	// subscribers, and processes deferred cleanups. 0 means 1s. It must be
	// well below the smallest PresenceTTL (a third of it at most).
	HousekeepingInterval time.Duration
	// NodeInfoInterval is how often this node publishes its stats to the
	// cluster. 0 means 5s. Nodes silent for three intervals are dropped
	// from Nodes.
	NodeInfoInterval time.Duration
	// NodeInfoChannels bounds the channel list in this node's published
	// stats: the channels with the most local subscribers, at most this
	// many (ClusterChannels sums these lists). 0 means
	// DefaultNodeInfoChannels; larger values are capped at
	// MaxNodeInfoChannels so a report always fits a control message;
	// negative publishes no channel list.
	NodeInfoChannels int
	// RecoveryWait bounds how long a subscribe waits for live publications
	// that history already reported but the broker has not delivered yet
	// (distributed brokers only); afterwards they count as lost (see
	// Hub.Subscribe). 0 means 5s.
	RecoveryWait time.Duration
	// ReconnectGrace is how long after a broker reconnect the hub waits for
	// in-flight publications before declaring a gap. 0 means 1s.
	ReconnectGrace time.Duration
	// RecoveryBufferSize bounds how many live publications the hub buffers
	// for one subscriber while its history is being read; beyond it the
	// subscribe fails with a temporary error. 0 means 4096.
	RecoveryBufferSize int
}

func (c *Config) withDefaults() {
	if c.HousekeepingInterval <= 0 {
		c.HousekeepingInterval = time.Second
	}
	if c.NodeInfoInterval <= 0 {
		c.NodeInfoInterval = 5 * time.Second
	}
	if c.NodeInfoChannels == 0 {
		c.NodeInfoChannels = DefaultNodeInfoChannels
	}
	c.NodeInfoChannels = min(c.NodeInfoChannels, MaxNodeInfoChannels)
	if c.RecoveryWait <= 0 {
		c.RecoveryWait = 5 * time.Second
	}
	if c.ReconnectGrace <= 0 {
		c.ReconnectGrace = time.Second
	}
	if c.RecoveryBufferSize <= 0 {
		c.RecoveryBufferSize = 4096
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
