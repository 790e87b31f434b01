package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/testnode"
	"github.com/heraldhq/herald/internal/testwait"
)

func TestPubSubPresenceHistory(t *testing.T) {
	s := startServer(t, nil)
	for _, tr := range nodes(t, s) {
		t.Run(tr.name, func(t *testing.T) {
			ctx := ctxT(t)
			o := fastOptions()
			o.TCPEncoding = tr.enc
			o.Token = s.token("alice", time.Hour)
			connected := make(chan ConnectedEvent, 1)
			o.OnConnected = func(e ConnectedEvent) { connected <- e }
			c := newClient(t, tr.url(tr.addr), o)
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			ev := <-connected
			if ev.Client == "" || ev.Ping <= 0 {
				t.Errorf("connected event %+v", ev)
			}
			channel := "chat:" + tr.name
			var got collector
			subscribed := make(chan SubscribedEvent, 1)
			sub, err := c.Subscribe(channel, got.add, OnSubscribed(func(e SubscribedEvent) { subscribed <- e }))
			if err != nil {
				t.Fatal(err)
			}
			if err := sub.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			if e := <-subscribed; e.WasRecovering || !e.Recoverable || e.Position.Epoch == "" {
				t.Errorf("subscribed event %+v", e)
			}
			if _, err := c.Subscribe(channel, got.add); !errors.Is(err, &Error{Code: CodeAlreadySubscribed}) {
				t.Errorf("second subscribe: %v", err)
			}
			for i := 1; i <= 3; i++ {
				pos, err := c.Publish(ctx, channel, []byte(fmt.Sprintf(`{"n":%d}`, i)))
				if err != nil {
					t.Fatal(err)
				}
				if pos.Offset != uint64(i) || pos.Epoch == "" {
					t.Errorf("publish %d: position %+v", i, pos)
				}
			}
			testwait.Until(t, "3 publications", func() bool { return got.len() == 3 })
			for i, p := range got.all() {
				if p.Channel != channel || p.Offset != uint64(i+1) || string(p.Data) != fmt.Sprintf(`{"n":%d}`, i+1) ||
					p.Info == nil || p.Info.User != "alice" || p.Time.IsZero() {
					t.Errorf("publication %d: %+v", i, p)
				}
			}
			if pos, ok := sub.Position(); !ok || pos.Offset != 3 {
				t.Errorf("position %+v %v", pos, ok)
			}

			pres, err := c.Presence(ctx, channel)
			if err != nil {
				t.Fatal(err)
			}
			if len(pres) != 1 || pres[ev.Client].User != "alice" {
				t.Errorf("presence %+v", pres)
			}
			stats, err := c.PresenceStats(ctx, channel)
			if err != nil || stats != (PresenceStats{NumClients: 1, NumUsers: 1}) {
				t.Errorf("presence stats %+v %v", stats, err)
			}
			h, err := c.History(ctx, channel, HistoryOptions{Limit: 2, Reverse: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(h.Publications) != 2 || h.Publications[0].Offset != 3 || h.Publications[1].Offset != 2 || h.Position.Offset != 3 {
				t.Errorf("history %+v", h)
			}
			h, err = c.History(ctx, channel, HistoryOptions{Limit: -1, Since: &Position{Offset: 1, Epoch: h.Position.Epoch}})
			if err != nil || len(h.Publications) != 2 || h.Publications[0].Offset != 2 {
				t.Errorf("history since: %+v %v", h, err)
			}
			if _, err := c.History(ctx, channel, HistoryOptions{Since: &Position{Offset: 1, Epoch: "other"}}); !errors.Is(err, &Error{Code: CodeUnrecoverable}) {
				t.Errorf("history with a foreign epoch: %v", err)
			}
			if _, err := c.Ping(ctx); err != nil {
				t.Error(err)
			}

			unsub := make(chan UnsubscribedEvent, 1)
			sub2, err := c.Subscribe("chat:other-"+tr.name, func(Publication) {}, OnUnsubscribed(func(e UnsubscribedEvent) { unsub <- e }))
			if err != nil {
				t.Fatal(err)
			}
			if err := sub2.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			if err := sub2.Unsubscribe(ctx); err != nil {
				t.Fatal(err)
			}
			if e := <-unsub; e.Code != CodeClosed {
				t.Errorf("unsubscribed event %+v", e)
			}
			if sub2.State() != SubscriptionUnsubscribed {
				t.Errorf("state %v", sub2.State())
			}
		})
	}
}

func TestErrors(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	c := newClient(t, s.wsURL(), fastOptions())
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe("nope:x", func(Publication) {})
	if err != nil {
		t.Fatal(err)
	}
	var e *Error
	if err := sub.Ready(ctx); !errors.As(err, &e) || e.Code != CodeUnknownChannel {
		t.Errorf("unknown namespace: %v", err)
	}
	if sub.State() != SubscriptionUnsubscribed {
		t.Errorf("state %v", sub.State())
	}
	if _, err := c.Publish(ctx, "chat:x", []byte(`{`)); !errors.Is(err, &Error{Code: CodeBadData}) {
		t.Errorf("bad data: %v", err)
	}
	if _, err := c.Publish(ctx, "demo:x", []byte(`1`)); !errors.As(err, &e) || e.Code != CodePermissionDenied && e.Code != CodeNotAvailable {
		t.Errorf("publish to read-only namespace: %v", err)
	}
	if _, err := New("http://x", Options{}); err == nil {
		t.Error("http URL accepted")
	}

	// Unreachable server: Connect reports the failed attempt.
	ln := newProxy(t, "127.0.0.1:1")
	ln.hold(true)
	u := newClient(t, "tcp://"+ln.addr(), fastOptions())
	if err := u.Connect(ctx); err == nil {
		t.Error("connect to a refusing server succeeded")
	}
	if u.State() != StateConnecting {
		t.Errorf("state after a failed attempt: %v", u.State())
	}

	// A bad token stops the client for good.
	o := fastOptions()
	o.Token = "not-a-token"
	bad := newClient(t, s.wsURL(), o)
	if err := bad.Connect(ctx); !errors.As(err, &e) || e.Code != CodeUnauthorized {
		t.Errorf("bad token: %v", err)
	}
	if bad.State() != StateDisconnected {
		t.Errorf("state after a refused token: %v", bad.State())
	}
	if _, err := bad.Publish(ctx, "chat:x", []byte(`1`)); err == nil {
		t.Error("publish on a stopped client succeeded")
	}
}

// TestRecoveryUnderDisconnects publishes a numbered stream while the
// connection is cut again and again; every message must arrive exactly
// once and in order.
func TestRecoveryUnderDisconnects(t *testing.T) {
	s := startServer(t, nil)
	for _, tr := range nodes(t, s) {
		t.Run(tr.name, func(t *testing.T) {
			ctx := ctxT(t)
			px := newProxy(t, tr.addr)
			o := fastOptions()
			o.TCPEncoding = tr.enc
			user := "rec-" + tr.name
			o.Token = s.token(user, time.Hour)
			var connects, notRecovered, recovered atomic.Int32
			o.OnConnected = func(ConnectedEvent) { connects.Add(1) }
			c := newClient(t, tr.url(px.addr()), o)
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			channel := "stream:" + tr.name
			var got collector
			sub, err := c.Subscribe(channel, got.add, OnSubscribed(func(e SubscribedEvent) {
				switch {
				case e.WasRecovering && e.Recovered:
					recovered.Add(1)
				case e.WasRecovering:
					notRecovered.Add(1)
				}
			}))
			if err != nil {
				t.Fatal(err)
			}
			if err := sub.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			const total = 400
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 1; i <= total; i++ {
					tr.publish(channel, []byte(strconv.Itoa(i)))
				}
			}()
			for cut := 0; cut < 8; cut++ {
				n := recovered.Load() + notRecovered.Load()
				testwait.Until(t, "progress", func() bool { return got.len() > cut*total/10 || got.len() == total })
				if cut%2 == 0 {
					px.cut()
				} else {
					tr.disconnect(user)
				}
				testwait.Until(t, "resubscription", func() bool { return recovered.Load()+notRecovered.Load() > n })
			}
			wg.Wait()
			testwait.Until(t, "every publication", func() bool { return got.len() >= total })
			pubs := got.all()
			if len(pubs) != total {
				t.Fatalf("got %d publications, want %d", len(pubs), total)
			}
			for i, p := range pubs {
				if string(p.Data) != strconv.Itoa(i+1) || p.Offset != uint64(i+1) {
					t.Fatalf("publication %d: offset %d data %s", i, p.Offset, p.Data)
				}
			}
			if notRecovered.Load() != 0 {
				t.Errorf("%d resubscriptions not recovered", notRecovered.Load())
			}
			if connects.Load() < 9 || recovered.Load() < 8 {
				t.Errorf("%d connects, %d recovered resubscriptions; want 9 and 8", connects.Load(), recovered.Load())
			}
		})
	}
}

// TestNotRecoveredOutOfWindow: more publications than the history keeps
// are missed; the resubscription reports recovered false and live
// delivery continues.
func TestNotRecoveredOutOfWindow(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	px := newProxy(t, s.srv.Addr())
	o := fastOptions()
	events := make(chan SubscribedEvent, 4)
	c := newClient(t, "ws://"+px.addr()+"/ws", o)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	var got collector
	sub, err := c.Subscribe("tiny:x", got.add, OnSubscribed(func(e SubscribedEvent) { events <- e }))
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	<-events
	s.api("publish", map[string]any{"channel": "tiny:x", "data": 1})
	testwait.Until(t, "first publication", func() bool { return got.len() == 1 })
	px.hold(true)
	px.cut()
	testwait.Until(t, "connection loss", func() bool { return c.State() == StateConnecting })
	for i := 2; i <= 10; i++ {
		s.api("publish", map[string]any{"channel": "tiny:x", "data": i})
	}
	px.hold(false)
	e := <-events
	if !e.WasRecovering || e.Recovered || e.Position.Offset != 10 {
		t.Errorf("resubscribe event %+v, want was_recovering without recovered at offset 10", e)
	}
	s.api("publish", map[string]any{"channel": "tiny:x", "data": 11})
	testwait.Until(t, "live publication", func() bool { return got.len() == 2 })
	if p := got.all()[1]; p.Offset != 11 {
		t.Errorf("live publication after the gap: %+v", p)
	}
}

func TestDirectMessage(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.AllowClientSend = true })
	ctx := ctxT(t)
	msgs := make(chan Message, 1)
	o := fastOptions()
	o.Token = s.token("bob", 0)
	o.OnMessage = func(m Message) { msgs <- m }
	c := newClient(t, s.wsURL(), o)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	s.api("send", map[string]any{"user": "bob", "data": map[string]string{"hi": "bob"}})
	select {
	case m := <-msgs:
		if string(m.Data) != `{"hi":"bob"}` {
			t.Errorf("message %s", m.Data)
		}
	case <-ctx.Done():
		t.Fatal("no message")
	}

	o2 := fastOptions()
	o2.Token = s.token("alice", 0)
	a := newClient(t, s.wsURL(), o2)
	if err := a.Send(ctx, "bob", []byte(`"from alice"`)); err == nil {
		t.Error("send before Connect succeeded")
	}
	if err := a.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(ctx, "bob", []byte(`"from alice"`)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if string(m.Data) != `"from alice"` || m.Info == nil || m.Info.User != "alice" {
			t.Errorf("message %s from %+v", m.Data, m.Info)
		}
	case <-ctx.Done():
		t.Fatal("no message from alice")
	}
}

