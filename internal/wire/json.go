package wire

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// JSONCodec is the JSON encoding of docs/protocol.md, used over WebSocket
// and optionally TCP. Encoders are hand-written and append to a caller's
// buffer without allocating; raw JSON data is copied verbatim, never
// re-encoded. Decoders use encoding/json (which bounds nesting depth) and
// keep data fields raw.
//
// The zero value is ready to use; JSONCodec is safe for concurrent use.
type JSONCodec struct {
	// MaxMessageSize is the largest input Decode methods accept, in bytes.
	// Zero means DefaultMaxMessageSize. Larger input fails before it is
	// parsed.
	MaxMessageSize int
}

// Name returns "json".
func (JSONCodec) Name() string { return "json" }

// Encoding returns EncodingJSON.
func (JSONCodec) Encoding() Encoding { return EncodingJSON }

// ValidJSON reports whether b is exactly one well-formed JSON value
// (surrounding whitespace allowed). The server checks client and API data
// with it once, at the edge; codecs then pass data through verbatim.
func ValidJSON(b []byte) bool { return len(b) > 0 && json.Valid(b) }

// ---------------------------------------------------------------------------
// Encoding

// jsonSafe marks the ASCII bytes that appear unescaped in a JSON string.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Control characters, quotes
// and backslashes are escaped, invalid UTF-8 becomes \ufffd, and U+2028 and
// U+2029 are escaped so the output is also valid JavaScript (as
// encoding/json does). HTML characters are not escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendRawJSON appends data verbatim, or null when it is empty.
func appendRawJSON(dst, data []byte) []byte {
	if len(data) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, data...)
}

// Objects are written with a separator byte that starts as '{' and becomes
// ',' after the first field, so optional fields need no bookkeeping.

func jkey(dst []byte, sep *byte, key string) []byte {
	dst = append(dst, *sep, '"')
	dst = append(dst, key...)
	*sep = ','
	return append(dst, '"', ':')
}

func jclose(dst []byte, sep byte) []byte {
	if sep == '{' {
		return append(dst, '{', '}')
	}
	return append(dst, '}')
}

func jstr(dst []byte, sep *byte, key, v string) []byte {
	return appendJSONString(jkey(dst, sep, key), v)
}

func juint(dst []byte, sep *byte, key string, v uint64) []byte {
	return strconv.AppendUint(jkey(dst, sep, key), v, 10)
}

func jint(dst []byte, sep *byte, key string, v int64) []byte {
	return strconv.AppendInt(jkey(dst, sep, key), v, 10)
}

func jbool(dst []byte, sep *byte, key string, v bool) []byte {
	return strconv.AppendBool(jkey(dst, sep, key), v)
}

func jraw(dst []byte, sep *byte, key string, v []byte) []byte {
	return appendRawJSON(jkey(dst, sep, key), v)
}

func appendJSONPosition(dst []byte, p *StreamPosition) []byte {
	sep := byte('{')
	dst = juint(dst, &sep, "offset", p.Offset)
	dst = jstr(dst, &sep, "epoch", p.Epoch)
	return jclose(dst, sep)
}

func appendJSONClientInfo(dst []byte, ci *ClientInfo) []byte {
	sep := byte('{')
	dst = jstr(dst, &sep, "client", ci.Client)
	if ci.User != "" {
		dst = jstr(dst, &sep, "user", ci.User)
	}
	if len(ci.ConnInfo) > 0 {
		dst = jraw(dst, &sep, "conn_info", ci.ConnInfo)
	}
	if len(ci.ChanInfo) > 0 {
		dst = jraw(dst, &sep, "chan_info", ci.ChanInfo)
	}
	return jclose(dst, sep)
}

// appendJSONPublicationFields writes a publication's fields into an object
// already opened by the caller (pushes are flat).
func appendJSONPublicationFields(dst []byte, sep *byte, p *Publication) []byte {
	if p.Offset != 0 {
		dst = juint(dst, sep, "offset", p.Offset)
	}
	dst = jraw(dst, sep, "data", p.Data)
	if p.Info != nil {
		dst = appendJSONClientInfo(jkey(dst, sep, "info"), p.Info)
	}
	if p.Time != 0 {
		dst = jint(dst, sep, "time", p.Time)
	}
	return dst
}

