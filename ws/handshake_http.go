package ws

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// This file parses the HTTP/1.1 heads of the opening handshake (RFC 9112
// §2-5) without net/http: AcceptConn reads requests with it and Dial
// responses. The whole head is first checked and its header names
// canonicalised in place, then copied into a single string that every
// name and value is a substring of, so a head costs one string, one
// header map and one []string backing array.

// findHeadEnd returns the length of the head in b (request or status line
// and header fields, up to and including the empty line), or -1 when b
// does not yet contain the empty line. A bare LF is accepted as a line
// terminator (RFC 9112 §2.2). from is where the previous call stopped
// scanning (0 the first time).
func findHeadEnd(b []byte, from int) int {
	i := max(from-2, 0)
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// readHead reads from r into buf until buf holds a complete head and
// returns the total bytes read and the head's length. It fails with
// ErrHeaderTooLarge when buf fills first.
func readHead(r io.Reader, buf []byte) (n, headLen int, err error) {
	return continueHead(r, buf, 0)
}

// continueHead is readHead when buf[:n] already holds the first bytes.
func continueHead(r io.Reader, buf []byte, n int) (int, int, error) {
	if n > 0 {
		if end := findHeadEnd(buf[:n], 0); end >= 0 {
			return n, end, nil
		}
	}
	for {
		if n == len(buf) {
			return n, -1, ErrHeaderTooLarge
		}
		m, err := r.Read(buf[n:])
		prev := n
		n += m
		if m > 0 {
			if end := findHeadEnd(buf[:n], prev); end >= 0 {
				return n, end, nil
			}
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, -1, err
		}
	}
}

// nextLine returns the line of s starting at i without its terminator
// (LF or CRLF) and the index after it; ok is false without an LF.
func nextLine[T string | []byte](s T, i int) (line T, next int, ok bool) {
	for j := i; j < len(s); j++ {
		if s[j] == '\n' {
			end := j
			if end > i && s[end-1] == '\r' {
				end--
			}
			return s[i:end], j + 1, true
		}
	}
	return s[len(s):], len(s), false
}

// validFieldValueByte: VCHAR, obs-text, SP and HTAB (RFC 9110 §5.5).
func validFieldValueByte(c byte) bool {
	return c >= ' ' && c != 0x7f || c == '\t'
}

// canonicalizeName rewrites a token header name in place in the form of
// textproto.CanonicalMIMEHeaderKey: upper case at the start and after each
// hyphen, lower case elsewhere.
func canonicalizeName(b []byte) {
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
}

// scanHead validates head (as returned by readHead: lines up to and
// including the empty line) and rewrites its header names to their
// canonical form in place. The start line and the fields are
// head[start:end]; fields is the number of field lines.
func scanHead(head []byte) (start, end, fields int, err error) {
	// RFC 9112 §2.2: ignore empty lines before the request line.
	for start < len(head) {
		line, next, _ := nextLine(head, start)
		if len(line) != 0 {
			break
		}
		start = next
	}
	firstLine, i, ok := nextLine(head, start)
	if !ok || len(firstLine) == 0 {
		return 0, 0, 0, fmt.Errorf("%w: missing start line", ErrMalformedHTTP)
	}
	for _, c := range firstLine {
		if !validFieldValueByte(c) || c == '\t' {
			return 0, 0, 0, fmt.Errorf("%w: invalid byte in start line", ErrMalformedHTTP)
		}
	}
	for {
		line, next, ok := nextLine(head, i)
		if !ok {
			return 0, 0, 0, fmt.Errorf("%w: unterminated header", ErrMalformedHTTP)
		}
		i = next
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// RFC 9112 §5.2: obsolete line folding is rejected.
			return 0, 0, 0, fmt.Errorf("%w: folded header line", ErrMalformedHTTP)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, 0, 0, fmt.Errorf("%w: header line without a name", ErrMalformedHTTP)
		}
		for _, c := range line[:colon] {
			if !isTokenChar(c) { // also rejects space before the colon (RFC 9112 §5.1)
				return 0, 0, 0, fmt.Errorf("%w: invalid header name", ErrMalformedHTTP)
			}
		}
		for _, c := range line[colon+1:] {
			if !validFieldValueByte(c) {
				return 0, 0, 0, fmt.Errorf("%w: invalid byte in header value", ErrMalformedHTTP)
			}
		}
		canonicalizeName(line[:colon])
		fields++
	}
	return start, i, fields, nil
}

