package udptransport

import (
	"net"
	"testing"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// BenchmarkUDPDelivery measures one publication sent to 100 UDP sessions:
// one payload encoding, then one two-buffer sendmsg per session (the
// datagrams go to a socket nobody reads, so some are dropped by the
// kernel: the cost measured is the server's).
func BenchmarkUDPDelivery(b *testing.B) {
	const sessions = 100
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	out, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	srv := &Server{opts: Options{MaxDatagramSize: DefaultMaxDatagramSize}}
	sock := newSocket(out)
	addr := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	list := make([]*udpSession, sessions)
	for i := range list {
		list[i] = newUDPSession(srv, sock, addr, connectKey{addr: addr, nonce: uint64(i)}, wire.MinConnectDatagramSize)
		list[i].accepted = true
	}
	push := wire.Push{Type: wire.PushPublication, Channel: "chat:room1", Publication: &wire.Publication{
		Offset: 42, Data: []byte(`{"text":"hi there"}`), Time: 1763750000000, Info: &wire.ClientInfo{Client: "c8f3a1", User: "42"}}}
	b.ReportAllocs()
	for b.Loop() {
		d := hub.NewDelivery(push)
		for _, us := range list {
			if err := us.SendDelivery(d); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sessions), "ns/datagram")
}
