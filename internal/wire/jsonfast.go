package wire

import (
	"math"
	"slices"
	"unicode/utf8"
)

// decodeJSONCommandFast decodes the common shapes of a JSON command
// without reflection: exact lower-case keys from the protocol, each at
// most once, values of the expected types, strings without escapes. It
// validates the whole input as it goes (every value, including data and
// unknown nesting, up to maxFastDepth) and reports false for anything
// else, including every invalid command; the caller then falls back to
// decodeJSONCommandReflect, so results and errors are always those of
// encoding/json. FuzzDecodeCommandJSON checks the two agree.
func decodeJSONCommandFast(b []byte) (*Command, bool) {
	s := jscan{b: b}
	s.ws()
	if !s.eat('{') {
		return nil, false
	}
	const (
		seenID = 1 << iota
		seenMethod
		seenParams
	)
	var (
		seen   int
		idRaw  []byte
		method Method
		params []byte
	)
	for first := true; !s.objectEnd(&first); {
		key, ok := s.member()
		if !ok {
			return nil, false
		}
		var bit int
		switch string(key) {
		case "id":
			bit = seenID
			idRaw, ok = s.value(1)
		case "method":
			bit = seenMethod
			var name []byte
			name, ok = s.plainString()
			method = MethodByName(string(name))
		case "params":
			bit = seenParams
			params, ok = s.value(1)
		default:
			return nil, false
		}
		if !ok || seen&bit != 0 {
			return nil, false
		}
		seen |= bit
	}
	if !s.atEnd() {
		return nil, false
	}
	if method == MethodUnknown {
		return nil, false
	}
	var id uint32
	if !isJSONNull(idRaw) {
		var ok bool
		if id, ok = parseJSONID(idRaw); !ok {
			return nil, false
		}
	}
	if id == 0 && method != MethodPong {
		return nil, false
	}
	var p jsonFastParams
	if !isJSONNull(params) {
		if params[0] != '{' || !p.parse(params) {
			return nil, false
		}
	}
	if method == MethodPublish {
		// The hot command: the command and its params in one allocation.
		cp := &struct {
			cmd Command
			p   PublishParams
		}{cmd: Command{ID: id, Method: method}, p: PublishParams{Channel: p.channel, Data: p.data()}}
		cp.cmd.Publish = &cp.p
		return &cp.cmd, true
	}
	// Every connection starts with connect and subscribe: each is one
	// allocation too, whose size class (128 and 112 bytes) long-lived
	// per-connection objects do not use, so the garbage of a crowd that
	// connects leaves no holes among them.
	switch method {
	case MethodConnect:
		cp := &struct {
			cmd Command
			p   ConnectParams
		}{cmd: Command{ID: id, Method: method}, p: ConnectParams{Token: p.token, Name: p.name, Version: p.version}}
		cp.cmd.Connect = &cp.p
		return &cp.cmd, true
	case MethodSubscribe:
		cp := &struct {
			cmd Command
			p   SubscribeParams
		}{cmd: Command{ID: id, Method: method}, p: SubscribeParams{Channel: p.channel, Since: p.since}}
		cp.cmd.Subscribe = &cp.p
		return &cp.cmd, true
	}
	cmd := &Command{ID: id, Method: method}
	switch method {
	case MethodUnsubscribe:
		cmd.Unsubscribe = &ChannelParams{Channel: p.channel}
	case MethodPresence:
		cmd.Presence = &ChannelParams{Channel: p.channel}
	case MethodPresenceStats:
		cmd.PresenceStats = &ChannelParams{Channel: p.channel}
	case MethodHistory:
		cmd.History = &HistoryParams{Channel: p.channel, Limit: p.limit, Since: p.since, Reverse: p.reverse}
	case MethodRefresh:
		cmd.Refresh = &RefreshParams{Token: p.token}
	case MethodSend:
		cmd.Send = &SendParams{User: p.user, Data: p.data()}
	}
	return cmd, true
}

// jsonFastParams is the union of every method's params, as in jsonParams.
type jsonFastParams struct {
	token, name, version, channel, user string
	since                               *StreamPosition
	rawData                             []byte // aliases the input
	limit                               int
	reverse                             bool
}

