package netpoll

import (
	"sync"
	"time"
)

// Write pacing (Options.WriteDelay).
//
// A message queued on an empty queue less than holdWindow(D) (2/3 of the
// delay D) after the connection's previous write is not flushed at once:
// the connection goes on a hold wheel and its flush is scheduled when D
// has passed since that write, so everything queued meanwhile leaves in
// one writev. The previous write counts from when it was due
// (outQueue.due), not from when it reached the socket. A wheel is
// shared by many connections (one per epoll loop, one for the fallback
// connections): a ring of slots of holdTick each, and one timer that is
// armed only while some connection is held. A connection is on at most one
// slot (Conn.held), so the ring never holds more entries than connections,
// and an idle connection costs only its lastWrite timestamp.

const (
	// holdTick is the wheel's resolution: a hold ends at the start of the
	// tick in which its D elapses, so it lasts between D-holdTick and D
	// (plus the timer's own lateness).
	holdTick = 500 * time.Microsecond
	// holdSlots is the ring's length; it must exceed MaxWriteDelay/holdTick
	// by at least one.
	holdSlots = 512
)

// MaxWriteDelay bounds Options.WriteDelay and SetWriteDelay.
const MaxWriteDelay = 250 * time.Millisecond

// clock is the time source of write pacing; tests replace it.
type clock interface {
	// now returns monotonic nanoseconds, always > 0.
	now() int64
	// afterFunc calls f on its own goroutine after d, like time.AfterFunc.
	afterFunc(d time.Duration, f func()) stopTimer
}

// stopTimer is the part of *time.Timer the wheel uses.
type stopTimer interface {
	Reset(d time.Duration) bool
	Stop() bool
}

// monoClock reads the monotonic clock relative to its epoch.
type monoClock struct{ epoch time.Time }

func (m monoClock) now() int64 { return int64(time.Since(m.epoch)) + 1 }

func (monoClock) afterFunc(d time.Duration, f func()) stopTimer { return time.AfterFunc(d, f) }

// now reads the clock and advances the Poller's recent time.
func (p *Poller) now() int64 {
	t := p.clk.now()
	for {
		old := p.recent.Load()
		if t <= old || p.recent.CompareAndSwap(old, t) {
			return t
		}
	}
}

// recentNow returns the latest time now returned: never later than the
// clock, and close to it while connections are busy (every hold and every
// release reads the clock). Reading the clock costs a few hundred
// nanoseconds on some virtual machines, about a tenth of a write system
// call, so writes are stamped with this rather than with the clock.
func (p *Poller) recentNow() int64 {
	if t := p.recent.Load(); t != 0 {
		return t
	}
	return p.now()
}

// holdWheel holds connections whose flush waits for their pacing delay.
// Its lock comes after Conn.mu in the lock order (hold is called with the
// connection's lock held); the timer releases connections without it.
type holdWheel struct {
	p     *Poller
	flush func(batch []*Conn) // schedules the released connections' flushes

	mu      sync.Mutex
	slots   [][]*Conn // ring of holdSlots, allocated on first use
	base    int64     // lowest slot number that may hold connections
	held    int       // connections in the ring
	armed   bool      // timer is set, for slot armedAt
	armedAt int64
	timer   stopTimer
	stopped bool
	spare   []*Conn        // the previous release's batch, reused
	running sync.WaitGroup // expire calls past the stopped check
}

// hold puts c on the wheel until due (clock nanoseconds). It reports
// false when c must be flushed now instead: due is already in the current
// tick, the wheel was stopped, or due is beyond the ring. The caller holds
// c.mu and sets c.held on success.
func (w *holdWheel) hold(c *Conn, now, due int64) bool {
	slot := due / int64(holdTick)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	cur := now / int64(holdTick)
	if w.held == 0 {
		w.base = cur
	}
	if slot <= cur || slot < w.base || slot >= w.base+holdSlots {
		// Due in the current tick, in one already released (a clock
		// read that raced with a release), or beyond the ring: nothing
		// worth waiting for.
		return false
	}
	if w.slots == nil {
		w.slots = make([][]*Conn, holdSlots)
	}
	i := slot % holdSlots
	w.slots[i] = append(w.slots[i], c)
	w.held++
	if !w.armed || slot < w.armedAt {
		w.arm(slot, now)
	}
	return true
}

