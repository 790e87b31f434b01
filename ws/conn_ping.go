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
	p := &pendingPing{done: make(chan struct{})}
	c.pingMu.Lock()
	c.pingSeq++
	// A random high half keeps payloads from colliding with pongs the
	// peer sends on its own.
	binary.BigEndian.PutUint64(p.payload[:], c.pingSeq|uint64(rand.Uint32())<<32)
	c.pings = append(c.pings, p)
	c.pingMu.Unlock()

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
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	for i, q := range c.pings {
		if q == p {
			c.pings = append(c.pings[:i], c.pings[i+1:]...)
			return
		}
	}
}

// resolvePing wakes the Ping whose payload a pong echoes.
func (c *Conn) resolvePing(payload []byte) {
	if len(payload) != 8 {
		return
	}
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	for i, p := range c.pings {
		if string(p.payload[:]) == string(payload) {
			close(p.done)
			c.pings = append(c.pings[:i], c.pings[i+1:]...)
			if len(c.pings) == 0 {
				c.pings = nil
			}
			return
		}
	}
}

// failPings forgets pending pings once the connection is closed; their
// callers wake on done().
func (c *Conn) failPings() {
	c.pingMu.Lock()
	c.pings = nil
	c.pingMu.Unlock()
}