func appendJSONPublications(dst []byte, pubs []*Publication) []byte {
	dst = append(dst, '[')
	for i, p := range pubs {
		if i > 0 {
			dst = append(dst, ',')
		}
		if p == nil {
			p = &Publication{}
		}
		sep := byte('{')
		dst = appendJSONPublicationFields(dst, &sep, p)
		dst = jclose(dst, sep)
	}
	return append(dst, ']')
}

// AppendCommand appends c as a JSON command object. A pong without an id
// is written without "id"; methods without params get no "params".
func (JSONCodec) AppendCommand(dst []byte, c *Command) []byte {
	sep := byte('{')
	if c.ID != 0 || c.Method != MethodPong {
		dst = juint(dst, &sep, "id", uint64(c.ID))
	}
	dst = jstr(dst, &sep, "method", c.Method.String())
	switch c.Method {
	case MethodConnect:
		if p := c.Connect; p != nil {
			ps := byte('{')
			dst = jkey(dst, &sep, "params")
			if p.Token != "" {
				dst = jstr(dst, &ps, "token", p.Token)
			}
			if p.Name != "" {
				dst = jstr(dst, &ps, "name", p.Name)
			}
			if p.Version != "" {
				dst = jstr(dst, &ps, "version", p.Version)
			}
			dst = jclose(dst, ps)
		}
	case MethodSubscribe:
		if p := c.Subscribe; p != nil {
			ps := byte('{')
			dst = jkey(dst, &sep, "params")
			dst = jstr(dst, &ps, "channel", p.Channel)
			if p.Since != nil {
				dst = appendJSONPosition(jkey(dst, &ps, "since"), p.Since)
			}
			dst = jclose(dst, ps)
		}
	case MethodUnsubscribe, MethodPresence, MethodPresenceStats:
		var p *ChannelParams
		switch c.Method {
		case MethodUnsubscribe:
			p = c.Unsubscribe
		case MethodPresence:
			p = c.Presence
		default:
			p = c.PresenceStats
		}
		if p != nil {
			ps := byte('{')
			dst = jkey(dst, &sep, "params")
			dst = jstr(dst, &ps, "channel", p.Channel)
			dst = jclose(dst, ps)
		}
	case MethodPublish:
		if p := c.Publish; p != nil {
			ps := byte('{')
			dst = jkey(dst, &sep, "params")
			dst = jstr(dst, &ps, "channel", p.Channel)
			dst = jraw(dst, &ps, "data", p.Data)
			dst = jclose(dst, ps)
		}
	case MethodHistory:
		if p := c.History; p != nil {
			ps := byte('{')
			dst = jkey(dst, &sep, "params")
			dst = jstr(dst, &ps, "channel", p.Channel)
			if p.Limit != 0 {
				dst = jint(dst, &ps, "limit", int64(p.Limit))
			}
			if p.Since != nil {
				dst = appendJSONPosition(jkey(dst, &ps, "since"), p.Since)
			}
			if p.Reverse {
				dst = jbool(dst, &ps, "reverse", true)
			}
			dst = jclose(dst, ps)
		}
	case MethodRefresh:
		if p := c.Refresh; p != nil {
			ps := byte('{')
			dst = jkey(dst, &sep, "params")
			dst = jstr(dst, &ps, "token", p.Token)
			dst = jclose(dst, ps)
		}
	case MethodSend:
		if p := c.Send; p != nil {
			ps := byte('{')
			dst = jkey(dst, &sep, "params")
			dst = jstr(dst, &ps, "user", p.User)
			dst = jraw(dst, &ps, "data", p.Data)
			dst = jclose(dst, ps)
		}
	}
	return jclose(dst, sep)
}

