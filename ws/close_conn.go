package ws

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Close performs the closing handshake (RFC 6455 §7): it sends a close
// frame with code and reason (cut to 123 bytes at a code point boundary),
// waits at most ConnOptions.CloseTimeout for the peer's close frame, and
// closes the socket. A server closes TCP as soon as the handshake is done;
// a client first waits, within the same timeout, for the server to close
// it. Code must be valid on the wire (1000-1003, 1007-1011, 3000-4999) or
// StatusNoStatusRcvd for a close frame without a code.
//
// In blocking mode, if no other goroutine is reading, Close reads (and
// discards) incoming data messages itself while it waits. In event mode
// Close does not wait: it queues the close frame and returns; the
// Handler's OnClose reports the end.
//
// Close is idempotent and safe from any goroutine; later calls wait for
// the first one's outcome in blocking mode. It returns ErrCloseTimeout when
// the peer did not answer in time.
func (c *Conn) Close(code StatusCode, reason string) error {
	if code != StatusNoStatusRcvd && !code.validOnWire() {
		return fmt.Errorf("ws: close: status code %d may not be sent", code)
	}
	c.closeMu.Lock()
	if c.closeSent || c.closed {
		c.closeMu.Unlock()
		if !c.served {
			c.waitClosed(c.opts.closeTimeout)
		}
		return nil
	}
	c.closeSent = true
	c.closeMu.Unlock()

	if c.served {
		return c.closeEvent(code, reason)
	}
	if err := c.writeCloseFrame(code, reason); err != nil {
		c.closeSocket(ErrClosed)
		return fmt.Errorf("ws: close: %w", err)
	}
	deadline := time.Now().Add(c.opts.closeTimeout)
	if b := c.blockingState(); b.readMu.TryLock() {
		err := c.awaitPeerClose(b, deadline)
		b.readMu.Unlock()
		return err
	}
	// Another goroutine is reading: it sees the peer's close frame and
	// closes the socket.
	if !c.waitClosed(time.Until(deadline)) {
		c.closeSocket(ErrCloseTimeout)
		return ErrCloseTimeout
	}
	return nil
}

// waitClosed waits until the socket is closed or d passes.
func (c *Conn) waitClosed(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done():
		return true
	case <-t.C:
		return false
	}
}

// awaitPeerClose reads until the peer's close frame arrives, discarding
// data messages, then ends the connection. The caller holds b.readMu.
func (c *Conn) awaitPeerClose(b *blockingState, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	defer c.releaseReadBuf(b)
	if b.msg.active {
		b.msg.finish(ErrClosed)
	}
	for {
		_, err := c.nextEvent(b, ctx)
		if err == nil {
			continue // data after our close frame is dropped
		}
		var ce *CloseError
		switch {
		case errors.As(err, &ce):
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			c.closeSocket(ErrCloseTimeout)
			return ErrCloseTimeout
		default:
			c.closeSocket(err)
			return fmt.Errorf("ws: close: %w", err)
		}
	}
}
