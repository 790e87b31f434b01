package client

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testwait"
	"github.com/heraldhq/herald/internal/wire"
)

// fakeServer speaks the TCP transport with the binary encoding: it answers
// the hello and the connect command (ping 1 s, pong), sends one ping push
// and then stays silent, as a server that hangs would.
type fakeServer struct {
	ln      net.Listener
	accepts atomic.Int32
	pongs   atomic.Int32
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

func newFakeServer(t *testing.T) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepts.Add(1)
			f.mu.Lock()
			f.conns = append(f.conns, nc)
			f.mu.Unlock()
			f.wg.Add(1)
			go f.serve(nc)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeServer) serve(nc net.Conn) {
	defer f.wg.Done()
	defer nc.Close()
	br := bufio.NewReader(nc)
	h, err := wire.ReadClientHello(br)
	if err != nil || h.Encoding != wire.EncodingBinary {
		return
	}
	if _, err := nc.Write(wire.AppendServerHello(nil, wire.ProtocolVersion, h.Encoding, wire.HelloOK)); err != nil {
		return
	}
	fr := wire.NewFrameReader(br, 0)
	for {
		b, err := fr.ReadFrame()
		if err != nil {
			return
		}
		cmd, err := wire.Binary.DecodeCommand(b)
		if err != nil {
			return
		}
		switch cmd.Method {
		case wire.MethodConnect:
			reply := wire.Binary.AppendReply(nil, &wire.Reply{ID: cmd.ID, Connect: &wire.ConnectResult{Client: "fake", Ping: 1, Pong: true}})
			ping := wire.Binary.AppendPush(nil, &wire.Push{Type: wire.PushPing})
			out := wire.AppendFrame(wire.AppendFrame(nil, reply), ping)
			if _, err := nc.Write(out); err != nil {
				return
			}
		case wire.MethodPong:
			f.pongs.Add(1)
		}
	}
}

// TestDeadServerDetected: a server that stops sending is given up after
// ping + MaxServerPingDelay and the client reconnects.
func TestDeadServerDetected(t *testing.T) {
	f := newFakeServer(t)
	o := fastOptions()
	o.MaxServerPingDelay = 200 * time.Millisecond
	lost := make(chan DisconnectedEvent, 4)
	o.OnDisconnected = func(e DisconnectedEvent) { lost <- e }
	c := newClient(t, "tcp://"+f.ln.Addr().String(), o)
	start := time.Now()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	e := <-lost
	if e.Code != DisconnectNoPing || !e.Reconnect {
		t.Errorf("disconnected %+v, want %d with reconnect", e, DisconnectNoPing)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("gave up after %v, before ping + delay", d)
	}
	testwait.Until(t, "a second connection", func() bool { return f.accepts.Load() >= 2 })
	testwait.Until(t, "pongs", func() bool { return f.pongs.Load() >= 1 })
}
