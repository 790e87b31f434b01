package netpoll

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// fallbackState is a Conn's portable-path bookkeeping. The reader goroutine
// lives as long as the connection and is the only caller of the Handler; a
// flusher goroutine runs only while the queue is non-empty.
type fallbackState struct {
	p  *Poller
	nc net.Conn
	// Under Conn.mu:
	flushing bool          // a flusher goroutine is running
	resume   chan struct{} // closed by ResumeRead or Close to wake the reader
}

func (p *Poller) registerFallback(c *Conn, nc net.Conn) error {
	c.coldState().fallback = &fallbackState{p: p, nc: nc}
	// A deadline left from a handshake would fail the reader later; from
	// now on only Close ends the connection. (Not every net.Conn supports
	// deadlines: the error is irrelevant.)
	nc.SetDeadline(time.Time{})
	if err := p.track(c, true); err != nil {
		return err
	}
	// track succeeded, so Close has not started waiting: the Add is safe.
	p.wg.Add(1)
	go c.readLoop()
	return nil
}

// readLoop is the fallback connection's reader and its Handler's goroutine.
// It owns closing the net.Conn and calling finish.
func (c *Conn) readLoop() {
	defer c.fb().p.wg.Done()
	nc := c.fb().nc
	if pin := c.pendingInput(); pin != nil {
		data := *pin
		*pin = nil
		if len(*data) > 0 {
			c.h.OnData(c, *data)
			c.flushReplies()
		}
	}
	var err error
	for c.closeReq.Load() != closeNow {
		if c.suspended.Load() {
			c.waitResume()
			continue
		}
		bp := c.poller().getReadBuf()
		n, rerr := nc.Read(*bp)
		if n > 0 && c.closeReq.Load() != closeNow {
			c.poller().stats.reads.Add(1)
			c.h.OnData(c, (*bp)[:n])
			c.flushReplies()
		}
		c.poller().putReadBuf(bp)
		if rerr != nil {
			err = rerr
			break
		}
	}
	nc.Close()
	c.mu.Lock()
	req, lingering := c.closeReq.Load(), c.lingering
	c.mu.Unlock()
	switch {
	case req == closeNow:
		err = c.closeRequestErr()
	case errors.Is(err, io.EOF):
		if lingering {
			err = nil
		} else {
			err = io.EOF
		}
	default:
		err = fmt.Errorf("netpoll: read: %w", err)
	}
	c.finish(err)
}

// flushReplies runs after OnData: what it queued (a reply the peer may be
// waiting for) is not held by write pacing, and what pacing held leaves
// with it.
func (c *Conn) flushReplies() {
	c.mu.Lock()
	start := c.held && c.out.msgs > 0 && c.fallbackClaimFlusher()
	c.mu.Unlock()
	if start {
		c.startFlusher()
	}
}

// waitResume blocks the reader while reading is suspended.
func (c *Conn) waitResume() {
	c.mu.Lock()
	if !c.suspended.Load() || c.closeReq.Load() == closeNow {
		c.mu.Unlock()
		return
	}
	if c.fb().resume == nil {
		c.fb().resume = make(chan struct{})
	}
	ch := c.fb().resume
	c.mu.Unlock()
	<-ch
}

func (c *Conn) fallbackResume() {
	c.mu.Lock()
	if ch := c.fb().resume; ch != nil {
		close(ch)
		c.fb().resume = nil
	}
	c.mu.Unlock()
}

// fallbackCloseNow unblocks the reader (and a flusher): the reader then
// closes the net.Conn and finishes the connection. An expired deadline
// unblocks them without closing here, because closing can block: a
// *tls.Conn sends close_notify, for up to 5 s. Connections without
// deadlines are closed here.
func (c *Conn) fallbackCloseNow() {
	if c.fb().nc.SetDeadline(aLongTimeAgo) != nil {
		c.fb().nc.Close()
	}
	c.fallbackResume()
}

