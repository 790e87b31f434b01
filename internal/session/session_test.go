package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/testwait"
	"github.com/heraldhq/herald/internal/wire"
)

func TestConnectFirst(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client()
	expectError(t, c.call("subscribe", map[string]any{"channel": "chat:a"}), wire.ErrNotConnected)
	expectError(t, c.call("ping", nil), wire.ErrNotConnected)

	r := c.call("connect", map[string]any{"name": "test"})
	if r.Error != nil || r.Connect == nil {
		t.Fatalf("connect reply %+v", r)
	}
	res := r.Connect
	if res.Client != c.s.ID() || res.Node != "n1" || res.Version != "test" || res.Ping != 25 || !res.Pong || res.Expires {
		t.Errorf("connect result %+v", res)
	}
	expectError(t, c.call("connect", nil), wire.ErrAlreadyConnected)
	if r := c.call("ping", nil); r.Error != nil {
		t.Errorf("ping: %+v", r.Error)
	}
	// pong has no id and no reply.
	c.send(`{"method":"pong"}`)
	if r := c.call("ping", nil); r.Error != nil {
		t.Errorf("ping after pong: %+v", r.Error)
	}
}

func TestConnectAuth(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AllowAnonymous = false })
	now := time.Now()

	t.Run("anonymous refused", func(t *testing.T) {
		c := e.client()
		expectError(t, c.call("connect", nil), wire.ErrUnauthorized)
		c.expectDisconnect(wire.DisconnectUnauthorized)
	})
	t.Run("invalid token", func(t *testing.T) {
		c := e.client()
		bad := e.token(auth.Claims{Subject: "1"}) + "x"
		expectError(t, c.call("connect", map[string]any{"token": bad}), wire.ErrUnauthorized)
		c.expectDisconnect(wire.DisconnectUnauthorized)
	})
	t.Run("expired token", func(t *testing.T) {
		c := e.client()
		tok := e.token(auth.Claims{Subject: "1", ExpiresAt: now.Add(-time.Hour)})
		expectError(t, c.call("connect", map[string]any{"token": tok}), wire.ErrTokenExpired)
		c.expectDisconnect(wire.DisconnectTokenExpired)
	})
	t.Run("valid token", func(t *testing.T) {
		c := e.client()
		tok := e.token(auth.Claims{Subject: "42", ExpiresAt: now.Add(time.Hour), Info: json.RawMessage(`{"name":"Ann"}`)})
		r := c.call("connect", map[string]any{"token": tok})
		if r.Error != nil {
			t.Fatalf("connect: %+v", r.Error)
		}
		if !r.Connect.Expires || r.Connect.TTL < 3590 || r.Connect.TTL > 3600 {
			t.Errorf("expires/ttl = %v/%d", r.Connect.Expires, r.Connect.TTL)
		}
		if c.s.UserID() != "42" || string(c.s.ConnInfo()) != `{"name":"Ann"}` {
			t.Errorf("user %q info %s", c.s.UserID(), c.s.ConnInfo())
		}
	})
	if n := e.metrics.closedWith(wire.DisconnectUnauthorized); n != 2 {
		t.Errorf("closed with 3502 counted %d times, want 2", n)
	}
}

func TestMalformedCommands(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBadCommands = 2 })

	t.Run("garbage closes", func(t *testing.T) {
		c := e.client()
		c.send(`not json`)
		c.expectDisconnect(wire.DisconnectBadRequest)
	})
	t.Run("no id closes", func(t *testing.T) {
		c := e.connected("")
		c.send(`{"method":"ping"}`)
		c.expectDisconnect(wire.DisconnectBadRequest)
	})
	t.Run("bad params answered, then closed", func(t *testing.T) {
		c := e.connected("")
		c.methods[50] = wire.MethodSubscribe
		c.send(`{"id":50,"method":"subscribe","params":{"channel":7}}`)
		expectError(t, c.replyTo(50), wire.ErrBadRequest)
		c.send(`{"id":51,"method":"nope"}`)
		expectError(t, c.replyTo(51), wire.ErrMethodNotFound)
		// The third bad command exceeds MaxBadCommands = 2.
		c.send(`{"id":52,"method":"publish","params":[]}`)
		expectError(t, c.replyTo(52), wire.ErrBadRequest)
		c.expectDisconnect(wire.DisconnectBadRequest)
	})
	t.Run("too large", func(t *testing.T) {
		c := e.connected("")
		c.send(`{"id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", wire.DefaultMaxMessageSize) + `"}}`)
		c.expectDisconnect(wire.DisconnectMessageTooBig)
	})
	if n := e.metrics.command("/107"); n < 2 {
		t.Errorf("undecodable commands counted %d times", n)
	}
}

