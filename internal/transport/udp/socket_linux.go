package udptransport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
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

// write sends hdr followed by payload (may be nil) as one datagram to
// addr. A full send buffer drops the datagram (errWouldBlock).
func (s *socket) write(addr netip.AddrPort, hdr, payload []byte) error {
	if s.raw == nil {
		_, err := s.pc.WriteToUDPAddrPort(append(append([]byte(nil), hdr...), payload...), addr)
		return err
	}
	var sa unix.Sockaddr
	if a := addr.Addr(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16()}
	}
	bufs := [][]byte{hdr, payload}
	if len(payload) == 0 {
		bufs = bufs[:1]
	}
	var werr error
	err := s.raw.Write(func(fd uintptr) bool {
		_, werr = unix.SendmsgBuffers(int(fd), bufs, nil, sa, unix.MSG_DONTWAIT)
		return true // never wait for room: UDP may drop
	})
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
