package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/heraldhq/herald/ws"
)

// Protocol selects what the load generator speaks on a connection.
type Protocol string

const (
	// ProtocolHerald is herald's client protocol (docs/protocol.md): a
	// connect command, subscribe commands, publish commands; publications
	// arrive as "publication" pushes whose data is the payload.
	ProtocolHerald Protocol = "herald"
	// ProtocolRaw is the minimal protocol of the comparison servers:
	//
	//	client -> {"sub":"CHANNEL"}                 server -> {"ok":"CHANNEL"}
	//	client -> {"pub":"CHANNEL","data":PAYLOAD}  server sends PAYLOAD to every subscriber
	//	HTTP POST /publish {"channel":"CHANNEL","data":PAYLOAD} -> 200
	//
	// and every publication arrives as one text frame holding PAYLOAD.
	ProtocolRaw Protocol = "raw"
	// ProtocolCentrifuge is the JSON client protocol of servers built on
	// github.com/centrifugal/centrifuge (the library at the core of
	// Centrifugo), as its 0.x releases speak it: commands
	//
	//	{"id":N,"params":{...}}                                   connect (method 0)
	//	{"id":N,"method":1,"params":{"channel":"CHANNEL"}}        subscribe
	//	{"id":N,"method":3,"params":{"channel":"CHANNEL","data":PAYLOAD}}  publish
	//
	// answered by {"id":N,"result":...} or {"id":N,"error":{...}};
	// publications arrive as pushes (no id) holding PAYLOAD. The server
	// may join several replies and pushes into one frame, one per line.
	// Publishing through the server API uses the comparison servers'
	// HTTP endpoints, as for ProtocolRaw.
	ProtocolCentrifuge Protocol = "centrifuge"
)

// eachMessage calls fn with every protocol message a received frame
// holds, until fn returns false: the lines of a centrifuge frame, the
// whole frame otherwise.
func eachMessage(proto Protocol, frame []byte, fn func(msg []byte) bool) {
	if proto != ProtocolCentrifuge {
		fn(frame)
		return
	}
	for len(frame) > 0 {
		msg, rest, _ := bytes.Cut(frame, newline)
		if len(msg) > 0 && !fn(msg) {
			return
		}
		frame = rest
	}
}

var newline = []byte{'\n'}

// payload builds the data of one publication: the channel index, its
// sequence number and the send time, padded to size bytes. The keys are
// unlikely to appear elsewhere in a server's frame.
func payload(dst []byte, ch int, seq uint64, sent time.Time, size int) []byte {
	dst = append(dst, `{"bch":`...)
	dst = strconv.AppendInt(dst, int64(ch), 10)
	dst = append(dst, `,"bseq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"bts":`...)
	dst = strconv.AppendInt(dst, sent.UnixNano(), 10)
	dst = append(dst, `,"pad":"`...)
	for n := len(dst) + 2; n < size; n++ {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// parsed is what a received frame carried.
type parsed struct {
	ch   int
	seq  uint64
	sent int64 // unix nanoseconds
}

// parseFrame finds the payload fields in a received frame (a herald push
// or a raw publication). ok is false for frames that carry no payload:
// replies, pings. The fields are found where payload writes them, one
// after the other, with one search for the first; a frame laid out
// differently (a server that reorders JSON keys) falls back to searching
// each key. Nothing is allocated.
func parseFrame(b []byte) (p parsed, ok bool) {
	i := bytes.Index(b, keyCh)
	if i < 0 {
		return p, false
	}
	rest := b[i+len(keyCh):]
	ch, n := digits(rest)
	if n > 0 && bytes.HasPrefix(rest[n:], keySeqAfter) {
		rest = rest[n+len(keySeqAfter):]
		seq, m := digits(rest)
		if m > 0 && bytes.HasPrefix(rest[m:], keyTSAfter) {
			ts, k := digits(rest[m+len(keyTSAfter):])
			if k > 0 {
				return checked(ch, seq, ts)
			}
		}
	}
	ch, ok1 := intAfter(b, keyCh)
	seq, ok2 := intAfter(b, keySeq)
	ts, ok3 := intAfter(b, keyTS)
	if !ok1 || !ok2 || !ok3 {
		return p, false
	}
	return checked(ch, seq, ts)
}

var (
	keyCh       = []byte(`"bch":`)
	keySeq      = []byte(`"bseq":`)
	keyTS       = []byte(`"bts":`)
	keySeqAfter = []byte(`,"bseq":`)
	keyTSAfter  = []byte(`,"bts":`)
)

func checked(ch, seq, ts uint64) (parsed, bool) {
	if ch > math.MaxInt32 || seq == 0 || ts > math.MaxInt64 {
		return parsed{}, false
	}
	return parsed{ch: int(ch), seq: seq, sent: int64(ts)}, true
}

// digits parses the decimal number b starts with (at most 19 digits, so
// it cannot overflow a uint64) and returns it with the count of digits
// read.
func digits(b []byte) (uint64, int) {
	var v uint64
	n := 0
	for n < len(b) && n < 19 && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n
}

func intAfter(b []byte, key []byte) (uint64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	v, n := digits(b[i+len(key):])
	return v, n > 0
}

// dialer opens the client connections of a run.
type dialer struct {
	url      string
	protocol Protocol
	srcAddrs []net.IP
	tls      *tls.Config
	tcpAddr  string // host:port for tcp:// and tcps:// targets
	tcpTLS   bool
}

func newDialer(rawURL string, protocol Protocol, spread bool, insecureTLS bool) (*dialer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("url %q: %w", rawURL, err)
	}
	switch protocol {
	case ProtocolHerald, ProtocolRaw, ProtocolCentrifuge:
	default:
		return nil, fmt.Errorf("unknown protocol %q (herald, raw or centrifuge)", protocol)
	}
	d := &dialer{url: rawURL, protocol: protocol}
	switch u.Scheme {
	case "ws", "wss":
	case "tcp", "tcps":
		if protocol != ProtocolHerald {
			return nil, errors.New("tcp:// targets speak herald's TCP transport: use --protocol herald")
		}
		if u.Port() == "" {
			return nil, fmt.Errorf("url %q: tcp:// needs a port", rawURL)
		}
		d.tcpAddr = u.Host
		d.tcpTLS = u.Scheme == "tcps"
	default:
		return nil, fmt.Errorf("url %q: scheme must be ws, wss, tcp or tcps", rawURL)
	}
	if spread {
		d.srcAddrs = sourceAddrs(u.Hostname())
	}
	if insecureTLS {
		d.tls = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure-tls
	}
	return d, nil
}

// conn is one client connection. Until it is handed to the poller (a
// subscriber) one goroutine at a time reads it: the one that connects and
// subscribes, then an echo loop or a publisher's reply reader; writes
// come from that goroutine or from a publishing worker.
type conn struct {
	idx   int
	c     msgConn
	proto Protocol
	next  uint32 // command ids (herald, centrifuge), used by the goroutine that subscribes
}

func (d *dialer) dial(ctx context.Context, idx int) (*conn, error) {
	nd := &net.Dialer{Timeout: 10 * time.Second}
	if len(d.srcAddrs) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: d.srcAddrs[idx%len(d.srcAddrs)]}
	}
	var mc msgConn
	if d.tcpAddr != "" {
		var tlsConf *tls.Config
		if d.tcpTLS {
			tlsConf = d.tls
			if tlsConf == nil {
				host, _, _ := net.SplitHostPort(d.tcpAddr)
				tlsConf = &tls.Config{ServerName: host}
			}
		}
		tc, err := dialTCP(ctx, d.tcpAddr, nd, tlsConf)
		if err != nil {
			return nil, err
		}
		mc = tc
	} else {
		opts := &ws.DialOptions{TLSConfig: d.tls, ReadLimit: maxMessage, NetDialContext: nd.DialContext}
		c, _, err := ws.Dial(ctx, d.url, opts)
		if err != nil {
			return nil, err
		}
		mc = wsConn{c}
	}
	cn := &conn{idx: idx, c: mc, proto: d.protocol}
	if cn.proto != ProtocolRaw {
		if _, err := cn.call(ctx, "connect", map[string]any{"name": "herald-bench", "version": "1"}); err != nil {
			mc.close()
			return nil, err
		}
	}
	return cn, nil
}

