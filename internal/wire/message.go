// Package wire defines herald's client protocol: the messages a client and
// the server exchange, independent of how they are encoded (JSON or binary)
// and of the transport that carries them (WebSocket, TCP stream, UDP).
//
// The semantics live here and in docs/protocol.md; codecs (json.go,
// binary.go, both behind the Codec interface), TCP stream framing and the
// hello (frame.go) and the UDP datagram format (datagram.go) are separate
// so that a transport picks an encoding without touching the protocol.
//
// Publication and message data are opaque JSON bytes: the server validates
// them once at the edge and then passes them through without decoding.
package wire

// ProtocolVersion is the version of the client protocol described in
// docs/protocol.md. It is negotiated by the TCP hello and reported in the
// connect reply.
const ProtocolVersion = 1

// Method names a client command.
type Method uint8

// Client commands. The numeric values are part of the binary encoding and
// must never change; the names are the JSON "method" strings.
const (
	MethodUnknown       Method = 0
	MethodConnect       Method = 1
	MethodSubscribe     Method = 2
	MethodUnsubscribe   Method = 3
	MethodPublish       Method = 4
	MethodPresence      Method = 5
	MethodPresenceStats Method = 6
	MethodHistory       Method = 7
	MethodPing          Method = 8
	MethodRefresh       Method = 9
	MethodSend          Method = 10
	// MethodPong answers a server ping push. It carries no id and gets no
	// reply.
	MethodPong Method = 11
)

var methodNames = [...]string{
	MethodUnknown:       "",
	MethodConnect:       "connect",
	MethodSubscribe:     "subscribe",
	MethodUnsubscribe:   "unsubscribe",
	MethodPublish:       "publish",
	MethodPresence:      "presence",
	MethodPresenceStats: "presence_stats",
	MethodHistory:       "history",
	MethodPing:          "ping",
	MethodRefresh:       "refresh",
	MethodSend:          "send",
	MethodPong:          "pong",
}

// String returns the JSON name of m ("" for unknown methods).
func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return ""
}

// MethodByName returns the method whose JSON name is s, or MethodUnknown.
func MethodByName(s string) Method {
	for i, n := range methodNames {
		if i > 0 && n == s {
			return Method(i)
		}
	}
	return MethodUnknown
}

// Command is one client request. ID is chosen by the client (non-zero for
// every method except MethodPong) and echoed in exactly one Reply. Exactly
// the params field that matches Method is set; methods without params
// (ping, pong) set none.
type Command struct {
	ID     uint32
	Method Method

	Connect       *ConnectParams
	Subscribe     *SubscribeParams
	Unsubscribe   *ChannelParams
	Publish       *PublishParams
	Presence      *ChannelParams
	PresenceStats *ChannelParams
	History       *HistoryParams
	Refresh       *RefreshParams
	Send          *SendParams
}

// ConnectParams authenticates a connection. It must be the first command.
type ConnectParams struct {
	Token   string `json:"token,omitempty"`   // JWT; empty for anonymous clients
	Name    string `json:"name,omitempty"`    // client library name, e.g. "herald-js"
	Version string `json:"version,omitempty"` // client library version
}

// StreamPosition is a place in a channel's stream: the offset of a
// publication and the epoch of the stream it belongs to. A different epoch
// means the stream lost continuity and offsets are not comparable.
type StreamPosition struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// SubscribeParams subscribes to a channel. With Since set, the server
// recovers every publication after Since before live ones.
type SubscribeParams struct {
	Channel string          `json:"channel"`
	Since   *StreamPosition `json:"since,omitempty"`
}

// ChannelParams names a channel (unsubscribe, presence, presence_stats).
type ChannelParams struct {
	Channel string `json:"channel"`
}

// PublishParams publishes Data (a JSON value) to Channel.
type PublishParams struct {
	Channel string `json:"channel"`
	Data    []byte `json:"data"` // raw JSON
}

// HistoryParams reads a channel's history. Limit 0 returns only the current
// position; a negative Limit means "as many as the server allows".
type HistoryParams struct {
	Channel string          `json:"channel"`
	Limit   int             `json:"limit,omitempty"`
	Since   *StreamPosition `json:"since,omitempty"`
	Reverse bool            `json:"reverse,omitempty"`
}

// RefreshParams replaces the connection's token before it expires.
type RefreshParams struct {
	Token string `json:"token"`
}

// SendParams sends a direct message to every connection of User.
type SendParams struct {
	User string `json:"user"`
	Data []byte `json:"data"` // raw JSON
}

// Reply answers the command with the same ID. Either Error is set, or the
// result field for the command's method (which may be nil for methods with
// an empty result: unsubscribe, ping, send).
type Reply struct {
	ID    uint32
	Error *Error

	Connect       *ConnectResult
	Subscribe     *SubscribeResult
	Publish       *PublishResult
	Presence      *PresenceResult
	PresenceStats *PresenceStatsResult
	History       *HistoryResult
	Refresh       *RefreshResult
}

// Error is a command error with a stable numeric code (see ErrorCode
// constants and docs/protocol.md).
type Error struct {
	Code      uint32 `json:"code"`
	Message   string `json:"message"`
	Temporary bool   `json:"temporary,omitempty"` // retrying later may succeed
}