// TestTokenRefresh: a short-lived token is replaced on the live
// connection before it expires, and an expired one fetched again.
func TestTokenRefresh(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	var calls atomic.Int32
	refreshed := make(chan struct{})
	o := fastOptions()
	o.GetToken = func(context.Context) (string, error) {
		n := calls.Add(1)
		switch n {
		case 1:
			return s.token("carol", -time.Minute), nil // already expired: refused with 109
		case 2:
			return s.token("carol", 2*time.Second), nil
		case 3:
			close(refreshed)
		}
		return s.token("carol", time.Hour), nil
	}
	var disconnects atomic.Int32
	o.OnDisconnected = func(DisconnectedEvent) { disconnects.Add(1) }
	c := newClient(t, s.wsURL(), o)
	if err := c.Connect(ctx); err == nil {
		t.Fatal("connect with an expired token succeeded")
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-refreshed:
	case <-ctx.Done():
		t.Fatal("token not refreshed")
	}
	// The refresh must keep the connection past the first token's expiry.
	deadline := time.Now().Add(3 * time.Second)
	testwait.Until(t, "the first token's expiry", func() bool { return time.Now().After(deadline) })
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Connects != 1 || disconnects.Load() != 0 {
		t.Errorf("connects %d, disconnects %d: the refresh should keep the connection", st.Connects, disconnects.Load())
	}
}

