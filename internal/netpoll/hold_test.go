package netpoll

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testwait"
)

// fakeClock is a clock that moves only when the test advances it; due
// timer functions run on the advancing goroutine.
type fakeClock struct {
	mu     sync.Mutex
	t      int64
	timers []*fakeTimer
}

type fakeTimer struct {
	c      *fakeClock
	at     int64
	f      func()
	active bool
}

func newFakeClock() *fakeClock { return &fakeClock{t: int64(time.Second)} }

func (c *fakeClock) now() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) afterFunc(d time.Duration, f func()) stopTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.t + int64(d), f: f, active: true}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.at, t.active = t.c.t+int64(d), true
	return was
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

// armed reports whether some timer is set.
func (c *fakeClock) armed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.timers {
		if t.active {
			return true
		}
	}
	return false
}

// advance moves the clock by d and runs the timers due by then, in order.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	end := c.t + int64(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.timers {
			if t.active && t.at <= end && (next == nil || t.at < next.at) {
				next = t
			}
		}
		if next == nil {
			c.t = end
			c.mu.Unlock()
			return
		}
		next.active = false
		c.t = max(c.t, next.at)
		c.mu.Unlock()
		next.f()
	}
}

// countingObserver is a recorder that counts OnWritten calls.
type countingObserver struct {
	*recorder
	mu     sync.Mutex
	writes int
}

func (o *countingObserver) OnWritten(*Conn, int, uint64) {
	o.mu.Lock()
	o.writes++
	o.mu.Unlock()
}

func (o *countingObserver) writeCalls() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.writes
}

const testDelay = 10 * time.Millisecond

// pacedConn registers the server end of a connPair on a Poller with
// WriteDelay testDelay and a fake clock.
func pacedConn(t *testing.T, path string, opts ...ConnOptions) (*Conn, net.Conn, *countingObserver, *fakeClock) {
	t.Helper()
	p := newTestPoller(t, Options{WriteDelay: testDelay})
	fc := newFakeClock()
	p.clk = fc // before any Register: nothing has read it yet
	server, client := connPair(t, path)
	h := &countingObserver{recorder: newRecorder(false)}
	c := register(t, p, server, h, opts...)
	if c.Fallback() != (path != "epoll") {
		t.Fatalf("Fallback() = %v on the %s path", c.Fallback(), path)
	}
	return c, client, h, fc
}

// writeAndRead writes msg, reads it on the client and waits until the
// Conn has accounted the write (so its pacing measures from it).
func writeAndRead(t *testing.T, c *Conn, client net.Conn, msg string) {
	t.Helper()
	if err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("Write(%q): %v", msg, err)
	}
	if got := readFull(t, client, len(msg)); string(got) != msg {
		t.Fatalf("read %q, want %q", got, msg)
	}
	waitFlushed(t, c)
}

func waitFlushed(t *testing.T, c *Conn) {
	t.Helper()
	testwait.Until(t, "written == queued", func() bool {
		q, w := c.Totals()
		return q == w
	})
}

func isHeld(c *Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

var paths = []string{"epoll", "fallback"}

// TestPacingIdleConnectionWritesAtOnce: a message queued WriteDelay or
// more after the previous write (or the first one) is written without
// waiting for any timer: the fake clock never moves while it is read.
func TestPacingIdleConnectionWritesAtOnce(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			c, client, _, fc := pacedConn(t, path)
			writeAndRead(t, c, client, "first")
			fc.advance(testDelay)
			writeAndRead(t, c, client, "second")
			fc.advance(testDelay + time.Millisecond)
			writeAndRead(t, c, client, "third")
			if isHeld(c) || fc.armed() {
				t.Fatal("an idle connection was held")
			}
		})
	}
}

// TestPacingHoldsWithinDelay: messages queued less than WriteDelay after
// the previous write stay queued until WriteDelay has passed since that
// write, then all of them leave in one write, in order.
func TestPacingHoldsWithinDelay(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			c, client, h, fc := pacedConn(t, path)
			writeAndRead(t, c, client, "a")
			fc.advance(3 * time.Millisecond)
			for _, m := range []string{"b", "cc", "ddd"} {
				if err := c.Write([]byte(m)); err != nil {
					t.Fatal(err)
				}
			}
			if !isHeld(c) {
				t.Fatal("a message queued 3ms after a write was not held")
			}
			fc.advance(testDelay - 3*time.Millisecond - time.Nanosecond)
			// Nothing but the wheel's timer can flush a held queue, and it
			// has not fired: the queue is intact.
			if b, m := c.Queued(); b != 6 || m != 3 || !isHeld(c) {
				t.Fatalf("before the delay: queued %d bytes %d messages, held %v", b, m, isHeld(c))
			}
			before := h.writeCalls()
			fc.advance(time.Nanosecond)
			if got := readFull(t, client, 6); string(got) != "bccddd" {
				t.Fatalf("read %q after the delay", got)
			}
			waitFlushed(t, c)
			if n := h.writeCalls() - before; n != 1 {
				t.Fatalf("held messages left in %d writes, want 1", n)
			}
			if isHeld(c) {
				t.Fatal("still held after the release")
			}
		})
	}
}

