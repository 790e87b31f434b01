package httpapi

// The publish path's bodies have one shape almost always: a publish
// request {"channel": "...", "data": ...}, or a batch of publish commands
// {"commands": [{"publish": {...}}, ...]}. Decoding them with
// encoding/json's reflection costs more than everything else the server
// does for a publication but writing it to the sockets, so these shapes
// are scanned by hand here.
//
// The scanners accept a strict subset of what the reference decoders
// (decode and decodeBatch) accept, and produce the same values for it:
// exact lowercase field names, each at most once, no escapes in field
// names or channel names, no null in place of an object, data nested at
// most maxScanDepth deep. Anything else, well-formed or not, is handed to
// the reference decoder, so every error the API answers, and every value
// it accepts outside this subset, comes from encoding/json as before.
// FuzzFastDecode checks the two against each other.

// maxScanDepth bounds the nesting of a data value the scanner validates
// itself; deeper values (up to encoding/json's own limit) take the
// reference path.
const maxScanDepth = 64

// isSpace reports JSON's insignificant whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// scanString returns the end of the JSON string starting at b[i] (a
// quote), or -1 when it is not one. Like encoding/json it checks escapes
// and refuses control characters but not UTF-8.
func scanString(b []byte, i int) int {
	i++ // opening quote
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return -1
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return -1
					}
				}
				i += 6
			default:
				return -1
			}
		case c < 0x20:
			return -1
		default:
			i++
		}
	}
	return -1
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanNumber returns the end of the JSON number starting at b[i], or -1.
func scanNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case isDigit(b[i]):
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i
}

// scanLiteral returns the end of lit at b[i], or -1.
func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// scanValue returns the end of the one JSON value starting at b[i] (no
// leading whitespace), or -1 when it is malformed or nested deeper than
// maxScanDepth. It allocates nothing.
func scanValue(b []byte, i int) int {
	var inArray uint64 // bit d: the container at depth d is an array
	depth := 0
	for {
		// A value is expected at i.
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if depth == maxScanDepth {
				return -1
			}
			if c == '[' {
				inArray |= 1 << depth
			} else {
				inArray &^= 1 << depth
			}
			depth++
			i = skipSpace(b, i+1)
			if i < len(b) && (c == '[' && b[i] == ']' || c == '{' && b[i] == '}') {
				depth-- // empty: the value ends here
				i++
				break
			}
			if c == '{' {
				if i = scanKey(b, i); i < 0 {
					return -1
				}
			}
			continue
		case c == '"':
			i = scanString(b, i)
		case c == '-' || isDigit(c):
			i = scanNumber(b, i)
		case c == 't':
			i = scanLiteral(b, i, "true")
		case c == 'f':
			i = scanLiteral(b, i, "false")
		case c == 'n':
			i = scanLiteral(b, i, "null")
		default:
			return -1
		}
		if i < 0 {
			return -1
		}
		// A value ended at i: close containers until one continues.
		for {
			if depth == 0 {
				return i
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return -1
			}
			array := inArray&(1<<(depth-1)) != 0
			if b[i] == ',' {
				i = skipSpace(b, i+1)
				if !array {
					if i = scanKey(b, i); i < 0 {
						return -1
					}
				}
				break
			}
			if array && b[i] == ']' || !array && b[i] == '}' {
				depth--
				i++
				continue
			}
			return -1
		}
	}
}

// scanKey scans an object member's name and colon at b[i] and returns
// where its value starts, or -1.
func scanKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = scanString(b, i); i < 0 {
		return -1
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipSpace(b, i+1)
}

// scanName scans a member name made of plain ASCII (no escapes) at b[i]
// and the colon after it, and returns the name and where its value
// starts; ok is false for anything else.
func scanName(b []byte, i int) (name []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	start := i + 1
	end := start
	for end < len(b) && b[end] != '"' {
		if c := b[end]; c < 0x20 || c > 0x7e || c == '\\' {
			return nil, 0, false
		}
		end++
	}
	if end >= len(b) {
		return nil, 0, false
	}
	i = skipSpace(b, end+1)
	if i >= len(b) || b[i] != ':' {
		return nil, 0, false
	}
	return b[start:end], skipSpace(b, i+1), true
}

// span is a range of a body: [start, end).
type span struct{ start, end int32 }