// centrifugeMethods numbers the commands the load generator sends in
// ProtocolCentrifuge (connect is 0, which the protocol leaves out).
var centrifugeMethods = map[string]int{"connect": 0, "subscribe": 1, "publish": 3}

// call sends a herald or centrifuge command and waits for its reply,
// skipping pushes.
func (cn *conn) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	cn.next++
	id := cn.next
	cmd := map[string]any{"id": id, "params": params}
	if cn.proto == ProtocolCentrifuge {
		if n := centrifugeMethods[method]; n != 0 {
			cmd["method"] = n
		}
	} else {
		cmd["method"] = method
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	if err := cn.c.write(ctx, b); err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	var frame []byte
	for {
		frame, err = cn.c.read(ctx, frame)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		var result json.RawMessage
		var replyErr error
		found := false
		eachMessage(cn.proto, frame, func(msg []byte) bool {
			var r struct {
				ID     uint32          `json:"id"`
				Result json.RawMessage `json:"result"`
				Error  *struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if json.Unmarshal(msg, &r) != nil || r.ID != id {
				return true
			}
			found, result = true, r.Result
			if r.Error != nil {
				replyErr = fmt.Errorf("%s: error %d: %s", method, r.Error.Code, r.Error.Message)
			}
			return false
		})
		if found {
			return result, replyErr
		}
	}
}

// subscribe subscribes to channel and waits until the server confirms.
func (cn *conn) subscribe(ctx context.Context, channel string) error {
	if cn.proto != ProtocolRaw {
		_, err := cn.call(ctx, "subscribe", map[string]any{"channel": channel})
		return err
	}
	b, _ := json.Marshal(map[string]string{"sub": channel})
	if err := cn.c.write(ctx, b); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	want, _ := json.Marshal(map[string]string{"ok": channel})
	var msg []byte
	var err error
	for {
		msg, err = cn.c.read(ctx, msg)
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		if bytes.Equal(bytes.TrimSpace(msg), want) {
			return nil
		}
	}
}

// publishFrame builds the frame that publishes data to channel over a
// client connection. id is the command id: herald's and centrifuge's
// (required), or for the raw protocol an optional one (0: none) the
// server answers with {"id":N} once the publication was handed to the
// subscribers.
func publishFrame(dst []byte, proto Protocol, id uint32, channel string, data []byte) []byte {
	q, _ := json.Marshal(channel)
	if proto != ProtocolRaw {
		dst = append(dst, `{"id":`...)
		dst = strconv.AppendUint(dst, uint64(id), 10)
		if proto == ProtocolCentrifuge {
			dst = append(dst, `,"method":3,"params":{"channel":`...)
		} else {
			dst = append(dst, `,"method":"publish","params":{"channel":`...)
		}
		dst = append(dst, q...)
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
		return append(dst, `}}`...)
	}
	dst = append(dst, `{"pub":`...)
	dst = append(dst, q...)
	if id != 0 {
		dst = append(dst, `,"id":`...)
		dst = strconv.AppendUint(dst, uint64(id), 10)
	}
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}