func TestSubscribePublishReceive(t *testing.T) {
	e := newEnv(t, nil)
	a := e.connected("")
	b := e.connected("")
	for _, c := range []*client{a, b} {
		r := c.call("subscribe", map[string]any{"channel": "chat:room"})
		if r.Error != nil || r.Subscribe == nil || !r.Subscribe.Recoverable || r.Subscribe.Epoch == "" {
			t.Fatalf("subscribe reply %+v", r)
		}
	}
	r := a.call("publish", map[string]any{"channel": "chat:room", "data": map[string]any{"text": "hi"}})
	if r.Error != nil || r.Publish.Offset != 1 {
		t.Fatalf("publish reply %+v (%+v)", r, r.Error)
	}
	for _, c := range []*client{a, b} {
		var p *wire.Push
		for p = c.nextPush(); p.Type == wire.PushJoin; p = c.nextPush() {
		}
		if p.Type != wire.PushPublication || p.Channel != "chat:room" || string(p.Publication.Data) != `{"text":"hi"}` || p.Publication.Offset != 1 {
			t.Fatalf("push %+v (%+v)", p, p.Publication)
		}
		if p.Publication.Info == nil || p.Publication.Info.Client != a.s.ID() {
			t.Errorf("publication info %+v, want client %s", p.Publication.Info, a.s.ID())
		}
	}
	expectError(t, a.call("subscribe", map[string]any{"channel": "chat:room"}), wire.ErrAlreadySubscribed)
	if r := a.call("unsubscribe", map[string]any{"channel": "chat:room"}); r.Error != nil {
		t.Fatalf("unsubscribe: %+v", r.Error)
	}
	expectError(t, a.call("unsubscribe", map[string]any{"channel": "chat:room"}), wire.ErrNotSubscribed)
	b.call("publish", map[string]any{"channel": "chat:room", "data": 2})
	// a gets nothing more for the channel; its next message is the reply
	// to this ping.
	id := a.cmd("ping", nil)
	if r, p := a.next(); r == nil || r.ID != id {
		t.Fatalf("after unsubscribe got reply %+v push %+v", r, p)
	}
}