// publishSpans locates a publish request's fields in a body; a field
// that is absent has start -1.
type publishSpans struct {
	channel span // the string's content, without quotes
	data    span // the raw value
}

// scanPublish scans a publish request object at b[i] and returns where it
// ends; ok is false when it is outside the scanned subset.
func scanPublish(b []byte, i int) (p publishSpans, next int, ok bool) {
	p = publishSpans{channel: span{-1, -1}, data: span{-1, -1}}
	if i >= len(b) || b[i] != '{' {
		return p, 0, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return p, i + 1, true
	}
	for {
		name, j, ok := scanName(b, i)
		if !ok {
			return p, 0, false
		}
		switch string(name) {
		case "channel":
			if p.channel.start >= 0 || j >= len(b) || b[j] != '"' {
				return p, 0, false
			}
			start := j + 1
			end := start
			for end < len(b) && b[end] != '"' {
				if c := b[end]; c < 0x20 || c > 0x7e || c == '\\' {
					return p, 0, false
				}
				end++
			}
			if end >= len(b) {
				return p, 0, false
			}
			p.channel = span{int32(start), int32(end)}
			i = end + 1
		case "data":
			if p.data.start >= 0 {
				return p, 0, false
			}
			end := scanValue(b, j)
			if end < 0 {
				return p, 0, false
			}
			p.data = span{int32(j), int32(end)}
			i = end
		default:
			return p, 0, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return p, 0, false
		}
		switch b[i] {
		case '}':
			return p, i + 1, true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return p, 0, false
		}
	}
}

// fill sets req from the spans of body, copying: req keeps nothing of body.
func (p *publishSpans) fill(body []byte, req *publishRequest) {
	if p.channel.start >= 0 {
		req.Channel = string(body[p.channel.start:p.channel.end])
	}
	if p.data.start >= 0 {
		req.Data = append([]byte(nil), body[p.data.start:p.data.end]...)
	}
}

// maxScanBody is the largest body the scanners take: their offsets are
// 32 bits. Larger bodies (only with a MaxBodyBytes that large) take the
// reference path.
const maxScanBody = 1<<31 - 1

// scanPublishRequest decodes a publish request body as decode would, for
// bodies inside the scanned subset; ok is false for any other body.
func scanPublishRequest(body []byte, req *publishRequest) bool {
	if len(body) > maxScanBody {
		return false
	}
	p, i, ok := scanPublish(body, skipSpace(body, 0))
	if !ok || skipSpace(body, i) != len(body) {
		return false
	}
	p.fill(body, req)
	return true
}

// scanPublishBatch decodes a batch made only of publish commands, as
// decodeBatch would, for bodies inside the scanned subset; ok is false
// for any other body, including one with more than limit commands (so
// the reference decoder reports it). It allocates only once the whole
// body has been scanned and at most limit commands were found.
func scanPublishBatch(body []byte, limit int) (cmds []batchCommand, ok bool) {
	if len(body) > maxScanBody {
		return nil, false
	}
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, false
	}
	name, i, ok := scanName(body, skipSpace(body, i+1))
	if !ok || string(name) != "commands" || i >= len(body) || body[i] != '[' {
		return nil, false
	}
	// The spans of a usual batch fit this array on the stack.
	var buf [64]publishSpans
	spans := buf[:0]
	i = skipSpace(body, i+1)
	for {
		if len(spans) == limit || i >= len(body) || body[i] != '{' {
			return nil, false
		}
		name, j, ok := scanName(body, skipSpace(body, i+1))
		if !ok || string(name) != "publish" {
			return nil, false
		}
		p, j, ok := scanPublish(body, j)
		if !ok {
			return nil, false
		}
		if j = skipSpace(body, j); j >= len(body) || body[j] != '}' {
			return nil, false
		}
		spans = append(spans, p)
		i = skipSpace(body, j+1)
		if i >= len(body) {
			return nil, false
		}
		if body[i] == ']' {
			break
		}
		if body[i] != ',' {
			return nil, false
		}
		i = skipSpace(body, i+1)
	}
	i = skipSpace(body, i+1)
	if i >= len(body) || body[i] != '}' || skipSpace(body, i+1) != len(body) {
		return nil, false
	}
	cmds = make([]batchCommand, len(spans))
	reqs := make([]publishRequest, len(spans))
	for k := range spans {
		spans[k].fill(body, &reqs[k])
		cmds[k].Publish = &reqs[k]
	}
	return cmds, true
}
