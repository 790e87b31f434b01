package session

import "github.com/heraldhq/herald/internal/wire"

// Metrics receives the session layer's counters. Implementations must be
// safe for concurrent use and cheap: Sent and Command run on the hot path
// (every delivery to every subscriber counts). The zero Config uses
// NopMetrics.
type Metrics interface {
	// SessionOpened counts a new connection on transport (for example
	// "websocket"); SessionClosed counts its end with the disconnect code
	// it ended with (wire.Disconnect* constants; DisconnectNormal when the
	// client went away by itself).
	SessionOpened(transport string)
	SessionClosed(transport string, code uint16)
	// Command counts one client command by method and the error code of
	// its reply (0 for success). Undecodable commands count as
	// wire.MethodUnknown.
	Command(method wire.Method, errCode uint32)
	// Sent counts messages handed to the transport: replies, pushes and
	// deliveries.
	Sent(kind MessageKind)
}

// MessageKind classifies outgoing messages for Metrics.Sent.
type MessageKind uint8

// Outgoing message kinds.
const (
	SentReply    MessageKind = iota // a command reply
	SentPush                        // a per-session push: ping, unsubscribe, disconnect
	SentDelivery                    // a shared delivery: publication, join, leave, message
)

// String returns "reply", "push" or "delivery".
func (k MessageKind) String() string {
	switch k {
	case SentReply:
		return "reply"
	case SentPush:
		return "push"
	case SentDelivery:
		return "delivery"
	}
	return "unknown"
}

// NopMetrics discards every count.
type NopMetrics struct{}

func (NopMetrics) SessionOpened(string)         {}
func (NopMetrics) SessionClosed(string, uint16) {}
func (NopMetrics) Command(wire.Method, uint32)  {}
func (NopMetrics) Sent(MessageKind)             {}