func (p *jsonFastParams) data() []byte {
	if isJSONNull(p.rawData) {
		return nil
	}
	return slices.Clone(p.rawData)
}

// parse reads a params object already validated by jscan.value.
func (p *jsonFastParams) parse(obj []byte) bool {
	s := jscan{b: obj}
	s.eat('{')
	var seen int
	for first := true; !s.objectEnd(&first); {
		key, ok := s.member()
		if !ok {
			return false
		}
		var bit int
		switch string(key) {
		case "token":
			bit = 1 << 0
			p.token, ok = s.stringValue()
		case "name":
			bit = 1 << 1
			p.name, ok = s.stringValue()
		case "version":
			bit = 1 << 2
			p.version, ok = s.stringValue()
		case "channel":
			bit = 1 << 3
			p.channel, ok = s.stringValue()
		case "user":
			bit = 1 << 4
			p.user, ok = s.stringValue()
		case "since":
			bit = 1 << 5
			var v []byte
			v, ok = s.value(2)
			if ok && !isJSONNull(v) {
				p.since = &StreamPosition{}
				ok = v[0] == '{' && parsePosition(v, p.since)
			}
		case "data":
			bit = 1 << 6
			p.rawData, ok = s.value(2)
		case "limit":
			bit = 1 << 7
			var v []byte
			if v, ok = s.value(2); ok {
				p.limit, ok = parseJSONInt(v)
			}
		case "reverse":
			bit = 1 << 8
			var v []byte
			v, ok = s.value(2)
			switch string(v) {
			case "true":
				p.reverse = true
			case "false":
			default:
				ok = false
			}
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
	return true
}

func parsePosition(obj []byte, pos *StreamPosition) bool {
	s := jscan{b: obj}
	s.eat('{')
	var seen int
	for first := true; !s.objectEnd(&first); {
		key, ok := s.member()
		if !ok {
			return false
		}
		var bit int
		switch string(key) {
		case "offset":
			bit = 1
			var v []byte
			if v, ok = s.value(3); ok {
				pos.Offset, ok = parseJSONUint(v)
			}
		case "epoch":
			bit = 2
			pos.Epoch, ok = s.stringValue()
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
	return true
}

// parseJSONUint parses a JSON number that is a non-negative integer
// fitting uint64.
func parseJSONUint(raw []byte) (uint64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseJSONInt parses a JSON number that is an integer fitting int.
func parseJSONInt(raw []byte) (int, bool) {
	neg := len(raw) > 0 && raw[0] == '-'
	if neg {
		raw = raw[1:]
	}
	u, ok := parseJSONUint(raw)
	if !ok {
		return 0, false
	}
	if neg {
		if u > uint64(math.MaxInt)+1 {
			return 0, false
		}
		return int(-int64(u)), true
	}
	if u > math.MaxInt {
		return 0, false
	}
	return int(u), true
}

// maxFastDepth bounds the nesting the fast decoder walks; deeper input
// goes to encoding/json (which allows 10000 levels).
const maxFastDepth = 256

// jscan is a validating JSON scanner. Its methods report false for input
// that is not valid JSON or that the fast decoder does not handle; a
// false result only ever means "let encoding/json decide".
type jscan struct {
	b   []byte
	pos int
}

func (s *jscan) ws() {
	b, i := s.b, s.pos
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	s.pos = i
}

func (s *jscan) eat(c byte) bool {
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

func (s *jscan) atEnd() bool {
	s.ws()
	return s.pos == len(s.b)
}

// objectEnd is the loop condition over an object's members, called after
// the opening brace: it consumes the separating comma or the closing
// brace. A missing separator leaves the scanner on a byte that member
// rejects.
func (s *jscan) objectEnd(first *bool) bool {
	s.ws()
	if s.eat('}') {
		return true
	}
	if !*first {
		if !s.eat(',') {
			s.pos = len(s.b) // member fails at the end of input
			return false
		}
		s.ws()
	}
	*first = false
	return false
}

// member reads a key without escapes and the colon after it.
func (s *jscan) member() ([]byte, bool) {
	key, ok := s.plainString()
	if !ok {
		return nil, false
	}
	s.ws()
	if !s.eat(':') {
		return nil, false
	}
	s.ws()
	return key, true
}

// plainString reads a string token without escapes and returns its
// contents.
func (s *jscan) plainString() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	b, start := s.b, s.pos
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			s.pos = i + 1
			return b[start:i], true
		case c == '\\' || c < 0x20:
			s.pos = i
			return nil, false
		}
	}
	s.pos = len(b)
	return nil, false
}

// stringValue reads a string field; non-ASCII must be valid UTF-8 so the
// result equals what encoding/json would produce.
func (s *jscan) stringValue() (string, bool) {
	v, ok := s.plainString()
	if !ok || !utf8.Valid(v) {
		return "", false
	}
	return string(v), true
}

// value validates one value at the given depth and returns its bytes.
func (s *jscan) value(depth int) ([]byte, bool) {
	start := s.pos
	ok := s.skipValue(depth)
	return s.b[start:s.pos], ok
}

func (s *jscan) skipValue(depth int) bool {
	if s.pos >= len(s.b) {
		return false
	}
	switch c := s.b[s.pos]; {
	case c == '"':
		return s.skipString()
	case c == '{':
		if depth >= maxFastDepth {
			return false
		}
		s.pos++
		for first := true; !s.objectEnd(&first); {
			s.ws()
			if s.pos >= len(s.b) || s.b[s.pos] != '"' || !s.skipString() {
				return false
			}
			s.ws()
			if !s.eat(':') {
				return false
			}
			s.ws()
			if !s.skipValue(depth + 1) {
				return false
			}
		}
		return true
	case c == '[':
		if depth >= maxFastDepth {
			return false
		}
		s.pos++
		s.ws()
		if s.eat(']') {
			return true
		}
		for {
			s.ws()
			if !s.skipValue(depth + 1) {
				return false
			}
			s.ws()
			if s.eat(']') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.skipNumber()
	}
	return false
}

func (s *jscan) literal(lit string) bool {
	if len(s.b)-s.pos < len(lit) || string(s.b[s.pos:s.pos+len(lit)]) != lit {
		return false
	}
	s.pos += len(lit)
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipNumber accepts -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jscan) skipNumber() bool {
	s.eat('-')
	switch {
	case s.eat('0'):
	case s.pos < len(s.b) && isDigit(s.b[s.pos]):
		for s.pos < len(s.b) && isDigit(s.b[s.pos]) {
			s.pos++
		}
	default:
		return false
	}
	if s.eat('.') {
		if !s.digits() {
			return false
		}
	}
	if s.eat('e') || s.eat('E') {
		if !s.eat('+') {
			s.eat('-')
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

func (s *jscan) digits() bool {
	start := s.pos
	for s.pos < len(s.b) && isDigit(s.b[s.pos]) {
		s.pos++
	}
	return s.pos > start
}

// skipString validates a string token: no raw control characters, and
// only the escapes JSON defines. Bytes of invalid UTF-8 are allowed, as
// encoding/json allows them (and replaces them when decoding).
func (s *jscan) skipString() bool {
	s.pos++ // opening quote
	for s.pos < len(s.b) {
		// Runs of plain bytes, the bulk of most strings, in a tight loop
		// on locals.
		b, i := s.b, s.pos
		for i < len(b) && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\' {
			i++
		}
		s.pos = i
		if i == len(b) {
			return false
		}
		c := b[i]
		switch {
		case c == '"':
			s.pos++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if s.pos+1 >= len(s.b) {
				return false
			}
			switch s.b[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if len(s.b)-s.pos < 6 {
					return false
				}
				for _, h := range s.b[s.pos+2 : s.pos+6] {
					if !isDigit(h) && (h|0x20 < 'a' || h|0x20 > 'f') {
						return false
					}
				}
				s.pos += 6
			default:
				return false
			}
			continue
		}
		s.pos++
	}
	return false
}