func TestPermissions(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxDataSize = 1000 })
	anon := e.connected("")
	u42 := e.connected(e.token(auth.Claims{Subject: "42", Channels: []string{"vip:gold"}}))
	u7 := e.connected(e.token(auth.Claims{Subject: "7"}))

	sub := func(c *client, ch string) *wire.Reply {
		t.Helper()
		return c.call("subscribe", map[string]any{"channel": ch})
	}
	expectError(t, sub(anon, "nope:x"), wire.ErrUnknownChannel)
	expectError(t, sub(anon, "bad channel"), wire.ErrUnknownChannel)
	expectError(t, sub(anon, "members:x"), wire.ErrPermissionDenied)
	if r := sub(u7, "members:x"); r.Error != nil {
		t.Errorf("member subscribe: %+v", r.Error)
	}
	expectError(t, sub(u7, "user:42"), wire.ErrPermissionDenied)
	expectError(t, sub(anon, "user:42"), wire.ErrPermissionDenied)
	if r := sub(u42, "user:42"); r.Error != nil {
		t.Errorf("own user channel: %+v", r.Error)
	}
	expectError(t, sub(u7, "vip:gold"), wire.ErrPermissionDenied)
	expectError(t, sub(u42, "vip:silver"), wire.ErrPermissionDenied)
	if r := sub(u42, "vip:gold"); r.Error != nil {
		t.Errorf("granted channel: %+v", r.Error)
	}

	pub := func(c *client, ch string, data any) *wire.Reply {
		t.Helper()
		return c.call("publish", map[string]any{"channel": ch, "data": data})
	}
	expectError(t, pub(anon, "ro:x", 1), wire.ErrNotAvailable)
	expectError(t, pub(anon, "members:x", 1), wire.ErrPermissionDenied)
	expectError(t, pub(u7, "user:42", 1), wire.ErrPermissionDenied)
	if r := pub(u42, "user:42", 1); r.Error != nil {
		t.Errorf("publish to own subscribed channel: %+v", r.Error)
	}
	expectError(t, pub(u7, "vip:gold", 1), wire.ErrPermissionDenied)
	expectError(t, pub(anon, "nope:x", 1), wire.ErrUnknownChannel)

	// Data checks.
	expectError(t, anon.call("publish", map[string]any{"channel": "chat:x"}), wire.ErrBadRequest)
	anon.methods[900] = wire.MethodPublish
	anon.send(`{"id":900,"method":"publish","params":{"channel":"chat:x","data":{"a":1}}}`)
	if r := anon.replyTo(900); r.Error != nil {
		t.Errorf("valid data: %+v", r.Error)
	}
	expectError(t, pub(anon, "chat:x", strings.Repeat("x", 1000)), wire.ErrLimitExceeded)

	// Presence and history availability.
	expectError(t, anon.call("presence", map[string]any{"channel": "ro:x"}), wire.ErrNotAvailable)
	expectError(t, anon.call("history", map[string]any{"channel": "ro:x"}), wire.ErrNotAvailable)
	expectError(t, anon.call("history", map[string]any{"channel": "members:x"}), wire.ErrPermissionDenied)
	expectError(t, u7.call("history", map[string]any{"channel": "user:42"}), wire.ErrPermissionDenied)
	if r := u42.call("history", map[string]any{"channel": "user:42", "limit": -1}); r.Error != nil || len(r.History.Publications) != 1 {
		t.Errorf("own history: %+v", r)
	}
}

func TestDataNotJSON(t *testing.T) {
	// JSON framing cannot carry invalid data; the binary codec can, and
	// the session validates it.
	e := newEnv(t, nil)
	ft := newFakeTransport()
	s, err := e.m.NewSession(ft, wire.Binary)
	if err != nil {
		t.Fatal(err)
	}
	ft.s = s
	send := func(cmd *wire.Command) *wire.Reply {
		t.Helper()
		s.HandleMessage(wire.Binary.AppendCommand(nil, cmd))
		ft.mu.Lock()
		defer ft.mu.Unlock()
		if len(ft.msgs) == 0 {
			t.Fatal("no reply")
		}
		r, err := wire.Binary.DecodeReply(ft.msgs[len(ft.msgs)-1], nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := send(&wire.Command{ID: 1, Method: wire.MethodConnect, Connect: &wire.ConnectParams{}}); r.Error != nil {
		t.Fatalf("binary connect: %+v", r.Error)
	}
	for i, data := range []string{"{", "1 2", `"a`, "nul"} {
		r := send(&wire.Command{ID: uint32(2 + i), Method: wire.MethodPublish, Publish: &wire.PublishParams{Channel: "chat:x", Data: []byte(data)}})
		expectError(t, r, wire.ErrDataNotJSON)
	}
	if r := send(&wire.Command{ID: 9, Method: wire.MethodPublish, Publish: &wire.PublishParams{Channel: "chat:x", Data: []byte(`{"ok":true}`)}}); r.Error != nil {
		t.Fatalf("valid data: %+v", r.Error)
	}
}

func TestSubscriptionLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxSubscriptions = 2 })
	c := e.connected("")
	for i := range 2 {
		if r := c.call("subscribe", map[string]any{"channel": fmt.Sprintf("c%d", i)}); r.Error != nil {
			t.Fatal(r.Error)
		}
	}
	expectError(t, c.call("subscribe", map[string]any{"channel": "c2"}), wire.ErrLimitExceeded)
	c.call("unsubscribe", map[string]any{"channel": "c0"})
	if r := c.call("subscribe", map[string]any{"channel": "c2"}); r.Error != nil {
		t.Fatalf("after unsubscribe: %+v", r.Error)
	}
}

