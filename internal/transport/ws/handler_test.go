package wstransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/testwait"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/ws"
)

func TestConnectSubscribePublish(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compression=%v", compress), func(t *testing.T) {
			var dial *ws.DialOptions
			s := newServer(t, func(_ *session.Config, o *Options) {
				if compress {
					o.Accept.Compression = &ws.CompressionOptions{Threshold: 16}
				}
			})
			if compress {
				dial = &ws.DialOptions{Compression: &ws.CompressionOptions{}}
			}
			a := s.dial(dial)
			r := a.call("connect", map[string]any{"token": s.token("42")})
			if r.Error != nil || r.Connect.Client == "" || !r.Connect.Pong {
				t.Fatalf("connect: %+v %+v", r.Error, r.Connect)
			}
			b := s.connect("")
			for _, c := range []*wsClient{a, b} {
				if r := c.call("subscribe", map[string]any{"channel": "chat:room"}); r.Error != nil {
					t.Fatalf("subscribe: %+v", r.Error)
				}
			}
			long := strings.Repeat("x", 300)
			if r := a.call("publish", map[string]any{"channel": "chat:room", "data": map[string]string{"text": long}}); r.Error != nil || r.Publish.Offset != 1 {
				t.Fatalf("publish: %+v %+v", r.Error, r.Publish)
			}
			if _, err := s.hub.Publish(context.Background(), "chat:room", []byte(`"from the server"`), nil); err != nil {
				t.Fatal(err)
			}
			for _, c := range []*wsClient{a, b} {
				p := c.nextPush()
				if p.Type != wire.PushPublication || dataOf(p) != `{"text":"`+long+`"}` || p.Publication.Info.User != "42" {
					t.Fatalf("first publication %+v", p)
				}
				if p = c.nextPush(); dataOf(p) != `"from the server"` || p.Publication.Offset != 2 {
					t.Fatalf("second publication %+v", p)
				}
			}
		})
	}
}

