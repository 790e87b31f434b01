package ws

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestCloseHandshake checks RFC 6455 §7.1.2-7.1.4 between two Conns: the
// initiator's code reaches the peer, the peer echoes it, both ends close
// the socket, whether or not the initiator has a reader running.
func TestCloseHandshake(t *testing.T) {
	type variant struct {
		name          string
		serverCloses  bool
		initiatorRead bool // a goroutine is reading on the initiator
		event         bool // the server is in event mode
	}
	var vs []variant
	for _, sc := range []bool{true, false} {
		for _, rd := range []bool{true, false} {
			for _, ev := range []bool{false, true} {
				if ev && sc && rd {
					continue // event mode always reads
				}
				vs = append(vs, variant{
					name:          map[bool]string{true: "server", false: "client"}[sc] + "-initiates/reader=" + map[bool]string{true: "yes", false: "no"}[rd] + "/event=" + map[bool]string{true: "yes", false: "no"}[ev],
					serverCloses:  sc,
					initiatorRead: rd,
					event:         ev,
				})
			}
		}
	}
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			sc, cc := tcpPair(t)
			srv, cli := newConnPair(t, sc, cc, pairOpts{})
			initiator, other := cli, srv
			if v.serverCloses {
				initiator, other = srv, cli
			}
			var otherDone func() error
			if v.event {
				otherDone = startEcho(t, srv, true)
				if v.serverCloses {
					// The server is the initiator; the client reads.
					otherDone = readUntilError(cli)
				}
			} else {
				otherDone = readUntilError(other)
			}
			var initDone func() error
			if v.initiatorRead && !(v.event && v.serverCloses) {
				initDone = readUntilError(initiator)
			}
			err := initiator.Close(StatusCode(4001), "custom")
			if err != nil && !(v.event && v.serverCloses) {
				t.Fatalf("Close: %v", err)
			}
			oerr := otherDone()
			var ce *CloseError
			if !errors.As(oerr, &ce) || ce.Code != 4001 || ce.Reason != "custom" {
				t.Fatalf("peer ended with %v, want close 4001 custom", oerr)
			}
			if initDone != nil {
				if ierr := initDone(); CloseStatus(ierr) != 4001 {
					t.Fatalf("initiator's reader ended with %v, want the echoed 4001", ierr)
				}
			}
			// Both sockets are closed: reads on the raw sockets fail.
			for _, c := range []net.Conn{sc, cc} {
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("socket still open after the close handshake: %v", err)
				}
			}
		})
	}
}

// readUntilError reads from c in a goroutine until an error and returns a
// function that waits for it.
func readUntilError(c *Conn) func() error {
	done := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				done <- err
				return
			}
		}
	}()
	return func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("reader did not end")
		}
	}
}

// TestCloseTimeout checks that Close gives up after CloseTimeout when the
// peer never answers, and closes the socket (RFC 6455 §7.1.1).
func TestCloseTimeout(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			sc, cc := tcpPair(t)
			srv := newConn(connConfig{netConn: sc, isServer: true, opts: ConnOptions{CloseTimeout: 100 * time.Millisecond}})
			defer srv.CloseNow()
			var wait func() error
			if mode.event {
				useTestPoller(t)
				h := newEchoHandler()
				if err := srv.Serve(h); err != nil {
					t.Fatal(err)
				}
				wait = func() error { return <-h.closed }
			}
			start := time.Now()
			err := srv.Close(StatusGoingAway, "")
			if mode.event {
				err = wait()
			}
			if !errors.Is(err, ErrCloseTimeout) {
				t.Fatalf("Close: %v, want ErrCloseTimeout", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("Close took %v", d)
			}
			peer := &rawPeer{t: t, conn: cc}
			code, _ := peer.expectClose(true)
			if code != StatusGoingAway {
				t.Fatalf("peer got close %v", code)
			}
			peer.expectEOF()
		})
	}
}

