package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// UDP datagram format (docs/protocol.md, "UDP transport").
//
// Every datagram starts with a version byte (DatagramVersion) and a kind
// byte, followed by a kind-specific fixed header (big-endian integers) and
// at most one binary-encoded message:
//
//	connect  client->server  version kind nonce:8 length:2 message padding
//	accept   server->client  version kind nonce:8 session:8 secret:8 message
//	data     both            version kind session:8 secret:8 seq:8 message
//	close    both            version kind session:8 secret:8 seq:8 [message]
//	reset    server->client  version kind session:8
//
// A connect datagram is padded to at least MinConnectDatagramSize bytes,
// and the server never answers an unauthenticated datagram (connect, or
// data for an unknown session) with more bytes than it received, so the
// server cannot be used to amplify traffic towards a spoofed address.
// The session id and secret the server assigns in accept are echoed in
// every later datagram: a datagram whose secret does not match its
// session is dropped, so a spoofed source address cannot inject commands
// into or take over someone else's session. The secret travels in clear
// text: it protects against off-path attackers, not against an observer
// on the path.

// DatagramVersion is the first byte of every datagram.
const DatagramVersion = 1

// Datagram sizes.
const (
	// MinConnectDatagramSize is the smallest connect datagram the server
	// accepts; clients pad to it. It is larger than any accept the server
	// sends in answer and fits the IPv6 minimum MTU.
	MinConnectDatagramSize = 1200
	// MaxDatagramSize is the largest UDP payload over IPv4.
	MaxDatagramSize = 65507
	// DataHeaderSize is the header size of data and close datagrams.
	DataHeaderSize = 26
	// AcceptHeaderSize is the header size of an accept datagram.
	AcceptHeaderSize = 26
	// ConnectHeaderSize is the header size of a connect datagram, before
	// its message.
	ConnectHeaderSize = 12
	// ResetSize is the size of a reset datagram.
	ResetSize = 10
)

// DatagramKind is the second byte of a datagram.
type DatagramKind uint8

// Datagram kinds.
const (
	DatagramConnect DatagramKind = 1 // client asks for a session; carries a connect command
	DatagramAccept  DatagramKind = 2 // server answers a connect; carries the connect reply
	DatagramData    DatagramKind = 3 // one message, or none (keepalive), within a session
	DatagramClose   DatagramKind = 4 // the sender ends the session; optional message (disconnect push)
	DatagramReset   DatagramKind = 5 // server: the session id is unknown; connect again
)

func (k DatagramKind) String() string {
	switch k {
	case DatagramConnect:
		return "connect"
	case DatagramAccept:
		return "accept"
	case DatagramData:
		return "data"
	case DatagramClose:
		return "close"
	case DatagramReset:
		return "reset"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ErrBadDatagram is wrapped by every ParseDatagram error. The server drops
// such datagrams silently: answering them would let spoofed traffic
// trigger replies.
var ErrBadDatagram = errors.New("bad datagram")

// Datagram is one parsed or to-be-encoded UDP datagram. Which fields are
// meaningful depends on Kind (see the layout above); the others are zero.
type Datagram struct {
	Kind    DatagramKind
	Nonce   uint64 // connect, accept: client-chosen, echoed by the server
	Session uint64 // accept, data, close, reset: server-assigned session id
	Secret  uint64 // accept, data, close: server-assigned session secret
	Seq     uint64 // data, close: per-direction sequence number, from 1
	// Message is one binary-encoded message (may be empty for data and
	// close). After ParseDatagram it aliases the parsed bytes.
	Message []byte
}

// AppendDatagram appends the encoding of d to dst. A connect datagram is
// padded with zeros to MinConnectDatagramSize. It fails for an unknown
// kind, a connect message longer than 65535 bytes, or a result larger than
// MaxDatagramSize.
func AppendDatagram(dst []byte, d *Datagram) ([]byte, error) {
	start := len(dst)
	switch d.Kind {
	case DatagramConnect:
		if len(d.Message) > math.MaxUint16 {
			return dst, fmt.Errorf("%w: connect message of %d bytes", ErrBadDatagram, len(d.Message))
		}
		dst = append(dst, DatagramVersion, byte(d.Kind))
		dst = binary.BigEndian.AppendUint64(dst, d.Nonce)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(d.Message)))
		dst = append(dst, d.Message...)
		for len(dst)-start < MinConnectDatagramSize {
			dst = append(dst, 0)
		}
	case DatagramAccept:
		dst = append(dst, DatagramVersion, byte(d.Kind))
		dst = binary.BigEndian.AppendUint64(dst, d.Nonce)
		dst = binary.BigEndian.AppendUint64(dst, d.Session)
		dst = binary.BigEndian.AppendUint64(dst, d.Secret)
		dst = append(dst, d.Message...)
	case DatagramData, DatagramClose:
		dst = AppendDataHeader(dst, d.Kind, d.Session, d.Secret, d.Seq)
		dst = append(dst, d.Message...)
	case DatagramReset:
		dst = append(dst, DatagramVersion, byte(d.Kind))
		dst = binary.BigEndian.AppendUint64(dst, d.Session)
	default:
		return dst, fmt.Errorf("%w: unknown kind %d", ErrBadDatagram, d.Kind)
	}
	if len(dst)-start > MaxDatagramSize {
		return dst[:start], fmt.Errorf("%w: %d bytes, limit %d", ErrBadDatagram, len(dst)-start, MaxDatagramSize)
	}
	return dst, nil
}