// TestPacingKeepsHolding: a connection that keeps receiving gets one write
// per WriteDelay, each carrying what was queued since the previous one.
func TestPacingKeepsHolding(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			c, client, h, fc := pacedConn(t, path)
			writeAndRead(t, c, client, "0")
			before := h.writeCalls()
			var want bytes.Buffer
			for round := range 5 {
				for i := range 4 {
					m := fmt.Sprintf("<%d.%d>", round, i)
					want.WriteString(m)
					if err := c.Write([]byte(m)); err != nil {
						t.Fatal(err)
					}
					fc.advance(testDelay / 4)
				}
				// The release at the end of this round's delay wrote
				// what the round queued.
				got := readFull(t, client, want.Len())
				if string(got) != want.String() {
					t.Fatalf("round %d: read %q, want %q", round, got, want.String())
				}
				want.Reset()
				waitFlushed(t, c)
			}
			if n := h.writeCalls() - before; n != 5 {
				t.Fatalf("%d writes for 5 rounds", n)
			}
		})
	}
}

// TestPacingMeasuresFromDue: the delay runs from when the previous write
// was due (its message queued, or its hold ended), not from when it
// reached the socket, so a write that waited for a worker does not hold
// the next message longer.
func TestPacingMeasuresFromDue(t *testing.T) {
	p := newPoller(Options{WriteDelay: testDelay})
	fc := newFakeClock()
	p.clk = fc
	t.Cleanup(func() { _ = p.Close() })
	c := &Conn{fd: -1, maxBytes: 1 << 20, maxMsgs: 16}
	c.coldState().fallback = &fallbackState{p: p}
	queue := func(m string) {
		c.out.push([][]byte{[]byte(m)}, len(m))
		if c.out.due == 0 {
			c.out.due = p.recentNow()
		}
	}

	t0 := p.now()
	c.mu.Lock()
	queue("a")
	c.mu.Unlock()
	// "a" reaches the socket 5ms after it was queued.
	fc.advance(5 * time.Millisecond)
	c.mu.Lock()
	if !c.consumeLocked(1, p.now()) {
		t.Fatal("queue not empty after writing its only message")
	}
	if c.lastWrite != t0 {
		t.Fatalf("last write stamped %v after the message was queued, want 0", time.Duration(c.lastWrite-t0))
	}
	c.mu.Unlock()

	// Queued now, 5ms after "a" was due (within 2/3 of the delay): held
	// until 10ms after that, not 10ms after "a" reached the socket.
	c.mu.Lock()
	queue("b")
	held := c.holdLocked()
	due := c.out.due
	c.mu.Unlock()
	if !held || due != t0+int64(testDelay) {
		t.Fatalf("queued 5ms after a write due at 0: held %v until %v, want held until %v", held, time.Duration(due-t0), testDelay)
	}
}

// TestPacingLateMessageWrittenAtOnce: a message queued 2/3 of the delay
// or more after the previous write is not held (holding it would seldom
// batch it with the next); one queued just before is.
func TestPacingLateMessageWrittenAtOnce(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			c, client, h, fc := pacedConn(t, path)
			writeAndRead(t, c, client, "a")
			fc.advance(testDelay * 2 / 3)
			before := h.writeCalls()
			writeAndRead(t, c, client, "b") // the clock does not move meanwhile
			if isHeld(c) || fc.armed() {
				t.Fatal("a message queued 2/3 of the delay after a write was held")
			}
			if n := h.writeCalls() - before; n != 1 {
				t.Fatalf("%d writes, want 1", n)
			}
			fc.advance(testDelay*2/3 - time.Nanosecond)
			if err := c.Write([]byte("c")); err != nil {
				t.Fatal(err)
			}
			if !isHeld(c) {
				t.Fatal("a message queued just under 2/3 of the delay after a write was not held")
			}
			fc.advance(testDelay - (testDelay*2/3 - time.Nanosecond))
			if got := readFull(t, client, 1); string(got) != "c" {
				t.Fatalf("read %q after the delay", got)
			}
			waitFlushed(t, c)
		})
	}
}