func TestCloseFromHandler(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	c := newClient(t, s.wsURL(), fastOptions())
	closed := make(chan struct{})
	sub, err := c.Subscribe("chat:close", func(Publication) {
		c.Close()
		close(closed)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sub.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	s.api("publish", map[string]any{"channel": "chat:close", "data": 1})
	<-closed
	if c.State() != StateClosed {
		t.Errorf("state %v", c.State())
	}
	if _, err := c.Publish(ctx, "chat:close", []byte("1")); !errors.Is(err, ErrClosed) {
		t.Errorf("publish after close: %v", err)
	}
	if err := c.Connect(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("connect after close: %v", err)
	}
	<-c.events.done
}

// TestSlowHandlerRecovers: a handler that falls behind a small event
// queue makes the client reconnect and recover; nothing is lost or
// repeated.
func TestSlowHandlerRecovers(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	o := fastOptions()
	o.EventQueueSize = 4
	c := newClient(t, s.wsURL(), o)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var got collector
	sub, err := c.Subscribe("stream:slow", func(p Publication) {
		<-release
		got.add(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	const total = 50
	for i := 1; i <= total; i++ {
		s.api("publish", map[string]any{"channel": "stream:slow", "data": i})
	}
	testwait.Until(t, "an overflow", func() bool { return c.Stats().QueueOverflows > 0 })
	close(release)
	testwait.Until(t, "every publication", func() bool { return got.len() >= total })
	for i, p := range got.all() {
		if p.Offset != uint64(i+1) || string(p.Data) != strconv.Itoa(i+1) {
			t.Fatalf("publication %d: offset %d data %s", i, p.Offset, p.Data)
		}
	}
	if got.len() != total {
		t.Errorf("%d publications, want %d", got.len(), total)
	}
}

func TestJoinLeave(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	joins := make(chan ClientInfo, 4)
	leaves := make(chan ClientInfo, 4)
	o := fastOptions()
	o.Token = s.token("watcher", 0)
	c := newClient(t, s.wsURL(), o)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe("chat:room", func(Publication) {},
		OnJoin(func(ci ClientInfo) { joins <- ci }), OnLeave(func(ci ClientInfo) { leaves <- ci }))
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	o2 := fastOptions()
	o2.Token = s.token("visitor", 0)
	v := newClient(t, s.wsURL(), o2)
	if err := v.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	vs, err := v.Subscribe("chat:room", func(Publication) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := vs.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	var ci ClientInfo
	for ci = range joins {
		if ci.User == "visitor" {
			break
		}
	}
	if err := vs.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	if l := <-leaves; l.User != "visitor" || l.Client != ci.Client {
		t.Errorf("leave %+v, join %+v", l, ci)
	}
}

// TestCloseLeavesNoGoroutines: Close ends every goroutine the client
// started, over each transport, also while it is reconnecting.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	s := startServer(t, nil)
	for _, tr := range nodes(t, s) {
		t.Run(tr.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			ctx := ctxT(t)
			o := fastOptions()
			o.TCPEncoding = tr.enc
			o.OnConnected = func(ConnectedEvent) {}
			c, err := New(tr.url(tr.addr), o)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			sub, err := c.Subscribe("chat:leak", func(Publication) {})
			if err != nil {
				t.Fatal(err)
			}
			if err := sub.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			c.Close()
			c.Close() // idempotent

			// A client that never reaches its server.
			px := newProxy(t, tr.addr)
			px.hold(true)
			r, err := New(tr.url(px.addr()), o)
			if err != nil {
				t.Fatal(err)
			}
			_ = r.Connect(ctx)
			r.Close()
			px.close()
			goleak.VerifyNone(t, append(testnode.IgnorePoller(), before)...)
		})
	}
}

// TestTokenExpiredDisconnect: after disconnect 3005 the client fetches a
// fresh token before reconnecting; a static token is reused otherwise.
func TestTokenExpiredDisconnect(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	var calls atomic.Int32
	o := fastOptions()
	o.GetToken = func(context.Context) (string, error) {
		calls.Add(1)
		return s.token("dave", time.Hour), nil
	}
	lost := make(chan DisconnectedEvent, 1)
	o.OnDisconnected = func(e DisconnectedEvent) { lost <- e }
	c := newClient(t, s.wsURL(), o)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	s.api("disconnect", map[string]any{"user": "dave", "code": 3005})
	if e := <-lost; e.Code != 3005 || !e.Reconnect {
		t.Errorf("disconnected %+v", e)
	}
	testwait.Until(t, "the reconnect", func() bool { return c.Stats().Connects == 2 })
	if n := calls.Load(); n != 2 {
		t.Errorf("GetToken called %d times, want 2", n)
	}
}

// TestNoReconnectDisconnect: a disconnect code of 3500-3999 stops the
// client.
func TestNoReconnectDisconnect(t *testing.T) {
	s := startServer(t, nil)
	ctx := ctxT(t)
	o := fastOptions()
	o.Token = s.token("erin", time.Hour)
	lost := make(chan DisconnectedEvent, 1)
	o.OnDisconnected = func(e DisconnectedEvent) { lost <- e }
	c := newClient(t, s.wsURL(), o)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	s.api("disconnect", map[string]any{"user": "erin", "reconnect": false})
	if e := <-lost; e.Code != 3503 || e.Reconnect {
		t.Errorf("disconnected %+v", e)
	}
	testwait.Until(t, "the stop", func() bool { return c.State() == StateDisconnected })
	if err := c.Ready(ctx); err == nil {
		t.Error("Ready succeeded on a stopped client")
	}
	if st := c.Stats(); st.Connects != 1 {
		t.Errorf("%d connects, want 1", st.Connects)
	}
}