func TestRecovery(t *testing.T) {
	e := newEnv(t, nil)
	pubr := e.connected("")
	a := e.connected("")
	r := a.call("subscribe", map[string]any{"channel": "chat:s"})
	epoch := r.Subscribe.Epoch
	for i := 1; i <= 5; i++ {
		pubr.call("publish", map[string]any{"channel": "chat:s", "data": i})
	}
	var last uint64
	for last < 5 {
		p := a.nextPush()
		if p.Type == wire.PushPublication {
			last = p.Publication.Offset
		}
	}
	// The client drops; publications 6-10 happen while it is away.
	a.s.Disconnect(wire.Disconnect{Code: wire.DisconnectForceReconnect, Reconnect: true})
	a.waitClosed()
	for i := 6; i <= 10; i++ {
		pubr.call("publish", map[string]any{"channel": "chat:s", "data": i})
	}
	b := e.connected("")
	r = b.call("subscribe", map[string]any{"channel": "chat:s", "since": map[string]any{"offset": last, "epoch": epoch}})
	res := r.Subscribe
	if r.Error != nil || !res.WasRecovering || !res.Recovered || res.Offset != 10 || res.Epoch != epoch {
		t.Fatalf("recovering subscribe: %+v %+v", r.Error, res)
	}
	for i, p := range res.Publications {
		if p.Offset != uint64(6+i) || string(p.Data) != fmt.Sprint(6+i) {
			t.Fatalf("recovered[%d] = offset %d data %s", i, p.Offset, p.Data)
		}
	}
	if len(res.Publications) != 5 {
		t.Fatalf("recovered %d publications, want 5", len(res.Publications))
	}
	pubr.call("publish", map[string]any{"channel": "chat:s", "data": 11})
	p := b.nextPush()
	for p.Type == wire.PushJoin {
		p = b.nextPush()
	}
	if p.Type != wire.PushPublication || p.Publication.Offset != 11 {
		t.Fatalf("live after recovery: %+v", p)
	}

	// A wrong epoch cannot be recovered.
	c := e.connected("")
	r = c.call("subscribe", map[string]any{"channel": "chat:s", "since": map[string]any{"offset": 3, "epoch": "other"}})
	if r.Error != nil || !r.Subscribe.WasRecovering || r.Subscribe.Recovered || len(r.Subscribe.Publications) != 0 {
		t.Fatalf("wrong epoch: %+v %+v", r.Error, r.Subscribe)
	}
	expectError(t, c.call("subscribe", map[string]any{"channel": "chat:t", "since": map[string]any{"offset": 3}}), wire.ErrBadRequest)
}