// TestPacingCloseWhileHeld: Close drops held messages and a later release
// finds nothing to do; CloseAfterFlush writes them at once.
func TestPacingCloseWhileHeld(t *testing.T) {
	for _, path := range paths {
		t.Run(path+"/Close", func(t *testing.T) {
			c, client, h, fc := pacedConn(t, path)
			writeAndRead(t, c, client, "kept")
			fc.advance(time.Millisecond)
			if err := c.Write([]byte("dropped")); err != nil {
				t.Fatal(err)
			}
			if !isHeld(c) {
				t.Fatal("not held")
			}
			c.Close()
			if err := h.waitClosed(t); err != nil {
				t.Fatalf("OnClose err %v", err)
			}
			expectEOF(t, client)
			fc.advance(testDelay) // the release finds a finished Conn
			if err := c.Write([]byte("late")); err != ErrClosed {
				t.Fatalf("Write after Close: %v", err)
			}
			if b, m := c.Queued(); b != 0 || m != 0 {
				t.Fatalf("closed Conn still queues %d bytes %d messages", b, m)
			}
		})
		t.Run(path+"/CloseAfterFlush", func(t *testing.T) {
			c, client, h, fc := pacedConn(t, path)
			writeAndRead(t, c, client, "first")
			fc.advance(time.Millisecond)
			if err := c.Write([]byte("held")); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseAfterFlush(testTimeout); err != nil {
				t.Fatal(err)
			}
			// The clock does not move: the close flushes without waiting.
			if got := readFull(t, client, 4); string(got) != "held" {
				t.Fatalf("read %q", got)
			}
			expectEOF(t, client)
			client.Close()
			if err := h.waitClosed(t); err != nil {
				t.Fatalf("OnClose err %v", err)
			}
			fc.advance(testDelay)
		})
	}
}

// TestPacingQueueFullWhileHeld: held messages count against the queue
// limits; a rejected message is not queued and the held ones still leave,
// in order.
func TestPacingQueueFullWhileHeld(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			c, client, _, fc := pacedConn(t, path, ConnOptions{QueueMessages: 2})
			writeAndRead(t, c, client, "1")
			fc.advance(time.Millisecond)
			for _, m := range []string{"2", "3"} {
				if err := c.Write([]byte(m)); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Write([]byte("4")); err != ErrQueueFull {
				t.Fatalf("third held message: %v, want ErrQueueFull", err)
			}
			if c.poller().Stats().QueueFull != 1 {
				t.Fatalf("QueueFull = %d", c.poller().Stats().QueueFull)
			}
			fc.advance(testDelay)
			if got := readFull(t, client, 2); string(got) != "23" {
				t.Fatalf("read %q, want \"23\"", got)
			}
			waitFlushed(t, c)
			// Right after that write the next message is held again.
			if err := c.Write([]byte("5")); err != nil {
				t.Fatal(err)
			}
			if !isHeld(c) {
				t.Fatal("not held after the release's write")
			}
			fc.advance(testDelay)
			if got := readFull(t, client, 1); string(got) != "5" {
				t.Fatalf("read %q", got)
			}
		})
	}
}

// TestPacingSetWriteDelay: the delay can be turned off and on at run time
// and is clamped.
func TestPacingSetWriteDelay(t *testing.T) {
	c, client, _, fc := pacedConn(t, "epoll")
	p := c.poller()
	if p.WriteDelay() != testDelay {
		t.Fatalf("WriteDelay() = %v", p.WriteDelay())
	}
	p.SetWriteDelay(0)
	writeAndRead(t, c, client, "x")
	writeAndRead(t, c, client, "y") // same fake instant: not held when off
	p.SetWriteDelay(time.Hour)
	if p.WriteDelay() != MaxWriteDelay {
		t.Fatalf("WriteDelay() = %v after setting an hour", p.WriteDelay())
	}
	p.SetWriteDelay(-time.Second)
	if p.WriteDelay() != 0 {
		t.Fatalf("WriteDelay() = %v after a negative delay", p.WriteDelay())
	}
	p.SetWriteDelay(testDelay)
	writeAndRead(t, c, client, "z") // no write accounted under pacing yet
	if err := c.Write([]byte("w")); err != nil {
		t.Fatal(err)
	}
	if !isHeld(c) {
		t.Fatal("not held after pacing was turned back on")
	}
	fc.advance(testDelay)
	if got := readFull(t, client, 1); string(got) != "w" {
		t.Fatalf("read %q", got)
	}
	if d := (Options{WriteDelay: time.Hour}).withDefaults().WriteDelay; d != MaxWriteDelay {
		t.Fatalf("Options.WriteDelay of an hour became %v", d)
	}
}

