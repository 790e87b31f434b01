package udptransport

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/testwait"
	"github.com/heraldhq/herald/internal/wire"
)

const retry = 300 * time.Millisecond

// expectSilence checks that nothing arrives within a short window; it is
// only used after a counter proved that the server handled the datagram.
func (c *uclient) expectSilence() {
	c.t.Helper()
	if d, n, err := c.readDatagram(50 * time.Millisecond); err == nil {
		c.t.Fatalf("unexpected %v datagram of %d bytes", d.Kind, n)
	}
}

func TestConnect(t *testing.T) {
	s := newServer(t, nil)
	c := newUClient(t, s.addr)

	// Without padding: dropped without an answer.
	msg := wire.Binary.AppendCommand(nil, &wire.Command{ID: 1, Method: wire.MethodConnect, Connect: &wire.ConnectParams{}})
	short := connectDatagram(t, 7, &wire.Command{ID: 1, Method: wire.MethodConnect, Connect: &wire.ConnectParams{}})[:wire.ConnectHeaderSize+len(msg)+10]
	c.writeRaw(short)
	testwait.Until(t, "short connect counted", func() bool { return s.srv.Stats().Malformed == 1 })
	c.expectSilence()

	// Padded: accepted, and the accept is smaller than the connect.
	req := connectDatagram(t, 42, &wire.Command{ID: 1, Method: wire.MethodConnect, Connect: &wire.ConnectParams{Name: "t"}})
	c.writeRaw(req)
	d, n, err := c.readDatagram(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d.Kind != wire.DatagramAccept || d.Nonce != 42 || d.Session == 0 || d.Secret == 0 || n > len(req) {
		t.Fatalf("accept %+v (%d bytes for a %d-byte connect)", d, n, len(req))
	}
	r, err := wire.Binary.DecodeReply(d.Message, nil)
	if err != nil || r.ID != 1 || r.Connect == nil || r.Connect.Client == "" || !r.Connect.Pong {
		t.Fatalf("connect reply %+v %v", r, err)
	}
	first := append([]byte(nil), c.buf[:n]...)

	// The same connect again: the same accept, no second session.
	c.writeRaw(req)
	if _, n2, err := c.readDatagram(5 * time.Second); err != nil || !bytes.Equal(c.buf[:n2], first) {
		t.Fatalf("repeated connect answered %x, %v; want %x", c.buf[:n2], err, first)
	}
	if st := s.srv.Stats(); st.Accepted != 1 || st.Sessions != 1 {
		t.Fatalf("stats %+v", st)
	}

	// A refused connect (not a connect command): accept with zero ids
	// and the error, no session.
	bad := connectDatagram(t, 43, &wire.Command{ID: 5, Method: wire.MethodPing})
	c.writeRaw(bad)
	d, n, err = c.readDatagram(5 * time.Second)
	if err != nil || d.Kind != wire.DatagramAccept || d.Session != 0 || d.Secret != 0 || n > len(bad) {
		t.Fatalf("refusal %+v %v", d, err)
	}
	if r, err := wire.Binary.DecodeReply(d.Message, nil); err != nil || r.Error == nil || r.Error.Code != wire.ErrNotConnected {
		t.Fatalf("refusal reply %+v %v", r, err)
	}
	testwait.Until(t, "refused session gone", func() bool { return s.srv.Stats().Sessions == 1 })

	// Garbage in a padded connect: no answer at all.
	garbage := make([]byte, wire.MinConnectDatagramSize)
	copy(garbage, []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 3, 0xff, 0xff, 0xff})
	c.writeRaw(garbage)
	testwait.Until(t, "garbage session gone", func() bool { return s.srv.Stats().Accepted == 3 && s.srv.Stats().Sessions == 1 })
	c.expectSilence()
}

