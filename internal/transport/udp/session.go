package udptransport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/session"
	"github.com/heraldhq/herald/internal/wire"
)

// errSessionClosed is returned by sends after the session ended.
var errSessionClosed = errors.New("udptransport: session closed")

// udpSession is one client: the session layer's bookkeeping and the
// session.Transport its session.Session writes to.
//
// Concurrency: receive runs on a reader goroutine, run on one worker at a
// time, the Transport methods on any goroutine. Everything mutable is
// guarded by mu, except lastRead (atomic) and s (set before the session
// is visible to other goroutines).
type udpSession struct {
	srv     *Server
	id      uint64 // changed only by sessionTable.add, before publication
	secret  uint64
	attempt connectKey
	s       *session.Session

	lastRead atomic.Int64 // unix nanoseconds of the last authenticated datagram

	mu        sync.Mutex
	sock      *socket        // where the newest authenticated datagram arrived
	addr      netip.AddrPort // its source address
	window    wire.ReplayWindow
	seq       uint64 // last sequence number sent
	connectSz int    // size of the connect datagram: bound on the accept
	connectID uint32 // id of the connect command, 0 until decoded
	accept    []byte // the accept datagram once sent
	accepted  bool   // the session exists for the client
	replies   [ReplyCacheSize]cachedReply
	nextReply int
	inbox     [][]byte
	scheduled bool // queued for or running on a worker
	closing   bool // terminate ran: no more sends, HandleClose pending
	closed    bool // HandleClose ran
}

// cachedReply is a command id and its reply (nil while the command runs).
type cachedReply struct {
	id    uint32
	reply []byte
}

var _ session.Transport = (*udpSession)(nil)

func newUDPSession(srv *Server, sock *socket, addr netip.AddrPort, key connectKey, connectSize int) *udpSession {
	us := &udpSession{
		srv: srv, id: randomID(), secret: randomID(), attempt: key,
		sock: sock, addr: addr, connectSz: connectSize,
	}
	us.lastRead.Store(time.Now().UnixNano())
	return us
}

// commandID returns the id of a binary command, 0 when it has none or it
// cannot be read.
func commandID(msg []byte) uint32 {
	if len(msg) < 3 || msg[0] != 1 {
		return 0
	}
	v, n := binary.Uvarint(msg[2:])
	if n <= 0 || v > 0xffffffff {
		return 0
	}
	return uint32(v)
}

// replyID returns the id of a binary reply and whether msg is a reply.
func replyID(msg []byte) (uint32, bool) {
	if len(msg) < 3 || msg[0] != 2 {
		return 0, false
	}
	v, n := binary.Uvarint(msg[2:])
	if n <= 0 || v > 0xffffffff {
		return 0, false
	}
	return uint32(v), true
}

// isDisconnect reports whether msg is a binary disconnect push.
func isDisconnect(msg []byte) bool {
	return len(msg) >= 2 && msg[0] == 3 && msg[1] == byte(wire.PushDisconnect)
}

// receive handles an authenticated-or-not data or close datagram for
// this session.
func (us *udpSession) receive(sock *socket, addr netip.AddrPort, d *wire.Datagram) {
	srv := us.srv
	us.mu.Lock()
	if us.closing {
		us.mu.Unlock()
		return
	}
	if d.Secret != us.secret {
		us.mu.Unlock()
		srv.c.badSecret.Add(1)
		return
	}
	newest := d.Seq > us.window.Highest()
	if !us.window.Accept(d.Seq) {
		us.mu.Unlock()
		srv.c.replayed.Add(1)
		return
	}
	if newest {
		// Roaming: answer where the client is now.
		us.sock, us.addr = sock, addr
	}
	us.lastRead.Store(time.Now().UnixNano())
	if d.Kind == wire.DatagramClose {
		us.mu.Unlock()
		us.terminate()
		return
	}
	if len(d.Message) == 0 {
		us.mu.Unlock()
		return // keepalive
	}
	var resend []byte
	id := commandID(d.Message)
	if id != 0 {
		if c := us.cachedLocked(id); c != nil {
			if c.reply == nil {
				us.mu.Unlock()
				return // still running: its reply will come
			}
			resend = c.reply
		} else {
			us.replies[us.nextReply] = cachedReply{id: id}
			us.nextReply = (us.nextReply + 1) % ReplyCacheSize
		}
	}
	us.mu.Unlock()
	if resend != nil {
		srv.c.replyResends.Add(1)
		_ = us.send(resend)
		return
	}
	if !us.enqueue(append([]byte(nil), d.Message...)) && id != 0 {
		// Dropped: let the client's retry run the command.
		us.mu.Lock()
		if c := us.cachedLocked(id); c != nil && c.reply == nil {
			*c = cachedReply{}
		}
		us.mu.Unlock()
	}
}

