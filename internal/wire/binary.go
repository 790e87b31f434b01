package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// BinaryCodec is herald's compact binary encoding of the same messages
// (docs/protocol.md, "Binary encoding"), used over TCP and UDP. A message
// is a kind byte, a subtype byte, then fields in a fixed order: unsigned
// LEB128 varints, zigzag varints, length-prefixed byte strings, and a flags
// byte holding booleans and the presence of optional structures. The
// structure has fixed depth (a reply holds publications, a publication
// holds client info), so nesting is bounded by construction.
//
// Decoders check every length and count against the remaining input
// before allocating, and reject trailing bytes and unknown flag bits.
//
// The zero value is ready to use; BinaryCodec is safe for concurrent use.
type BinaryCodec struct {
	// MaxMessageSize is the largest input Decode methods accept, in bytes.
	// Zero means DefaultMaxMessageSize.
	MaxMessageSize int
}

// Name returns "binary".
func (BinaryCodec) Name() string { return "binary" }

// Encoding returns EncodingBinary.
func (BinaryCodec) Encoding() Encoding { return EncodingBinary }

// Message kinds: the first byte of every binary message.
const (
	binaryCommand byte = 1
	binaryReply   byte = 2
	binaryPush    byte = 3
)

// Reply kinds (the second byte of a reply). Non-empty results use the
// number of the method they answer.
const (
	replyEmpty byte = 0
	replyError byte = 0xFF
)

// Flag bits.
const (
	flagSince     = 1 << 0 // subscribe, history: since follows
	flagReverse   = 1 << 1 // history
	flagInfo      = 1 << 0 // publication, message: client info follows
	flagTemporary = 1 << 0 // error
	flagExpires   = 1 << 0 // connect, refresh results
	flagPong      = 1 << 1 // connect result
	flagRecoverab = 1 << 0 // subscribe result
	flagWasRecov  = 1 << 1
	flagRecovered = 1 << 2
	flagResub     = 1 << 0 // unsubscribe push
	flagReconnect = 1 << 0 // disconnect push
)

// ---------------------------------------------------------------------------
// Encoding

func appendBStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendBSvarint(dst []byte, v int64) []byte {
	return binary.AppendUvarint(dst, uint64(v<<1)^uint64(v>>63))
}

func boolFlag(b bool, bit byte) byte {
	if b {
		return bit
	}
	return 0
}

func appendBPosition(dst []byte, p *StreamPosition) []byte {
	dst = binary.AppendUvarint(dst, p.Offset)
	return appendBStr(dst, p.Epoch)
}

func appendBClientInfo(dst []byte, ci *ClientInfo) []byte {
	dst = appendBStr(dst, ci.Client)
	dst = appendBStr(dst, ci.User)
	dst = appendBBytes(dst, ci.ConnInfo)
	return appendBBytes(dst, ci.ChanInfo)
}

func appendBPublication(dst []byte, p *Publication) []byte {
	dst = binary.AppendUvarint(dst, p.Offset)
	dst = appendBSvarint(dst, p.Time)
	if p.Info != nil {
		dst = append(dst, flagInfo)
		dst = appendBClientInfo(dst, p.Info)
	} else {
		dst = append(dst, 0)
	}
	return appendBBytes(dst, p.Data)
}

func appendBPublications(dst []byte, pubs []*Publication) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(pubs)))
	for _, p := range pubs {
		if p == nil {
			p = &Publication{}
		}
		dst = appendBPublication(dst, p)
	}
	return dst
}

func channelOf(p *ChannelParams) string {
	if p == nil {
		return ""
	}
	return p.Channel
}

