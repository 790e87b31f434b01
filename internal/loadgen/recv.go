package loadgen

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/netpoll"
	"github.com/heraldhq/herald/ws"
)

// The receiving side of fan-out and idle runs is event driven: once a
// connection is subscribed it is handed to herald's poller (ws.Conn.Serve
// for WebSocket, netpoll.Poller.Register for the TCP transport), so no
// goroutine waits per connection and each delivery costs one parse in
// place in the poller's read buffer: no copy, no allocation, no JSON
// decoding. On Linux plain sockets are watched with epoll; TLS
// connections keep one reading goroutine each (netpoll's portable path).

// subscriber is the receive state of one subscribed connection. Its
// handler methods are never called concurrently (the poller's contract),
// so the windows and the pending TCP bytes need no lock; the counters are
// atomic because the run reads them.
type subscriber struct {
	r    *run
	idx  int
	chs  []int
	wins []*seqWindow // parallel to chs; allocated on the first delivery
	ctr  *subCounters

	// TCP transport only: the bytes of a frame split across reads (nil
	// while frames arrive whole, which is the common case).
	pend []byte
}

func (r *run) newSubscriber(i int) *subscriber {
	return &subscriber{r: r, idx: i, chs: r.channelsOf(i), ctr: &r.counters[i-r.lo]}
}

// deliver accounts for one received frame; now is the receive time in
// unix nanoseconds.
func (s *subscriber) deliver(frame []byte, now int64) {
	if s.r.cfg.Protocol == ProtocolCentrifuge {
		eachMessage(ProtocolCentrifuge, frame, func(msg []byte) bool {
			s.deliverOne(msg, now)
			return true
		})
		return
	}
	s.deliverOne(frame, now)
}

// deliverOne accounts for one protocol message.
func (s *subscriber) deliverOne(msg []byte, now int64) {
	p, ok := parseFrame(msg)
	if !ok {
		return // a reply, a ping push, anything without our fields
	}
	k := -1
	for j, ch := range s.chs {
		if ch == p.ch {
			k = j
			break
		}
	}
	if k < 0 {
		// A publication of a channel this connection never subscribed
		// to: delivered where it should not be, as bad as a duplicate.
		s.ctr.dups.Add(1)
		return
	}
	if s.wins == nil {
		s.wins = make([]*seqWindow, len(s.chs))
	}
	w := s.wins[k]
	if w == nil {
		w = newSeqWindow()
		s.wins[k] = w
	}
	if !w.add(p.seq) {
		s.ctr.dups.Add(1)
		return
	}
	s.ctr.delivered.Add(1)
	s.r.lat.recordNanos(s.idx, now-p.sent)
}

// ended records the end of the connection: one the run did not close
// itself counts as a disconnect.
func (s *subscriber) ended() {
	if !s.r.closing.Load() {
		s.r.discon.Add(1)
	}
	s.r.connected.Add(-1)
	s.r.readers.Done()
}

// wsSubscriber is a subscriber on a WebSocket connection (ws.Handler).
type wsSubscriber struct{ *subscriber }

func (s wsSubscriber) OnMessage(c *ws.Conn, _ ws.MessageType, data []byte) {
	// The engine stamped the read that brought this message: reuse that
	// clock reading instead of taking another.
	s.deliver(data, c.LastRead().UnixNano())
}

func (s wsSubscriber) OnClose(*ws.Conn, error) { s.ended() }

// tcpSubscriber is a subscriber on herald's TCP transport
// (netpoll.Handler): it splits the byte stream into [length][payload]
// frames and answers the server's ping pushes.
type tcpSubscriber struct{ *subscriber }

func (s tcpSubscriber) OnData(pc *netpoll.Conn, data []byte) {
	pong := func() error { return pc.Write(pongFrame) }
	if err := s.consumeTCP(data, time.Now().UnixNano(), pong); err != nil {
		_ = pc.Close()
	}
}

// consumeTCP splits the bytes read into frames and handles each: whole
// frames in place, a frame split across reads through s.pend (whose size
// the length check bounds before anything is appended). now is the
// receive time in unix nanoseconds; pong answers a ping push. An error
// means the stream is unusable.
func (s *subscriber) consumeTCP(data []byte, now int64, pong func() error) error {
	if len(s.pend) > 0 {
		// Complete the frame that was split across reads first.
		if len(s.pend) < 4 {
			take := min(4-len(s.pend), len(data))
			s.pend = append(s.pend, data[:take]...)
			data = data[take:]
			if len(s.pend) < 4 {
				return nil
			}
		}
		need := frameNeed(s.pend)
		if need < 0 {
			return errFrameTooLarge
		}
		take := min(need-len(s.pend), len(data))
		s.pend = append(s.pend, data[:take]...)
		data = data[take:]
		if len(s.pend) < need {
			return nil
		}
		if err := s.tcpFrame(s.pend[4:need], now, pong); err != nil {
			return err
		}
		s.pend = s.pend[:0]
		if cap(s.pend) > 64<<10 {
			s.pend = nil // keep no large buffer per connection
		}
	}
	for len(data) > 0 {
		need := frameNeed(data)
		if need < 0 {
			return errFrameTooLarge
		}
		if need == 0 || len(data) < need {
			s.pend = append(s.pend[:0], data...)
			return nil
		}
		if err := s.tcpFrame(data[4:need], now, pong); err != nil {
			return err
		}
		data = data[need:]
	}
	return nil
}

var errFrameTooLarge = fmt.Errorf("tcp: frame over %d bytes", maxMessage)

// frameNeed returns the length of the frame (header included) that b
// starts with, 0 when b does not hold the whole header yet, and -1 for a
// frame over maxMessage.
func frameNeed(b []byte) int {
	if len(b) < 4 {
		return 0
	}
	n := binary.BigEndian.Uint32(b)
	if n > maxMessage {
		return -1
	}
	return 4 + int(n)
}

// tcpFrame handles one frame's payload.
func (s *subscriber) tcpFrame(payload []byte, now int64, pong func() error) error {
	if len(payload) == 0 {
		return nil // keepalive
	}
	if isPingPush(payload) {
		return pong()
	}
	s.deliver(payload, now)
	return nil
}

func (s tcpSubscriber) OnClose(*netpoll.Conn, error) { s.ended() }

// serve hands a subscribed connection to the poller. On error the
// connection is closed.
func (r *run) serve(cn *conn, i int) error {
	s := r.newSubscriber(i)
	r.readers.Add(1)
	var err error
	switch c := cn.c.(type) {
	case wsConn:
		err = c.c.Serve(wsSubscriber{s})
	case *tcpConn:
		err = c.serve(tcpSubscriber{s})
	default:
		err = fmt.Errorf("conn %d: %T cannot be served", i, cn.c)
	}
	if err != nil {
		r.readers.Done()
		cn.c.close()
		return err
	}
	return nil
}

// serve moves the connection to the poller; bytes the handshake reader
// already buffered are delivered first.
func (t *tcpConn) serve(h netpoll.Handler) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	buffered, _ := t.br.Peek(t.br.Buffered())
	pc, err := netpoll.Default().Register(t.nc, h, netpoll.ConnOptions{Buffered: append([]byte(nil), buffered...)})
	if err != nil {
		return fmt.Errorf("tcp: serve: %w", err)
	}
	t.pc = pc
	t.br = nil
	return nil
}
