package udptransport

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/testnode"
	"github.com/heraldhq/herald/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type testServer struct {
	t       testing.TB
	addr    netip.AddrPort
	hub     *hub.Hub
	m       *session.Manager
	srv     *Server
	metrics *testnode.Metrics
}

func newServer(t testing.TB, adjust func(*session.Config, *Options)) *testServer {
	t.Helper()
	opts := Options{Workers: 2}
	node := testnode.Start(t, testnode.Config{
		Hub: hub.Config{Namespaces: hub.NamespaceMap{
			"":     {AllowPublish: true, AllowAnonymous: true},
			"chat": {HistorySize: 1000, AllowHistory: true, Presence: true, AllowPresence: true, AllowPublish: true, AllowAnonymous: true},
		}},
		Session: func(cfg *session.Config) {
			if adjust != nil {
				adjust(cfg, &opts)
			}
		},
	})
	opts.Sessions = node.Sessions
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(pc) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		node.Drain(ctx)
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("second shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return &testServer{t: t, addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), hub: node.Hub, m: node.Sessions, srv: srv, metrics: node.Metrics}
}

// uclient is a protocol client written from docs/protocol.md.
type uclient struct {
	t        testing.TB
	pc       *net.UDPConn
	target   netip.AddrPort
	nonce    uint64
	session  uint64
	secret   uint64
	seq      uint64
	window   wire.ReplayWindow
	nextID   uint32
	backlog  []*wire.Push
	windowed int // datagrams dropped by the replay window
	buf      []byte
}

func newUClient(t testing.TB, target netip.AddrPort) *uclient {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &uclient{t: t, pc: pc, target: target, nonce: rand.Uint64(), buf: make([]byte, 70000)}
}

func (c *uclient) writeRaw(b []byte) {
	c.t.Helper()
	if _, err := c.pc.WriteToUDPAddrPort(b, c.target); err != nil {
		c.t.Fatal(err)
	}
}

// readDatagram returns the next datagram and its size, or an error after
// timeout.
func (c *uclient) readDatagram(timeout time.Duration) (*wire.Datagram, int, error) {
	_ = c.pc.SetReadDeadline(time.Now().Add(timeout))
	n, _, err := c.pc.ReadFromUDPAddrPort(c.buf)
	if err != nil {
		return nil, 0, err
	}
	var d wire.Datagram
	if err := wire.ParseDatagram(c.buf[:n], &d); err != nil {
		c.t.Fatalf("server sent a bad datagram %x: %v", c.buf[:n], err)
	}
	d.Message = append([]byte(nil), d.Message...)
	return &d, n, nil
}

func connectDatagram(t testing.TB, nonce uint64, cmd *wire.Command) []byte {
	b, err := wire.AppendDatagram(nil, &wire.Datagram{Kind: wire.DatagramConnect, Nonce: nonce,
		Message: wire.Binary.AppendCommand(nil, cmd)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// connect sends a connect until accepted (resending the same datagram)
// and returns the connect reply.
func (c *uclient) connect() *wire.Reply {
	c.t.Helper()
	c.nextID++
	req := connectDatagram(c.t, c.nonce, &wire.Command{ID: c.nextID, Method: wire.MethodConnect, Connect: &wire.ConnectParams{Name: "udp-test"}})
	for attempt := 0; attempt < 8; attempt++ {
		c.writeRaw(req)
		for {
			d, _, err := c.readDatagram(300 * time.Millisecond)
			if err != nil {
				break // resend
			}
			if d.Kind != wire.DatagramAccept || d.Nonce != c.nonce {
				continue
			}
			r, err := wire.Binary.DecodeReply(d.Message, nil)
			if err != nil {
				c.t.Fatalf("accept message: %v", err)
			}
			c.session, c.secret = d.Session, d.Secret
			return r
		}
	}
	c.t.Fatal("no accept")
	return nil
}

// data builds a data datagram with the next sequence number.
func (c *uclient) data(kind wire.DatagramKind, msg []byte) []byte {
	c.seq++
	return append(wire.AppendDataHeader(nil, kind, c.session, c.secret, c.seq), msg...)
}

// next returns the next message from the server: a reply or a push; nil
// on timeout. Duplicated datagrams are dropped by the replay window.
func (c *uclient) next(timeout time.Duration) (*wire.Datagram, *wire.Reply, *wire.Push) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil, nil
		}
		d, _, err := c.readDatagram(left)
		if err != nil {
			return nil, nil, nil
		}
		if d.Kind != wire.DatagramData && d.Kind != wire.DatagramClose {
			return d, nil, nil
		}
		if d.Session != c.session || d.Secret != c.secret {
			c.t.Fatalf("datagram for session %x", d.Session)
		}
		if !c.window.Accept(d.Seq) {
			c.windowed++
			continue
		}
		if len(d.Message) == 0 {
			continue
		}
		r, p, err := wire.Binary.DecodeServerMessage(d.Message, nil)
		if err != nil {
			c.t.Fatalf("decode: %v", err)
		}
		return d, r, p
	}
}

// call sends cmd and waits for its reply, resending the command (same id,
// new datagram) every retry.
func (c *uclient) call(cmd *wire.Command, retry time.Duration) *wire.Reply {
	c.t.Helper()
	c.nextID++
	cmd.ID = c.nextID
	msg := wire.Binary.AppendCommand(nil, cmd)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c.writeRaw(c.data(wire.DatagramData, msg))
		wait := time.Now().Add(retry)
		for time.Now().Before(wait) {
			_, r, p := c.next(time.Until(wait))
			if p != nil {
				if p.Type == wire.PushPing {
					c.writeRaw(c.data(wire.DatagramData, wire.Binary.AppendCommand(nil, &wire.Command{Method: wire.MethodPong})))
					continue
				}
				c.backlog = append(c.backlog, p)
			}
			if r != nil && r.ID == cmd.ID {
				return r
			}
		}
	}
	c.t.Fatalf("no reply to %v", cmd.Method)
	return nil
}