func TestErrorsSeenByPeer(t *testing.T) {
	s := newServer(t, func(c *session.Config, o *Options) {
		o.MaxMessageSize = 1024
		c.MaxDataSize = 512
		c.MaxSubscriptions = 2
	})

	t.Run("replies", func(t *testing.T) {
		c := s.dial(nil)
		expectError(t, c.call("subscribe", map[string]any{"channel": "chat:x"}), wire.ErrNotConnected)
		c.call("connect", nil)
		expectError(t, c.call("frobnicate", nil), wire.ErrMethodNotFound)
		expectError(t, c.call("subscribe", map[string]any{"channel": "nope:x"}), wire.ErrUnknownChannel)
		expectError(t, c.call("subscribe", map[string]any{"channel": ""}), wire.ErrUnknownChannel)
		expectError(t, c.call("connect", nil), wire.ErrAlreadyConnected)
		expectError(t, c.call("history", map[string]any{"channel": "x"}), wire.ErrNotAvailable)
		c.methods[99] = wire.MethodSubscribe
		c.write(`{"id":99,"method":"subscribe","params":"chat:x"}`)
		if r, _ := c.mustRead(); r == nil || r.ID != 99 || r.Error == nil || r.Error.Code != wire.ErrBadRequest {
			t.Fatalf("bad params reply %+v", r)
		}
		if r := c.call("ping", nil); r.Error != nil {
			t.Fatalf("ping: %+v", r.Error)
		}
	})
	t.Run("channel errors", func(t *testing.T) {
		c := s.connect("")
		sub := func(ch string) *wire.Reply {
			t.Helper()
			return c.call("subscribe", map[string]any{"channel": ch})
		}
		expectError(t, sub("private:x"), wire.ErrPermissionDenied)
		if r := sub("ro:x"); r.Error != nil {
			t.Fatal(r.Error)
		}
		expectError(t, sub("ro:x"), wire.ErrAlreadySubscribed)
		if r := sub("ro:y"); r.Error != nil {
			t.Fatal(r.Error)
		}
		expectError(t, sub("ro:z"), wire.ErrLimitExceeded) // MaxSubscriptions 2
		expectError(t, c.call("publish", map[string]any{"channel": "ro:x", "data": 1}), wire.ErrNotAvailable)
		expectError(t, c.call("publish", map[string]any{"channel": "x", "data": strings.Repeat("d", 600)}), wire.ErrLimitExceeded)
		expectError(t, c.call("publish", map[string]any{"channel": "x"}), wire.ErrBadRequest)
		expectError(t, c.call("unsubscribe", map[string]any{"channel": "x"}), wire.ErrNotSubscribed)
		expectError(t, c.call("history", map[string]any{"channel": "ro:x", "since": map[string]any{"offset": 1, "epoch": "gone"}}), wire.ErrUnrecoverable)
		expectError(t, c.call("send", map[string]any{"user": "1", "data": 1}), wire.ErrNotAvailable)
		expectError(t, c.call("refresh", map[string]any{"token": "x"}), wire.ErrUnauthorized)
	})
	t.Run("connection limit", func(t *testing.T) {
		s.connect(s.token("limited"))
		s.connect(s.token("limited"))
		c := s.dial(nil)
		expectError(t, c.call("connect", map[string]any{"token": s.token("limited")}), wire.ErrLimitExceeded)
		c.expectClose(wire.DisconnectConnectionLimit, true)
	})
	t.Run("server disconnect", func(t *testing.T) {
		c := s.connect(s.token("banned"))
		if err := s.hub.Disconnect(context.Background(), "banned", "", wire.DisconnectForceNoReconnect, "banned"); err != nil {
			t.Fatal(err)
		}
		c.expectClose(wire.DisconnectForceNoReconnect, true)
	})
	t.Run("garbage", func(t *testing.T) {
		c := s.connect("")
		c.write(`{{{`)
		c.expectClose(wire.DisconnectBadRequest, true)
	})
	t.Run("binary frame", func(t *testing.T) {
		c := s.connect("")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.c.Write(ctx, ws.MessageBinary, []byte(`{"id":1,"method":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		c.expectClose(wire.DisconnectBadRequest, true)
	})
	t.Run("invalid token", func(t *testing.T) {
		c := s.dial(nil)
		expectError(t, c.call("connect", map[string]any{"token": "e30.e30.e30"}), wire.ErrUnauthorized)
		c.expectClose(wire.DisconnectUnauthorized, true)
	})
	t.Run("expired token", func(t *testing.T) {
		c := s.dial(nil)
		tok, err := auth.Sign(auth.Claims{Subject: "1", ExpiresAt: time.Now().Add(-time.Hour)}, auth.HS256, testSecret)
		if err != nil {
			t.Fatal(err)
		}
		expectError(t, c.call("connect", map[string]any{"token": tok}), wire.ErrTokenExpired)
		c.expectClose(wire.DisconnectTokenExpired, true)
	})
	t.Run("message too big", func(t *testing.T) {
		c := s.connect("")
		c.write(`{"id":5,"method":"ping","params":{"pad":"` + strings.Repeat("p", 2000) + `"}}`)
		c.expectClose(uint16(ws.StatusMessageTooBig), false)
	})
	t.Run("foreign origin", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, resp, err := ws.Dial(ctx, s.url, &ws.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
		if err == nil {
			t.Fatal("dial with a foreign Origin succeeded")
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign origin: resp %v err %v, want 403", resp, err)
		}
	})
}

func TestConnectTimeout(t *testing.T) {
	s := newServer(t, func(c *session.Config, _ *Options) { c.ConnectTimeout = 100 * time.Millisecond })
	c := s.dial(nil)
	c.expectClose(wire.DisconnectConnectTimeout, true)
}

func TestHeartbeat(t *testing.T) {
	s := newServer(t, func(c *session.Config, o *Options) {
		c.PingInterval = 500 * time.Millisecond
		c.PongTimeout = 500 * time.Millisecond
		// The dead peer never answers the close frame.
		o.Accept.Conn.CloseTimeout = 200 * time.Millisecond
	})
	// alive reads continuously, so the ws engine answers ping frames; it
	// never sends a pong command.
	alive := s.connect("")
	alive.call("subscribe", map[string]any{"channel": "chat:hb"})
	// silent's uplink dies: nothing it sends arrives any more.
	var mc *muteConn
	silent := s.dial(&ws.DialOptions{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		mc = &muteConn{Conn: c}
		return mc, nil
	}})
	r := silent.call("connect", nil)
	silentID := r.Connect.Client
	silent.call("subscribe", map[string]any{"channel": "chat:hb"})
	mc.muted.Store(true)

	var wg sync.WaitGroup
	pings := make(chan struct{}, 100)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(pings)
		for {
			_, b, err := alive.c.Read(context.Background())
			if err != nil {
				return
			}
			if strings.Contains(string(b), `"type":"ping"`) {
				select {
				case pings <- struct{}{}:
				default:
				}
			}
		}
	}()
	defer wg.Wait()
	defer alive.c.CloseNow()

	testwait.Until(t, "presence of the silent client removed", func() bool {
		p, err := s.hub.Presence(context.Background(), "chat:hb")
		_, present := p[silentID]
		return err == nil && !present
	})
	silent.expectClose(wire.DisconnectNoPong, true)
	// The responsive client lives on through more ping intervals.
	for len(pings) > 0 {
		<-pings
	}
	for range 3 {
		if _, ok := <-pings; !ok {
			t.Fatal("responsive client's connection ended")
		}
	}
	if n := s.metrics.ClosedWith(wire.DisconnectNoPong); n != 1 {
		t.Fatalf("%d clients closed for silence, want only the silent one", n)
	}
}

func TestTokenExpiry(t *testing.T) {
	s := newServer(t, nil)
	tok, err := auth.Sign(auth.Claims{Subject: "7", ExpiresAt: time.Now().Add(2 * time.Second)}, auth.HS256, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	c := s.dial(nil)
	if r := c.call("connect", map[string]any{"token": tok}); r.Error != nil || !r.Connect.Expires {
		t.Fatalf("connect: %+v %+v", r.Error, r.Connect)
	}
	c.expectClose(wire.DisconnectTokenExpired, true)
}

// TestRecoveryNumberedStream publishes a numbered stream while a client is
// disconnected twice mid-stream; after recovering each time it must have
// seen every number exactly once, in order.
func TestRecoveryNumberedStream(t *testing.T) {
	s := newServer(t, nil)
	const total = 3000
	const channel = "chat:numbers"
	c := s.connect("")
	r := c.call("subscribe", map[string]any{"channel": channel})
	pos := wire.StreamPosition{Epoch: r.Subscribe.Epoch, Offset: r.Subscribe.Offset}

	// The publisher runs at most lead publications ahead of what the
	// client has processed, so publishing goes on while the client is
	// away and while it recovers.
	const lead = 400
	var progress atomic.Int64
	advanced := make(chan struct{}, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	pubErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= total; i++ {
			for int64(i)-progress.Load() > lead {
				select {
				case <-advanced:
				case <-stop:
					return
				}
			}
			if _, err := s.hub.Publish(context.Background(), channel, []byte(strconv.Itoa(i)), nil); err != nil {
				pubErr <- err
				return
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)

	var got []int
	recovered := 0
	accept := func(p *wire.Publication) {
		n, err := strconv.Atoi(string(p.Data))
		if err != nil {
			t.Fatalf("publication data %q", p.Data)
		}
		got = append(got, n)
		pos.Offset = p.Offset
		progress.Store(int64(n))
		select {
		case advanced <- struct{}{}:
		default:
		}
	}
	for round := 0; round < 3 && (len(got) == 0 || got[len(got)-1] < total); round++ {
		// Read a share of the stream, then get cut off by the server.
		target := (round + 1) * total / 3
		for len(got) == 0 || got[len(got)-1] < target {
			p := c.nextPush()
			if p.Type == wire.PushPublication {
				accept(p.Publication)
			}
		}
		if round == 2 {
			break
		}
		if err := s.hub.Disconnect(context.Background(), "", c.id, wire.DisconnectForceReconnect, "test"); err != nil {
			t.Fatal(err)
		}
		// Pushes already queued before the disconnect still count.
		for {
			_, p, err := c.read()
			if err != nil {
				var ce *ws.CloseError
				if !errors.As(err, &ce) || uint16(ce.Code) != wire.DisconnectForceReconnect {
					t.Fatalf("forced disconnect ended with %v", err)
				}
				break
			}
			if p != nil && p.Type == wire.PushPublication {
				accept(p.Publication)
			}
		}
		testwait.Until(t, "old session gone", func() bool { return s.m.Len() == 0 })
		c = s.connect("")
		r := c.call("subscribe", map[string]any{"channel": channel, "since": map[string]any{"offset": pos.Offset, "epoch": pos.Epoch}})
		if r.Error != nil || !r.Subscribe.Recovered {
			t.Fatalf("recovery subscribe: %+v %+v", r.Error, r.Subscribe)
		}
		recovered += len(r.Subscribe.Publications)
		for _, p := range r.Subscribe.Publications {
			accept(p)
		}
	}
	select {
	case err := <-pubErr:
		t.Fatal(err)
	default:
	}
	if len(got) != total {
		t.Fatalf("received %d publications, want %d", len(got), total)
	}
	if recovered == 0 {
		t.Fatal("no publication was recovered: the reconnects missed nothing")
	}
	for i, n := range got {
		if n != i+1 {
			t.Fatalf("publication %d is %d: stream has a gap or a duplicate", i+1, n)
		}
	}
}

// TestSlowConsumer stops reading on one client: it is disconnected with
// 3001 while another subscriber receives every publication.
func TestSlowConsumer(t *testing.T) {
	s := newServerWith(t, func(_ *session.Config, o *Options) {
		o.Accept.Conn = ws.ConnOptions{QueueMessages: 16, QueueBytes: 32 << 10, CloseTimeout: 200 * time.Millisecond}
	}, func(l net.Listener) net.Listener { return smallSendBuffers{l} })
	smallBuffer := &ws.DialOptions{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	fast := s.connect("")
	slow := s.dial(smallBuffer)
	slow.call("connect", nil)
	for _, c := range []*wsClient{fast, slow} {
		if r := c.call("subscribe", map[string]any{"channel": "feed"}); r.Error != nil {
			t.Fatal(r.Error)
		}
	}
	payload := []byte(`"` + strings.Repeat("x", 1000) + `"`)
	const n = 600
	for i := 1; i <= n; i++ {
		if _, err := s.hub.Publish(context.Background(), "feed", payload, nil); err != nil {
			t.Fatal(err)
		}
		// Lockstep: the fast client's queue never holds more than one.
		if p := fast.nextPush(); p.Type != wire.PushPublication {
			t.Fatalf("fast client got %+v", p)
		}
	}
	testwait.Until(t, "slow consumer disconnected", func() bool { return s.metrics.ClosedWith(wire.DisconnectSlowConsumer) == 1 })
	if got := s.hub.NumSubscribers("feed"); got != 1 {
		t.Fatalf("%d subscribers left, want the fast one", got)
	}
	// The slow client finally reads: what was queued before the overflow,
	// then the end of the connection.
	received := 0
	for {
		_, p, err := slow.read()
		if err != nil {
			// The close frame reaches the client when the server could
			// flush it within its close timeout; a client that is not
			// reading may instead see the connection end after the data
			// that was already in flight.
			var ce *ws.CloseError
			if errors.As(err, &ce) && uint16(ce.Code) != wire.DisconnectSlowConsumer {
				t.Fatalf("slow client closed with %d, want 3001", ce.Code)
			}
			break
		}
		if p != nil && p.Type == wire.PushPublication {
			received++
		}
	}
	if received >= n {
		t.Fatalf("slow client received all %d publications", received)
	}
	if r := fast.call("ping", nil); r.Error != nil {
		t.Fatalf("fast client after the overflow: %+v", r.Error)
	}
}

func TestDrain(t *testing.T) {
	s := newServer(t, nil)
	clients := []*wsClient{s.connect(""), s.connect(""), s.connect("")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- s.m.Drain(ctx, wire.Disconnect{Code: wire.DisconnectShutdown, Reason: "shutting down", Reconnect: true}, 30*time.Millisecond)
	}()
	for _, c := range clients {
		c.expectClose(wire.DisconnectShutdown, true)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	_, resp, err := ws.Dial(dctx, s.url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial while draining: %v %v, want 503", resp, err)
	}
}

// TestIdleConnectionsHoldNoGoroutine checks that a connected, subscribed
// but idle client costs no goroutine on the server: the ws engine's
// poller watches it and the session's heartbeats run on the Manager's one
// goroutine.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	s := newServer(t, nil)
	s.connect("") // warm up the poller and the hub
	before := runtime.NumGoroutine()
	const n = 200
	for range n {
		c := s.connect("")
		if r := c.call("subscribe", map[string]any{"channel": "chat:idle"}); r.Error != nil {
			t.Fatal(r.Error)
		}
	}
	// Handshake goroutines of net/http end shortly after the upgrade.
	var after int
	testwait.Until(t, "goroutines to settle", func() bool {
		after = runtime.NumGoroutine()
		return after-before < n/10
	})
	if s.m.Len() != n+1 {
		t.Fatalf("%d sessions, want %d", s.m.Len(), n+1)
	}
}

// ServeConn serves connections accepted without net/http, whatever part
// of the request the caller already read: the client protocol runs as
// through ServeHTTP, refused handshakes get the same statuses, and a
// draining node answers 503 with Retry-After.
func TestServeConn(t *testing.T) {
	s := newServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			// Alternate between nothing and a few bytes read ahead.
			var read []byte
			if i%2 == 1 {
				read = make([]byte, 5)
				if _, err := io.ReadFull(nc, read); err != nil {
					nc.Close()
					continue
				}
			}
			s.h.ServeConn(nc, read)
		}
	}()
	url := "ws://" + ln.Addr().String() + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		c, _, err := ws.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		wc := &wsClient{t: t, c: c, methods: map[uint32]wire.Method{}}
		if r := wc.call("connect", map[string]any{}); r.Error != nil || r.Connect == nil {
			t.Fatalf("connect: %+v", r)
		}
		_ = c.CloseNow()
	}
	_, resp, err := ws.Dial(ctx, url, &ws.DialOptions{HTTPHeader: http.Header{"Origin": {"https://elsewhere.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("dial from another origin: %v %v, want 403", resp, err)
	}

	if err := s.m.Drain(ctx, wire.Disconnect{Code: wire.DisconnectShutdown, Reason: "shutting down", Reconnect: true}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_, resp, err = ws.Dial(ctx, url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("dial while draining: %v %v, want 503 with Retry-After", resp, err)
	}
}

// TestTransportSize keeps the per-connection state of the transport, its
// session included, within the 208-byte size class: every idle connection
// holds one.
func TestTransportSize(t *testing.T) {
	if n := unsafe.Sizeof(transport{}); n > 208 {
		t.Fatalf("transport is %d bytes, want at most 208", n)
	}
}