func TestHistoryAndPresence(t *testing.T) {
	e := newEnv(t, nil)
	a := e.connected(e.token(auth.Claims{Subject: "42"}))
	b := e.connected("")
	a.call("subscribe", map[string]any{"channel": "chat:h"})
	b.call("subscribe", map[string]any{"channel": "chat:h"})
	for i := 1; i <= 4; i++ {
		a.call("publish", map[string]any{"channel": "chat:h", "data": i})
	}
	r := b.call("history", map[string]any{"channel": "chat:h", "limit": 2, "reverse": true})
	if r.Error != nil || len(r.History.Publications) != 2 || r.History.Publications[0].Offset != 4 || r.History.Offset != 4 {
		t.Fatalf("history: %+v %+v", r.Error, r.History)
	}
	epoch := r.History.Epoch
	r = b.call("history", map[string]any{"channel": "chat:h", "limit": -1, "since": map[string]any{"offset": 2, "epoch": epoch}})
	if r.Error != nil || len(r.History.Publications) != 2 || r.History.Publications[0].Offset != 3 {
		t.Fatalf("history since: %+v %+v", r.Error, r.History)
	}
	expectError(t, b.call("history", map[string]any{"channel": "chat:h", "since": map[string]any{"offset": 2, "epoch": "old"}}), wire.ErrUnrecoverable)

	r = b.call("presence", map[string]any{"channel": "chat:h"})
	if r.Error != nil || len(r.Presence.Presence) != 2 || r.Presence.Presence[a.s.ID()].User != "42" {
		t.Fatalf("presence: %+v %+v", r.Error, r.Presence)
	}
	r = b.call("presence_stats", map[string]any{"channel": "chat:h"})
	if r.Error != nil || r.PresenceStats.NumClients != 2 || r.PresenceStats.NumUsers != 1 {
		t.Fatalf("presence stats: %+v %+v", r.Error, r.PresenceStats)
	}

	// Closing a removes its presence and b sees it leave.
	a.s.Disconnect(wire.Disconnect{Code: wire.DisconnectNormal})
	a.waitClosed()
	for {
		p := b.nextPush()
		if p.Type == wire.PushLeave && p.Leave.Client == a.s.ID() {
			break
		}
	}
	r = b.call("presence", map[string]any{"channel": "chat:h"})
	if _, ok := r.Presence.Presence[a.s.ID()]; ok || len(r.Presence.Presence) != 1 {
		t.Fatalf("presence after close: %+v", r.Presence)
	}
}

func TestSend(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AllowSend = true })
	from := e.connected(e.token(auth.Claims{Subject: "1"}))
	to := e.connected(e.token(auth.Claims{Subject: "2"}))
	anon := e.connected("")
	if r := from.call("send", map[string]any{"user": "2", "data": map[string]any{"text": "psst"}}); r.Error != nil {
		t.Fatalf("send: %+v", r.Error)
	}
	p := to.nextPush()
	if p.Type != wire.PushMessage || string(p.Message.Data) != `{"text":"psst"}` || p.Message.Info.User != "1" {
		t.Fatalf("message push %+v", p)
	}
	expectError(t, anon.call("send", map[string]any{"user": "2", "data": 1}), wire.ErrPermissionDenied)
	expectError(t, from.call("send", map[string]any{"data": 1}), wire.ErrBadRequest)
	expectError(t, from.call("send", map[string]any{"user": "2"}), wire.ErrBadRequest)

	off := newEnv(t, nil)
	c := off.connected(off.token(auth.Claims{Subject: "1"}))
	expectError(t, c.call("send", map[string]any{"user": "2", "data": 1}), wire.ErrNotAvailable)
}

func TestRefresh(t *testing.T) {
	e := newEnv(t, nil)
	now := time.Now()
	c := e.connected(e.token(auth.Claims{Subject: "5", ExpiresAt: now.Add(time.Minute)}))
	r := c.call("refresh", map[string]any{"token": e.token(auth.Claims{Subject: "5", ExpiresAt: now.Add(time.Hour)})})
	if r.Error != nil || !r.Refresh.Expires || r.Refresh.TTL < 3500 {
		t.Fatalf("refresh: %+v %+v", r.Error, r.Refresh)
	}
	expectError(t, c.call("refresh", map[string]any{"token": e.token(auth.Claims{Subject: "6"})}), wire.ErrUnauthorized)
	expectError(t, c.call("refresh", map[string]any{"token": "junk"}), wire.ErrUnauthorized)
	expectError(t, c.call("refresh", map[string]any{"token": e.token(auth.Claims{Subject: "5", ExpiresAt: now.Add(-time.Hour)})}), wire.ErrTokenExpired)
	if r := c.call("ping", nil); r.Error != nil {
		t.Fatal("failed refreshes must keep the connection")
	}
}

