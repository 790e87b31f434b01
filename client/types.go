package client

import (
	"encoding/json"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// State is the connection state of a Client.
type State int

// Client states.
const (
	// StateDisconnected: not started, or stopped by a disconnect code
	// that forbids reconnecting.
	StateDisconnected State = iota
	// StateConnecting: connecting or waiting to reconnect.
	StateConnecting
	// StateConnected: a connection is established.
	StateConnected
	// StateClosed: Close was called; the client cannot be used again.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateDisconnected:
		return "disconnected"
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// Position is a place in a channel's stream: an offset within an epoch.
// Offsets of different epochs are not comparable.
type Position struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// ClientInfo describes a connection: in presence, join/leave events and
// the publications and messages it sent. ConnInfo and ChanInfo are the
// JSON values from its token (nil when absent).
type ClientInfo struct {
	Client   string          `json:"client"`
	User     string          `json:"user,omitempty"`
	ConnInfo json.RawMessage `json:"conn_info,omitempty"`
	ChanInfo json.RawMessage `json:"chan_info,omitempty"`
}

// Publication is one message of a channel. Offset is 0 on channels that
// keep no history. Time is zero when the server did not stamp it.
type Publication struct {
	Channel string
	Offset  uint64
	Data    json.RawMessage
	Info    *ClientInfo // nil when published through the server API
	Time    time.Time
}

// Message is a direct message sent to this client's user.
type Message struct {
	Data json.RawMessage
	Info *ClientInfo // the sender, nil when sent through the server API
}

// ConnectedEvent describes an established connection.
type ConnectedEvent struct {
	Client  string        // server-assigned id of this connection
	Version string        // server version
	Node    string        // node holding the connection
	Ping    time.Duration // server ping interval; 0 if the server does not ping
	Expires bool          // the token expires after TTL
	TTL     time.Duration
}

// DisconnectedEvent describes the end of a connection: the server's
// disconnect code (docs/protocol.md), a WebSocket close code, or one of the
// client's Disconnect* codes. Reconnect reports whether the client will
// connect again by itself.
type DisconnectedEvent struct {
	Code      uint16
	Reason    string
	Reconnect bool
}

// SubscribedEvent is reported each time a subscription is (re)established.
// WasRecovering is true when the client asked to recover publications
// since a position (every resubscription after a reconnect, or
// WithSince); Recovered then says whether the server had all of them:
// false means a gap the application must fill itself, for example by
// reloading its state or reading History. Position is the channel's
// position after the recovered publications (zero when the channel keeps
// no history, see Recoverable).
type SubscribedEvent struct {
	Channel       string
	WasRecovering bool
	Recovered     bool
	Recoverable   bool
	Position      Position
}

// UnsubscribedEvent reports that a subscription ended for good: Code is
// the server's unsubscribe code (2000, 2002), a command error code when
// subscribing failed (102, 103, ...), or CodeClosed for Unsubscribe and
// Close.
type UnsubscribedEvent struct {
	Channel string
	Code    uint32
	Reason  string
}

// HistoryOptions select publications from a channel's history.
type HistoryOptions struct {
	// Limit is the number of publications to return; 0 returns none (only
	// the current position), a negative value as many as the server
	// allows.
	Limit int
	// Since returns only publications after this position. The call
	// fails with CodeUnrecoverable when the position is no longer in
	// history.
	Since *Position
	// Reverse returns the newest publications first.
	Reverse bool
}

// HistoryResult holds publications and the channel's current position.
type HistoryResult struct {
	Publications []Publication
	Position     Position
}

// PresenceStats counts a channel's subscribers.
type PresenceStats struct {
	NumClients int
	NumUsers   int
}

// Stats are counters of a Client since it was created.
type Stats struct {
	// Connects counts established connections.
	Connects uint64
	// DuplicatesDropped counts publications dropped because their offset
	// was not past the last one delivered.
	DuplicatesDropped uint64
	// QueueOverflows counts connections dropped because the event queue
	// was full (Options.EventQueueSize).
	QueueOverflows uint64
}

func toClientInfo(ci *wire.ClientInfo) *ClientInfo {
	if ci == nil {
		return nil
	}
	return &ClientInfo{Client: ci.Client, User: ci.User, ConnInfo: rawOrNil(ci.ConnInfo), ChanInfo: rawOrNil(ci.ChanInfo)}
}

func rawOrNil(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

func toPublication(channel string, p *wire.Publication) Publication {
	pub := Publication{Channel: channel, Offset: p.Offset, Data: rawOrNil(p.Data), Info: toClientInfo(p.Info)}
	if p.Time != 0 {
		pub.Time = time.UnixMilli(p.Time)
	}
	return pub
}
