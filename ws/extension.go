package ws

import (
	"strconv"
	"strings"
)

// Sec-WebSocket-Extensions grammar (RFC 6455 §9.1):
//
//	extension-list  = 1#extension
//	extension       = extension-token *( ";" extension-param )
//	extension-param = token [ "=" (token / quoted-string) ]
//
// Several header lines concatenate into one list. The parser below walks
// the list without allocating (except to unescape a quoted-string that
// contains a backslash) and reports each element; an element it cannot
// parse is reported as invalid and skipped up to the next top-level comma,
// so one bad offer never hides the others.

// maxExtensionParams bounds the parameters kept per element; an element
// with more is invalid (permessage-deflate defines four).
const maxExtensionParams = 8

type extensionParam struct {
	name     string
	value    string // unquoted
	hasValue bool
}

type extension struct {
	name    string
	params  [maxExtensionParams]extensionParam
	nparams int
	valid   bool // syntactically valid: tokens, quoted values that unescape to tokens
}

func (e *extension) paramList() []extensionParam { return e.params[:e.nparams] }

// forEachExtension calls fn for every element of the extension lists in
// values, in order, until fn returns false.
func forEachExtension(values []string, fn func(e *extension) bool) {
	var e extension
	for _, s := range values {
		i := 0
		for i < len(s) {
			i = skipOWS(s, i)
			if i < len(s) && s[i] == ',' { // empty list element
				i++
				continue
			}
			if i >= len(s) {
				break
			}
			e = extension{}
			var ok bool
			i, ok = parseExtension(s, i, &e)
			e.valid = ok
			if !ok {
				i = skipToComma(s, i)
			}
			if i < len(s) && s[i] == ',' {
				i++
			}
			if !fn(&e) {
				return
			}
		}
	}
}

// parseExtension parses one element starting at i; on success it returns
// the index of the terminating comma (or len(s)).
func parseExtension(s string, i int, e *extension) (int, bool) {
	start := i
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	if i == start {
		return i, false
	}
	e.name = s[start:i]
	for {
		i = skipOWS(s, i)
		if i >= len(s) || s[i] == ',' {
			return i, true
		}
		if s[i] != ';' {
			return i, false
		}
		i = skipOWS(s, i+1)
		start = i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		if i == start {
			return i, false
		}
		if e.nparams == maxExtensionParams {
			return i, false
		}
		p := &e.params[e.nparams]
		e.nparams++
		p.name = s[start:i]
		i = skipOWS(s, i)
		if i >= len(s) || s[i] != '=' {
			continue
		}
		i = skipOWS(s, i+1)
		p.hasValue = true
		if i < len(s) && s[i] == '"' {
			var ok bool
			p.value, i, ok = parseQuoted(s, i)
			// RFC 6455 §9.1: a quoted value must be a token once unescaped.
			if !ok || !isToken(p.value) {
				return i, false
			}
			continue
		}
		start = i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		if i == start {
			return i, false
		}
		p.value = s[start:i]
	}
}

// parseQuoted parses a quoted-string starting at the opening quote s[i]
// and returns its unescaped content and the index after the closing quote.
func parseQuoted(s string, i int) (string, int, bool) {
	i++ // opening quote
	start := i
	escaped := false
	for i < len(s) {
		switch c := s[i]; {
		case c == '"':
			v := s[start:i]
			if escaped {
				v = unescapeQuoted(v)
			}
			return v, i + 1, true
		case c == '\\':
			if i+1 >= len(s) {
				return "", i, false
			}
			escaped = true
			i += 2
		case (c < ' ' && c != '\t') || c == 0x7f:
			return "", i, false
		default:
			i++
		}
	}
	return "", i, false
}

func unescapeQuoted(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

func skipOWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// skipToComma returns the index of the next comma outside a quoted-string,
// or len(s).
func skipToComma(s string, i int) int {
	inQuote := false
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if inQuote {
				i++
			}
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				return i
			}
		}
	}
	return i
}

const (
	extPermessageDeflate    = "permessage-deflate"
	paramServerNoContext    = "server_no_context_takeover"
	paramClientNoContext    = "client_no_context_takeover"
	paramServerMaxWindowBit = "server_max_window_bits"
	paramClientMaxWindowBit = "client_max_window_bits"
)