func TestSlowConsumer(t *testing.T) {
	e := newEnv(t, nil)
	fast := e.connected("")
	slow := e.connected("")
	pubr := e.connected("")
	for _, c := range []*client{fast, slow} {
		if r := c.call("subscribe", map[string]any{"channel": "feed"}); r.Error != nil {
			t.Fatal(r.Error)
		}
	}
	// The slow client stops reading: its queue holds 3 more messages.
	slow.ft.mu.Lock()
	slow.ft.limit = len(slow.ft.msgs) + 3
	slow.ft.mu.Unlock()
	const n = 50
	for i := 1; i <= n; i++ {
		if r := pubr.call("publish", map[string]any{"channel": "feed", "data": i}); r.Error != nil {
			t.Fatal(r.Error)
		}
	}
	if code := slow.waitClosed(); code != wire.DisconnectSlowConsumer {
		t.Fatalf("slow client closed with %d, want 3001", code)
	}
	for i := 1; i <= n; i++ {
		p := fast.nextPush()
		if p.Type != wire.PushPublication || string(p.Publication.Data) != fmt.Sprint(i) {
			t.Fatalf("fast client message %d: %+v", i, p)
		}
	}
	testwait.Until(t, "slow-consumer close counted", func() bool { return e.metrics.closedWith(wire.DisconnectSlowConsumer) == 1 })
	testwait.Until(t, "slow client removed from hub", func() bool { return e.hub.NumSubscribers("feed") == 1 })
}

func TestServerDisconnectAndUnsubscribe(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connected(e.token(auth.Claims{Subject: "9"}))
	c.call("subscribe", map[string]any{"channel": "chat:z"})
	ctx := context.Background()
	if err := e.hub.ServerUnsubscribe(ctx, "9", "", "chat:z"); err != nil {
		t.Fatal(err)
	}
	var p *wire.Push
	for p = c.nextPush(); p.Type != wire.PushUnsubscribe; p = c.nextPush() {
	}
	if p.Channel != "chat:z" || p.Unsubscribe.Code != wire.UnsubscribeServer {
		t.Fatalf("unsubscribe push %+v %+v", p, p.Unsubscribe)
	}
	// The session forgot the channel: subscribing again works.
	if r := c.call("subscribe", map[string]any{"channel": "chat:z"}); r.Error != nil {
		t.Fatalf("resubscribe: %+v", r.Error)
	}
	if err := e.hub.Disconnect(ctx, "9", "", wire.DisconnectForceNoReconnect, "banned"); err != nil {
		t.Fatal(err)
	}
	c.expectDisconnect(wire.DisconnectForceNoReconnect)
	testwait.Until(t, "session removed", func() bool { return e.m.Len() == 0 })
}

func TestDrain(t *testing.T) {
	e := newEnv(t, nil)
	var cs []*client
	for range 5 {
		cs = append(cs, e.connected(""))
	}
	cs = append(cs, e.client()) // not connected yet
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.m.Drain(ctx, wire.Disconnect{Code: wire.DisconnectShutdown, Reason: "drain", Reconnect: true}, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Errorf("drain of 6 sessions over 50ms took %v: not spread", el)
	}
	for _, c := range cs {
		c.expectDisconnect(wire.DisconnectShutdown)
	}
	if e.m.Len() != 0 {
		t.Fatalf("%d sessions left", e.m.Len())
	}
	if _, err := e.m.NewSession(newFakeTransport(), wire.JSON); !errors.Is(err, ErrDraining) {
		t.Fatalf("NewSession while draining: %v", err)
	}
}

