package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/ws"
)

// transport carries encoded protocol messages over one connection. read is
// called by one goroutine at a time; write and close from any.
type transport interface {
	codec() wire.Codec
	// read returns the next message, waiting at most timeout (0: no
	// limit). The slice is valid until the next read.
	read(timeout time.Duration) ([]byte, error)
	write(ctx context.Context, msg []byte) error
	// close ends the connection at once and unblocks read and write.
	close()
	// goodbye ends the connection politely (a WebSocket close
	// handshake, bounded by a short timeout) when the client closes.
	goodbye()
}

// errReadTimeout is returned by read when nothing arrived in time.
var errReadTimeout = errors.New("no data from server in time")

// closeInfo extracts the disconnect code and reason from a read error.
func closeInfo(err error) (uint16, string) {
	var ce *ws.CloseError
	if errors.As(err, &ce) {
		return uint16(ce.Code), ce.Reason
	}
	if errors.Is(err, errReadTimeout) {
		return DisconnectNoPing, "no data from server"
	}
	return DisconnectTransportFailed, err.Error()
}

// parseURL checks the scheme of a server URL.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("herald: bad url %q: %w", raw, err)
	}
	switch u.Scheme {
	case "ws", "wss", "tcp", "tls":
	default:
		return nil, fmt.Errorf("herald: url %q: scheme must be ws, wss, tcp or tls", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("herald: url %q has no host", raw)
	}
	return u, nil
}

// dialTransport opens a transport to u; ctx bounds the dial and handshake.
func dialTransport(ctx context.Context, u *url.URL, o *Options) (transport, error) {
	switch u.Scheme {
	case "ws", "wss":
		return dialWS(ctx, u, o)
	default:
		return dialTCP(ctx, u, o)
	}
}

// ---------------------------------------------------------------------------
// WebSocket

type wsTransport struct {
	c *ws.Conn
}

func dialWS(ctx context.Context, u *url.URL, o *Options) (transport, error) {
	dopts := &ws.DialOptions{
		TLSConfig:  o.TLSConfig,
		HTTPHeader: o.Header,
		ReadLimit:  int64(o.maxMessageSize()),
		Conn:       ws.ConnOptions{CloseTimeout: time.Second},
	}
	if o.Dialer != nil {
		dopts.NetDialContext = o.Dialer
	}
	c, resp, err := ws.Dial(ctx, u.String(), dopts)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	return &wsTransport{c: c}, nil
}

func (t *wsTransport) codec() wire.Codec { return wire.JSON }

func (t *wsTransport) read(timeout time.Duration) ([]byte, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	for {
		typ, b, err := t.c.Read(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, errReadTimeout
			}
			return nil, err
		}
		if typ == ws.MessageText {
			return b, nil
		}
		// The JSON protocol uses text frames only; skip anything else.
	}
}

func (t *wsTransport) write(ctx context.Context, msg []byte) error {
	return t.c.Write(ctx, ws.MessageText, msg)
}

func (t *wsTransport) close() { t.c.CloseNow() }

func (t *wsTransport) goodbye() {
	_ = t.c.Close(ws.StatusNormalClosure, "client closed")
	t.c.CloseNow()
}

// ---------------------------------------------------------------------------
// TCP

type tcpTransport struct {
	nc  net.Conn
	cod wire.Codec
	fr  *wire.FrameReader

	wmu  sync.Mutex
	wbuf []byte
}

func dialTCP(ctx context.Context, u *url.URL, o *Options) (transport, error) {
	dial := o.Dialer
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	addr := u.Host
	if u.Port() == "" {
		return nil, fmt.Errorf("herald: url %s: a port is required", u.Redacted())
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			nc.Close()
		}
	}()
	if dl, has := ctx.Deadline(); has {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if u.Scheme == "tls" {
		cfg := o.TLSConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		nc = tc
	}
	enc := wire.EncodingBinary
	if o.TCPEncoding == EncodingJSON {
		enc = wire.EncodingJSON
	}
	if _, err := nc.Write(wire.AppendClientHello(nil, wire.ProtocolVersion, enc)); err != nil {
		return nil, fmt.Errorf("hello: %w", err)
	}
	br := bufio.NewReaderSize(nc, 4096)
	h, err := wire.ReadServerHello(br)
	if err != nil {
		return nil, fmt.Errorf("hello: %w", err)
	}
	if h.Status != wire.HelloOK {
		return nil, fmt.Errorf("hello refused: %s", h.Status)
	}
	if h.Encoding != enc {
		return nil, fmt.Errorf("hello: server answered encoding %s, asked %s", h.Encoding, enc)
	}
	stop()
	_ = nc.SetDeadline(time.Time{})
	cod, _ := wire.CodecFor(enc)
	ok = true
	return &tcpTransport{nc: nc, cod: cod, fr: wire.NewFrameReader(br, o.maxMessageSize())}, nil
}

func (t *tcpTransport) codec() wire.Codec { return t.cod }

func (t *tcpTransport) read(timeout time.Duration) ([]byte, error) {
	if timeout > 0 {
		_ = t.nc.SetReadDeadline(time.Now().Add(timeout))
	}
	b, err := t.fr.ReadFrame()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, errReadTimeout
		}
		return nil, err
	}
	return b, nil
}

func (t *tcpTransport) write(ctx context.Context, msg []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		_ = t.nc.SetWriteDeadline(dl)
		defer t.nc.SetWriteDeadline(time.Time{})
	}
	t.wbuf = wire.AppendFrame(t.wbuf[:0], msg)
	_, err := t.nc.Write(t.wbuf)
	if cap(t.wbuf) > 64<<10 {
		t.wbuf = nil // do not keep a large buffer for the connection's life
	}
	return err
}

func (t *tcpTransport) close() { t.nc.Close() }

// goodbye closes the socket: over TCP a client ends its session that way.
func (t *tcpTransport) goodbye() { t.nc.Close() }