// AppendReply appends r as a JSON reply. An error takes precedence over
// results; a reply with neither is written with "result": {}.
func (JSONCodec) AppendReply(dst []byte, r *Reply) []byte {
	sep := byte('{')
	dst = juint(dst, &sep, "id", uint64(r.ID))
	if e := r.Error; e != nil {
		es := byte('{')
		dst = jkey(dst, &sep, "error")
		dst = juint(dst, &es, "code", uint64(e.Code))
		dst = jstr(dst, &es, "message", e.Message)
		if e.Temporary {
			dst = jbool(dst, &es, "temporary", true)
		}
		dst = jclose(dst, es)
		return jclose(dst, sep)
	}
	dst = jkey(dst, &sep, "result")
	rs := byte('{')
	switch {
	case r.Connect != nil:
		v := r.Connect
		dst = jstr(dst, &rs, "client", v.Client)
		if v.Version != "" {
			dst = jstr(dst, &rs, "version", v.Version)
		}
		if v.Node != "" {
			dst = jstr(dst, &rs, "node", v.Node)
		}
		if v.Expires {
			dst = jbool(dst, &rs, "expires", true)
		}
		if v.TTL != 0 {
			dst = juint(dst, &rs, "ttl", uint64(v.TTL))
		}
		if v.Ping != 0 {
			dst = juint(dst, &rs, "ping", uint64(v.Ping))
		}
		if v.Pong {
			dst = jbool(dst, &rs, "pong", true)
		}
	case r.Subscribe != nil:
		v := r.Subscribe
		if v.Epoch != "" {
			dst = jstr(dst, &rs, "epoch", v.Epoch)
		}
		if v.Offset != 0 {
			dst = juint(dst, &rs, "offset", v.Offset)
		}
		if v.Recoverable {
			dst = jbool(dst, &rs, "recoverable", true)
		}
		if v.WasRecovering {
			dst = jbool(dst, &rs, "was_recovering", true)
		}
		if v.Recovered {
			dst = jbool(dst, &rs, "recovered", true)
		}
		if len(v.Publications) > 0 {
			dst = appendJSONPublications(jkey(dst, &rs, "publications"), v.Publications)
		}
	case r.Publish != nil:
		v := r.Publish
		if v.Offset != 0 {
			dst = juint(dst, &rs, "offset", v.Offset)
		}
		if v.Epoch != "" {
			dst = jstr(dst, &rs, "epoch", v.Epoch)
		}
	case r.Presence != nil:
		dst = jkey(dst, &rs, "presence")
		ks := byte('{')
		// Sorted keys make the output deterministic, as encoding/json's is.
		for _, k := range slices.Sorted(mapKeys(r.Presence.Presence)) {
			ci := r.Presence.Presence[k]
			if ci == nil {
				ci = &ClientInfo{}
			}
			dst = append(appendJSONString(append(dst, ks), k), ':')
			dst = appendJSONClientInfo(dst, ci)
			ks = ','
		}
		dst = jclose(dst, ks)
	case r.PresenceStats != nil:
		dst = juint(dst, &rs, "num_clients", uint64(r.PresenceStats.NumClients))
		dst = juint(dst, &rs, "num_users", uint64(r.PresenceStats.NumUsers))
	case r.History != nil:
		v := r.History
		dst = appendJSONPublications(jkey(dst, &rs, "publications"), v.Publications)
		dst = juint(dst, &rs, "offset", v.Offset)
		dst = jstr(dst, &rs, "epoch", v.Epoch)
	case r.Refresh != nil:
		v := r.Refresh
		if v.Expires {
			dst = jbool(dst, &rs, "expires", true)
		}
		if v.TTL != 0 {
			dst = juint(dst, &rs, "ttl", uint64(v.TTL))
		}
	}
	dst = jclose(dst, rs)
	return jclose(dst, sep)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// AppendPush appends p as a flat JSON push object. It does not allocate:
// this is the per-publication hot path.
func (JSONCodec) AppendPush(dst []byte, p *Push) []byte {
	sep := byte('{')
	dst = jstr(dst, &sep, "type", p.Type.String())
	switch p.Type {
	case PushPublication, PushJoin, PushLeave, PushUnsubscribe:
		dst = jstr(dst, &sep, "channel", p.Channel)
	}
	switch p.Type {
	case PushPublication:
		if p.Publication != nil {
			dst = appendJSONPublicationFields(dst, &sep, p.Publication)
		} else {
			dst = jraw(dst, &sep, "data", nil)
		}
	case PushJoin, PushLeave:
		ci := p.Join
		if p.Type == PushLeave {
			ci = p.Leave
		}
		if ci == nil {
			ci = &ClientInfo{}
		}
		dst = appendJSONClientInfo(jkey(dst, &sep, "info"), ci)
	case PushUnsubscribe:
		u := p.Unsubscribe
		if u == nil {
			u = &UnsubscribePush{}
		}
		dst = juint(dst, &sep, "code", uint64(u.Code))
		if u.Reason != "" {
			dst = jstr(dst, &sep, "reason", u.Reason)
		}
		if u.Resubscribe {
			dst = jbool(dst, &sep, "resubscribe", true)
		}
	case PushMessage:
		m := p.Message
		if m == nil {
			m = &Message{}
		}
		dst = jraw(dst, &sep, "data", m.Data)
		if m.Info != nil {
			dst = appendJSONClientInfo(jkey(dst, &sep, "info"), m.Info)
		}
	case PushDisconnect:
		d := p.Disconnect
		if d == nil {
			d = &Disconnect{}
		}
		dst = juint(dst, &sep, "code", uint64(d.Code))
		if d.Reason != "" {
			dst = jstr(dst, &sep, "reason", d.Reason)
		}
		dst = jbool(dst, &sep, "reconnect", d.Reconnect)
	}
	return jclose(dst, sep)
}

// ---------------------------------------------------------------------------
// Decoding

// Mirror types: the message types hold raw JSON in []byte fields, which
// encoding/json would treat as base64, so decoding goes through these.

type jsonClientInfo struct {
	Client   string          `json:"client"`
	User     string          `json:"user"`
	ConnInfo json.RawMessage `json:"conn_info"`
	ChanInfo json.RawMessage `json:"chan_info"`
}

func (j *jsonClientInfo) info() *ClientInfo {
	if j == nil {
		return nil
	}
	return &ClientInfo{Client: j.Client, User: j.User, ConnInfo: rawData(j.ConnInfo), ChanInfo: rawData(j.ChanInfo)}
}

type jsonPublication struct {
	Offset uint64          `json:"offset"`
	Data   json.RawMessage `json:"data"`
	Info   *jsonClientInfo `json:"info"`
	Time   int64           `json:"time"`
}

func (j *jsonPublication) publication() *Publication {
	if j == nil {
		return &Publication{}
	}
	return &Publication{Offset: j.Offset, Data: rawData(j.Data), Info: j.Info.info(), Time: j.Time}
}

func publications(js []*jsonPublication) []*Publication {
	if len(js) == 0 {
		return nil
	}
	out := make([]*Publication, len(js))
	for i, j := range js {
		out[i] = j.publication()
	}
	return out
}

// rawData returns a JSON data field as the message types hold it: nil for
// an absent field or JSON null, the raw bytes otherwise.
func rawData(m json.RawMessage) []byte {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return m
}

// jsonCommand is decoded in one pass: params is the union of every
// method's params fields.
type jsonCommand struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params *jsonParams     `json:"params"`
}