func TestHistoryContinues(t *testing.T) {
	pos := func(o uint64) wire.StreamPosition { return wire.StreamPosition{Offset: o, Epoch: "e"} }
	pubs := func(offs ...uint64) []*wire.Publication {
		var out []*wire.Publication
		for _, o := range offs {
			out = append(out, &wire.Publication{Offset: o})
		}
		return out
	}
	since := &wire.StreamPosition{Offset: 5, Epoch: "e"}
	for _, tc := range []struct {
		name    string
		res     hub.HistoryResult
		reverse bool
		limit   int
		want    bool
	}{
		{"adjacent", hub.HistoryResult{Position: pos(8), Publications: pubs(6, 7, 8)}, false, 10, true},
		{"trimmed", hub.HistoryResult{Position: pos(8), Publications: pubs(7, 8)}, false, 10, false},
		{"nothing new", hub.HistoryResult{Position: pos(5)}, false, 10, true},
		{"lost", hub.HistoryResult{Position: pos(8)}, false, 10, false},
		{"position only", hub.HistoryResult{Position: pos(8)}, false, 0, true},
		{"other epoch", hub.HistoryResult{Position: wire.StreamPosition{Offset: 8, Epoch: "f"}, Publications: pubs(6)}, false, 10, false},
		{"since ahead", hub.HistoryResult{Position: pos(3)}, false, 10, false},
		{"reverse page", hub.HistoryResult{Position: pos(8), Publications: pubs(8, 7)}, true, 2, true},
		{"reverse stale", hub.HistoryResult{Position: pos(9), Publications: pubs(8, 7)}, true, 2, false},
	} {
		if got := historyContinues(since, tc.res, tc.reverse, tc.limit); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDataNotJSONOverJSONCodec(t *testing.T) {
	// The JSON codec validates data while it decodes the command, so the
	// session does not scan it again; invalid data never gets through.
	e := newEnv(t, nil)
	if !decodedDataValid(wire.JSON) || decodedDataValid(wire.Binary) {
		t.Fatal("only the JSON codec guarantees valid data")
	}
	c := e.connected("")
	// Valid data of every kind is published.
	for _, data := range []string{`{"a":[1,{"b":null}]}`, `"s\u00e9"`, `-1.5e3`, `true`, `[]`} {
		r := c.call("publish", map[string]any{"channel": "chat:x", "data": json.RawMessage(data)})
		if r.Error != nil {
			t.Fatalf("publish %s: %+v", data, r.Error)
		}
	}
	r := c.call("history", map[string]any{"channel": "chat:x", "limit": -1})
	if r.Error != nil || len(r.History.Publications) != 5 {
		t.Fatalf("history after valid publishes: %+v", r)
	}
	// A command whose data is not JSON is not a command: the client is
	// disconnected as malformed and nothing is published.
	c.send(`{"id":90,"method":"publish","params":{"channel":"chat:x","data":{"a":}}}`)
	c.expectDisconnect(wire.DisconnectBadRequest)
	other := e.connected("")
	r = other.call("history", map[string]any{"channel": "chat:x", "limit": -1})
	if r.Error != nil || len(r.History.Publications) != 5 {
		t.Fatalf("history after the invalid publish: %+v", r)
	}
}

// sliceCodec is a codec whose type cannot be compared with ==.
type sliceCodec struct {
	wire.JSONCodec
	_ []byte
}

func TestCodecNumbers(t *testing.T) {
	var cs codecSet
	a, err := cs.id(wire.JSON)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := cs.id(wire.Binary)
	again, _ := cs.id(wire.JSONCodec{})
	limited, _ := cs.id(wire.JSONCodec{MaxMessageSize: 1024})
	if a == b || again != a || limited == a || limited == b {
		t.Fatalf("ids json %d binary %d json again %d limited json %d", a, b, again, limited)
	}
	if got := cs.get(limited).codec; got != (wire.JSONCodec{MaxMessageSize: 1024}) {
		t.Fatalf("codec %d is %#v", limited, got)
	}
	if p := string(cs.get(b).ping); p != string(wire.Binary.AppendPush(nil, &wire.Push{Type: wire.PushPing})) {
		t.Fatalf("binary ping %q", p)
	}
	if _, err := cs.id(sliceCodec{}); err == nil {
		t.Fatal("a codec of an incomparable type got a number")
	}
	if _, err := cs.id(nil); err == nil {
		t.Fatal("a nil codec got a number")
	}
}
