package ws

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// StatusCode is a close status code (RFC 6455 §7.4).
type StatusCode int

// Close status codes registered by RFC 6455 §7.4.1 and IANA.
const (
	StatusNormalClosure           StatusCode = 1000
	StatusGoingAway               StatusCode = 1001
	StatusProtocolError           StatusCode = 1002
	StatusUnsupportedData         StatusCode = 1003
	StatusNoStatusRcvd            StatusCode = 1005 // never on the wire: the close frame had no code
	StatusAbnormalClosure         StatusCode = 1006 // never on the wire: the connection dropped without a close frame
	StatusInvalidFramePayloadData StatusCode = 1007
	StatusPolicyViolation         StatusCode = 1008
	StatusMessageTooBig           StatusCode = 1009
	StatusMandatoryExtension      StatusCode = 1010
	StatusInternalError           StatusCode = 1011
	StatusServiceRestart          StatusCode = 1012
	StatusTryAgainLater           StatusCode = 1013
	StatusBadGateway              StatusCode = 1014
	StatusTLSHandshake            StatusCode = 1015 // never on the wire
)

var statusNames = map[StatusCode]string{
	StatusNormalClosure:           "normal closure",
	StatusGoingAway:               "going away",
	StatusProtocolError:           "protocol error",
	StatusUnsupportedData:         "unsupported data",
	StatusNoStatusRcvd:            "no status",
	StatusAbnormalClosure:         "abnormal closure",
	StatusInvalidFramePayloadData: "invalid payload data",
	StatusPolicyViolation:         "policy violation",
	StatusMessageTooBig:           "message too big",
	StatusMandatoryExtension:      "mandatory extension",
	StatusInternalError:           "internal error",
	StatusServiceRestart:          "service restart",
	StatusTryAgainLater:           "try again later",
	StatusBadGateway:              "bad gateway",
	StatusTLSHandshake:            "TLS handshake",
}

func (s StatusCode) String() string {
	if n, ok := statusNames[s]; ok {
		return strconv.Itoa(int(s)) + " (" + n + ")"
	}
	return strconv.Itoa(int(s))
}

// validOnWire reports whether code may appear in a close frame. herald
// accepts the codes RFC 6455 §7.4.1 defines for use on the wire (1000-1003,
// 1007-1011) and the application ranges 3000-4999; anything else in a
// received close frame fails the connection with 1002.
func (s StatusCode) validOnWire() bool {
	switch {
	case s >= 1000 && s <= 1003, s >= 1007 && s <= 1011, s >= 3000 && s <= 4999:
		return true
	}
	return false
}

// CloseError is the close frame the peer sent: the connection was closed
// by the peer (or in answer to our close) with this code and reason.
// Code is StatusNoStatusRcvd when the close frame had no payload.
type CloseError struct {
	Code   StatusCode
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return "ws: closed by peer: " + e.Code.String()
	}
	return fmt.Sprintf("ws: closed by peer: %v: %q", e.Code, e.Reason)
}

// ProtocolError means this endpoint failed the connection because the
// peer broke the protocol or a limit; Code is the status this endpoint sent
// in its close frame (1002, 1007, 1009, ...).
type ProtocolError struct {
	Code   StatusCode
	Reason string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("ws: connection failed: %v: %s", e.Code, e.Reason)
}

func failf(code StatusCode, format string, args ...any) *ProtocolError {
	return &ProtocolError{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// CloseStatus returns the code of the peer's close frame when err is (or
// wraps) a *CloseError, and -1 otherwise.
func CloseStatus(err error) StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// maxCloseReason is the longest reason that fits a control frame.
const maxCloseReason = maxControlPayload - 2

// parseClosePayload validates a received close payload (RFC 6455 §5.5.1,
// §7.4): empty, or a valid code followed by a UTF-8 reason.
func parseClosePayload(p []byte) (*CloseError, *ProtocolError) {
	switch {
	case len(p) == 0:
		return &CloseError{Code: StatusNoStatusRcvd}, nil
	case len(p) == 1:
		return nil, failf(StatusProtocolError, "close frame with a 1-byte payload")
	}
	code := StatusCode(binary.BigEndian.Uint16(p))
	if !code.validOnWire() {
		return nil, failf(StatusProtocolError, "invalid close code %d", code)
	}
	if !validUTF8(p[2:]) {
		return nil, failf(StatusInvalidFramePayloadData, "close reason is not UTF-8")
	}
	return &CloseError{Code: code, Reason: string(p[2:])}, nil
}

// appendClosePayload appends the payload of a close frame. Code
// StatusNoStatusRcvd produces an empty payload. The reason is cut at a
// code point boundary to fit a control frame.
func appendClosePayload(dst []byte, code StatusCode, reason string) []byte {
	if code == StatusNoStatusRcvd {
		return dst
	}
	if len(reason) > maxCloseReason {
		n := maxCloseReason
		for n > 0 && reason[n]&0xC0 == 0x80 {
			n--
		}
		reason = reason[:n]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}
