package interop

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/ws"
)

// eventEcho is the script server in herald's event mode (Conn.Serve): no
// goroutine per connection; replies are queued with EnqueueMessage, and
// binary echoes go through a PreparedMessage (Enqueue) to cover the
// shared-frame path.
type eventEcho struct {
	ends    chan<- serverEnd
	live    *sync.WaitGroup // Done in OnClose
	pings   *sync.WaitGroup
	closing atomic.Bool
}

func (e *eventEcho) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	if typ == ws.MessageText {
		switch string(data) {
		case "cmd:compressed":
			reply := "false"
			if c.Compressed() {
				reply = "true"
			}
			_ = c.EnqueueMessage(ws.MessageText, []byte(reply))
			return
		case "cmd:ping":
			e.pings.Add(1)
			go func() {
				defer e.pings.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				reply := "pong-ok"
				if _, err := c.Ping(ctx); err != nil {
					reply = "ping failed: " + err.Error()
				}
				_ = c.EnqueueMessage(ws.MessageText, []byte(reply))
			}()
			return
		case "cmd:close":
			e.closing.Store(true)
			if err := c.Close(serverCloseCode, serverCloseReason); err != nil {
				e.ends <- serverEnd{code: -1, err: err}
			}
			return
		}
	}
	var err error
	if typ == ws.MessageBinary {
		err = c.Enqueue(ws.NewPreparedMessage(typ, data))
	} else {
		err = c.EnqueueMessage(typ, data)
	}
	if err != nil {
		c.CloseNow() // OnClose reports it
	}
}

func (e *eventEcho) OnClose(c *ws.Conn, err error) {
	defer e.live.Done()
	var ce *ws.CloseError
	switch {
	case e.closing.Load():
		// Our close, answered by the peer's close frame.
		if errors.As(err, &ce) && int(ce.Code) == serverCloseCode {
			err = nil
		}
		e.ends <- serverEnd{code: serverCloseCode, err: err}
	case errors.As(err, &ce):
		e.ends <- serverEnd{code: int(ce.Code), reason: ce.Reason}
	default:
		e.ends <- serverEnd{code: -1, err: err}
	}
}

type eventServer struct {
	ends  chan serverEnd
	live  sync.WaitGroup
	pings sync.WaitGroup
}

func (s *eventServer) serve(c *ws.Conn) {
	s.live.Add(1)
	if err := c.Serve(&eventEcho{ends: s.ends, live: &s.live, pings: &s.pings}); err != nil {
		s.live.Done()
		s.ends <- serverEnd{code: -1, err: err}
	}
}

func (s *eventServer) wait(t *testing.T) {
	done := make(chan struct{})
	go func() {
		s.pings.Wait()
		s.live.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Error("event-mode connections did not end")
	}
}

// heraldEventHTTPServer: ws.Accept behind net/http, then Serve.
func heraldEventHTTPServer(t *testing.T, opts *ws.AcceptOptions) testServer {
	es := &eventServer{ends: make(chan serverEnd, 4)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, opts)
		if err != nil {
			es.ends <- serverEnd{code: -1, err: err}
			return
		}
		es.serve(c)
	}))
	t.Cleanup(func() {
		srv.Close()
		es.wait(t)
	})
	return testServer{url: "ws" + srv.URL[len("http"):], ends: es.ends}
}

// heraldEventRawServer: ws.AcceptConn on a plain listener, then Serve
// (the socket goes to the epoll poller on Linux).
func heraldEventRawServer(t *testing.T, opts *ws.AcceptOptions) testServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	es := &eventServer{ends: make(chan serverEnd, 4)}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			// The handshake is short and bounded by HandshakeTimeout; the
			// accept loop runs it inline.
			c, _, err := ws.AcceptConn(nc, opts)
			if err != nil {
				es.ends <- serverEnd{code: -1, err: err}
				continue
			}
			es.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-accepted
		es.wait(t)
	})
	return testServer{url: "ws://" + ln.Addr().String() + "/", ends: es.ends}
}

// herald's event-mode server against the peer clients.
func TestHeraldEventServer(t *testing.T) {
	starts := map[string]func(t *testing.T, opts *ws.AcceptOptions) testServer{
		"Accept":     heraldEventHTTPServer,
		"AcceptConn": heraldEventRawServer,
	}
	runServerPairings(t, starts, []serverPairing{
		{"AcceptConn", "plain", "gorilla"},
		{"AcceptConn", "deflate", "gorilla-deflate"},
		{"AcceptConn", "deflate", "coder-deflate-no-context"},
		{"AcceptConn", "deflate-context", "coder-deflate-context"},
		{"AcceptConn", "deflate-window-10", "coder-deflate-context"},
		{"Accept", "deflate", "coder-deflate-context"},
	})
}
