//go:build !linux

package udptransport

import (
	"net"
	"net/netip"
	"sync"
)

// socket writes datagrams through the portable API: header and payload
// are joined in a pooled buffer.
type socket struct{ pc *net.UDPConn }

func newSocket(pc *net.UDPConn) *socket { return &socket{pc: pc} }

var joinPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func (s *socket) write(addr netip.AddrPort, hdr, payload []byte) error {
	bp := joinPool.Get().(*[]byte)
	b := append(append((*bp)[:0], hdr...), payload...)
	_, err := s.pc.WriteToUDPAddrPort(b, addr)
	*bp = b[:0]
	joinPool.Put(bp)
	return err
}