func (e *Error) Error() string { return e.Message }

// ConnectResult is the reply to connect.
type ConnectResult struct {
	Client  string `json:"client"`            // server-assigned client id
	Version string `json:"version,omitempty"` // server version
	Node    string `json:"node,omitempty"`    // node that holds the connection
	Expires bool   `json:"expires,omitempty"` // the token expires; refresh before TTL runs out
	TTL     uint32 `json:"ttl,omitempty"`     // seconds until the token expires
	Ping    uint32 `json:"ping,omitempty"`    // server ping interval in seconds
	Pong    bool   `json:"pong,omitempty"`    // the server expects a pong for every ping push
}

// SubscribeResult is the reply to subscribe. Offset and Epoch are the
// channel's current position (after any recovered publications).
// Recovered is meaningful only when the command carried Since: true when
// Publications holds every publication after Since.
type SubscribeResult struct {
	Epoch         string         `json:"epoch,omitempty"`
	Offset        uint64         `json:"offset,omitempty"`
	Recoverable   bool           `json:"recoverable,omitempty"` // the channel keeps history
	WasRecovering bool           `json:"was_recovering,omitempty"`
	Recovered     bool           `json:"recovered,omitempty"`
	Publications  []*Publication `json:"publications,omitempty"`
}

// PublishResult is the position assigned to a publication.
type PublishResult struct {
	Offset uint64 `json:"offset,omitempty"`
	Epoch  string `json:"epoch,omitempty"`
}

// PresenceResult maps client ids to their info.
type PresenceResult struct {
	Presence map[string]*ClientInfo `json:"presence"`
}

// PresenceStatsResult counts a channel's subscribers.
type PresenceStatsResult struct {
	NumClients uint32 `json:"num_clients"`
	NumUsers   uint32 `json:"num_users"`
}

// HistoryResult holds publications and the channel's current position.
type HistoryResult struct {
	Publications []*Publication `json:"publications"`
	Offset       uint64         `json:"offset"`
	Epoch        string         `json:"epoch"`
}

// RefreshResult is the reply to refresh.
type RefreshResult struct {
	Expires bool   `json:"expires,omitempty"`
	TTL     uint32 `json:"ttl,omitempty"`
}

// ClientInfo describes a connection in presence, join/leave and
// publications. ConnInfo and ChanInfo are opaque JSON from the token.
type ClientInfo struct {
	Client   string `json:"client"`
	User     string `json:"user,omitempty"`
	ConnInfo []byte `json:"conn_info,omitempty"` // raw JSON
	ChanInfo []byte `json:"chan_info,omitempty"` // raw JSON
}

// Publication is one message in a channel's stream.
type Publication struct {
	Offset uint64      `json:"offset,omitempty"`
	Data   []byte      `json:"data"` // raw JSON
	Info   *ClientInfo `json:"info,omitempty"`
	Time   int64       `json:"time,omitempty"` // unix milliseconds when published
}

// PushType names an unsolicited server message.
type PushType uint8

// Push types. Numeric values are part of the binary encoding.
const (
	PushUnknown     PushType = 0
	PushPublication PushType = 1
	PushJoin        PushType = 2
	PushLeave       PushType = 3
	PushUnsubscribe PushType = 4
	PushMessage     PushType = 5
	PushDisconnect  PushType = 6
	PushPing        PushType = 7
)

var pushNames = [...]string{
	PushUnknown:     "",
	PushPublication: "publication",
	PushJoin:        "join",
	PushLeave:       "leave",
	PushUnsubscribe: "unsubscribe",
	PushMessage:     "message",
	PushDisconnect:  "disconnect",
	PushPing:        "ping",
}

// String returns the JSON name of t.
func (t PushType) String() string {
	if int(t) < len(pushNames) {
		return pushNames[t]
	}
	return ""
}

// PushTypeByName returns the push type whose JSON name is s, or PushUnknown.
func PushTypeByName(s string) PushType {
	for i, n := range pushNames {
		if i > 0 && n == s {
			return PushType(i)
		}
	}
	return PushUnknown
}

// Push is a message the server sends without a request. Channel is set for
// publication, join, leave and unsubscribe; exactly the field that matches
// Type is set (none for ping).
type Push struct {
	Type    PushType
	Channel string

	Publication *Publication
	Join        *ClientInfo
	Leave       *ClientInfo
	Unsubscribe *UnsubscribePush
	Message     *Message
	Disconnect  *Disconnect
}

// UnsubscribePush tells a client the server removed its subscription.
// With Resubscribe set the client should subscribe again (with recovery).
type UnsubscribePush struct {
	Code        uint32 `json:"code"`
	Reason      string `json:"reason,omitempty"`
	Resubscribe bool   `json:"resubscribe,omitempty"`
}

// Message is a direct message to a user.
type Message struct {
	Data []byte      `json:"data"` // raw JSON
	Info *ClientInfo `json:"info,omitempty"`
}

// Disconnect announces that the server is closing the connection. Over
// WebSocket the close frame carries the same code and reason.
type Disconnect struct {
	Code      uint16 `json:"code"`
	Reason    string `json:"reason,omitempty"`
	Reconnect bool   `json:"reconnect"`
}
