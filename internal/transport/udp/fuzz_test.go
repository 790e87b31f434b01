package udptransport

import (
	"net"
	"testing"

	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/wire"
)

// FuzzUDPDatagram feeds arbitrary bytes to the server three ways: as a
// whole datagram, as the message of a padded connect datagram, and as the
// message of an authenticated data datagram of a live session (until a
// malformed command ends it). Nothing may panic.
func FuzzUDPDatagram(f *testing.F) {
	s := newServer(f, func(_ *session.Config, o *Options) { o.MaxSessions = 500 })
	c := newUClient(f, s.addr)
	c.connect()
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sink.Close() })
	sinkAddr := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	sock := newSocket(sink)

	f.Add(wire.Binary.AppendCommand(nil, &wire.Command{ID: 3, Method: wire.MethodPing}))
	f.Add(wire.Binary.AppendCommand(nil, &wire.Command{ID: 4, Method: wire.MethodConnect, Connect: &wire.ConnectParams{Name: "x"}}))
	f.Add([]byte{1, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{1, 5, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{1, 2, 0xff})
	var nonce uint64
	f.Fuzz(func(t *testing.T, b []byte) {
		var d wire.Datagram
		if wire.ParseDatagram(b, &d) == nil {
			s.srv.handleDatagram(sock, sinkAddr, &d, len(b))
		}
		if len(b) <= wire.MaxDatagramSize-wire.ConnectHeaderSize && len(b) <= 0xffff {
			nonce++
			raw, err := wire.AppendDatagram(nil, &wire.Datagram{Kind: wire.DatagramConnect, Nonce: nonce, Message: b})
			if err == nil && wire.ParseDatagram(raw, &d) == nil {
				s.srv.handleDatagram(sock, sinkAddr, &d, len(raw))
			}
		}
		if len(b) <= wire.MaxDatagramSize-wire.DataHeaderSize {
			c.seq++
			raw := append(wire.AppendDataHeader(nil, wire.DatagramData, c.session, c.secret, c.seq), b...)
			if wire.ParseDatagram(raw, &d) == nil {
				s.srv.handleDatagram(sock, sinkAddr, &d, len(raw))
			}
		}
	})
}