func TestUnknownSessionAndSpoofing(t *testing.T) {
	s := newServer(t, nil)
	victim := newUClient(t, s.addr)
	victim.connect()
	victim.call(&wire.Command{Method: wire.MethodSubscribe, Subscribe: &wire.SubscribeParams{Channel: "chat:spoof"}}, retry)

	attacker := newUClient(t, s.addr)
	// Unknown session: a reset, smaller than what was sent.
	attacker.session, attacker.secret = 12345, 1
	probe := attacker.data(wire.DatagramData, nil)
	attacker.writeRaw(probe)
	d, n, err := attacker.readDatagram(5 * time.Second)
	if err != nil || d.Kind != wire.DatagramReset || d.Session != 12345 || n > len(probe) {
		t.Fatalf("reset %+v (%d bytes), %v", d, n, err)
	}

	// The victim's id with a wrong secret: a command, a keepalive with a
	// huge sequence number (to try to take over the address) and a close.
	attacker.session, attacker.secret = victim.session, victim.secret^1
	attacker.seq = 1 << 40
	unsub := wire.Binary.AppendCommand(nil, &wire.Command{ID: 9, Method: wire.MethodUnsubscribe, Unsubscribe: &wire.ChannelParams{Channel: "chat:spoof"}})
	attacker.writeRaw(attacker.data(wire.DatagramData, unsub))
	attacker.writeRaw(attacker.data(wire.DatagramData, nil))
	attacker.writeRaw(attacker.data(wire.DatagramClose, nil))
	testwait.Until(t, "spoofed datagrams dropped", func() bool { return s.srv.Stats().BadSecret == 3 })
	attacker.expectSilence()

	// Traffic still goes to the victim, still subscribed.
	if _, err := s.hub.Publish(context.Background(), "chat:spoof", []byte(`"still yours"`), nil); err != nil {
		t.Fatal(err)
	}
	_, _, p := victim.next(5 * time.Second)
	if p == nil || p.Type != wire.PushPublication || string(p.Publication.Data) != `"still yours"` {
		t.Fatalf("victim got %+v", p)
	}
	attacker.expectSilence()

	// Roaming: the real client from a new address (it knows the secret).
	moved := newUClient(t, s.addr)
	moved.session, moved.secret, moved.seq = victim.session, victim.secret, victim.seq
	moved.nextID = victim.nextID
	if r := moved.call(&wire.Command{Method: wire.MethodPing}, retry); r.Error != nil {
		t.Fatal(r.Error)
	}
	if _, err := s.hub.Publish(context.Background(), "chat:spoof", []byte(`"moved"`), nil); err != nil {
		t.Fatal(err)
	}
	_, _, p = moved.next(5 * time.Second)
	if p == nil || string(p.Publication.Data) != `"moved"` {
		t.Fatalf("moved client got %+v", p)
	}
	// A replay of an old datagram from the old address does not move it
	// back.
	victim.seq = 1
	victim.writeRaw(victim.data(wire.DatagramData, nil))
	testwait.Until(t, "replay dropped", func() bool { return s.srv.Stats().Replayed >= 1 })
	if _, err := s.hub.Publish(context.Background(), "chat:spoof", []byte(`"still moved"`), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, p = moved.next(5 * time.Second); p == nil || string(p.Publication.Data) != `"still moved"` {
		t.Fatalf("moved client got %+v", p)
	}
}

func TestSubscribePublishAndLimits(t *testing.T) {
	s := newServer(t, nil)
	c := newUClient(t, s.addr)
	c.connect()
	r := c.call(&wire.Command{Method: wire.MethodSubscribe, Subscribe: &wire.SubscribeParams{Channel: "chat:room"}}, retry)
	if r.Error != nil || !r.Subscribe.Recoverable {
		t.Fatalf("subscribe %+v %+v", r.Error, r.Subscribe)
	}
	r = c.call(&wire.Command{Method: wire.MethodPublish, Publish: &wire.PublishParams{Channel: "chat:room", Data: []byte(`{"n":1}`)}}, retry)
	if r.Error != nil || r.Publish.Offset != 1 {
		t.Fatalf("publish %+v %+v", r.Error, r.Publish)
	}
	var got *wire.Push
	if len(c.backlog) > 0 {
		got = c.backlog[0]
	} else {
		_, _, got = c.next(5 * time.Second)
	}
	if got == nil || got.Publication == nil || got.Publication.Offset != 1 || string(got.Publication.Data) != `{"n":1}` {
		t.Fatalf("publication %+v", got)
	}

	// Too large for a 1200-byte datagram: not sent, counted; the client
	// sees the gap in offsets.
	big := []byte(`"` + strings.Repeat("z", 1500) + `"`)
	if _, err := s.hub.Publish(context.Background(), "chat:room", big, nil); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "oversized publication counted", func() bool { return s.srv.Stats().TooLarge == 1 })
	if _, err := s.hub.Publish(context.Background(), "chat:room", []byte(`"small"`), nil); err != nil {
		t.Fatal(err)
	}
	_, _, got = c.next(5 * time.Second)
	if got == nil || got.Publication.Offset != 3 {
		t.Fatalf("after the oversized one: %+v", got)
	}
	// A reply too large becomes error 106.
	r = c.call(&wire.Command{Method: wire.MethodHistory, History: &wire.HistoryParams{Channel: "chat:room", Limit: -1}}, retry)
	if r.Error == nil || r.Error.Code != wire.ErrLimitExceeded {
		t.Fatalf("oversized history reply: %+v", r)
	}
}

