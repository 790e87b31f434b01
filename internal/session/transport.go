package session

import (
	"errors"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

// ErrOverflow is wrapped by the errors a Transport returns when its bounded
// outbound queue cannot take another message. The session answers it with
// the slow-consumer policy: disconnect with wire.DisconnectSlowConsumer.
var ErrOverflow = errors.New("session: outbound queue overflow")

// Transport is one client connection as a transport adapter (WebSocket,
// TCP, UDP) presents it to its Session.
//
// Every method must be safe for concurrent use and return quickly: the
// session calls them from the adapter's own callbacks, from the heartbeat
// sweeper and from hub goroutines that may hold a channel lock. None of
// them may block on the network or call back into the Session
// synchronously.
type Transport interface {
	// Send queues msg, one complete message in the session's codec (a
	// reply or a per-session push). msg is immutable from now on: neither
	// side modifies it, and the transport may keep it until written. The
	// error wraps ErrOverflow when the outbound queue is full; any other
	// error means the connection is already gone.
	Send(msg []byte) error
	// SendDelivery queues a shared push. The transport encodes it with
	// d.Encoded in its own format, so every recipient with that format
	// shares one encoding. Errors as for Send.
	SendDelivery(d *hub.Delivery) error
	// Ping sends the transport's own keepalive, if it has one (a WebSocket
	// ping frame); the session sends the protocol's ping push itself.
	// Errors as for Send.
	Ping() error
	// Close ends the connection with a disconnect code and reason (the
	// WebSocket close frame carries them). Messages queued before it are
	// written first when possible. The session has already queued the
	// disconnect push. Close is idempotent; once the connection is gone
	// the adapter calls Session.HandleClose (it may do so from inside
	// Close: the session calls Close from the Manager's goroutine with no
	// lock held).
	Close(code uint16, reason string)
	// LastRead reports when bytes last arrived from the client, including
	// transport-level frames the session never sees (WebSocket pongs).
	LastRead() time.Time
	// Info describes the connection.
	Info() TransportInfo
}

// TransportInfo describes a connection for metrics and logs.
type TransportInfo struct {
	// Name is the transport: "websocket", "tcp", "udp".
	Name string
	// RemoteAddr is the client's address as the transport sees it.
	RemoteAddr string
}

// TransportNamer may be implemented by a Transport whose Info is costly
// (it formats the remote address): the session, which needs only the
// transport's name for its metrics, then calls TransportName instead.
type TransportNamer interface {
	// TransportName returns what Info().Name would.
	TransportName() string
}

// transportName returns t's Name without the rest of its Info when t
// allows.
func transportName(t Transport) string {
	if n, ok := t.(TransportNamer); ok {
		return n.TransportName()
	}
	return t.Info().Name
}
