package wire

import (
	"errors"
	"fmt"
)

// Encoding identifies a codec on the wire. Its value is the encoding byte
// of the TCP hello.
type Encoding uint8

// Encodings.
const (
	EncodingJSON   Encoding = 0
	EncodingBinary Encoding = 1
)

// String returns the codec name of e ("json", "binary") or "encoding(N)".
func (e Encoding) String() string {
	switch e {
	case EncodingJSON:
		return "json"
	case EncodingBinary:
		return "binary"
	}
	return fmt.Sprintf("encoding(%d)", uint8(e))
}

// DefaultMaxMessageSize is the largest encoded message a codec decodes when
// its MaxMessageSize is zero: 64 KiB.
const DefaultMaxMessageSize = 64 << 10

// Codec encodes and decodes protocol messages in one encoding. The two
// implementations are JSON and Binary; a transport picks one and never
// looks inside the bytes.
//
// Append methods append the encoding of a message to dst and return the
// extended slice; they never fail: the caller is responsible for passing a
// well-formed message (data fields holding one valid JSON value, see
// ValidJSON). Decode methods never retain b: every decoded string and data
// field is a copy. Decoded messages always carry the params, result or
// payload pointer that matches their method or type (non-nil), so callers
// need no nil checks.
//
// Decode errors: DecodeCommand returns *ProtocolError when the input is
// larger than the codec's limit (close with its Code) and *CommandError
// otherwise (answer it when its ID is non-zero, else close with
// DisconnectBadRequest). The client-side decoders return *ProtocolError.
//
// Codecs are stateless values, safe for concurrent use.
type Codec interface {
	// Name is "json" or "binary".
	Name() string
	// Encoding is the hello byte that selects the codec.
	Encoding() Encoding

	AppendCommand(dst []byte, c *Command) []byte
	DecodeCommand(b []byte) (*Command, error)

	AppendReply(dst []byte, r *Reply) []byte
	// DecodeReply decodes a reply. methodOf returns the method of the
	// in-flight command with the given id: a JSON result does not say
	// which method it answers. The binary codec does not call it.
	DecodeReply(b []byte, methodOf func(id uint32) Method) (*Reply, error)

	AppendPush(dst []byte, p *Push) []byte
	DecodePush(b []byte) (*Push, error)

	// DecodeServerMessage decodes whatever the server sent a client:
	// exactly one of the results is non-nil on success.
	DecodeServerMessage(b []byte, methodOf func(id uint32) Method) (*Reply, *Push, error)
}

// Codecs with the default limits.
var (
	JSON   = JSONCodec{}
	Binary = BinaryCodec{}
)

var (
	_ Codec = JSONCodec{}
	_ Codec = BinaryCodec{}
)

// CodecFor returns the default codec for e, or false for an unknown
// encoding.
func CodecFor(e Encoding) (Codec, bool) {
	switch e {
	case EncodingJSON:
		return JSON, true
	case EncodingBinary:
		return Binary, true
	}
	return nil, false
}

func maxSize(n int) int {
	if n <= 0 {
		return DefaultMaxMessageSize
	}
	return n
}

// CommandError reports a command the server could not accept. When ID is
// non-zero the command can be answered: the server replies with Reply()
// and keeps the connection. When ID is zero (the message was not a
// command, or had no id) nothing can be answered and the server closes the
// connection with DisconnectBadRequest.
type CommandError struct {
	ID      uint32 // the command's id; 0 when unknown
	Method  Method // MethodUnknown when the method was missing or unknown
	Code    uint32 // ErrBadRequest or ErrMethodNotFound
	Message string
	Err     error // underlying cause, if any
}

func (e *CommandError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("wire: bad command (code %d, id %d): %s: %v", e.Code, e.ID, e.Message, e.Err)
	}
	return fmt.Sprintf("wire: bad command (code %d, id %d): %s", e.Code, e.ID, e.Message)
}

func (e *CommandError) Unwrap() error { return e.Err }

// Reply returns the error reply for the command, or nil when the command
// had no id and cannot be answered.
func (e *CommandError) Reply() *Reply {
	if e.ID == 0 {
		return nil
	}
	return &Reply{ID: e.ID, Error: &Error{Code: e.Code, Message: e.Message}}
}

// ProtocolError is a connection-level failure: the peer violated the
// framing or sent something that cannot be handled as a message. Code is
// the disconnect code to close with (DisconnectBadRequest or
// DisconnectMessageTooBig); over TCP and UDP the server first sends
// Disconnect() as a push.
type ProtocolError struct {
	Code   uint16
	Reason string
	Err    error // underlying cause, if any
}

func (e *ProtocolError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("wire: protocol error %d: %s: %v", e.Code, e.Reason, e.Err)
	}
	return fmt.Sprintf("wire: protocol error %d: %s", e.Code, e.Reason)
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// Disconnect returns the disconnect push the server sends before closing.
func (e *ProtocolError) Disconnect() *Push {
	return &Push{Type: PushDisconnect, Disconnect: &Disconnect{
		Code: e.Code, Reason: e.Reason, Reconnect: DisconnectReconnects(e.Code),
	}}
}

// ErrMessageTooLarge is wrapped by the *ProtocolError a codec returns for
// input longer than its MaxMessageSize.
var ErrMessageTooLarge = errors.New("message too large")

func tooLarge(n, limit int) error {
	return &ProtocolError{Code: DisconnectMessageTooBig, Reason: "message too large",
		Err: fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, n, limit)}
}

func badMessage(reason string, err error) error {
	return &ProtocolError{Code: DisconnectBadRequest, Reason: reason, Err: err}
}