type jsonParams struct {
	Token   string          `json:"token"`
	Name    string          `json:"name"`
	Version string          `json:"version"`
	Channel string          `json:"channel"`
	User    string          `json:"user"`
	Since   *StreamPosition `json:"since"`
	Data    json.RawMessage `json:"data"`
	Limit   int             `json:"limit"`
	Reverse bool            `json:"reverse"`
}

// parseJSONID parses a command id: a JSON integer in [0, 2^32-1].
func parseJSONID(raw []byte) (uint32, bool) {
	if len(raw) == 0 || len(raw) > 10 {
		return 0, false
	}
	var v uint64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if v > math.MaxUint32 {
		return 0, false
	}
	return uint32(v), true
}

func isJSONNull(raw []byte) bool { return len(raw) == 0 || string(raw) == "null" }

// DecodeCommand decodes one JSON command. See Codec for the error
// contract: unknown methods give code ErrMethodNotFound; a missing id
// (except for pong), a missing method, or params of the wrong shape (not
// an object, or a known field of the wrong type) give ErrBadRequest.
// Unknown fields are ignored. As with encoding/json, keys match
// case-insensitively and the last of duplicate keys wins.
func (c JSONCodec) DecodeCommand(b []byte) (*Command, error) {
	if limit := maxSize(c.MaxMessageSize); len(b) > limit {
		return nil, tooLarge(len(b), limit)
	}
	if cmd, ok := decodeJSONCommandFast(b); ok {
		return cmd, nil
	}
	return decodeJSONCommandReflect(b)
}