// AppendCommand appends the binary encoding of c. A nil params pointer is
// encoded as zero-valued params.
func (BinaryCodec) AppendCommand(dst []byte, c *Command) []byte {
	dst = append(dst, binaryCommand, byte(c.Method))
	dst = binary.AppendUvarint(dst, uint64(c.ID))
	switch c.Method {
	case MethodConnect:
		p := c.Connect
		if p == nil {
			p = &ConnectParams{}
		}
		dst = appendBStr(dst, p.Token)
		dst = appendBStr(dst, p.Name)
		dst = appendBStr(dst, p.Version)
	case MethodSubscribe:
		p := c.Subscribe
		if p == nil {
			p = &SubscribeParams{}
		}
		dst = appendBStr(dst, p.Channel)
		if p.Since != nil {
			dst = append(dst, flagSince)
			dst = appendBPosition(dst, p.Since)
		} else {
			dst = append(dst, 0)
		}
	case MethodUnsubscribe:
		dst = appendBStr(dst, channelOf(c.Unsubscribe))
	case MethodPresence:
		dst = appendBStr(dst, channelOf(c.Presence))
	case MethodPresenceStats:
		dst = appendBStr(dst, channelOf(c.PresenceStats))
	case MethodPublish:
		p := c.Publish
		if p == nil {
			p = &PublishParams{}
		}
		dst = appendBStr(dst, p.Channel)
		dst = appendBBytes(dst, p.Data)
	case MethodHistory:
		p := c.History
		if p == nil {
			p = &HistoryParams{}
		}
		dst = appendBStr(dst, p.Channel)
		dst = appendBSvarint(dst, int64(p.Limit))
		dst = append(dst, boolFlag(p.Since != nil, flagSince)|boolFlag(p.Reverse, flagReverse))
		if p.Since != nil {
			dst = appendBPosition(dst, p.Since)
		}
	case MethodRefresh:
		p := c.Refresh
		if p == nil {
			p = &RefreshParams{}
		}
		dst = appendBStr(dst, p.Token)
	case MethodSend:
		p := c.Send
		if p == nil {
			p = &SendParams{}
		}
		dst = appendBStr(dst, p.User)
		dst = appendBBytes(dst, p.Data)
	}
	return dst
}

// AppendReply appends the binary encoding of r. An error takes precedence
// over results; a reply with neither has the empty-result kind.
func (BinaryCodec) AppendReply(dst []byte, r *Reply) []byte {
	switch {
	case r.Error != nil:
		e := r.Error
		dst = append(dst, binaryReply, replyError)
		dst = binary.AppendUvarint(dst, uint64(r.ID))
		dst = binary.AppendUvarint(dst, uint64(e.Code))
		dst = appendBStr(dst, e.Message)
		dst = append(dst, boolFlag(e.Temporary, flagTemporary))
	case r.Connect != nil:
		v := r.Connect
		dst = append(dst, binaryReply, byte(MethodConnect))
		dst = binary.AppendUvarint(dst, uint64(r.ID))
		dst = appendBStr(dst, v.Client)
		dst = appendBStr(dst, v.Version)
		dst = appendBStr(dst, v.Node)
		dst = binary.AppendUvarint(dst, uint64(v.TTL))
		dst = binary.AppendUvarint(dst, uint64(v.Ping))
		dst = append(dst, boolFlag(v.Expires, flagExpires)|boolFlag(v.Pong, flagPong))
	case r.Subscribe != nil:
		v := r.Subscribe
		dst = append(dst, binaryReply, byte(MethodSubscribe))
		dst = binary.AppendUvarint(dst, uint64(r.ID))
		dst = appendBStr(dst, v.Epoch)
		dst = binary.AppendUvarint(dst, v.Offset)
		dst = append(dst, boolFlag(v.Recoverable, flagRecoverab)|boolFlag(v.WasRecovering, flagWasRecov)|
			boolFlag(v.Recovered, flagRecovered))
		dst = appendBPublications(dst, v.Publications)
	case r.Publish != nil:
		dst = append(dst, binaryReply, byte(MethodPublish))
		dst = binary.AppendUvarint(dst, uint64(r.ID))
		dst = binary.AppendUvarint(dst, r.Publish.Offset)
		dst = appendBStr(dst, r.Publish.Epoch)
	case r.Presence != nil:
		dst = append(dst, binaryReply, byte(MethodPresence))
		dst = binary.AppendUvarint(dst, uint64(r.ID))
		m := r.Presence.Presence
		dst = binary.AppendUvarint(dst, uint64(len(m)))
		for _, k := range slices.Sorted(mapKeys(m)) {
			ci := m[k]
			if ci == nil {
				ci = &ClientInfo{}
			}
			dst = appendBStr(dst, k)
			dst = appendBClientInfo(dst, ci)
		}
	case r.PresenceStats != nil:
		dst = append(dst, binaryReply, byte(MethodPresenceStats))
		dst = binary.AppendUvarint(dst, uint64(r.ID))
		dst = binary.AppendUvarint(dst, uint64(r.PresenceStats.NumClients))
		dst = binary.AppendUvarint(dst, uint64(r.PresenceStats.NumUsers))
	case r.History != nil:
		v := r.History
		dst = append(dst, binaryReply, byte(MethodHistory))
		dst = binary.AppendUvarint(dst, uint64(r.ID))
		dst = binary.AppendUvarint(dst, v.Offset)
		dst = appendBStr(dst, v.Epoch)
		dst = appendBPublications(dst, v.Publications)
	case r.Refresh != nil:
		dst = append(dst, binaryReply, byte(MethodRefresh))
		dst = binary.AppendUvarint(dst, uint64(r.ID))
		dst = binary.AppendUvarint(dst, uint64(r.Refresh.TTL))
		dst = append(dst, boolFlag(r.Refresh.Expires, flagExpires))
	default:
		dst = append(dst, binaryReply, replyEmpty)
		dst = binary.AppendUvarint(dst, uint64(r.ID))
	}
	return dst
}