func (us *udpSession) cachedLocked(id uint32) *cachedReply {
	for i := range us.replies {
		if us.replies[i].id == id {
			return &us.replies[i]
		}
	}
	return nil
}

// enqueue hands msg to the session's worker; false when it was dropped.
func (us *udpSession) enqueue(msg []byte) bool {
	us.mu.Lock()
	if us.closing {
		us.mu.Unlock()
		return false
	}
	if len(us.inbox) >= us.srv.opts.InboxSize {
		us.mu.Unlock()
		us.srv.c.inboxDrops.Add(1)
		return false
	}
	if us.connectID == 0 && !us.accepted {
		us.connectID = commandID(msg)
	}
	us.inbox = append(us.inbox, msg)
	schedule := !us.scheduled
	us.scheduled = true
	us.mu.Unlock()
	if schedule && !us.srv.work.push(us) {
		us.run()
	}
	return true
}

// run handles the inbox on a worker, then the end of the session once it
// is closing.
func (us *udpSession) run() {
	for {
		us.mu.Lock()
		if us.closing {
			us.inbox = nil
			us.scheduled = false
			first := !us.closed
			us.closed = true
			us.mu.Unlock()
			if first {
				us.s.HandleClose(nil)
			}
			return
		}
		if len(us.inbox) == 0 {
			us.inbox = nil
			us.scheduled = false
			us.mu.Unlock()
			return
		}
		msg := us.inbox[0]
		us.inbox = us.inbox[1:]
		us.mu.Unlock()
		us.srv.opts.Metrics.Received(len(msg))
		us.s.HandleMessage(msg)
	}
}

// terminate forgets the session and schedules its HandleClose.
func (us *udpSession) terminate() {
	us.mu.Lock()
	if us.closing {
		us.mu.Unlock()
		return
	}
	us.closing = true
	us.inbox = nil
	schedule := !us.scheduled
	us.scheduled = true
	us.mu.Unlock()
	us.srv.table.remove(us)
	if schedule && !us.srv.work.push(us) {
		us.run()
	}
}

// resendAccept answers a repeated connect with the accept already sent,
// if it is no larger than the repeated datagram.
func (us *udpSession) resendAccept(sock *socket, addr netip.AddrPort, size int) {
	us.mu.Lock()
	accept := us.accept
	us.mu.Unlock()
	if accept == nil || len(accept) > size {
		return
	}
	us.srv.write(sock, addr, accept, nil)
}

// headerPool recycles data datagram headers: a header is needed only
// during the write.
var headerPool = sync.Pool{New: func() any { return new([wire.DataHeaderSize]byte) }}

// errorReply encodes an error reply for id.
func errorReply(id uint32, code uint32, msg string) []byte {
	return wire.Binary.AppendReply(nil, &wire.Reply{ID: id, Error: &wire.Error{Code: code, Message: msg}})
}

// send writes msg (a reply or push from the session) in a data datagram,
// or in the accept datagram when it is the reply to the connect command.
func (us *udpSession) send(msg []byte) error {
	_, err := us.sendData(msg)
	return err
}

