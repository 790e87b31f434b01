package ws

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"
)

// pendingPing is a Ping waiting for its pong.
type pendingPing struct {
	payload [8]byte
	done    chan struct{}
}

// Ping sends a ping and waits for the pong that echoes it, returning the
// round-trip time. The pong is read by whoever reads the connection, so in
// blocking mode another goroutine must be in Read or Reader; in event mode
// the poller reads. Pongs that match no pending Ping are ignored
// (RFC 6455 §5.5.3). Ping is safe for concurrent use.
func (c *Conn) Ping(ctx context.Context) (time.Duration, error) {
	if ctx.Err() != nil {
		// Nobody waits for this pong: send the ping without registering
		// it (event-mode heartbeats use this to refresh LastRead), so
		// the connection keeps no waiting state.
		var payload [8]byte
		binary.BigEndian.PutUint64(payload[:], rand.Uint64())
		if err := c.writeControl(ctx, opPing, payload[:]); err != nil {
			return 0, fmt.Errorf("ws: ping: %w", err)
		}
		return 0, fmt.Errorf("ws: ping: %w", ctx.Err())
	}
	p := &pendingPing{done: make(chan struct{})}
	// Random payloads keep pongs from colliding with each other and with
	// pongs the peer sends on its own.
	binary.BigEndian.PutUint64(p.payload[:], rand.Uint64())
	c.closeMu.Lock()
	x := c.extraLocked()
	x.pings = append(x.pings, p)
	c.closeMu.Unlock()

	start := time.Now()
	if err := c.writeControl(ctx, opPing, p.payload[:]); err != nil {
		c.dropPing(p)
		return 0, fmt.Errorf("ws: ping: %w", err)
	}
	select {
	case <-p.done:
		return time.Since(start), nil
	case <-ctx.Done():
		c.dropPing(p)
		return 0, fmt.Errorf("ws: ping: %w", ctx.Err())
	case <-c.done():
		c.dropPing(p)
		return 0, fmt.Errorf("ws: ping: %w", c.endErr())
	}
}

func (c *Conn) dropPing(p *pendingPing) {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.extra != nil {
		c.extra.removePing(p)
	}
}

// removePing forgets p; the caller holds closeMu.
func (x *connExtra) removePing(p *pendingPing) bool {
	for i, q := range x.pings {
		if q == p {
			x.pings = append(x.pings[:i], x.pings[i+1:]...)
			if len(x.pings) == 0 {
				x.pings = nil
			}
			return true
		}
	}
	return false
}

// resolvePing wakes the Ping whose payload a pong echoes.
func (c *Conn) resolvePing(payload []byte) {
	if len(payload) != 8 {
		return
	}
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.extra == nil {
		return
	}
	for _, p := range c.extra.pings {
		if string(p.payload[:]) == string(payload) {
			close(p.done)
			c.extra.removePing(p)
			return
		}
	}
}
