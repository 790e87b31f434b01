package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// connection is one established (or establishing) transport with its
// commands in flight. Its reader goroutine is started by the client's
// run loop, which waits for it (done) before starting another connection.
type connection struct {
	t     transport
	codec wire.Codec

	readTimeout atomic.Int64  // nanoseconds; 0: no limit
	ttl         time.Duration // token lifetime from the connect reply
	expires     bool          // the token expires after ttl

	// guarded by mu

	mu      sync.Mutex
	pong    bool // answer ping pushes
	pending map[uint32]*call
	ended   bool
	code    uint16
	reason  string
	advice  int8 // -1: do not reconnect, 1: reconnect, 0: decide by code

	done chan struct{} // closed when the reader returned and pending calls failed
}

// call is a command waiting for its reply. Exactly one of ch and onReply
// is set. onReply runs on the reader goroutine (nil reply: the connection
// ended), which lets subscribe replies take effect before the next
// message is read.
type call struct {
	method  wire.Method
	ch      chan *wire.Reply
	onReply func(*wire.Reply)
}

func newConnection(t transport) *connection {
	return &connection{t: t, codec: t.codec(), pending: make(map[uint32]*call), done: make(chan struct{})}
}

func (cn *connection) methodOf(id uint32) wire.Method {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if c := cn.pending[id]; c != nil {
		return c.method
	}
	return wire.MethodUnknown
}

// end records why the connection ends (the first reason wins) and closes
// the transport.
func (cn *connection) end(code uint16, reason string, advice int8) {
	cn.mu.Lock()
	if !cn.ended {
		cn.ended, cn.code, cn.reason, cn.advice = true, code, reason, advice
	}
	cn.mu.Unlock()
	cn.t.close()
}

// endInfo returns the disconnect code, reason and whether to reconnect.
func (cn *connection) endInfo() (uint16, string, bool) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	switch cn.advice {
	case 1:
		return cn.code, cn.reason, true
	case -1:
		return cn.code, cn.reason, false
	}
	return cn.code, cn.reason, reconnects(cn.code)
}

// reconnects reports whether the client reconnects after a connection
// ended with code: server codes by their range (wire.DisconnectReconnects),
// the client's own 4000-4999 codes, and abnormal WebSocket closes.
func reconnects(code uint16) bool {
	switch {
	case wire.DisconnectReconnects(code):
		return true
	case code >= 3500 && code < 4000:
		return false
	case code >= 4000 && code < 5000:
		return true
	}
	switch code {
	case 1005, 1006, 1011, 1012, 1013, 1014, 1015:
		return true
	}
	return false
}

// register adds a call under id; false when the connection already ended.
func (cn *connection) register(id uint32, c *call) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.ended {
		return false
	}
	cn.pending[id] = c
	return true
}

func (cn *connection) unregister(id uint32) {
	cn.mu.Lock()
	delete(cn.pending, id)
	cn.mu.Unlock()
}

// resolve hands a reply to its call.
func (cn *connection) resolve(r *wire.Reply) {
	cn.mu.Lock()
	c := cn.pending[r.ID]
	delete(cn.pending, r.ID)
	cn.mu.Unlock()
	switch {
	case c == nil: // timed out already
	case c.onReply != nil:
		c.onReply(r)
	default:
		c.ch <- r
	}
}

// failPending ends every call in flight with a nil reply.
func (cn *connection) failPending() {
	cn.mu.Lock()
	cn.ended = true
	calls := cn.pending
	cn.pending = nil
	cn.mu.Unlock()
	for _, c := range calls {
		if c.onReply != nil {
			c.onReply(nil)
		} else {
			c.ch <- nil
		}
	}
}

// send writes cmd (whose ID is set) within ctx.
func (cn *connection) send(ctx context.Context, cmd *wire.Command) error {
	buf := cn.codec.AppendCommand(nil, cmd)
	return cn.t.write(ctx, buf)
}

// roundTrip sends cmd and waits for its reply.
func (cn *connection) roundTrip(ctx context.Context, cmd *wire.Command) (*wire.Reply, error) {
	c := &call{method: cmd.Method, ch: make(chan *wire.Reply, 1)}
	if !cn.register(cmd.ID, c) {
		return nil, errDisconnected(cmd.Method)
	}
	if err := cn.send(ctx, cmd); err != nil {
		cn.unregister(cmd.ID)
		// A partly written message leaves the stream unusable.
		cn.end(DisconnectTransportFailed, "write: "+err.Error(), 0)
		if ctx.Err() != nil {
			return nil, ctxError(ctx, cmd.Method)
		}
		return nil, errDisconnected(cmd.Method)
	}
	select {
	case r := <-c.ch:
		if r == nil {
			return nil, errDisconnected(cmd.Method)
		}
		if r.Error != nil {
			return nil, fromWire(r.Error)
		}
		return r, nil
	case <-ctx.Done():
		cn.unregister(cmd.ID)
		return nil, ctxError(ctx, cmd.Method)
	}
}

func errDisconnected(m wire.Method) error {
	return &Error{Code: CodeDisconnected, Message: m.String() + ": connection lost", Temporary: true}
}

func ctxError(ctx context.Context, m wire.Method) error {
	if ctx.Err() == context.DeadlineExceeded {
		return &Error{Code: CodeTimeout, Message: m.String() + ": no reply in time", Temporary: true}
	}
	return fmt.Errorf("herald: %s: %w", m, ctx.Err())
}

func (cn *connection) setReadTimeout(d time.Duration) { cn.readTimeout.Store(int64(d)) }

// connected applies the connect reply's heartbeat settings; it runs on the
// reader goroutine before the next message is read.
func (cn *connection) connected(res *wire.ConnectResult, maxDelay time.Duration) {
	cn.mu.Lock()
	cn.pong = res.Pong
	cn.mu.Unlock()
	if res.Ping > 0 {
		cn.setReadTimeout(time.Duration(res.Ping)*time.Second + maxDelay)
	} else {
		cn.setReadTimeout(0)
	}
}