// relay forwards datagrams between one client and the server, dropping,
// duplicating and reordering data datagrams as its seeded generator
// decides. Connect and accept pass untouched.
type relay struct {
	pc     *net.UDPConn
	server netip.AddrPort
	rng    *rand.Rand
	drop   float64
	dup    float64
	hold   float64

	mu                            sync.Mutex
	dropped, duplicated, reorderd int

	done chan struct{}
}

func newRelay(t testing.TB, server netip.AddrPort, seed uint64, drop, dup, hold float64) *relay {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{pc: pc, server: server, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		drop: drop, dup: dup, hold: hold, done: make(chan struct{})}
	go r.run()
	t.Cleanup(func() {
		pc.Close()
		<-r.done
	})
	return r
}

func (r *relay) addr() netip.AddrPort { return r.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

type heldDatagram struct {
	b  []byte
	to netip.AddrPort
}

func (r *relay) run() {
	defer close(r.done)
	var client netip.AddrPort
	var held *heldDatagram
	buf := make([]byte, 70000)
	send := func(b []byte, to netip.AddrPort) { _, _ = r.pc.WriteToUDPAddrPort(b, to) }
	for {
		_ = r.pc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, from, err := r.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if held != nil { // nothing else came: release it
					send(held.b, held.to)
					held = nil
				}
				continue
			}
			return
		}
		b := append([]byte(nil), buf[:n]...)
		to := r.server
		if from == r.server {
			to = client
		} else {
			client = from
		}
		if n < 2 || (b[1] != byte(wire.DatagramData) && b[1] != byte(wire.DatagramClose)) {
			send(b, to)
			continue
		}
		r.mu.Lock()
		switch x := r.rng.Float64(); {
		case x < r.drop:
			r.dropped++
			r.mu.Unlock()
			continue
		case x < r.drop+r.dup:
			r.duplicated++
			send(b, to)
		case x < r.drop+r.dup+r.hold && held == nil:
			r.reorderd++
			held = &heldDatagram{b: b, to: to}
			r.mu.Unlock()
			continue
		}
		r.mu.Unlock()
		send(b, to)
		if held != nil {
			send(held.b, held.to)
			held = nil
		}
	}
}

func (r *relay) counts() (dropped, duplicated, reordered int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped, r.duplicated, r.reorderd
}