// decodeJSONCommandReflect is the reference decoder, built on
// encoding/json. It handles every input; decodeJSONCommandFast handles the
// common shapes several times faster and defers to this one for anything
// else, including every error.
func decodeJSONCommandReflect(b []byte) (*Command, error) {
	var env jsonCommand
	err := json.Unmarshal(b, &env)
	var typeErr *json.UnmarshalTypeError
	if err != nil && !errors.As(err, &typeErr) {
		return nil, &CommandError{Code: ErrBadRequest, Message: "command is not a JSON object", Err: err}
	}
	// After a type error encoding/json has still filled every other
	// field, so the command can be answered if its id is intact.
	var id uint32
	idOK := true
	if !isJSONNull(env.ID) {
		id, idOK = parseJSONID(env.ID)
	}
	if !idOK {
		return nil, &CommandError{Code: ErrBadRequest, Message: "id is not an integer in [1, 4294967295]"}
	}
	m := MethodByName(env.Method)
	if env.Method == "" {
		return nil, &CommandError{ID: id, Code: ErrBadRequest, Message: "missing method", Err: err}
	}
	if m == MethodUnknown {
		return nil, &CommandError{ID: id, Code: ErrMethodNotFound, Message: "unknown method"}
	}
	if id == 0 && m != MethodPong {
		return nil, &CommandError{Method: m, Code: ErrBadRequest, Message: "missing id"}
	}
	if err != nil {
		return nil, &CommandError{ID: id, Method: m, Code: ErrBadRequest, Message: "invalid params", Err: err}
	}
	cmd := &Command{ID: id, Method: m}
	p := env.Params
	if p == nil {
		p = &jsonParams{}
	}
	switch m {
	case MethodConnect:
		cmd.Connect = &ConnectParams{Token: p.Token, Name: p.Name, Version: p.Version}
	case MethodSubscribe:
		cmd.Subscribe = &SubscribeParams{Channel: p.Channel, Since: p.Since}
	case MethodUnsubscribe:
		cmd.Unsubscribe = &ChannelParams{Channel: p.Channel}
	case MethodPresence:
		cmd.Presence = &ChannelParams{Channel: p.Channel}
	case MethodPresenceStats:
		cmd.PresenceStats = &ChannelParams{Channel: p.Channel}
	case MethodPublish:
		cmd.Publish = &PublishParams{Channel: p.Channel, Data: rawData(p.Data)}
	case MethodHistory:
		cmd.History = &HistoryParams{Channel: p.Channel, Limit: p.Limit, Since: p.Since, Reverse: p.Reverse}
	case MethodRefresh:
		cmd.Refresh = &RefreshParams{Token: p.Token}
	case MethodSend:
		cmd.Send = &SendParams{User: p.User, Data: rawData(p.Data)}
	}
	return cmd, nil
}

// jsonServerMessage is the union of a reply's and every push's fields.
type jsonServerMessage struct {
	ID          *uint32         `json:"id"`
	Result      json.RawMessage `json:"result"`
	Error       *Error          `json:"error"`
	Type        *string         `json:"type"`
	Channel     string          `json:"channel"`
	Offset      uint64          `json:"offset"`
	Data        json.RawMessage `json:"data"`
	Info        *jsonClientInfo `json:"info"`
	Time        int64           `json:"time"`
	Code        uint32          `json:"code"`
	Reason      string          `json:"reason"`
	Reconnect   bool            `json:"reconnect"`
	Resubscribe bool            `json:"resubscribe"`
}

type jsonSubscribeResult struct {
	Epoch         string             `json:"epoch"`
	Offset        uint64             `json:"offset"`
	Recoverable   bool               `json:"recoverable"`
	WasRecovering bool               `json:"was_recovering"`
	Recovered     bool               `json:"recovered"`
	Publications  []*jsonPublication `json:"publications"`
}

type jsonHistoryResult struct {
	Publications []*jsonPublication `json:"publications"`
	Offset       uint64             `json:"offset"`
	Epoch        string             `json:"epoch"`
}

type jsonPresenceResult struct {
	Presence map[string]*jsonClientInfo `json:"presence"`
}

func (c JSONCodec) decodeServer(b []byte) (*jsonServerMessage, error) {
	if limit := maxSize(c.MaxMessageSize); len(b) > limit {
		return nil, tooLarge(len(b), limit)
	}
	var m jsonServerMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, badMessage("malformed server message", err)
	}
	return &m, nil
}

// DecodeReply decodes a JSON reply; methodOf names the method of the
// command with the reply's id, which selects the result's shape.
func (c JSONCodec) DecodeReply(b []byte, methodOf func(id uint32) Method) (*Reply, error) {
	m, err := c.decodeServer(b)
	if err != nil {
		return nil, err
	}
	return m.reply(methodOf)
}

// DecodePush decodes a JSON push.
func (c JSONCodec) DecodePush(b []byte) (*Push, error) {
	m, err := c.decodeServer(b)
	if err != nil {
		return nil, err
	}
	return m.push()
}

