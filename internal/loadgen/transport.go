package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/netpoll"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/ws"
)

// msgConn is one client connection carrying whole messages, whatever the
// transport. read may be called by one goroutine at a time; write by any
// number. A read without a deadline in ctx blocks until a message arrives
// or close is called.
type msgConn interface {
	write(ctx context.Context, msg []byte) error
	// read appends the next message to dst[:0] and returns it.
	read(ctx context.Context, dst []byte) ([]byte, error)
	close()
}

// maxMessage bounds a received message.
const maxMessage = 1 << 20

type wsConn struct{ c *ws.Conn }

func (w wsConn) write(ctx context.Context, msg []byte) error {
	return w.c.Write(ctx, ws.MessageText, msg)
}

func (w wsConn) read(ctx context.Context, dst []byte) ([]byte, error) {
	dst = dst[:0]
	_, rd, err := w.c.Reader(ctx)
	if err != nil {
		return dst, err
	}
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := rd.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

func (w wsConn) close() { w.c.CloseNow() }

// tcpConn speaks herald's TCP transport (docs/protocol.md): a hello
// choosing the JSON encoding, then [length][payload] frames. It answers
// the server's ping pushes with pong commands, as a client without
// WebSocket control frames must.
type tcpConn struct {
	nc  net.Conn
	br  *bufio.Reader // nil once served
	wmu sync.Mutex
	out []byte        // guarded by wmu
	pc  *netpoll.Conn // set by serve, under wmu: the poller owns the socket
}

var (
	pingPush  = []byte(`"type":"ping"`)
	pongFrame = wire.AppendFrame(nil, []byte(`{"method":"pong"}`))
)

func dialTCP(ctx context.Context, addr string, nd *net.Dialer, tlsConf *tls.Config) (*tcpConn, error) {
	nc, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsConf != nil {
		tc := tls.Client(nc, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if _, err := nc.Write(wire.AppendClientHello(nil, wire.ProtocolVersion, wire.EncodingJSON)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tcp hello: %w", err)
	}
	br := bufio.NewReaderSize(nc, 4096)
	h, err := wire.ReadServerHello(br)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("tcp hello: %w", err)
	}
	if h.Status != wire.HelloOK {
		nc.Close()
		return nil, fmt.Errorf("tcp hello: server answered %v", h.Status)
	}
	_ = nc.SetDeadline(time.Time{})
	return &tcpConn{nc: nc, br: br}, nil
}

func (t *tcpConn) write(ctx context.Context, msg []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.pc != nil {
		// The poller's queue keeps a reference: the frame must not be reused.
		return t.pc.Write(wire.AppendFrame(nil, msg))
	}
	dl, _ := ctx.Deadline()
	_ = t.nc.SetWriteDeadline(dl)
	t.out = wire.AppendFrame(t.out[:0], msg)
	_, err := t.nc.Write(t.out)
	return err
}

func (t *tcpConn) read(ctx context.Context, dst []byte) ([]byte, error) {
	dl, _ := ctx.Deadline()
	_ = t.nc.SetReadDeadline(dl)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(t.br, hdr[:]); err != nil {
			return dst[:0], err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			continue // keepalive
		}
		if n > maxMessage {
			return dst[:0], fmt.Errorf("tcp: frame of %d bytes exceeds %d", n, maxMessage)
		}
		if cap(dst) < int(n) {
			dst = make([]byte, n)
		}
		dst = dst[:n]
		if _, err := io.ReadFull(t.br, dst); err != nil {
			return dst[:0], err
		}
		if isPingPush(dst) {
			t.wmu.Lock()
			_, err := t.nc.Write(pongFrame)
			t.wmu.Unlock()
			if err != nil {
				return dst[:0], err
			}
			continue
		}
		return dst, nil
	}
}

func (t *tcpConn) close() {
	t.wmu.Lock()
	pc := t.pc
	t.wmu.Unlock()
	if pc != nil {
		_ = pc.Close()
		return
	}
	t.nc.Close()
}

// isPingPush reports whether a TCP frame is the server's ping push (and
// not a publication whose data happens to contain the same bytes).
func isPingPush(b []byte) bool {
	return len(b) < 64 && bytes.Contains(b, pingPush) && !bytes.Contains(b, []byte(`"bseq"`))
}
