package ws

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/netpoll"
)

// useTestPoller makes event-mode connections of this test use a poller
// of their own, closed (with every connection on it) when the test ends,
// so no poller goroutine outlives the test.
func useTestPoller(t testing.TB) *netpoll.Poller {
	t.Helper()
	p, err := netpoll.New(netpoll.Options{Workers: 8})
	if err != nil {
		t.Fatal(err)
	}
	prev := eventPoller
	eventPoller = func() *netpoll.Poller { return p }
	t.Cleanup(func() {
		p.Close()
		eventPoller = prev
	})
	return p
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close(); client.Close() })
	return r.c, client
}

// transports lists the socket pairs every behaviour is checked over.
var transports = []struct {
	name string
	pair func(testing.TB) (net.Conn, net.Conn)
}{
	{"tcp", tcpPair},
	{"pipe", func(t testing.TB) (net.Conn, net.Conn) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}},
}

type pairOpts struct {
	serverDeflate *deflateParams
	clientDeflate *deflateParams
	readLimit     int64
	opts          ConnOptions
}

// newConnPair connects a server Conn and a client Conn without a
// handshake.
func newConnPair(t testing.TB, sc, cc net.Conn, o pairOpts) (srv, cli *Conn) {
	t.Helper()
	if o.opts.CloseTimeout == 0 {
		o.opts.CloseTimeout = 2 * time.Second
	}
	srv = newConn(connConfig{netConn: sc, isServer: true, deflate: o.serverDeflate, readLimit: o.readLimit, opts: o.opts})
	cli = newConn(connConfig{netConn: cc, isServer: false, deflate: o.clientDeflate, readLimit: o.readLimit, opts: o.opts})
	t.Cleanup(func() { srv.CloseNow(); cli.CloseNow() })
	return srv, cli
}

// echoHandler echoes every message in event mode and reports the end.
type echoHandler struct {
	closed chan error
}

func newEchoHandler() *echoHandler { return &echoHandler{closed: make(chan error, 1)} }

func (h *echoHandler) OnMessage(c *Conn, typ MessageType, data []byte) {
	_ = c.EnqueueMessage(typ, data)
}

func (h *echoHandler) OnClose(c *Conn, err error) { h.closed <- err }

// startEcho makes srv echo every message, in blocking or event mode, and
// returns a function that waits for the server side to end and returns
// its final error.
func startEcho(t testing.TB, srv *Conn, event bool) func() error {
	t.Helper()
	if event {
		useTestPoller(t)
		h := newEchoHandler()
		if err := srv.Serve(h); err != nil {
			t.Fatal(err)
		}
		return func() error {
			select {
			case err := <-h.closed:
				return err
			case <-time.After(10 * time.Second):
				t.Fatal("event-mode server did not close")
				return nil
			}
		}
	}
	done := make(chan error, 1)
	go func() {
		for {
			typ, p, err := srv.Read(context.Background())
			if err != nil {
				done <- err
				return
			}
			if err := srv.Write(context.Background(), typ, p); err != nil {
				done <- err
				return
			}
		}
	}()
	return func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("blocking server did not end")
			return nil
		}
	}
}

var modes = []struct {
	name  string
	event bool
}{{"blocking", false}, {"event", true}}

// rawFrame builds one frame as a client would (masked) or a server
// (unmasked), with full control over every header bit.
type rawFrame struct {
	fin        bool
	rsv        byte // RSV bits in place (0x40, 0x20, 0x10)
	op         opcode
	payload    []byte
	unmasked   bool // a client frame without mask
	lenEncode  int  // 0: minimal; 16 or 64 forces that encoding
	lengthOver uint64
}