// TestReplyCache: a retried command (same id, new datagram) is answered
// from the cache and not executed twice.
func TestReplyCache(t *testing.T) {
	s := newServer(t, nil)
	c := newUClient(t, s.addr)
	c.connect()
	cmd := wire.Binary.AppendCommand(nil, &wire.Command{ID: 50, Method: wire.MethodPublish,
		Publish: &wire.PublishParams{Channel: "chat:once", Data: []byte(`"once"`)}})
	var replies [][]byte
	for range 3 {
		c.writeRaw(c.data(wire.DatagramData, cmd))
		d, r, _ := c.next(5 * time.Second)
		if r == nil || r.ID != 50 || r.Error != nil {
			t.Fatalf("reply %+v", r)
		}
		replies = append(replies, d.Message)
	}
	if !bytes.Equal(replies[0], replies[1]) || !bytes.Equal(replies[0], replies[2]) {
		t.Fatalf("replies differ: %x", replies)
	}
	res, err := s.hub.History(context.Background(), "chat:once", hub.HistoryOptions{Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Publications) != 1 {
		t.Fatalf("%d publications, want 1", len(res.Publications))
	}
	if st := s.srv.Stats(); st.ReplyResends != 2 {
		t.Fatalf("ReplyResends %d, want 2", st.ReplyResends)
	}
}

func TestSessionExpiry(t *testing.T) {
	s := newServer(t, func(c *session.Config, _ *Options) {
		c.PingInterval = 40 * time.Millisecond
		c.PongTimeout = 80 * time.Millisecond
	})
	c := newUClient(t, s.addr)
	c.connect()
	// Silent: pings arrive, then a close datagram with 3002.
	for {
		d, _, p := c.next(5 * time.Second)
		if d == nil {
			t.Fatal("no close datagram")
		}
		if p != nil && p.Type == wire.PushPing {
			continue
		}
		if d.Kind != wire.DatagramClose || p == nil || p.Type != wire.PushDisconnect || p.Disconnect.Code != wire.DisconnectNoPong {
			t.Fatalf("got %v %+v", d.Kind, p)
		}
		break
	}
	testwait.Until(t, "session forgotten", func() bool { return s.srv.Stats().Sessions == 0 && s.metrics.ClosedWith(wire.DisconnectNoPong) == 1 })
	// The client's next datagram gets a reset.
	c.writeRaw(c.data(wire.DatagramData, nil))
	d, _, err := c.readDatagram(5 * time.Second)
	if err != nil || d.Kind != wire.DatagramReset || d.Session != c.session {
		t.Fatalf("after expiry: %+v %v", d, err)
	}
}

// TestKeepalivesKeepSession: empty data datagrams alone keep a session
// alive past the heartbeat limit.
func TestKeepalivesKeepSession(t *testing.T) {
	s := newServer(t, func(c *session.Config, _ *Options) {
		c.PingInterval = 50 * time.Millisecond
		c.PongTimeout = 150 * time.Millisecond
	})
	c := newUClient(t, s.addr)
	c.connect()
	tick := time.NewTicker(15 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < 40; i++ { // 600 ms: three heartbeat limits
		<-tick.C
		c.writeRaw(c.data(wire.DatagramData, nil))
	}
	if s.srv.Stats().Sessions != 1 || s.metrics.ClosedWith(wire.DisconnectNoPong) != 0 {
		t.Fatal("session expired despite keepalives")
	}
	// A client close ends it without an answer.
	c.writeRaw(c.data(wire.DatagramClose, nil))
	testwait.Until(t, "closed by the client", func() bool { return s.srv.Stats().Sessions == 0 })
}

// TestLossyDelivery runs a subscriber through a relay that drops,
// duplicates and reorders datagrams (seeded, in both directions). The
// client detects duplicates and gaps by offset, fills gaps with history
// (retrying commands with the same id) and ends up with every publication
// exactly once, in order.
func TestLossyDelivery(t *testing.T) {
	s := newServer(t, nil)
	rl := newRelay(t, s.addr, 7, 0.15, 0.10, 0.10)
	c := newUClient(t, rl.addr())
	c.connect()
	sub := c.call(&wire.Command{Method: wire.MethodSubscribe, Subscribe: &wire.SubscribeParams{Channel: "chat:lossy"}}, retry)
	if sub.Error != nil {
		t.Fatal(sub.Error)
	}
	epoch := sub.Subscribe.Epoch
	const n = 300
	for i := 1; i <= n; i++ {
		if _, err := s.hub.Publish(context.Background(), "chat:lossy", []byte(fmt.Sprintf(`{"n":%d}`, i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	var last uint64
	var processed []uint64
	dups, gaps := 0, 0
	process := func(p *wire.Publication) {
		switch {
		case p.Offset <= last:
			dups++
		case p.Offset == last+1:
			if want := fmt.Sprintf(`{"n":%d}`, p.Offset); string(p.Data) != want {
				t.Fatalf("offset %d carries %s", p.Offset, p.Data)
			}
			last = p.Offset
			processed = append(processed, p.Offset)
		}
	}
	fill := func(upTo uint64) {
		gaps++
		for last < upTo {
			r := c.call(&wire.Command{Method: wire.MethodHistory, History: &wire.HistoryParams{
				Channel: "chat:lossy", Limit: 20, Since: &wire.StreamPosition{Offset: last, Epoch: epoch}}}, retry)
			if r.Error != nil {
				t.Fatalf("history: %+v", r.Error)
			}
			for _, p := range r.History.Publications {
				process(p)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for last < n {
		if time.Now().After(deadline) {
			t.Fatalf("stuck at offset %d", last)
		}
		var p *wire.Push
		if len(c.backlog) > 0 {
			p, c.backlog = c.backlog[0], c.backlog[1:]
		} else {
			_, _, p = c.next(200 * time.Millisecond)
		}
		if p == nil {
			// Nothing more is coming: the tail was lost.
			fill(n)
			continue
		}
		if p.Type != wire.PushPublication {
			continue
		}
		if p.Publication.Offset > last+1 {
			fill(p.Publication.Offset - 1)
		}
		process(p.Publication)
	}
	for i, off := range processed {
		if off != uint64(i+1) {
			t.Fatalf("processed[%d] = %d", i, off)
		}
	}
	dropped, duplicated, reordered := rl.counts()
	t.Logf("relay: %d dropped, %d duplicated, %d reordered; client: %d gaps, %d duplicate offsets, %d duplicate datagrams",
		dropped, duplicated, reordered, gaps, dups, c.windowed)
	if dropped == 0 || duplicated == 0 || reordered == 0 || gaps == 0 {
		t.Fatal("the relay did not exercise loss, duplication and reordering")
	}
	if c.windowed+dups == 0 {
		t.Fatal("duplicates never reached the client")
	}
}

func TestDatagramHelpers(t *testing.T) {
	cmd := wire.Binary.AppendCommand(nil, &wire.Command{ID: 300, Method: wire.MethodPing})
	if id := commandID(cmd); id != 300 {
		t.Fatalf("commandID %d", id)
	}
	if id := commandID([]byte{1, 8}); id != 0 {
		t.Fatalf("commandID of a truncated command %d", id)
	}
	big := append([]byte{1, 8}, binary.AppendUvarint(nil, 1<<33)...)
	if id := commandID(big); id != 0 {
		t.Fatalf("commandID of an out-of-range id %d", id)
	}
	rep := wire.Binary.AppendReply(nil, &wire.Reply{ID: 77})
	if id, ok := replyID(rep); !ok || id != 77 {
		t.Fatalf("replyID %d %v", id, ok)
	}
	if _, ok := replyID(wire.Binary.AppendPush(nil, &wire.Push{Type: wire.PushPing})); ok {
		t.Fatal("a push taken for a reply")
	}
}
