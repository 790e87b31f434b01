package client

import (
	"errors"
	"fmt"

	"github.com/heraldhq/herald/internal/wire"
)

// Error codes a command can fail with. Codes from 100 up are the server's
// error codes (docs/protocol.md); the small ones are produced by the client
// itself and match the JavaScript client's.
const (
	CodeInternal           uint32 = wire.ErrInternal
	CodeUnauthorized       uint32 = wire.ErrUnauthorized
	CodeUnknownChannel     uint32 = wire.ErrUnknownChannel
	CodePermissionDenied   uint32 = wire.ErrPermissionDenied
	CodeMethodNotFound     uint32 = wire.ErrMethodNotFound
	CodeAlreadySubscribed  uint32 = wire.ErrAlreadySubscribed
	CodeLimitExceeded      uint32 = wire.ErrLimitExceeded
	CodeBadRequest         uint32 = wire.ErrBadRequest
	CodeNotAvailable       uint32 = wire.ErrNotAvailable
	CodeTokenExpired       uint32 = wire.ErrTokenExpired
	CodeNotConnected       uint32 = wire.ErrNotConnected
	CodeAlreadyConnected   uint32 = wire.ErrAlreadyConnected
	CodeNotSubscribed      uint32 = wire.ErrNotSubscribed
	CodeUnrecoverable      uint32 = wire.ErrUnrecoverable
	CodeBrokerUnavailable  uint32 = wire.ErrBrokerUnavailable
	CodeTooManyRequests    uint32 = wire.ErrTooManyRequests
	CodeUserNotFound       uint32 = wire.ErrUserNotFound
	CodeDataNotJSON        uint32 = wire.ErrDataNotJSON
	CodeConnectionNotFound uint32 = wire.ErrConnectionNotFound

	// CodeTimeout: no reply within the command timeout or the context's
	// deadline. Temporary.
	CodeTimeout uint32 = 1
	// CodeDisconnected: the connection was lost before the reply came.
	// Temporary: the command may be retried once the client reconnected
	// (a publish may then have been applied twice).
	CodeDisconnected uint32 = 2
	// CodeUnsubscribed: the subscription ended while waiting for it.
	CodeUnsubscribed uint32 = 3
	// CodeClosed: the client is closed, or stopped reconnecting because
	// the server told it not to.
	CodeClosed uint32 = 4
	// CodeBadData: the data given to Publish or Send is not one JSON value.
	CodeBadData uint32 = 5
)

// Error is the error of a failed command: either the server's error reply
// (Code 100 and up, see docs/protocol.md) or one of the client's own codes
// (CodeTimeout, CodeDisconnected, CodeUnsubscribed, CodeClosed,
// CodeBadData). Temporary
// reports that trying again later may succeed.
//
// Use errors.As to get at it; errors.Is(err, ErrClosed) and friends match
// by Code.
type Error struct {
	Code      uint32
	Message   string
	Temporary bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("herald: %s (code %d)", e.Message, e.Code)
}

// Is matches errors with the same Code, so that errors.Is(err,
// client.ErrTimeout) works whatever the message.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code
	}
	return false
}

// Sentinel errors for errors.Is.
var (
	ErrDisconnected = &Error{Code: CodeDisconnected, Message: "connection lost", Temporary: true}
	ErrClosed       = &Error{Code: CodeClosed, Message: "client closed"}
	ErrTimeout      = &Error{Code: CodeTimeout, Message: "no reply in time", Temporary: true}
	ErrUnsubscribed = &Error{Code: CodeUnsubscribed, Message: "unsubscribed"}
)

func fromWire(e *wire.Error) *Error {
	return &Error{Code: e.Code, Message: e.Message, Temporary: e.Temporary}
}

// IsTemporary reports whether err is an *Error marked temporary.
func IsTemporary(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Temporary
}
