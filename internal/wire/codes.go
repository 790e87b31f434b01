package wire

// Command error codes (Error.Code). Stable: clients switch on them.
const (
	ErrInternal           uint32 = 100 // server-side failure; temporary
	ErrUnauthorized       uint32 = 101 // missing, invalid or expired token
	ErrUnknownChannel     uint32 = 102 // channel's namespace is not configured, or bad channel name
	ErrPermissionDenied   uint32 = 103 // the client may not do this on this channel
	ErrMethodNotFound     uint32 = 104 // unknown method
	ErrAlreadySubscribed  uint32 = 105
	ErrLimitExceeded      uint32 = 106 // too many subscriptions, message too large, ...
	ErrBadRequest         uint32 = 107 // malformed command or params
	ErrNotAvailable       uint32 = 108 // feature off for this namespace (history, presence, publish)
	ErrTokenExpired       uint32 = 109
	ErrNotConnected       uint32 = 110 // command before a successful connect
	ErrAlreadyConnected   uint32 = 111
	ErrNotSubscribed      uint32 = 112
	ErrUnrecoverable      uint32 = 113 // history position is outside the retained window
	ErrBrokerUnavailable  uint32 = 114 // cluster broker down; temporary
	ErrTooManyRequests    uint32 = 115
	ErrUserNotFound       uint32 = 116
	ErrDataNotJSON        uint32 = 117 // data is not a single valid JSON value
	ErrConnectionNotFound uint32 = 118
)

// Disconnect codes. They are WebSocket close codes as well: over WebSocket
// the close frame carries them; over TCP and UDP a disconnect push does.
// 3000-3499: the client should reconnect (with backoff); 3500-3999: it
// should not reconnect without a change (new token, fixed request).
// 1001 is used for server shutdown and drain (reconnect advised).
const (
	DisconnectNormal            uint16 = 1000 // client closed, or server closed a finished session
	DisconnectShutdown          uint16 = 1001 // node shutting down or draining; reconnect
	DisconnectMessageTooBig     uint16 = 1009
	DisconnectServerError       uint16 = 3000 // internal error; reconnect
	DisconnectSlowConsumer      uint16 = 3001 // outgoing queue overflowed; reconnect and recover
	DisconnectNoPong            uint16 = 3002 // heartbeat timeout; reconnect
	DisconnectForceReconnect    uint16 = 3003 // disconnected by the server API with reconnect
	DisconnectInsufficientState uint16 = 3004 // server lost stream continuity; reconnect and recover
	DisconnectTokenExpired      uint16 = 3005 // refresh the token, then reconnect
	DisconnectConnectTimeout    uint16 = 3006 // no connect command in time
	DisconnectBadRequest        uint16 = 3501 // protocol violation, malformed command
	DisconnectUnauthorized      uint16 = 3502 // invalid token
	DisconnectForceNoReconnect  uint16 = 3503 // disconnected by the server API, do not reconnect
	DisconnectConnectionLimit   uint16 = 3504 // per-user or per-node connection limit
)

// DisconnectReconnects reports whether a client should reconnect after a
// disconnect with code.
func DisconnectReconnects(code uint16) bool {
	switch {
	case code == DisconnectShutdown:
		return true
	case code >= 3000 && code < 3500:
		return true
	}
	return false
}

// Unsubscribe push codes.
const (
	UnsubscribeServer            uint32 = 2000 // unsubscribed by the server API
	UnsubscribeInsufficientState uint32 = 2001 // continuity lost; resubscribe and recover
	UnsubscribeExpired           uint32 = 2002 // channel grant expired
)