func (f rawFrame) bytes(fromClient bool) []byte {
	b0 := byte(f.op) | f.rsv
	if f.fin {
		b0 |= finBit
	}
	masked := fromClient && !f.unmasked
	var b1 byte
	if masked {
		b1 = maskBit
	}
	n := uint64(len(f.payload))
	if f.lengthOver != 0 {
		n = f.lengthOver
	}
	out := []byte{b0}
	switch {
	case f.lenEncode == 64 || (f.lenEncode == 0 && n > 0xFFFF):
		out = append(out, b1|127)
		out = binary.BigEndian.AppendUint64(out, n)
	case f.lenEncode == 16 || (f.lenEncode == 0 && n > 125):
		out = append(out, b1|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, b1|byte(n))
	}
	p := append([]byte(nil), f.payload...)
	if masked {
		key := [4]byte{0x11, 0x22, 0x33, 0x44}
		out = append(out, key[:]...)
		maskBytes(key, 0, p)
	}
	return append(out, p...)
}

// peerFrame is a frame a raw peer received.
type peerFrame struct {
	fin  bool
	rsv1 bool
	op   opcode
	data []byte
}

// rawPeer reads frames from a socket with the package parser's rules
// relaxed only where the test needs them.
type rawPeer struct {
	t    testing.TB
	conn net.Conn
	buf  []byte
}

// readFrame reads one frame; fromServer says whether frames must be
// unmasked. It returns io.EOF when the socket was closed.
func (r *rawPeer) readFrame(fromServer bool) (peerFrame, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	need := func(n int) error {
		for len(r.buf) < n {
			var tmp [4096]byte
			k, err := r.conn.Read(tmp[:])
			r.buf = append(r.buf, tmp[:k]...)
			if err != nil && len(r.buf) < n {
				return err
			}
		}
		return nil
	}
	if err := need(2); err != nil {
		return peerFrame{}, err
	}
	hl := headerSize(r.buf[1])
	if err := need(hl); err != nil {
		return peerFrame{}, err
	}
	var p frameParser
	p.expectMasked = !fromServer
	p.allowRSV1 = true
	p.readLimit = 1 << 30
	h := r.buf[:hl]
	if _, ok := p.readHeader(h); !ok {
		r.t.Fatal("raw peer: bad header")
	}
	if p.masked == fromServer {
		return peerFrame{}, errors.New("raw peer: wrong masking")
	}
	n := int(p.remaining)
	if err := need(hl + n); err != nil {
		return peerFrame{}, err
	}
	data := append([]byte(nil), r.buf[hl:hl+n]...)
	if p.masked {
		maskBytes(p.key, 0, data)
	}
	r.buf = r.buf[hl+n:]
	return peerFrame{fin: p.fin, rsv1: p.rsv1, op: p.op &^ 0x80, data: data}, nil
}

// expectClose reads until a close frame and returns its code
// (StatusNoStatusRcvd for an empty one), then checks that the socket is
// closed by the other side within the timeout (no CLOSE_WAIT on it).
func (r *rawPeer) expectClose(fromServer bool) (StatusCode, []peerFrame) {
	r.t.Helper()
	var frames []peerFrame
	for {
		f, err := r.readFrame(fromServer)
		if err != nil {
			r.t.Fatalf("raw peer: no close frame: %v (frames %v)", err, frames)
		}
		if f.op == opClose {
			code := StatusNoStatusRcvd
			if len(f.data) >= 2 {
				code = StatusCode(binary.BigEndian.Uint16(f.data))
			}
			return code, frames
		}
		frames = append(frames, f)
	}
}

// expectEOF checks that the other side closes the socket.
func (r *rawPeer) expectEOF() {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var tmp [512]byte
	for {
		_, err := r.conn.Read(tmp[:])
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || isReset(err) {
			r.conn.Close()
			return
		}
		r.t.Fatalf("raw peer: socket not closed by the other side: %v", err)
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// write sends raw bytes, tolerating the other side closing meanwhile.
func (r *rawPeer) write(b []byte) {
	_ = r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = r.conn.Write(b)
}

// writeAsync writes without blocking the test: net.Pipe is synchronous.
func (r *rawPeer) writeAsync(b []byte) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.write(b)
	}()
	return &wg
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