// sendData is send that also reports whether msg left in a data datagram.
func (us *udpSession) sendData(msg []byte) (bool, error) {
	srv := us.srv
	limit := srv.opts.MaxDatagramSize - wire.DataHeaderSize
	id, isReply := replyID(msg)

	us.mu.Lock()
	if us.closing {
		us.mu.Unlock()
		return false, errSessionClosed
	}
	if !us.accepted {
		if !isReply || id != us.connectID {
			// Nothing but the connect reply goes to an unauthenticated
			// address (a disconnect push after a refused connect is
			// dropped: no session exists for the client).
			us.mu.Unlock()
			return false, nil
		}
		return false, us.sendAcceptLocked(msg)
	}
	if isReply && len(msg) > limit {
		msg = errorReply(id, wire.ErrLimitExceeded, "reply too large for a datagram")
	}
	if isReply {
		if c := us.cachedLocked(id); c != nil {
			c.reply = msg
		}
	}
	if len(msg) > limit {
		us.mu.Unlock()
		srv.c.tooLarge.Add(1)
		return false, nil
	}
	kind := wire.DatagramData
	if isDisconnect(msg) {
		kind = wire.DatagramClose
	}
	us.seq++
	hp := headerPool.Get().(*[wire.DataHeaderSize]byte)
	hdr := wire.AppendDataHeader(hp[:0], kind, us.id, us.secret, us.seq)
	sock, addr := us.sock, us.addr
	us.mu.Unlock()
	sent := srv.write(sock, addr, hdr, msg)
	headerPool.Put(hp) // the datagram has been handed to the kernel
	return sent, nil
}

// sendAcceptLocked answers the connect command with msg, its reply; it
// unlocks mu. A refused connect is answered with session id and secret 0
// and the session ends.
func (us *udpSession) sendAcceptLocked(msg []byte) error {
	srv := us.srv
	ok := len(msg) >= 2 && msg[1] != 255
	d := wire.Datagram{Kind: wire.DatagramAccept, Nonce: us.attempt.nonce, Message: msg}
	if ok {
		d.Session, d.Secret = us.id, us.secret
	}
	accept, err := wire.AppendDatagram(nil, &d)
	if err == nil && (len(accept) > us.connectSz || len(accept) > srv.opts.MaxDatagramSize) {
		// Never answer an unauthenticated datagram with more bytes than
		// it had.
		ok = false
		d.Session, d.Secret = 0, 0
		d.Message = errorReply(us.connectID, wire.ErrLimitExceeded, "connect reply too large")
		accept, err = wire.AppendDatagram(nil, &d)
	}
	if err != nil {
		us.mu.Unlock()
		return fmt.Errorf("udptransport: accept: %w", err)
	}
	us.accept = accept
	us.accepted = ok
	sock, addr := us.sock, us.addr
	us.mu.Unlock()
	srv.write(sock, addr, accept, nil)
	if !ok {
		// No session exists for a refused connect.
		us.terminate()
	}
	return nil
}

// Send implements session.Transport.
func (us *udpSession) Send(msg []byte) error { return us.send(msg) }

// pushPayload is the shared encoding of a delivery for every UDP
// recipient on the node, and the choice of the one whose write is timed.
type pushPayload struct {
	b      []byte
	sample metrics.SampleOnce
}

// encodePayload encodes a push once for every UDP recipient on the node.
func encodePayload(p *wire.Push) any { return &pushPayload{b: wire.Binary.AppendPush(nil, p)} }

// SendDelivery implements session.Transport: the shared payload gets this
// session's header in the same sendmsg. The write is synchronous, so the
// first recipient that gets the datagram out times the delivery at once.
func (us *udpSession) SendDelivery(d *hub.Delivery) error {
	pp := d.Encoded(formatBinaryPayload, encodePayload).(*pushPayload)
	sent, err := us.sendData(pp.b)
	if sent && us.srv.opts.Metrics != nil && pp.sample.Take() {
		us.srv.opts.Metrics.ObservePublishToWrite(d.Created())
	}
	return err
}

// Ping implements session.Transport: UDP has no transport ping; the ping
// push is the heartbeat.
func (us *udpSession) Ping() error { return nil }

// Close implements session.Transport: the disconnect push already went
// out in a close datagram; the session is forgotten and its HandleClose
// runs on a worker.
func (us *udpSession) Close(uint16, string) { us.terminate() }

// LastRead implements session.Transport.
func (us *udpSession) LastRead() time.Time { return sinceUnix(us.lastRead.Load()) }

// Info implements session.Transport.
func (us *udpSession) Info() session.TransportInfo {
	us.mu.Lock()
	defer us.mu.Unlock()
	return session.TransportInfo{Name: TransportName, RemoteAddr: us.addr.String()}
}