var aLongTimeAgo = time.Unix(1, 0)

// fallbackClaimFlusher reports whether the caller must start a flusher
// (with startFlusher, after unlocking). Called under c.mu. The WaitGroup
// count is taken here: while the Conn is not done its reader has not
// called Done, so Poller.Close cannot be past its Wait.
func (c *Conn) fallbackClaimFlusher() bool {
	if c.fb().flushing || c.done {
		return false
	}
	c.fb().flushing = true
	c.poller().wg.Add(1)
	return true
}

// startFlusher starts the flusher claimed by fallbackClaimFlusher.
func (c *Conn) startFlusher() {
	go c.flushLoop()
}

// fallbackLinger shuts down the sending side and lets the reader run until
// the peer's EOF or the timer; without a timer, or without a way to
// half-close, it closes at once.
func (c *Conn) fallbackLinger(wait bool) {
	if cw, ok := c.fb().nc.(interface{ CloseWrite() error }); ok && wait {
		if cw.CloseWrite() == nil {
			return
		}
	}
	c.requestClose(nil)
}

// coalesceMax bounds the copy that merges a batch of small buffers into one
// Write on connections that cannot writev (a TLS connection would otherwise
// emit a record and a system call per buffer).
const coalesceMax = 64 << 10

var coalesceBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, coalesceMax)
	return &b
}}

// flushLoop writes the queue until it is empty, or until write pacing
// holds what was queued during a write (the hold wheel starts a new
// flusher), then exits.
func (c *Conn) flushLoop() {
	defer c.fb().p.wg.Done()
	var batch [][]byte
	wrote := false
	for {
		c.mu.Lock()
		ents := c.out.pending()
		if len(ents) > 0 && !c.done && wrote && c.holdLocked() {
			c.fb().flushing = false
			c.mu.Unlock()
			return
		}
		if len(ents) == 0 || c.done {
			c.fb().flushing = false
			linger := !c.done && c.closeReq.Load() == closeAfterFlush && !c.lingering
			if linger {
				c.lingering = true
			}
			wait := c.timerLocked() != nil
			c.mu.Unlock()
			if linger {
				c.fallbackLinger(wait)
			}
			return
		}
		batch = batch[:0]
		total := 0
		for i := range ents {
			if len(batch) == maxIovecs {
				break
			}
			batch = append(batch, ents[i].b)
			total += len(ents[i].b)
		}
		c.mu.Unlock()

		n, err := c.writeBatch(batch, total)
		clear(batch)
		wrote = true
		if n > 0 {
			var now int64
			if c.poller().writeDelay.Load() > 0 {
				now = c.poller().recentNow()
			}
			c.mu.Lock()
			if !c.done {
				c.consumeLocked(n, now)
			} else {
				c.writtenTotal += uint64(n)
			}
			written := c.writtenTotal
			c.mu.Unlock()
			c.wrote(n, written)
		}
		if err != nil {
			c.requestClose(fmt.Errorf("netpoll: write: %w", err))
			c.mu.Lock()
			c.fb().flushing = false
			c.mu.Unlock()
			return
		}
	}
}

// writeBatch writes batch to the net.Conn with as few calls as it can.
func (c *Conn) writeBatch(batch [][]byte, total int) (int, error) {
	nc := c.fb().nc
	c.poller().stats.writes.Add(1)
	if len(batch) == 1 {
		return nc.Write(batch[0])
	}
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
		// net.Buffers uses writev on these.
	default:
		if total <= coalesceMax {
			bp := coalesceBufs.Get().(*[]byte)
			b := (*bp)[:0]
			for _, s := range batch {
				b = append(b, s...)
			}
			n, err := nc.Write(b)
			*bp = b[:0]
			coalesceBufs.Put(bp)
			return n, err
		}
	}
	bufs := net.Buffers(batch)
	n, err := bufs.WriteTo(nc)
	return int(n), err
}