// arm sets the timer for the start of slot. Called with mu held.
func (w *holdWheel) arm(slot, now int64) {
	d := time.Duration(slot*int64(holdTick) - now)
	if w.timer == nil {
		w.timer = w.p.clk.afterFunc(d, w.expire)
	} else {
		w.timer.Reset(d)
	}
	w.armed, w.armedAt = true, slot
}

// expire runs on the timer's goroutine: it releases every connection
// whose slot has begun and re-arms the timer for the next occupied slot.
func (w *holdWheel) expire() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.running.Add(1)
	defer w.running.Done()
	now := w.p.now()
	cur := now / int64(holdTick)
	batch := w.spare[:0]
	w.spare = nil
	for s := w.base; s <= cur && w.held > 0; s++ {
		i := s % holdSlots
		if len(w.slots[i]) > 0 {
			batch = append(batch, w.slots[i]...)
			w.held -= len(w.slots[i])
			clear(w.slots[i])
			w.slots[i] = w.slots[i][:0]
		}
		if s-w.base >= holdSlots {
			break // one full turn looked at every slot
		}
	}
	w.base = cur + 1
	w.armed = false
	if w.held > 0 {
		for s := w.base; s < w.base+holdSlots; s++ {
			if len(w.slots[s%holdSlots]) > 0 {
				w.arm(s, now)
				break
			}
		}
	}
	w.mu.Unlock()

	if len(batch) > 0 {
		w.flush(batch)
	}
	clear(batch)
	w.mu.Lock()
	if w.spare == nil {
		w.spare = batch[:0]
	}
	w.mu.Unlock()
}

// stop stops the timer, drops every held connection (they are all closed
// by then) and waits for a release in progress. hold fails afterwards. A
// timer function that fires meanwhile returns at once.
func (w *holdWheel) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.slots, w.spare, w.held, w.armed = nil, nil, 0, false
	w.mu.Unlock()
	w.running.Wait()
}

// releaseHold ends c's hold: it reports whether a flush must now be
// scheduled (a fallback connection's flusher is claimed here; the caller
// starts it).
func (c *Conn) releaseHold() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held {
		return false
	}
	c.held = false
	if c.done || c.out.msgs == 0 {
		return false
	}
	if c.fd < 0 {
		return c.fallbackClaimFlusher()
	}
	return true
}

// holdLocked decides whether the flush of what c has queued waits for the
// pacing delay: it reports true if c is (now, or already) on its wheel.
// Called with c.mu held, after a message was queued on an empty queue or
// after a write left messages queued since.
func (c *Conn) holdLocked() bool {
	if c.closeReq.Load() != closeNone {
		return false // a closing connection flushes at once
	}
	if c.held {
		return true
	}
	d := c.poller().writeDelay.Load()
	if d <= 0 || c.lastWrite == 0 {
		return false
	}
	due := c.lastWrite + d
	busyUntil := c.lastWrite + holdWindow(d)
	if c.poller().recentNow() >= busyUntil {
		return false // past the window: no need to read the clock
	}
	now := c.poller().now()
	if now >= busyUntil {
		return false
	}
	if !c.wheel().hold(c, now, due) {
		return false
	}
	c.held = true
	c.out.due = due
	return true
}

// holdWindow is how long after a write a message queued on an empty queue
// is held (until d after that write): 2/3 of d; a message queued later is
// written at once. For a steady stream of one message per T, a hold pays
// only if the next message arrives before it ends. With T between 2/3 d
// and d, holding would mostly delay messages without batching them: each
// hold ends later relative to the next arrival, so holds grow message
// after message until, near T, two messages finally share a write. Below
// 2/3 d a stream's messages leave at least two per write after at most
// two holds.
func holdWindow(d int64) int64 { return d * 2 / 3 }

// wheel returns the hold wheel c's pacing uses.
func (c *Conn) wheel() *holdWheel {
	if w := c.sysWheel(); w != nil {
		return w
	}
	return &c.poller().fbWheel
}

// flushFallbackHeld starts the flushers of released fallback connections
// (releaseHold claimed them).
func flushFallbackHeld(batch []*Conn) {
	for _, c := range batch {
		if c.releaseHold() {
			c.startFlusher()
		}
	}
}
