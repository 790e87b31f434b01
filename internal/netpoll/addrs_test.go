package netpoll

import (
	"net"
	"reflect"
	"testing"
)

// TestConnAddrs: the addresses kept compactly come back as the net.Addr
// values the connection had, of the same type, after the close too.
func TestConnAddrs(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1"
			if network == "tcp6" {
				host = "[::1]"
			}
			ln, err := net.Listen(network, host+":0")
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			t.Cleanup(func() { ln.Close() })
			server, client := tcpPair(t, ln)
			wantLocal, wantRemote := server.LocalAddr(), server.RemoteAddr()
			p := newTestPoller(t, Options{})
			h := newRecorder(false)
			c := register(t, p, server, h)
			if !c.addrs.packed() {
				t.Fatal("TCP addresses kept as net.Addr values")
			}
			check := func(when string) {
				t.Helper()
				for _, a := range []struct{ got, want net.Addr }{{c.LocalAddr(), wantLocal}, {c.RemoteAddr(), wantRemote}} {
					if !reflect.DeepEqual(a.got, a.want) {
						t.Fatalf("%s: %#v, want %#v", when, a.got, a.want)
					}
				}
			}
			check("open")
			if c.RemoteAddr().String() != client.LocalAddr().String() {
				t.Fatalf("remote %v, client %v", c.RemoteAddr(), client.LocalAddr())
			}
			c.Close()
			h.waitClosed(t)
			check("closed")
		})
	}
	t.Run("packed", func(t *testing.T) {
		// Over a net.Pipe, whose connections take the fallback path: the
		// addresses are packed all the same.
		local := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 80}
		remote := &net.TCPAddr{IP: net.ParseIP("10.0.0.1").To4(), Port: 65535}
		p := newTestPoller(t, Options{})
		var conns []*Conn
		for range 3 {
			server, client := net.Pipe()
			t.Cleanup(func() { client.Close() })
			c := register(t, p, addrConn{server, local, remote}, newRecorder(false))
			if !c.addrs.packed() {
				t.Fatal("TCP addresses not packed")
			}
			if !reflect.DeepEqual(c.LocalAddr(), local) || !reflect.DeepEqual(c.RemoteAddr(), remote) {
				t.Fatalf("got %#v %#v", c.LocalAddr(), c.RemoteAddr())
			}
			if c.RemoteAddr() == c.RemoteAddr() || c.LocalAddr() == c.LocalAddr() {
				t.Fatal("callers share one *net.TCPAddr")
			}
			conns = append(conns, c)
		}
		if len(p.locals.list) != 1 || conns[0].addrs.local != conns[2].addrs.local {
			t.Fatalf("one local address kept %d times", len(p.locals.list))
		}
	})
	t.Run("table full", func(t *testing.T) {
		p := newTestPoller(t, Options{})
		remote := &net.TCPAddr{IP: net.ParseIP("10.0.0.1").To4(), Port: 1}
		for i := range maxLocalAddrs {
			local := &net.TCPAddr{IP: net.IPv4(10, 1, byte(i>>8), byte(i)).To4(), Port: 80}
			if _, ok := p.packConnAddrs(local, remote); !ok {
				t.Fatalf("local address %d not packed", i)
			}
		}
		local := &net.TCPAddr{IP: net.ParseIP("10.2.0.1").To4(), Port: 80}
		if _, ok := p.packConnAddrs(local, remote); ok {
			t.Fatal("local address packed beyond the table's bound")
		}
		server, client := net.Pipe()
		defer client.Close()
		c := register(t, p, addrConn{server, local, remote}, newRecorder(false))
		if c.LocalAddr() != net.Addr(local) || c.RemoteAddr() != net.Addr(remote) {
			t.Fatalf("addresses not kept as given: %v %v", c.LocalAddr(), c.RemoteAddr())
		}
	})
	t.Run("zone", func(t *testing.T) {
		local := &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 80, Zone: "eth0"}
		remote := &net.TCPAddr{IP: net.ParseIP("fe80::2"), Port: 8080, Zone: "eth0"}
		p := newTestPoller(t, Options{})
		if a, ok := p.packConnAddrs(local, remote); ok || a.packed() {
			t.Fatalf("zoned addresses packed: %#v", a)
		}
		server, client := net.Pipe()
		defer client.Close()
		c := register(t, p, addrConn{server, local, remote}, newRecorder(false))
		if c.LocalAddr() != net.Addr(local) || c.RemoteAddr() != net.Addr(remote) {
			t.Fatalf("zoned addresses not kept as given: %v %v", c.LocalAddr(), c.RemoteAddr())
		}
	})
	t.Run("other", func(t *testing.T) {
		server, client := net.Pipe()
		defer client.Close()
		p := newTestPoller(t, Options{})
		c := register(t, p, server, newRecorder(false))
		if c.LocalAddr() != server.LocalAddr() || c.RemoteAddr() != server.RemoteAddr() {
			t.Fatalf("pipe addresses %v %v", c.LocalAddr(), c.RemoteAddr())
		}
		odd := &net.TCPAddr{IP: net.IP{1, 2, 3}, Port: 1}
		if a, ok := p.packConnAddrs(odd, nil); ok || a.packed() {
			t.Fatalf("malformed TCP address packed: %#v", a)
		}
	})
}

// addrConn is a net.Conn reporting the addresses it is given.
type addrConn struct {
	net.Conn
	local, remote net.Addr
}

func (c addrConn) LocalAddr() net.Addr  { return c.local }
func (c addrConn) RemoteAddr() net.Addr { return c.remote }