// AppendDataHeader appends the 26-byte header of a data or close datagram.
// The message follows it directly, so a server can encode a push once and
// send it to many sessions with a per-session header (for example as two
// parts of one sendmsg).
func AppendDataHeader(dst []byte, kind DatagramKind, session, secret, seq uint64) []byte {
	dst = append(dst, DatagramVersion, byte(kind))
	dst = binary.BigEndian.AppendUint64(dst, session)
	dst = binary.BigEndian.AppendUint64(dst, secret)
	return binary.BigEndian.AppendUint64(dst, seq)
}

func badDatagram(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadDatagram, fmt.Sprintf(format, args...))
}

// ParseDatagram parses b into d without allocating; d.Message aliases b.
// It checks the size limits, the version, the kind, that a connect is
// padded to MinConnectDatagramSize and that its message length fits, and
// that session ids and sequence numbers are non-zero where required. It
// does not check secrets: that needs the session table.
func ParseDatagram(b []byte, d *Datagram) error {
	*d = Datagram{}
	if len(b) > MaxDatagramSize {
		return badDatagram("%d bytes, limit %d", len(b), MaxDatagramSize)
	}
	if len(b) < 2 {
		return badDatagram("%d bytes", len(b))
	}
	if b[0] != DatagramVersion {
		return badDatagram("version %d", b[0])
	}
	kind := DatagramKind(b[1])
	switch kind {
	case DatagramConnect:
		if len(b) < MinConnectDatagramSize {
			return badDatagram("connect of %d bytes, minimum %d", len(b), MinConnectDatagramSize)
		}
		n := int(binary.BigEndian.Uint16(b[10:]))
		if n > len(b)-ConnectHeaderSize {
			return badDatagram("connect message length %d exceeds datagram", n)
		}
		d.Nonce = binary.BigEndian.Uint64(b[2:])
		d.Message = b[ConnectHeaderSize : ConnectHeaderSize+n : ConnectHeaderSize+n]
	case DatagramAccept:
		if len(b) < AcceptHeaderSize {
			return badDatagram("accept of %d bytes", len(b))
		}
		d.Nonce = binary.BigEndian.Uint64(b[2:])
		d.Session = binary.BigEndian.Uint64(b[10:])
		d.Secret = binary.BigEndian.Uint64(b[18:])
		d.Message = b[AcceptHeaderSize:]
	case DatagramData, DatagramClose:
		if len(b) < DataHeaderSize {
			return badDatagram("%s of %d bytes", kind, len(b))
		}
		d.Session = binary.BigEndian.Uint64(b[2:])
		d.Secret = binary.BigEndian.Uint64(b[10:])
		d.Seq = binary.BigEndian.Uint64(b[18:])
		if d.Session == 0 || d.Seq == 0 {
			return badDatagram("%s with zero session or sequence number", kind)
		}
		d.Message = b[DataHeaderSize:]
	case DatagramReset:
		if len(b) != ResetSize {
			return badDatagram("reset of %d bytes", len(b))
		}
		d.Session = binary.BigEndian.Uint64(b[2:])
	default:
		return badDatagram("unknown kind %d", b[1])
	}
	d.Kind = kind
	if len(d.Message) == 0 {
		d.Message = nil
	}
	return nil
}

// ReplayWindow accepts each sequence number at most once. It remembers the
// highest number seen and the 63 before it; older numbers are rejected, so
// duplicated, replayed and very late datagrams are dropped while moderate
// reordering is tolerated.
//
// The zero value is ready to use; it is not safe for concurrent use.
type ReplayWindow struct {
	top  uint64 // highest accepted sequence number
	seen uint64 // bit i set: top-i was accepted
}

// ReplayWindowSize is how far behind the highest sequence number a
// datagram may arrive and still be accepted.
const ReplayWindowSize = 64

// Accept reports whether seq is new and records it. Zero is never valid.
func (w *ReplayWindow) Accept(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > w.top {
		if shift := seq - w.top; shift >= ReplayWindowSize {
			w.seen = 1
		} else {
			w.seen = w.seen<<shift | 1
		}
		w.top = seq
		return true
	}
	diff := w.top - seq
	if diff >= ReplayWindowSize {
		return false
	}
	bit := uint64(1) << diff
	if w.seen&bit != 0 {
		return false
	}
	w.seen |= bit
	return true
}

// Highest returns the highest sequence number accepted so far (0 if none).
func (w *ReplayWindow) Highest() uint64 { return w.top }