// DecodeServerMessage decodes a reply (it has "id") or a push (it has
// "type").
func (c JSONCodec) DecodeServerMessage(b []byte, methodOf func(id uint32) Method) (*Reply, *Push, error) {
	m, err := c.decodeServer(b)
	if err != nil {
		return nil, nil, err
	}
	if m.Type != nil {
		p, err := m.push()
		return nil, p, err
	}
	r, err := m.reply(methodOf)
	return r, nil, err
}

var errNotReply = errors.New("not a reply")

func (m *jsonServerMessage) reply(methodOf func(id uint32) Method) (*Reply, error) {
	if m.ID == nil || *m.ID == 0 || m.Type != nil {
		return nil, badMessage("reply without id", errNotReply)
	}
	r := &Reply{ID: *m.ID}
	if m.Error != nil {
		r.Error = m.Error
		return r, nil
	}
	if len(m.Result) == 0 || m.Result[0] != '{' {
		return nil, badMessage("reply has neither an error nor a result object", errNotReply)
	}
	method := MethodUnknown
	if methodOf != nil {
		method = methodOf(r.ID)
	}
	var err error
	switch method {
	case MethodConnect:
		r.Connect = &ConnectResult{}
		err = json.Unmarshal(m.Result, r.Connect)
	case MethodSubscribe:
		var v jsonSubscribeResult
		err = json.Unmarshal(m.Result, &v)
		r.Subscribe = &SubscribeResult{Epoch: v.Epoch, Offset: v.Offset, Recoverable: v.Recoverable,
			WasRecovering: v.WasRecovering, Recovered: v.Recovered, Publications: publications(v.Publications)}
	case MethodPublish:
		r.Publish = &PublishResult{}
		err = json.Unmarshal(m.Result, r.Publish)
	case MethodPresence:
		var v jsonPresenceResult
		err = json.Unmarshal(m.Result, &v)
		r.Presence = &PresenceResult{}
		if len(v.Presence) > 0 {
			r.Presence.Presence = make(map[string]*ClientInfo, len(v.Presence))
			for k, ci := range v.Presence {
				if ci == nil {
					ci = &jsonClientInfo{}
				}
				r.Presence.Presence[k] = ci.info()
			}
		}
	case MethodPresenceStats:
		r.PresenceStats = &PresenceStatsResult{}
		err = json.Unmarshal(m.Result, r.PresenceStats)
	case MethodHistory:
		var v jsonHistoryResult
		err = json.Unmarshal(m.Result, &v)
		r.History = &HistoryResult{Publications: publications(v.Publications), Offset: v.Offset, Epoch: v.Epoch}
	case MethodRefresh:
		r.Refresh = &RefreshResult{}
		err = json.Unmarshal(m.Result, r.Refresh)
	case MethodUnsubscribe, MethodPing, MethodSend:
		// Empty result.
	default:
		return nil, badMessage("reply to an unknown command", errNotReply)
	}
	if err != nil {
		return nil, badMessage("malformed result", err)
	}
	return r, nil
}

var errNotPush = errors.New("not a push")

func (m *jsonServerMessage) push() (*Push, error) {
	if m.Type == nil {
		return nil, badMessage("push without type", errNotPush)
	}
	p := &Push{Type: PushTypeByName(*m.Type)}
	switch p.Type {
	case PushPublication:
		p.Channel = m.Channel
		p.Publication = &Publication{Offset: m.Offset, Data: rawData(m.Data), Info: m.Info.info(), Time: m.Time}
	case PushJoin, PushLeave:
		p.Channel = m.Channel
		ci := m.Info.info()
		if ci == nil {
			ci = &ClientInfo{}
		}
		if p.Type == PushJoin {
			p.Join = ci
		} else {
			p.Leave = ci
		}
	case PushUnsubscribe:
		p.Channel = m.Channel
		p.Unsubscribe = &UnsubscribePush{Code: m.Code, Reason: m.Reason, Resubscribe: m.Resubscribe}
	case PushMessage:
		p.Message = &Message{Data: rawData(m.Data), Info: m.Info.info()}
	case PushDisconnect:
		if m.Code > math.MaxUint16 {
			return nil, badMessage("disconnect code out of range", errNotPush)
		}
		p.Disconnect = &Disconnect{Code: uint16(m.Code), Reason: m.Reason, Reconnect: m.Reconnect}
	case PushPing:
	default:
		return nil, badMessage("unknown push type", errNotPush)
	}
	return p, nil
}
