package hub

import "github.com/heraldhq/herald/internal/wire"

// Subscriber is the hub's view of one client connection (implemented by
// the session). The hub calls these methods from broker goroutines and from
// other sessions' goroutines; Deliver and ServerUnsubscribe (and a
// subscribe's SubscribeResultFunc) run while the hub holds the channel's
// lock (lock order: hub channel lock -> session lock). So every method
// must return quickly and must not block on the network, and Deliver and
// ServerUnsubscribe must not call into the Hub. ServerDisconnect is called
// without hub locks held.
type Subscriber interface {
	// ClientID is the connection's server-assigned id, unique on the node.
	// It must not change while the client is registered.
	ClientID() string
	// UserID is the authenticated user, "" for anonymous connections. It
	// must not change while the client is registered.
	UserID() string
	// ConnInfo is opaque JSON from the connection token, reported in
	// presence and join/leave events; nil for none. Treated as read-only.
	ConnInfo() []byte

	// Deliver hands the subscriber a push (a publication, join, leave or
	// direct message). It must not block: the session appends d to its
	// bounded outgoing queue and applies its own overflow policy (for
	// example disconnecting with wire.DisconnectSlowConsumer). d is shared
	// with every other recipient and must not be modified.
	Deliver(d *Delivery)
	// ServerUnsubscribe tells the subscriber the hub has removed its
	// subscription to channel; the session forgets the channel and sends
	// the client an unsubscribe push with code, reason and resubscribe.
	// No delivery of channel follows it (until a new Subscribe).
	ServerUnsubscribe(channel string, code uint32, reason string, resubscribe bool)
	// ServerDisconnect asks the session to close the connection with code
	// and reason (a disconnect push or a WebSocket close frame). The
	// session later calls Hub.RemoveClient as it would for any close.
	ServerDisconnect(code uint16, reason string)
}

// SubscribeOptions are a client's subscribe request beyond the channel.
type SubscribeOptions struct {
	// Since, when set, asks to recover every publication after it.
	Since *StreamPosition
	// Granted reports that the client's token grants this channel; it is
	// required in namespaces with RequireGrant, and lets a granted client
	// subscribe to UserLimited channels of other users and, being
	// authorised by the token, in namespaces without AllowAnonymous.
	Granted bool
	// ChanInfo is opaque JSON for this subscription (from the grant),
	// reported in presence and join/leave events.
	ChanInfo []byte
}

// SubscribeResultFunc receives the reply to a subscribe. The hub calls it
// exactly once when Subscribe succeeds, before any live push of the
// channel is delivered to the subscriber. It runs while the hub holds the
// channel's lock, usually on the goroutine that called Subscribe (so the
// caller must not hold a lock that onResult takes), sometimes on a broker
// goroutine. It must only enqueue the reply: no blocking, no calls into
// the Hub. res is owned by the callee.
//
// Pushes of the channel (Deliver, and ServerUnsubscribe) may follow
// onResult before Subscribe returns, so the session must be ready for them
// from the moment onResult runs.
type SubscribeResultFunc func(res *wire.SubscribeResult)

// ClientInfoSource is implemented by Subscribers that already hold their
// description for presence and join/leave events. AddClient then shares
// that value instead of building a copy per client (memory per idle
// connection). ClientInfo must return a value with Client, User and
// ConnInfo equal to ClientID, UserID and ConnInfo and no ChanInfo, or nil;
// it is treated as read-only and must not change while the client is
// registered. Any other value is ignored and the hub builds its own.
type ClientInfoSource interface {
	ClientInfo() *ClientInfo
}
