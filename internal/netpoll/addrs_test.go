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
			if c.addrs.other != nil {
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
		local := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 80}
		remote := &net.TCPAddr{IP: net.ParseIP("10.0.0.1").To4(), Port: 65535}
		a := makeConnAddrs(local, remote)
		if a.other != nil || !reflect.DeepEqual(a.addr(0), local) || !reflect.DeepEqual(a.addr(1), remote) {
			t.Fatalf("got %#v %#v", a.addr(0), a.addr(1))
		}
		if a.addr(1) == a.addr(1) {
			t.Fatal("callers share one *net.TCPAddr")
		}
	})
	t.Run("zone", func(t *testing.T) {
		local := &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 80, Zone: "eth0"}
		remote := &net.TCPAddr{IP: net.ParseIP("fe80::2"), Port: 8080, Zone: "eth0"}
		a := makeConnAddrs(local, remote)
		if a.other == nil || a.addr(0) != net.Addr(local) || a.addr(1) != net.Addr(remote) {
			t.Fatalf("zoned addresses not kept as given: %#v", a)
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
		if a := makeConnAddrs(odd, nil); a.other == nil || a.addr(0) != net.Addr(odd) || a.addr(1) != nil {
			t.Fatalf("malformed TCP address not kept as given: %#v", a)
		}
	})
}
