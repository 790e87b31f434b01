package session

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/wire"
)

// These tests run in a synctest bubble: time is virtual and advances only
// when every goroutine of the bubble is blocked, so minutes of heartbeats
// take microseconds and the outcome does not depend on the machine's load.

func (c *client) isClosed() bool {
	c.ft.mu.Lock()
	defer c.ft.mu.Unlock()
	return c.ft.closed
}

func (c *client) pings() int {
	c.ft.mu.Lock()
	defer c.ft.mu.Unlock()
	return c.ft.pings
}

// drainPushes consumes every message received so far and returns the
// number of ping pushes among them.
func (c *client) drainPushes() (pings int) {
	for c.pending() > 0 || len(c.backlog) > 0 {
		if _, p := c.next(); p != nil && p.Type == wire.PushPing {
			pings++
		}
	}
	return pings
}

func TestConnectTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		late := e.client()
		ontime := e.client()
		time.Sleep(DefaultConnectTimeout - time.Second)
		if r := ontime.call("connect", nil); r.Error != nil {
			t.Fatal(r.Error)
		}
		synctest.Wait()
		if late.isClosed() {
			t.Fatal("closed before the connect timeout")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		late.expectDisconnect(wire.DisconnectConnectTimeout)
		if ontime.isClosed() {
			t.Fatal("connected client closed by the connect timeout")
		}
	})
}

func TestHeartbeatSilentClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		c := e.connected("")
		c.call("subscribe", map[string]any{"channel": "chat:hb"})
		watcher := e.connected("")
		start := time.Now()
		// The watcher answers pings; c stays silent from now on.
		limit := DefaultPingInterval + DefaultPongTimeout
		for time.Since(start) < limit-time.Second {
			time.Sleep(time.Second)
			synctest.Wait()
			if watcher.drainPushes() > 0 {
				watcher.send(`{"method":"pong"}`)
			}
			if c.isClosed() {
				t.Fatalf("silent client closed after %v, limit %v", time.Since(start), limit)
			}
		}
		if c.drainPushes() == 0 || c.pings() == 0 {
			t.Error("no ping push or transport ping within one interval")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		c.expectDisconnect(wire.DisconnectNoPong)
		if watcher.isClosed() {
			t.Fatal("responsive client closed")
		}
		// Its presence is gone.
		r := watcher.call("presence", map[string]any{"channel": "chat:hb"})
		if len(r.Presence.Presence) != 0 {
			t.Fatalf("presence after heartbeat timeout: %+v", r.Presence.Presence)
		}
		if e.metrics.closedWith(wire.DisconnectNoPong) != 1 {
			t.Error("heartbeat close not counted")
		}
	})
}

func TestHeartbeatKeepsResponsiveClients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		byPong := e.connected("")
		byTransport := e.connected("") // answers with transport pongs only
		pings := 0
		for range 300 { // five minutes
			time.Sleep(time.Second)
			synctest.Wait()
			if n := byPong.drainPushes(); n > 0 {
				pings += n
				byPong.send(`{"method":"pong"}`)
			}
			byTransport.drainPushes()
			if byTransport.pings() > 0 {
				byTransport.ft.lastRead.Store(time.Now().UnixNano())
			}
			if byPong.isClosed() || byTransport.isClosed() {
				t.Fatalf("responsive client closed after %v", time.Since(time.Unix(946684800, 0)))
			}
		}
		// One ping per interval: 300 s / 25 s, give or take the jittered
		// first one.
		if pings < 11 || pings > 13 {
			t.Errorf("%d pings in 300s with a 25s interval", pings)
		}
	})
}

func TestTokenExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		now := time.Now()
		expiring := e.connected(e.token(auth.Claims{Subject: "1", ExpiresAt: now.Add(20 * time.Second)}))
		refreshed := e.connected(e.token(auth.Claims{Subject: "2", ExpiresAt: now.Add(20 * time.Second)}))
		time.Sleep(10 * time.Second)
		r := refreshed.call("refresh", map[string]any{"token": e.token(auth.Claims{Subject: "2", ExpiresAt: now.Add(time.Hour)})})
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if expiring.isClosed() {
			t.Fatal("closed before its token expired")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		expiring.expectDisconnect(wire.DisconnectTokenExpired)
		if refreshed.isClosed() {
			t.Fatal("refreshed client closed")
		}
	})
}