// AppendPush appends the binary encoding of p. It does not allocate.
func (BinaryCodec) AppendPush(dst []byte, p *Push) []byte {
	dst = append(dst, binaryPush, byte(p.Type))
	switch p.Type {
	case PushPublication:
		dst = appendBStr(dst, p.Channel)
		pub := p.Publication
		if pub == nil {
			pub = &Publication{}
		}
		dst = appendBPublication(dst, pub)
	case PushJoin, PushLeave:
		dst = appendBStr(dst, p.Channel)
		ci := p.Join
		if p.Type == PushLeave {
			ci = p.Leave
		}
		if ci == nil {
			ci = &ClientInfo{}
		}
		dst = appendBClientInfo(dst, ci)
	case PushUnsubscribe:
		dst = appendBStr(dst, p.Channel)
		u := p.Unsubscribe
		if u == nil {
			u = &UnsubscribePush{}
		}
		dst = binary.AppendUvarint(dst, uint64(u.Code))
		dst = appendBStr(dst, u.Reason)
		dst = append(dst, boolFlag(u.Resubscribe, flagResub))
	case PushMessage:
		m := p.Message
		if m == nil {
			m = &Message{}
		}
		if m.Info != nil {
			dst = append(dst, flagInfo)
			dst = appendBClientInfo(dst, m.Info)
		} else {
			dst = append(dst, 0)
		}
		dst = appendBBytes(dst, m.Data)
	case PushDisconnect:
		d := p.Disconnect
		if d == nil {
			d = &Disconnect{}
		}
		dst = binary.AppendUvarint(dst, uint64(d.Code))
		dst = appendBStr(dst, d.Reason)
		dst = append(dst, boolFlag(d.Reconnect, flagReconnect))
	}
	return dst
}

// ---------------------------------------------------------------------------
// Decoding

// Errors wrapped by binary decode failures.
var (
	ErrTruncated    = errors.New("truncated message")
	ErrTrailingData = errors.New("trailing bytes after message")
	ErrBadVarint    = errors.New("malformed varint")
	ErrOutOfRange   = errors.New("value out of range")
	ErrBadFlags     = errors.New("unknown flag bits")
)

// Minimum encoded sizes, used to bound element counts by the remaining
// input before allocating.
const (
	minBPublication = 4 // offset, time, flags, data length
	minBPresence    = 5 // key length + client info (4 lengths)
)

// breader reads binary fields with a sticky error: after the first failure
// every read returns a zero value, and the caller checks err once.
type breader struct {
	b   []byte
	off int
	err error
}

func (r *breader) fail(err error) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: %w", r.off, err)
	}
}

func (r *breader) remaining() int { return len(r.b) - r.off }

func (r *breader) u8() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail(ErrTruncated)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *breader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		if n == 0 {
			r.fail(ErrTruncated)
		} else {
			r.fail(ErrBadVarint)
		}
		return 0
	}
	r.off += n
	return v
}

func (r *breader) u32() uint32 {
	v := r.uvarint()
	if v > math.MaxUint32 {
		r.fail(ErrOutOfRange)
		return 0
	}
	return uint32(v)
}

