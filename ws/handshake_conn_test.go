package ws

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// The public entry points hand the bytes read past the handshake to the
// connection: a frame the client pipelined with its request (AcceptConn,
// Accept) or the server sent right behind its 101 (Dial) is the first
// message read.
func TestHandshakeBufferedFrameReachesConn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("AcceptConn", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan string, 1)
		go func() {
			nc, err := ln.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			c, _, err := AcceptConn(nc, nil)
			if err != nil {
				got <- err.Error()
				return
			}
			defer c.CloseNow()
			_, p, err := c.Read(ctx)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(p)
		}()
		addr := ln.Addr().String()
		resp, _, _ := roundTrip(t, addr, handshakeRequest(addr)+pipelinedFrame)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if s := <-got; s != "Hello" {
			t.Fatalf("server read %q, want Hello", s)
		}
	})

	t.Run("Accept", func(t *testing.T) {
		got := make(chan string, 1)
		srv := newHandlerServer(t, func(w http.ResponseWriter, r *http.Request) {
			c, err := Accept(w, r, nil)
			if err != nil {
				got <- err.Error()
				return
			}
			defer c.CloseNow()
			_, p, err := c.Read(ctx)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(p)
		})
		resp, _, _ := roundTrip(t, srv, handshakeRequest(srv)+pipelinedFrame)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if s := <-got; s != "Hello" {
			t.Fatalf("server read %q, want Hello", s)
		}
	})

	t.Run("Dial", func(t *testing.T) {
		addr, _ := fakeServer(t, respondWith("", "\x81\x02hi"))
		c, _, err := Dial(ctx, "ws://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		typ, p, err := c.Read(ctx)
		if err != nil || typ != MessageText || string(p) != "hi" {
			t.Fatalf("read %v %q %v, want text hi", typ, p, err)
		}
	})
}

func newHandlerServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}