// TestHoldWheelReleasesBySlot drives a wheel directly: connections come
// out once their due time's tick has begun, never before, each once, and
// the timer is disarmed when nothing is held.
func TestHoldWheelReleasesBySlot(t *testing.T) {
	fc := newFakeClock()
	p := &Poller{clk: fc}
	var released [][]*Conn
	w := &holdWheel{p: p, flush: func(b []*Conn) { released = append(released, slices.Clone(b)) }}
	conns := make([]*Conn, 4)
	for i := range conns {
		conns[i] = &Conn{}
	}
	now := fc.now()
	if w.hold(conns[0], now, now+int64(holdTick)/2) {
		t.Fatal("held a connection due within the current tick")
	}
	dues := []time.Duration{3 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 200 * time.Millisecond}
	for i, d := range dues {
		if !w.hold(conns[i], now, now+int64(d)) {
			t.Fatalf("conn %d due in %v not held", i, d)
		}
	}
	if w.hold(&Conn{}, now, now+int64(holdSlots)*int64(holdTick)) {
		t.Fatal("held a connection due beyond the ring")
	}
	fc.advance(time.Millisecond - 1)
	if len(released) != 0 {
		t.Fatalf("released %d batches early", len(released))
	}
	fc.advance(1)
	fc.advance(2 * time.Millisecond)
	fc.advance(time.Second)
	want := [][]*Conn{{conns[1]}, {conns[0], conns[2]}, {conns[3]}}
	if len(released) != len(want) {
		t.Fatalf("released %d batches, want %d", len(released), len(want))
	}
	for i := range want {
		if !slices.Equal(released[i], want[i]) {
			t.Fatalf("batch %d: %v, want %v", i, released[i], want[i])
		}
	}
	if fc.armed() || w.held != 0 {
		t.Fatalf("armed %v, held %d after everything was released", fc.armed(), w.held)
	}
	w.stop()
	if w.hold(conns[0], fc.now(), fc.now()+int64(time.Millisecond)) {
		t.Fatal("a stopped wheel held a connection")
	}
}

// TestPacingRealClockKeepsOrder: with the real clock and a small delay,
// many messages written by one goroutine while the client reads arrive
// complete and in order.
func TestPacingRealClockKeepsOrder(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			p := newTestPoller(t, Options{WriteDelay: 2 * time.Millisecond})
			server, client := connPair(t, path)
			h := &countingObserver{recorder: newRecorder(false)}
			const n = 5000
			c := register(t, p, server, h, ConnOptions{QueueMessages: n, QueueBytes: 1 << 20})
			var want bytes.Buffer
			msgs := make([][]byte, n)
			for i := range msgs {
				msgs[i] = fmt.Appendf(nil, "%d,", i)
				want.Write(msgs[i])
			}
			done := make(chan error, 1)
			go func() {
				for _, m := range msgs {
					if err := c.Write(m); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			got := make([]byte, 0, want.Len())
			buf := make([]byte, 4096)
			client.SetReadDeadline(time.Now().Add(testTimeout))
			for len(got) < want.Len() {
				k, err := client.Read(buf)
				if err != nil {
					t.Fatalf("read after %d bytes: %v", len(got), err)
				}
				got = append(got, buf[:k]...)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatal("data reordered or lost")
			}
			waitFlushed(t, c)
			t.Logf("%d messages in %d writes", n, h.writeCalls())
		})
	}
}

// TestPacingPollerCloseWhileHeld: Poller.Close ends held connections and
// stops the wheels' timers.
func TestPacingPollerCloseWhileHeld(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			c, client, h, fc := pacedConn(t, path)
			writeAndRead(t, c, client, "a")
			if err := c.Write([]byte("b")); err != nil {
				t.Fatal(err)
			}
			if !isHeld(c) {
				t.Fatal("not held")
			}
			c.poller().Close()
			if err := h.waitClosed(t); err != nil {
				t.Fatalf("OnClose err %v", err)
			}
			expectEOF(t, client)
			if fc.armed() {
				t.Fatal("a wheel timer is still set after Close")
			}
		})
	}
}

// TestPacingRepliesNotHeld: what a Handler queues while handling the
// connection's own data leaves at the end of that turn, even right after a
// write, and takes held messages along, in order.
func TestPacingRepliesNotHeld(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			p := newTestPoller(t, Options{WriteDelay: testDelay})
			fc := newFakeClock()
			p.clk = fc
			server, client := connPair(t, path)
			h := newRecorder(true) // echoes what it reads
			c := register(t, p, server, h)
			writeAndRead(t, c, client, "push")
			// The clock never moves below: nothing may wait for it.
			if _, err := client.Write([]byte("ask")); err != nil {
				t.Fatal(err)
			}
			if got := readFull(t, client, 3); string(got) != "ask" {
				t.Fatalf("reply %q", got)
			}
			waitFlushed(t, c)
			if err := c.Write([]byte("held")); err != nil {
				t.Fatal(err)
			}
			if !isHeld(c) {
				t.Fatal("a push right after a write was not held")
			}
			if _, err := client.Write([]byte("again")); err != nil {
				t.Fatal(err)
			}
			if got := readFull(t, client, 9); string(got) != "heldagain" {
				t.Fatalf("read %q, want the held push then the reply", got)
			}
			fc.advance(testDelay) // the release finds nothing left
			waitFlushed(t, c)
		})
	}
}
