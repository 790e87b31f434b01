package hub

import (
	"errors"

	"github.com/heraldhq/herald/internal/wire"
)

// Errors returned by the Hub. They wrap into richer errors with %w; use
// errors.Is, or WireError to turn any of them into a protocol error.
var (
	// ErrInvalidChannel: the channel name is not 1-255 bytes of printable
	// ASCII without spaces.
	ErrInvalidChannel = errors.New("invalid channel name")
	// ErrUnknownNamespace: the channel's namespace is not configured.
	ErrUnknownNamespace = errors.New("unknown channel namespace")
	// ErrPermissionDenied: the client may not subscribe to the channel.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrAlreadySubscribed: the client is subscribed or subscribing.
	ErrAlreadySubscribed = errors.New("already subscribed")
	// ErrNotSubscribed: the client has no subscription to the channel.
	ErrNotSubscribed = errors.New("not subscribed")
	// ErrNotAvailable: the feature (history, presence) is off in the
	// channel's namespace.
	ErrNotAvailable = errors.New("not available in this namespace")
	// ErrUnknownClient: Subscribe for a subscriber that is not registered
	// with AddClient (or was removed).
	ErrUnknownClient = errors.New("client not registered")
	// ErrClientExists: AddClient with a client id already registered.
	ErrClientExists = errors.New("client id already registered")
	// ErrConnectionLimit: the user holds MaxConnectionsPerUser connections.
	ErrConnectionLimit = errors.New("connection limit reached")
	// ErrShuttingDown: the hub refuses new clients and subscriptions.
	ErrShuttingDown = errors.New("hub shutting down")
	// ErrNotRunning: a broker operation before Run.
	ErrNotRunning = errors.New("hub not running")
	// ErrRecoveryOverflow: while the subscriber's history was being read
	// more live publications arrived than RecoveryBufferSize; retrying
	// may succeed.
	ErrRecoveryOverflow = errors.New("recovery buffer overflow")
	// ErrDataTooLarge: a control payload (direct message) exceeds
	// MaxControlSize.
	ErrDataTooLarge = errors.New("data too large")
)

// WireError maps an error returned by the Hub to the protocol error a
// client receives. Errors the hub does not know become wire.ErrInternal
// (temporary).
func WireError(err error) *wire.Error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case errors.Is(err, ErrInvalidChannel), errors.Is(err, ErrUnknownNamespace):
		return &wire.Error{Code: wire.ErrUnknownChannel, Message: msg}
	case errors.Is(err, ErrPermissionDenied):
		return &wire.Error{Code: wire.ErrPermissionDenied, Message: msg}
	case errors.Is(err, ErrAlreadySubscribed):
		return &wire.Error{Code: wire.ErrAlreadySubscribed, Message: msg}
	case errors.Is(err, ErrNotSubscribed):
		return &wire.Error{Code: wire.ErrNotSubscribed, Message: msg}
	case errors.Is(err, ErrNotAvailable):
		return &wire.Error{Code: wire.ErrNotAvailable, Message: msg}
	case errors.Is(err, ErrConnectionLimit), errors.Is(err, ErrDataTooLarge):
		return &wire.Error{Code: wire.ErrLimitExceeded, Message: msg}
	case errors.Is(err, ErrBrokerUnavailable):
		return &wire.Error{Code: wire.ErrBrokerUnavailable, Message: msg, Temporary: true}
	}
	return &wire.Error{Code: wire.ErrInternal, Message: "internal error", Temporary: true}
}