// headerField is one field line of a head checked by scanHead: its
// canonical name and its value without surrounding whitespace.
type headerField struct{ name, value string }

// nextField returns the field line of a scanned head s starting at i and
// the index after it; ok is false at the empty line that ends the head.
func nextField(s string, i int) (f headerField, next int, ok bool) {
	line, next, _ := nextLine(s, i)
	if line == "" {
		return f, next, false
	}
	colon := 0
	for line[colon] != ':' {
		colon++
	}
	return headerField{name: line[:colon], value: trimOWS(line[colon+1:])}, next, true
}

// parseHead validates head (see scanHead) and returns its first line and
// header fields, with canonical names. The head is copied into one string
// that every name and value is a substring of.
func parseHead(head []byte) (first string, header http.Header, err error) {
	start, end, fields, err := scanHead(head)
	if err != nil {
		return "", nil, err
	}
	s := string(head[start:end])
	first, i, _ := nextLine(s, 0)
	header = make(http.Header, fields)
	backing := make([]string, fields)
	for n := 0; ; n++ {
		var f headerField
		var ok bool
		if f, i, ok = nextField(s, i); !ok {
			break
		}
		if prev, ok := header[f.name]; ok {
			header[f.name] = append(prev, f.value)
			continue
		}
		backing[n] = f.value
		header[f.name] = backing[n : n+1 : n+1]
	}
	return first, header, nil
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parseHTTPVersion parses "HTTP/x.y" with single digits (RFC 9112 §2.3).
func parseHTTPVersion(v string) (major, minor int, ok bool) {
	if len(v) != 8 || v[:5] != "HTTP/" || v[6] != '.' {
		return 0, 0, false
	}
	if v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

// requestLine is the request line of a handshake head.
type requestLine struct {
	method, target, proto string
	major, minor          int
}

// parseRequestLine splits and checks a request line (RFC 9112 §3): a
// token method, an origin-form or absolute-form target (the only forms
// that make sense for a GET) and an HTTP version.
func parseRequestLine(first string) (requestLine, error) {
	var rl requestLine
	// request-line = method SP request-target SP HTTP-version
	sp1 := indexByteString(first, ' ')
	if sp1 <= 0 {
		return rl, fmt.Errorf("%w: bad request line", ErrMalformedHTTP)
	}
	method, rest := first[:sp1], first[sp1+1:]
	sp2 := indexByteString(rest, ' ')
	if sp2 <= 0 {
		return rl, fmt.Errorf("%w: bad request line", ErrMalformedHTTP)
	}
	target, proto := rest[:sp2], rest[sp2+1:]
	if !isToken(method) {
		return rl, fmt.Errorf("%w: bad method", ErrMalformedHTTP)
	}
	major, minor, ok := parseHTTPVersion(proto)
	if !ok {
		return rl, fmt.Errorf("%w: bad HTTP version", ErrMalformedHTTP)
	}
	if target[0] != '/' && !hasSchemePrefix(target) {
		return rl, fmt.Errorf("%w: bad request target", ErrMalformedHTTP)
	}
	return requestLine{method: method, target: target, proto: proto, major: major, minor: minor}, nil
}

// validOriginForm reports whether url.ParseRequestURI accepts target, an
// origin-form request target ("/path?query") with no control bytes or
// spaces (scanHead and parseRequestLine checked those): its only further
// requirement is that every '%' in the path is followed by two hex
// digits. It lets the handshake check a target without building a URL.
func validOriginForm(target string) bool {
	for i := 0; i < len(target) && target[i] != '?'; i++ {
		if target[i] != '%' {
			continue
		}
		if i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2]) {
			return false
		}
		i += 2
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// parseRequest builds the *http.Request of a handshake head read by
// AcceptConn. Errors wrap ErrMalformedHTTP and are answered with 400.
func parseRequest(head []byte) (*http.Request, error) {
	first, header, err := parseHead(head)
	if err != nil {
		return nil, err
	}
	rl, err := parseRequestLine(first)
	if err != nil {
		return nil, err
	}
	u, err := url.ParseRequestURI(rl.target)
	if err != nil {
		return nil, fmt.Errorf("%w: bad request target: %w", ErrMalformedHTTP, err)
	}
	r := &http.Request{
		Method:     rl.method,
		URL:        u,
		Proto:      rl.proto,
		ProtoMajor: rl.major,
		ProtoMinor: rl.minor,
		Header:     header,
		Body:       http.NoBody,
		RequestURI: rl.target,
	}
	// As net/http does: Host moves from the header to r.Host, and an
	// absolute-form target overrides it (RFC 9112 §3.2.2).
	if hosts := header[hdrHost]; len(hosts) > 0 {
		if len(hosts) > 1 {
			return nil, fmt.Errorf("%w: several Host headers", ErrMalformedHTTP)
		}
		r.Host = hosts[0]
		delete(header, hdrHost)
	}
	if u.Host != "" {
		r.Host = u.Host
	}
	if cl := header[hdrContentLength]; len(cl) > 0 {
		n, err := parseContentLength(cl)
		if err != nil {
			return nil, err
		}
		r.ContentLength = n
	}
	if te := header[hdrTransferEnc]; len(te) > 0 {
		r.TransferEncoding = te
		r.ContentLength = -1
	}
	return r, nil
}

// parseContentLength parses the values of a request's Content-Length
// fields: one non-negative decimal number.
func parseContentLength(values []string) (int64, error) {
	if len(values) != 1 {
		return 0, fmt.Errorf("%w: bad Content-Length", ErrMalformedHTTP)
	}
	n, err := strconv.ParseInt(values[0], 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: bad Content-Length", ErrMalformedHTTP)
	}
	return n, nil
}

func indexByteString(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func hasSchemePrefix(s string) bool {
	for _, p := range [...]string{"http://", "https://", "ws://", "wss://"} {
		if len(s) >= len(p) && equalFoldASCII(s[:len(p)], p) {
			return true
		}
	}
	return false
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// parseResponse builds the *http.Response of a handshake response head
// read by Dial (RFC 9112 §4). The body is left to the caller.
func parseResponse(head []byte) (*http.Response, error) {
	first, header, err := parseHead(head)
	if err != nil {
		return nil, err
	}
	// status-line = HTTP-version SP status-code SP [ reason-phrase ]
	sp := indexByteString(first, ' ')
	if sp <= 0 {
		return nil, fmt.Errorf("%w: bad status line", ErrMalformedHTTP)
	}
	proto, rest := first[:sp], first[sp+1:]
	major, minor, ok := parseHTTPVersion(proto)
	if !ok {
		return nil, fmt.Errorf("%w: bad HTTP version", ErrMalformedHTTP)
	}
	if len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
		return nil, fmt.Errorf("%w: bad status code", ErrMalformedHTTP)
	}
	code := 0
	for _, c := range []byte(rest[:3]) {
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("%w: bad status code", ErrMalformedHTTP)
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return nil, fmt.Errorf("%w: bad status code", ErrMalformedHTTP)
	}
	resp := &http.Response{
		Status:        rest,
		StatusCode:    code,
		Proto:         proto,
		ProtoMajor:    major,
		ProtoMinor:    minor,
		Header:        header,
		ContentLength: -1,
	}
	if cl := header[hdrContentLength]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			resp.ContentLength = n
		}
	}
	return resp, nil
}