// TestPingsSpread connects many clients in the same instant and checks
// that their pings are spread over the interval instead of coming in one
// burst.
func TestPingsSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		const n = 1000
		clients := make([]*client, n)
		for i := range clients {
			clients[i] = e.connected("")
		}
		total := func() int {
			sum := 0
			for _, c := range clients {
				sum += c.pings()
			}
			return sum
		}
		maxPerSecond, prev := 0, 0
		for range int(DefaultPingInterval / time.Second) {
			time.Sleep(time.Second)
			synctest.Wait()
			cur := total()
			maxPerSecond = max(maxPerSecond, cur-prev)
			prev = cur
		}
		if prev != n {
			t.Fatalf("%d of %d clients pinged within one interval", prev, n)
		}
		// First pings are jittered over half an interval (12.5 s): about 80
		// per second. A burst would put all 1000 in one second.
		if maxPerSecond > n/5 {
			t.Fatalf("%d pings in one second: not spread", maxPerSecond)
		}
	})
}

func TestWheel(t *testing.T) {
	start := time.Unix(1000, 0)
	w := newWheel(time.Second, 10*time.Second, start)
	a, b, c := &Session{}, &Session{}, &Session{}
	w.schedule(a, start.Add(3*time.Second))
	w.schedule(b, start.Add(time.Hour)) // beyond the horizon: visited early
	w.schedule(c, start.Add(2*time.Second))
	w.schedule(c, start.Add(5*time.Second)) // supersedes the first entry
	due := func(at time.Duration) []*Session { return w.due(start.Add(at), nil) }
	if got := due(2 * time.Second); len(got) != 0 {
		t.Fatalf("due at 2s: %d sessions, want none (c was rescheduled)", len(got))
	}
	if got := due(3 * time.Second); len(got) != 1 || got[0] != a {
		t.Fatalf("due at 3s: %v", got)
	}
	w.unschedule(a)
	if got := due(5 * time.Second); len(got) != 1 || got[0] != c {
		t.Fatalf("due at 5s: %v", got)
	}
	if got := due(12 * time.Second); len(got) != 1 || got[0] != b {
		t.Fatalf("due at 12s: %v, want b at the end of the ring", got)
	}
	if got := due(30 * time.Second); len(got) != 0 {
		t.Fatalf("due at 30s: %d sessions, want none", len(got))
	}
}

func TestWheelVisitsOnce(t *testing.T) {
	start := time.Unix(1000, 0)
	w := newWheel(time.Second, 10*time.Second, start)
	a, b := &Session{}, &Session{}
	w.schedule(a, start.Add(4*time.Second))
	w.schedule(a, start.Add(4*time.Second)) // already there: no second entry
	w.schedule(b, start.Add(4*time.Second))
	w.unschedule(b)
	w.schedule(b, start.Add(4*time.Second)) // a stale and a live entry in one slot
	entries := 0
	for _, slot := range w.slots {
		entries += len(slot)
	}
	if entries != 3 {
		t.Fatalf("wheel holds %d entries, want 3", entries)
	}
	got := w.due(start.Add(4*time.Second), nil)
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("due at 4s: %v, want a and b once each", got)
	}
	if a.wheelSlot != 0 || b.wheelSlot != 0 {
		t.Fatal("visited sessions still marked as scheduled")
	}
}

// wheelEntries counts the entries of s in the Manager's wheel.
func wheelEntries(m *Manager, s *Session) (n int) {
	m.wheel.mu.Lock()
	defer m.wheel.mu.Unlock()
	for _, slot := range m.wheel.slots {
		for _, e := range slot {
			if e == s {
				n++
			}
		}
	}
	return n
}

func TestConnectKeepsOneWheelEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *Config) {
			c.ConnectTimeout = 10 * time.Second
			c.PingInterval = 25 * time.Second
		})
		c := e.connected("")
		if n := wheelEntries(e.m, c.s); n != 1 {
			t.Fatalf("%d wheel entries after connect, want 1", n)
		}
		// The connect-timeout entry's visit finds the session connected and
		// schedules its first ping; the session is pinged in time.
		time.Sleep(26 * time.Second)
		synctest.Wait()
		if c.drainPushes() == 0 {
			t.Fatal("no ping within the first interval")
		}
		if c.isClosed() {
			t.Fatal("connected session closed")
		}
		if n := wheelEntries(e.m, c.s); n != 1 {
			t.Fatalf("%d wheel entries after the first ping, want 1", n)
		}
	})
}