// TestClientWaitsForServerFIN checks RFC 6455 §7.1.1: a client that
// answers the server's close leaves closing TCP to the server, and gives
// up after CloseTimeout if the server never does.
func TestClientWaitsForServerFIN(t *testing.T) {
	for _, mode := range modes {
		for _, serverCloses := range []bool{true, false} {
			t.Run(mode.name+"/"+map[bool]string{true: "server-closes", false: "server-lingers"}[serverCloses], func(t *testing.T) {
				testClientWaitsForServerFIN(t, mode.event, serverCloses)
			})
		}
	}
}

func testClientWaitsForServerFIN(t *testing.T, event, serverCloses bool) {
	sc, cc := tcpPair(t)
	// When the server closes, a long timeout shows the client did not
	// just time out; when it lingers, a short one keeps the test quick.
	timeout := 300 * time.Millisecond
	if serverCloses {
		timeout = 5 * time.Second
	}
	cli := newConn(connConfig{netConn: cc, isServer: false, opts: ConnOptions{CloseTimeout: timeout}})
	defer cli.CloseNow()
	var done func() error
	if event {
		useTestPoller(t)
		h := newEchoHandler()
		if err := cli.Serve(h); err != nil {
			t.Fatal(err)
		}
		done = func() error { return <-h.closed }
	} else {
		done = readUntilError(cli)
	}
	peer := &rawPeer{t: t, conn: sc}
	peer.write(fr(opClose, true, closePayload(StatusNormalClosure, "")).bytes(false))
	f, err := peer.readFrame(false)
	if err != nil || f.op != opClose {
		t.Fatalf("no close echo: %v %v", f.op, err)
	}
	// The client has not closed TCP: a short read times out.
	_ = sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client closed TCP first: %v", err)
	}
	if serverCloses {
		sc.Close()
	}
	start := time.Now()
	if err := done(); CloseStatus(err) != StatusNormalClosure {
		t.Fatalf("client read ended with %v", err)
	}
	if serverCloses && time.Since(start) > timeout/2 {
		t.Fatalf("client waited %v after the server's FIN", time.Since(start))
	}
	if !serverCloses {
		peer.expectEOF()
	}
}

// TestConnectionLost checks that a peer vanishing without a close frame
// ends reads with a non-close error and closes the socket, in both modes.
func TestConnectionLost(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			sc, cc := tcpPair(t)
			srv := newConn(connConfig{netConn: sc, isServer: true})
			defer srv.CloseNow()
			wait := startEcho(t, srv, mode.event)
			// Half a frame, then gone.
			cc.Write([]byte{0x81, 0x85, 1, 2})
			cc.Close()
			err := wait()
			if err == nil || CloseStatus(err) != -1 {
				t.Fatalf("server ended with %v", err)
			}
			if !srv.isClosed() {
				t.Fatal("socket left open")
			}
		})
	}
}

// TestCloseCodes checks the codes Close accepts and sends.
func TestCloseCodes(t *testing.T) {
	sc, cc := tcpPair(t)
	srv, _ := newConnPair(t, sc, cc, pairOpts{})
	for _, code := range []StatusCode{0, 1005, 1006, 1015, 2000, 5000} {
		if code == StatusNoStatusRcvd {
			continue
		}
		if err := srv.Close(code, ""); err == nil {
			t.Fatalf("Close(%d) accepted", code)
		}
	}
	if srv.isClosed() {
		t.Fatal("invalid Close closed the connection")
	}
	if got := string(appendClosePayload(nil, 1000, string(make([]byte, 200)))); len(got) != maxControlPayload {
		t.Fatalf("long reason not cut: %d bytes", len(got))
	}
	if got := appendClosePayload(nil, 1000, string(make([]byte, 121))+"\u20ac"); !validUTF8(got[2:]) || len(got) > maxControlPayload {
		t.Fatalf("reason cut inside a code point")
	}
}