func (r *breader) svarint() int64 {
	u := r.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// flags reads a flags byte and rejects bits outside allowed.
func (r *breader) flags(allowed byte) byte {
	f := r.u8()
	if f&^allowed != 0 {
		r.fail(ErrBadFlags)
		return 0
	}
	return f
}

// span returns the next length-prefixed byte string, aliasing the input.
func (r *breader) span() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(r.remaining()) {
		r.fail(ErrTruncated)
		return nil
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *breader) str() string { return string(r.span()) }

// data reads a raw JSON field: a copy, or nil for length 0 (JSON null).
func (r *breader) data() []byte {
	s := r.span()
	if len(s) == 0 || string(s) == "null" {
		return nil
	}
	return slices.Clone(s)
}

// count reads an element count and bounds it by the remaining input.
func (r *breader) count(minElem int) int {
	n := r.uvarint()
	if r.err != nil {
		return 0
	}
	if n > uint64(r.remaining()/minElem) {
		r.fail(ErrTruncated)
		return 0
	}
	return int(n)
}

func (r *breader) end() {
	if r.err == nil && r.off != len(r.b) {
		r.fail(ErrTrailingData)
	}
}

func (r *breader) position() *StreamPosition {
	return &StreamPosition{Offset: r.uvarint(), Epoch: r.str()}
}

func (r *breader) clientInfo() *ClientInfo {
	return &ClientInfo{Client: r.str(), User: r.str(), ConnInfo: r.data(), ChanInfo: r.data()}
}

func (r *breader) publication() *Publication {
	p := &Publication{Offset: r.uvarint(), Time: r.svarint()}
	if r.flags(flagInfo)&flagInfo != 0 {
		p.Info = r.clientInfo()
	}
	p.Data = r.data()
	return p
}

func (r *breader) publications() []*Publication {
	n := r.count(minBPublication)
	if n == 0 {
		return nil
	}
	out := make([]*Publication, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		out = append(out, r.publication())
	}
	return out
}

// DecodeCommand decodes one binary command. See Codec for the error
// contract.
func (c BinaryCodec) DecodeCommand(b []byte) (*Command, error) {
	if limit := maxSize(c.MaxMessageSize); len(b) > limit {
		return nil, tooLarge(len(b), limit)
	}
	r := breader{b: b}
	kind := r.u8()
	method := Method(r.u8())
	id := r.u32()
	if r.err != nil {
		return nil, &CommandError{Code: ErrBadRequest, Message: "truncated command header", Err: r.err}
	}
	if kind != binaryCommand {
		return nil, &CommandError{Code: ErrBadRequest, Message: "not a command"}
	}
	if method.String() == "" {
		return nil, &CommandError{ID: id, Code: ErrMethodNotFound, Message: "unknown method"}
	}
	if id == 0 && method != MethodPong {
		return nil, &CommandError{Method: method, Code: ErrBadRequest, Message: "missing id"}
	}
	cmd := &Command{ID: id, Method: method}
	switch method {
	case MethodConnect:
		cmd.Connect = &ConnectParams{Token: r.str(), Name: r.str(), Version: r.str()}
	case MethodSubscribe:
		p := &SubscribeParams{Channel: r.str()}
		if r.flags(flagSince)&flagSince != 0 {
			p.Since = r.position()
		}
		cmd.Subscribe = p
	case MethodUnsubscribe:
		cmd.Unsubscribe = &ChannelParams{Channel: r.str()}
	case MethodPresence:
		cmd.Presence = &ChannelParams{Channel: r.str()}
	case MethodPresenceStats:
		cmd.PresenceStats = &ChannelParams{Channel: r.str()}
	case MethodPublish:
		cmd.Publish = &PublishParams{Channel: r.str(), Data: r.data()}
	case MethodHistory:
		p := &HistoryParams{Channel: r.str()}
		limit := r.svarint()
		if limit < math.MinInt || limit > math.MaxInt {
			r.fail(ErrOutOfRange)
		}
		p.Limit = int(limit)
		f := r.flags(flagSince | flagReverse)
		p.Reverse = f&flagReverse != 0
		if f&flagSince != 0 {
			p.Since = r.position()
		}
		cmd.History = p
	case MethodRefresh:
		cmd.Refresh = &RefreshParams{Token: r.str()}
	case MethodSend:
		cmd.Send = &SendParams{User: r.str(), Data: r.data()}
	}
	r.end()
	if r.err != nil {
		return nil, &CommandError{ID: id, Method: method, Code: ErrBadRequest, Message: "invalid params", Err: r.err}
	}
	return cmd, nil
}

// DecodeReply decodes one binary reply. Binary replies say which method
// they answer, so methodOf is not used and may be nil.
func (c BinaryCodec) DecodeReply(b []byte, _ func(id uint32) Method) (*Reply, error) {
	if limit := maxSize(c.MaxMessageSize); len(b) > limit {
		return nil, tooLarge(len(b), limit)
	}
	r := breader{b: b}
	if r.u8() != binaryReply && r.err == nil {
		return nil, badMessage("not a reply", errNotReply)
	}
	return decodeBReply(&r)
}

func decodeBReply(r *breader) (*Reply, error) {
	kind := r.u8()
	rep := &Reply{ID: r.u32()}
	if r.err == nil && rep.ID == 0 {
		return nil, badMessage("reply without id", errNotReply)
	}
	switch kind {
	case replyEmpty:
	case replyError:
		rep.Error = &Error{Code: r.u32(), Message: r.str()}
		rep.Error.Temporary = r.flags(flagTemporary)&flagTemporary != 0
	case byte(MethodConnect):
		v := &ConnectResult{Client: r.str(), Version: r.str(), Node: r.str(), TTL: r.u32(), Ping: r.u32()}
		f := r.flags(flagExpires | flagPong)
		v.Expires, v.Pong = f&flagExpires != 0, f&flagPong != 0
		rep.Connect = v
	case byte(MethodSubscribe):
		v := &SubscribeResult{Epoch: r.str(), Offset: r.uvarint()}
		f := r.flags(flagRecoverab | flagWasRecov | flagRecovered)
		v.Recoverable, v.WasRecovering, v.Recovered = f&flagRecoverab != 0, f&flagWasRecov != 0, f&flagRecovered != 0
		v.Publications = r.publications()
		rep.Subscribe = v
	case byte(MethodPublish):
		rep.Publish = &PublishResult{Offset: r.uvarint(), Epoch: r.str()}
	case byte(MethodPresence):
		n := r.count(minBPresence)
		v := &PresenceResult{}
		if n > 0 {
			v.Presence = make(map[string]*ClientInfo, n)
			for i := 0; i < n && r.err == nil; i++ {
				k := r.str()
				v.Presence[k] = r.clientInfo()
			}
		}
		rep.Presence = v
	case byte(MethodPresenceStats):
		rep.PresenceStats = &PresenceStatsResult{NumClients: r.u32(), NumUsers: r.u32()}
	case byte(MethodHistory):
		rep.History = &HistoryResult{Offset: r.uvarint(), Epoch: r.str(), Publications: r.publications()}
	case byte(MethodRefresh):
		v := &RefreshResult{TTL: r.u32()}
		v.Expires = r.flags(flagExpires)&flagExpires != 0
		rep.Refresh = v
	default:
		if r.err == nil {
			return nil, badMessage("unknown reply kind", errNotReply)
		}
	}
	r.end()
	if r.err != nil {
		return nil, badMessage("malformed reply", r.err)
	}
	return rep, nil
}

// DecodePush decodes one binary push.
func (c BinaryCodec) DecodePush(b []byte) (*Push, error) {
	if limit := maxSize(c.MaxMessageSize); len(b) > limit {
		return nil, tooLarge(len(b), limit)
	}
	r := breader{b: b}
	if r.u8() != binaryPush && r.err == nil {
		return nil, badMessage("not a push", errNotPush)
	}
	return decodeBPush(&r)
}

func decodeBPush(r *breader) (*Push, error) {
	p := &Push{Type: PushType(r.u8())}
	switch p.Type {
	case PushPublication:
		p.Channel = r.str()
		p.Publication = r.publication()
	case PushJoin:
		p.Channel = r.str()
		p.Join = r.clientInfo()
	case PushLeave:
		p.Channel = r.str()
		p.Leave = r.clientInfo()
	case PushUnsubscribe:
		p.Channel = r.str()
		u := &UnsubscribePush{Code: r.u32(), Reason: r.str()}
		u.Resubscribe = r.flags(flagResub)&flagResub != 0
		p.Unsubscribe = u
	case PushMessage:
		m := &Message{}
		if r.flags(flagInfo)&flagInfo != 0 {
			m.Info = r.clientInfo()
		}
		m.Data = r.data()
		p.Message = m
	case PushDisconnect:
		code := r.uvarint()
		if code > math.MaxUint16 {
			r.fail(ErrOutOfRange)
		}
		d := &Disconnect{Code: uint16(code), Reason: r.str()}
		d.Reconnect = r.flags(flagReconnect)&flagReconnect != 0
		p.Disconnect = d
	case PushPing:
	default:
		if r.err == nil {
			return nil, badMessage("unknown push type", errNotPush)
		}
	}
	r.end()
	if r.err != nil {
		return nil, badMessage("malformed push", r.err)
	}
	return p, nil
}

// DecodeServerMessage decodes a binary reply or push.
func (c BinaryCodec) DecodeServerMessage(b []byte, _ func(id uint32) Method) (*Reply, *Push, error) {
	if limit := maxSize(c.MaxMessageSize); len(b) > limit {
		return nil, nil, tooLarge(len(b), limit)
	}
	r := breader{b: b}
	switch r.u8() {
	case binaryReply:
		rep, err := decodeBReply(&r)
		return rep, nil, err
	case binaryPush:
		p, err := decodeBPush(&r)
		return nil, p, err
	}
	if r.err != nil {
		return nil, nil, badMessage("empty message", r.err)
	}
	return nil, nil, badMessage("not a server message", errNotPush)
}
