package udptransport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// socket writes datagrams without blocking: one sendmsg with the header
// and the shared payload as two buffers, so a payload sent to many
// sessions is never copied per recipient.
type socket struct {
	pc  *net.UDPConn
	raw syscall.RawConn // nil: fall back to pc's blocking writes
}

func newSocket(pc *net.UDPConn) *socket {
	raw, err := pc.SyscallConn()
	if err != nil {
		raw = nil
	}
	return &socket{pc: pc, raw: raw}
}

var errWouldBlock = errors.New("udptransport: socket send buffer full")

// sendScratch holds what one sendmsg needs, so that a datagram costs no
// allocation: sendmsg copies everything into the kernel before it
// returns, after which the scratch is reused.
type sendScratch struct {
	bufs [2][]byte
	sa4  unix.SockaddrInet4
	sa6  unix.SockaddrInet6
	sa   unix.Sockaddr
	n    int // buffers in use
	err  error
	fn   func(fd uintptr) bool // sendmsg bound to this scratch
}

var scratchPool = sync.Pool{New: func() any {
	sc := &sendScratch{}
	sc.fn = sc.sendmsg
	return sc
}}

func (sc *sendScratch) sendmsg(fd uintptr) bool {
	_, sc.err = unix.SendmsgBuffers(int(fd), sc.bufs[:sc.n], nil, sc.sa, unix.MSG_DONTWAIT)
	return true // never wait for room: UDP may drop
}

// write sends hdr followed by payload (may be nil) as one datagram to
// addr. A full send buffer drops the datagram (errWouldBlock).
func (s *socket) write(addr netip.AddrPort, hdr, payload []byte) error {
	if s.raw == nil {
		_, err := s.pc.WriteToUDPAddrPort(append(append([]byte(nil), hdr...), payload...), addr)
		return err
	}
	sc := scratchPool.Get().(*sendScratch)
	if a := addr.Addr(); a.Is4() {
		sc.sa4 = unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.As4()}
		sc.sa = &sc.sa4
	} else {
		sc.sa6 = unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16()}
		sc.sa = &sc.sa6
	}
	sc.bufs[0], sc.bufs[1], sc.n = hdr, payload, 2
	if len(payload) == 0 {
		sc.n = 1
	}
	err := s.raw.Write(sc.fn)
	werr := sc.err
	sc.bufs[0], sc.bufs[1], sc.err = nil, nil, nil
	scratchPool.Put(sc)
	if err != nil {
		return fmt.Errorf("udptransport: write: %w", err)
	}
	if errors.Is(werr, unix.EAGAIN) {
		return errWouldBlock
	}
	if werr != nil {
		return fmt.Errorf("udptransport: sendmsg: %w", werr)
	}
	return nil
}