// parseWindowBits parses a window bits value: 8 to 15 in decimal without
// leading zeros (RFC 7692 §7.1.2.1 and §7.1.2.2).
func parseWindowBits(v string) (int, bool) {
	if len(v) == 0 || len(v) > 2 || v[0] == '0' || v[0] == '+' || v[0] == '-' {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 8 || n > 15 {
		return 0, false
	}
	return n, true
}

// deflateOffer is one permessage-deflate element with its parameters
// checked: no unknown or duplicate parameters, values where required and
// valid (RFC 7692 §7.1).
type deflateOffer struct {
	serverNoContext  bool
	clientNoContext  bool
	serverMaxBits    int  // 0: absent
	clientMaxBits    bool // parameter present
	clientMaxBitsVal int  // 0: present without a value (or absent)
}

// checkDeflate validates the parameters of a permessage-deflate element.
// serverResponse applies the stricter rule for responses: a
// client_max_window_bits there must carry a value (§7.1.2.2).
func checkDeflate(e *extension, serverResponse bool) (deflateOffer, bool) {
	var o deflateOffer
	if !e.valid || !strings.EqualFold(e.name, extPermessageDeflate) {
		return o, false
	}
	var seenSMWB bool
	for _, p := range e.paramList() {
		switch strings.ToLower(p.name) {
		case paramServerNoContext:
			if o.serverNoContext || p.hasValue {
				return o, false
			}
			o.serverNoContext = true
		case paramClientNoContext:
			if o.clientNoContext || p.hasValue {
				return o, false
			}
			o.clientNoContext = true
		case paramServerMaxWindowBit:
			if seenSMWB || !p.hasValue {
				return o, false
			}
			seenSMWB = true
			n, ok := parseWindowBits(p.value)
			if !ok {
				return o, false
			}
			o.serverMaxBits = n
		case paramClientMaxWindowBit:
			if o.clientMaxBits {
				return o, false
			}
			o.clientMaxBits = true
			if !p.hasValue {
				if serverResponse {
					return o, false
				}
				continue
			}
			n, ok := parseWindowBits(p.value)
			if !ok {
				return o, false
			}
			o.clientMaxBitsVal = n
		default:
			return o, false
		}
	}
	return o, true
}

// deflateResponse is what a server answers to the offer it accepted.
type deflateResponse struct {
	serverNoContext bool
	clientNoContext bool
	serverMaxBits   int // 0: omit
	clientMaxBits   int // 0: omit
}

func (r *deflateResponse) appendTo(dst []byte) []byte {
	dst = append(dst, extPermessageDeflate...)
	if r.serverNoContext {
		dst = append(dst, "; "+paramServerNoContext...)
	}
	if r.clientNoContext {
		dst = append(dst, "; "+paramClientNoContext...)
	}
	if r.serverMaxBits != 0 {
		dst = append(dst, "; "+paramServerMaxWindowBit+"="...)
		dst = strconv.AppendInt(dst, int64(r.serverMaxBits), 10)
	}
	if r.clientMaxBits != 0 {
		dst = append(dst, "; "+paramClientMaxWindowBit+"="...)
		dst = strconv.AppendInt(dst, int64(r.clientMaxBits), 10)
	}
	return dst
}

// compressionDefaults returns the effective threshold, level and window
// bits of opts.
func compressionDefaults(opts *CompressionOptions) (threshold, level, maxBits int) {
	threshold, level, maxBits = opts.Threshold, opts.Level, opts.MaxWindowBits
	if threshold <= 0 {
		threshold = 256
	}
	if level < 1 || level > 9 {
		level = 1
	}
	if maxBits == 0 || maxBits > 15 {
		maxBits = 15
	}
	if maxBits < 8 {
		maxBits = 8
	}
	return threshold, level, maxBits
}

// negotiateDeflate accepts the first acceptable permessage-deflate offer
// among the request's Sec-WebSocket-Extensions values (RFC 7692 §5, §7.1)
// and returns the response to send and the parameters seen from the
// server. ok is false when every offer is declined (or none was made); the
// handshake then proceeds without compression.
//
// Every window size a client may ask for is honoured: the server
// compresses with a window of 2^server_max_window_bits bytes (the flate
// compressor supports windows smaller than 32 KiB), so an offer is never
// declined for its server_max_window_bits. The decompressor accepts any
// window up to 32 KiB, so client_max_window_bits is only sent back when
// CompressionOptions.MaxWindowBits asks to limit the client.
func negotiateDeflate(values []string, opts *CompressionOptions) (resp deflateResponse, params deflateParams, ok bool) {
	threshold, level, maxBits := compressionDefaults(opts)
	forEachExtension(values, func(e *extension) bool {
		offer, valid := checkDeflate(e, false)
		if !valid {
			return true // decline this offer, try the next one
		}
		writeBits := maxBits
		if offer.serverMaxBits != 0 && offer.serverMaxBits < writeBits {
			writeBits = offer.serverMaxBits
		}
		if offer.serverMaxBits != 0 || writeBits < 15 {
			// Required when offered (§7.1.2.1); allowed otherwise to tell
			// the client our window is smaller.
			resp.serverMaxBits = writeBits
		}
		readBits := 15
		if offer.clientMaxBits && maxBits < 15 {
			readBits = maxBits
			if offer.clientMaxBitsVal != 0 && offer.clientMaxBitsVal < readBits {
				readBits = offer.clientMaxBitsVal
			}
			resp.clientMaxBits = readBits
		}
		// §7.1.1.1: server_no_context_takeover must be honoured when
		// offered; §7.1.1.2: the server may send client_no_context_takeover
		// even if not offered.
		resp.serverNoContext = offer.serverNoContext || !opts.ContextTakeover
		resp.clientNoContext = offer.clientNoContext || !opts.ContextTakeover
		params = deflateParams{
			writeNoContextTakeover: resp.serverNoContext,
			readNoContextTakeover:  resp.clientNoContext,
			writeWindowBits:        writeBits,
			readWindowBits:         readBits,
			threshold:              threshold,
			level:                  level,
		}
		ok = true
		return false
	})
	return resp, params, ok
}

// appendDeflateOffer appends the client's permessage-deflate offer for
// opts: client_max_window_bits always (we can compress with any window
// the server asks for), and, when this side wants them, the window limit
// and no-context-takeover parameters.
func appendDeflateOffer(dst []byte, opts *CompressionOptions) []byte {
	_, _, maxBits := compressionDefaults(opts)
	dst = append(dst, extPermessageDeflate...)
	if !opts.ContextTakeover {
		dst = append(dst, "; "+paramClientNoContext+"; "+paramServerNoContext...)
	}
	dst = append(dst, "; "+paramClientMaxWindowBit...)
	if maxBits < 15 {
		dst = append(dst, '=')
		dst = strconv.AppendInt(dst, int64(maxBits), 10)
		dst = append(dst, "; "+paramServerMaxWindowBit+"="...)
		dst = strconv.AppendInt(dst, int64(maxBits), 10)
	}
	return dst
}

// acceptDeflateResponse checks the server's Sec-WebSocket-Extensions
// against the offer appendDeflateOffer made for opts (RFC 7692 §5, §7.1)
// and returns the parameters seen from the client. A nil params with a
// nil error means the server declined compression.
func acceptDeflateResponse(values []string, opts *CompressionOptions) (*deflateParams, error) {
	var (
		count int
		resp  deflateOffer
		valid bool
	)
	forEachExtension(values, func(e *extension) bool {
		count++
		if count == 1 {
			resp, valid = checkDeflate(e, true)
		}
		return count < 2 // a second element is an error anyway
	})
	if count == 0 {
		return nil, nil
	}
	if opts == nil || !valid || count > 1 {
		return nil, ErrBadExtension
	}
	threshold, level, maxBits := compressionDefaults(opts)
	p := &deflateParams{
		writeNoContextTakeover: resp.clientNoContext || !opts.ContextTakeover,
		readNoContextTakeover:  resp.serverNoContext,
		writeWindowBits:        maxBits,
		readWindowBits:         15,
		threshold:              threshold,
		level:                  level,
	}
	if resp.serverMaxBits != 0 {
		// §7.1.2.1: the server may only lower what we asked for.
		if maxBits < 15 && resp.serverMaxBits > maxBits {
			return nil, ErrBadExtension
		}
		p.readWindowBits = resp.serverMaxBits
	}
	if resp.clientMaxBitsVal != 0 && resp.clientMaxBitsVal < p.writeWindowBits {
		p.writeWindowBits = resp.clientMaxBitsVal
	}
	return p, nil
}
