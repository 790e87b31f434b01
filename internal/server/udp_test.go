package server

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/wire"
)

// udpClient speaks the UDP transport (docs/protocol.md): a padded connect
// datagram answered by an accept with the session id and secret, then data
// datagrams with sequence numbers in both directions.
type udpClient struct {
	t               *testing.T
	pc              *net.UDPConn
	server          netip.AddrPort
	session, secret uint64
	seq             uint64
	window          wire.ReplayWindow
	nextID          uint32
	pushes          []*wire.Push // pushes read while waiting for replies
	buf             []byte
}

func dialUDP(t *testing.T, addr string) *udpClient {
	t.Helper()
	server, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &udpClient{t: t, pc: pc, server: server, buf: make([]byte, wire.MaxDatagramSize)}
}

func (c *udpClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.pc.WriteToUDPAddrPort(b, c.server); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next datagram, or nil when none arrives before
// deadline.
func (c *udpClient) read(deadline time.Time) *wire.Datagram {
	c.t.Helper()
	_ = c.pc.SetReadDeadline(deadline)
	n, _, err := c.pc.ReadFromUDPAddrPort(c.buf)
	if err != nil {
		return nil
	}
	var d wire.Datagram
	if err := wire.ParseDatagram(c.buf[:n], &d); err != nil {
		c.t.Fatalf("server sent a bad datagram: %v", err)
	}
	d.Message = append([]byte(nil), d.Message...)
	return &d
}

// connect sends the connect datagram (again, identical, if unanswered:
// UDP may lose it) and returns the connect reply.
func (c *udpClient) connect() *wire.Reply {
	c.t.Helper()
	c.nextID++
	nonce := rand.Uint64()
	req, err := wire.AppendDatagram(nil, &wire.Datagram{Kind: wire.DatagramConnect, Nonce: nonce,
		Message: wire.Binary.AppendCommand(nil, &wire.Command{ID: c.nextID, Method: wire.MethodConnect, Connect: &wire.ConnectParams{}})})
	if err != nil {
		c.t.Fatal(err)
	}
	for range 10 {
		c.write(req)
		for d := c.read(time.Now().Add(time.Second)); d != nil; d = c.read(time.Now().Add(time.Second)) {
			if d.Kind != wire.DatagramAccept || d.Nonce != nonce {
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
	c.t.Fatal("no accept datagram")
	return nil
}

// next returns the next reply or push of the session, or nils at
// deadline.
func (c *udpClient) next(deadline time.Time) (*wire.Reply, *wire.Push) {
	c.t.Helper()
	for {
		d := c.read(deadline)
		if d == nil {
			return nil, nil
		}
		if (d.Kind != wire.DatagramData && d.Kind != wire.DatagramClose) || d.Session != c.session || d.Secret != c.secret {
			c.t.Fatalf("unexpected datagram %v for session %x", d.Kind, d.Session)
		}
		if !c.window.Accept(d.Seq) || len(d.Message) == 0 {
			continue
		}
		r, p, err := wire.Binary.DecodeServerMessage(d.Message, nil)
		if err != nil {
			c.t.Fatalf("decode: %v", err)
		}
		return r, p
	}
}

// call sends cmd in one data datagram and returns its reply. An
// unanswered command is sent again with the same id (the server answers
// a retry from its reply cache instead of running it twice).
func (c *udpClient) call(cmd *wire.Command) *wire.Reply {
	c.t.Helper()
	c.nextID++
	cmd.ID = c.nextID
	msg := wire.Binary.AppendCommand(nil, cmd)
	for range 10 {
		c.seq++
		c.write(append(wire.AppendDataHeader(nil, wire.DatagramData, c.session, c.secret, c.seq), msg...))
		deadline := time.Now().Add(time.Second)
		for {
			r, p := c.next(deadline)
			if r == nil && p == nil {
				break // resend
			}
			if p != nil {
				c.pushes = append(c.pushes, p)
			}
			if r != nil && r.ID == cmd.ID {
				return r
			}
		}
	}
	c.t.Fatalf("no reply to %v", cmd.Method)
	return nil
}

// publication returns the next publication push of channel.
func (c *udpClient) publication(channel string) *wire.Push {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var p *wire.Push
		if len(c.pushes) > 0 {
			p, c.pushes = c.pushes[0], c.pushes[1:]
		} else if _, p = c.next(deadline); p == nil && time.Now().After(deadline) {
			c.t.Fatalf("no publication on %s", channel)
		}
		if p != nil && p.Type == wire.PushPublication && p.Channel == channel {
			return p
		}
	}
}

// TestUDPEndToEnd: through a node with udp_listen, a UDP client connects,
// subscribes, receives a server API publication as one datagram, and
// publishes with one datagram; the publication reaches a WebSocket
// subscriber, and the UDP traffic shows in the metrics.
func TestUDPEndToEnd(t *testing.T) {
	s, _ := startServer(t, func(c *config.Config) { c.UDPListen = "127.0.0.1:0" })
	uc := dialUDP(t, s.UDPAddr())
	if r := uc.connect(); r.Error != nil || r.Connect == nil || r.Connect.Client == "" {
		t.Fatalf("connect reply %+v", r)
	}
	if r := uc.call(&wire.Command{Method: wire.MethodSubscribe, Subscribe: &wire.SubscribeParams{Channel: "chat:udp"}}); r.Error != nil {
		t.Fatalf("subscribe: %v", r.Error)
	}
	wc := dialClient(t, s)
	wc.call("connect", map[string]any{})
	wc.call("subscribe", map[string]any{"channel": "chat:udp"})

	if status, body := apiCall(t, s, s.APIKey(), "publish", `{"channel":"chat:udp","data":{"from":"api"}}`); status != 200 {
		t.Fatalf("publish: %d %v", status, body)
	}
	if p := uc.publication("chat:udp"); string(p.Publication.Data) != `{"from":"api"}` || p.Publication.Offset != 1 {
		t.Fatalf("publication over UDP: %+v", p.Publication)
	}

	r := uc.call(&wire.Command{Method: wire.MethodPublish, Publish: &wire.PublishParams{Channel: "chat:udp", Data: []byte(`{"from":"udp"}`)}})
	if r.Error != nil {
		t.Fatalf("publish over UDP: %v", r.Error)
	}
	if p := uc.publication("chat:udp"); string(p.Publication.Data) != `{"from":"udp"}` || p.Publication.Offset != 2 {
		t.Fatalf("own publication over UDP: %+v", p.Publication)
	}
	ctx := t.Context()
	for {
		msg := wc.read(ctx)
		if msg["type"] == "publication" && msg["offset"] == float64(2) {
			if d, _ := msg["data"].(map[string]any); d["from"] != "udp" {
				t.Fatalf("WebSocket subscriber got %v", msg)
			}
			break
		}
	}

	waitMetrics(t, s, map[string]func(string) bool{
		"one udp connection": func(p string) bool { v, _ := metricValue(p, `herald_connections{transport="udp"}`); return v == 1 },
		"three udp messages read": func(p string) bool {
			v, _ := metricValue(p, `herald_messages_received_total{transport="udp"}`)
			return v >= 3
		},
		"udp bytes read":             above(`herald_bytes_received_total{transport="udp"}`, 0),
		"udp bytes written":          above(`herald_bytes_sent_total{transport="udp"}`, 0),
		"udp publish-to-write timed": above(`herald_publish_to_write_seconds_count{transport="udp"}`, 1),
		"no malformed datagrams":     func(p string) bool { v, ok := metricValue(p, "herald_udp_malformed_total"); return ok && v == 0 },
		"no forged secrets":          func(p string) bool { v, ok := metricValue(p, "herald_udp_bad_secret_total"); return ok && v == 0 },
		"no dropped writes":          func(p string) bool { v, ok := metricValue(p, "herald_udp_write_drops_total"); return ok && v == 0 },
	})
}
