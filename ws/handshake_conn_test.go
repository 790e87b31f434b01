package ws

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
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

// AcceptConnBuffered takes the bytes a caller read to route the
// connection as the start of the request, wherever they stop: inside the
// request line, at the end of the head, or past it with a pipelined frame.
// A first chunk already over MaxHeaderBytes without a complete head is
// answered with 431.
func TestAcceptConnBuffered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := handshakeRequest("example.com")
	for _, tc := range []struct {
		name       string
		read, rest string
		opts       *AcceptOptions
		status     int
		message    string
	}{
		{name: "part of the request line", read: req[:7], rest: req[7:] + pipelinedFrame, status: 101, message: "Hello"},
		{name: "whole head", read: req, rest: pipelinedFrame, status: 101, message: "Hello"},
		{name: "head and a pipelined frame", read: req + pipelinedFrame, status: 101, message: "Hello"},
		{name: "nothing read yet", rest: req + pipelinedFrame, status: 101, message: "Hello"},
		{
			name: "first chunk over the limit", read: "GET / HTTP/1.1\r\nX-Long: " + strings.Repeat("a", 600),
			opts: &AcceptOptions{MaxHeaderBytes: 512}, status: http.StatusRequestHeaderFieldsTooLarge,
		},
		{
			name: "rest over the limit", read: "GET / HTTP/1.1\r\n", rest: "X-Long: " + strings.Repeat("a", 600) + "\r\n\r\n",
			opts: &AcceptOptions{MaxHeaderBytes: 512}, status: http.StatusRequestHeaderFieldsTooLarge,
		},
		{name: "bad key", read: handshakeRequest("example.com", "Sec-WebSocket-Key: short"), status: http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, cc := tcpPair(t)
			type result struct {
				msg string
				err error
			}
			done := make(chan result, 1)
			go func() {
				c, _, err := AcceptConnBuffered(sc, []byte(tc.read), tc.opts)
				if err != nil {
					done <- result{err: err}
					return
				}
				defer c.CloseNow()
				_, p, err := c.Read(ctx)
				done <- result{msg: string(p), err: err}
			}()
			if tc.rest != "" {
				if _, err := cc.Write([]byte(tc.rest)); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := http.ReadResponse(bufio.NewReader(cc), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			res := <-done
			if tc.status != http.StatusSwitchingProtocols {
				var he *HandshakeError
				if !errors.As(res.err, &he) || he.StatusCode != tc.status {
					t.Fatalf("error %v, want a HandshakeError with %d", res.err, tc.status)
				}
				return
			}
			if res.err != nil || res.msg != tc.message {
				t.Fatalf("server read %q, %v; want %q", res.msg, res.err, tc.message)
			}
		})
	}
}
