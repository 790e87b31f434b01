//go:build linux

package netpoll

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Edge-triggered registration, once, for EPOLLIN|EPOLLOUT|EPOLLRDHUP.
//
// Why edge-triggered: a level-triggered EPOLLOUT would fire continuously for
// every idle connection (sockets are almost always writable), so it would
// have to be armed and disarmed with epoll_ctl around every blocked write.
// With EPOLLET the kernel reports writability only on the transition after
// a write ran out of buffer space, so EPOLLOUT stays registered for the
// connection's whole life and the only epoll_ctl calls are ADD and DEL.
// Likewise an unread socket is not reported again and again while every
// worker is busy. The price is that every edge must be consumed: a worker
// reads until EAGAIN, a short read (the kernel queues new data with a new
// edge), its per-turn limit (it then reschedules itself), or EOF; it writes
// until the queue is empty or EAGAIN.
const epollEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// Event bits of epollState.pending.
const (
	evRead  = 1 << iota // readable
	evWrite             // writable again
	evDrain             // read until EAGAIN, EOF or error, even after a short read
	evFlush             // the queue became non-empty, or CloseAfterFlush
	evClose             // Close: close now
)

// epollState is a Conn's epoll bookkeeping.
type epollState struct {
	// sched is 1 while the Conn is in the work queue or a worker runs its
	// turn: it is what keeps one worker at a time per Conn and bounds the
	// work queue by the number of connections. A closed Conn keeps it at 1
	// forever, so it is never scheduled again.
	sched atomic.Uint32
	// pending accumulates event bits until the next turn takes them.
	pending atomic.Uint32
	loop    *loop
	gen     uint32 // tells a reused descriptor's events from this Conn's

	// Owned by the worker running the Conn's turn.
	closed       bool
	waitWritable bool // writev hit EAGAIN; flush again on EPOLLOUT
	// drain makes the next reads ignore short reads and go on to EAGAIN,
	// EOF or an error: set after registration (edges before it may be
	// lost), on a peer shutdown or error, and on ResumeRead.
	drain bool
}

// epollPoller is the epoll engine behind a Poller.
type epollPoller struct {
	p     *Poller
	loops []*loop
	rr    atomic.Uint32 // round-robin loop choice
	gen   atomic.Uint32
	work  workQueue
	wg    sync.WaitGroup // loops and workers
}

// loop is one epoll instance and the goroutine waiting on it.
type loop struct {
	ep   *epollPoller
	epfd int
	file *os.File        // owns epfd
	rc   syscall.RawConn // of file: waits in the runtime poller

	mu    sync.Mutex
	conns connTable // by descriptor

	// hold paces the loop's connections (Options.WriteDelay).
	hold holdWheel

	// Inline turns (see run and watch).
	inline     atomic.Uint32 // inlineNone, inlineRunning or inlineReplaced
	inlineSeq  atomic.Uint64 // counts inline turns
	watchedSeq atomic.Uint64 // inlineSeq at the previous watch
	watching   atomic.Bool   // standIn is armed
	standIn    *time.Timer   // calls watch
	released   atomic.Bool   // the epoll instance is closed
}

func newSysPoller(p *Poller) (poller, error) {
	ep := &epollPoller{p: p}
	ep.work.cond.L = &ep.work.mu
	for range p.opts.Loops {
		l, err := newLoop(ep)
		if err != nil {
			for _, l := range ep.loops {
				l.release()
			}
			return nil, err
		}
		ep.loops = append(ep.loops, l)
	}
	for _, l := range ep.loops {
		ep.wg.Add(1)
		go l.run()
	}
	ep.work.workers = p.opts.Workers
	for range p.opts.Workers {
		ep.wg.Add(1)
		go ep.worker()
	}
	return ep, nil
}

func newLoop(ep *epollPoller) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// The epoll descriptor itself goes into Go's runtime poller (an epoll
	// instance is readable while it has ready events): the loop goroutine
	// parks like any goroutine waiting for I/O and the scheduler wakes it,
	// rather than an OS thread sitting in a blocking epoll_wait and
	// competing for a P when it returns.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("set non-blocking: %w", err)
	}
	file := os.NewFile(uintptr(epfd), "netpoll-epoll")
	if err := file.SetReadDeadline(time.Time{}); err != nil {
		file.Close()
		return nil, fmt.Errorf("epoll descriptor not pollable: %w", err)
	}
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, err
	}
	l := &loop{ep: ep, epfd: epfd, file: file, rc: rc}
	l.hold = holdWheel{p: ep.p, flush: ep.flushHeld}
	l.standIn = time.AfterFunc(time.Hour, l.watch)
	l.standIn.Stop()
	return l, nil
}

// release closes the epoll instance; a waiting run returns.
func (l *loop) release() {
	l.released.Store(true)
	l.standIn.Stop()
	l.file.Close()
}

// connTable maps a loop's descriptors to their connections. Descriptors
// are small and dense (the kernel hands out the lowest free one), so the
// table is an array indexed by descriptor, split into pages allocated as
// descriptors reach them: 8 bytes per connection rather than a map's
// buckets, and growing never copies the entries. A page is kept once
// allocated (its descriptors are soon reused). Guarded by loop.mu.
type connTable struct {
	pages []*connPage
}

const connPageBits = 9 // 512 entries, 4 KiB

type connPage [1 << connPageBits]*Conn

func (t *connTable) get(fd int32) *Conn {
	i := int(fd) >> connPageBits
	if fd < 0 || i >= len(t.pages) || t.pages[i] == nil {
		return nil
	}
	return t.pages[i][fd&(1<<connPageBits-1)]
}

// set stores c (nil: removes) at fd, which must not be negative.
func (t *connTable) set(fd int32, c *Conn) {
	i := int(fd) >> connPageBits
	if i >= len(t.pages) {
		if c == nil {
			return
		}
		t.pages = append(t.pages, make([]*connPage, i+1-len(t.pages))...)
	}
	pg := t.pages[i]
	if pg == nil {
		if c == nil {
			return
		}
		pg = new(connPage)
		t.pages[i] = pg
	}
	pg[fd&(1<<connPageBits-1)] = c
}

// appendAll appends every connection in the table to dst.
func (t *connTable) appendAll(dst []*Conn) []*Conn {
	for _, pg := range t.pages {
		if pg == nil {
			continue
		}
		for _, c := range pg {
			if c != nil {
				dst = append(dst, c)
			}
		}
	}
	return dst
}

// readyConn is one dispatched event.
type readyConn struct {
	c    *Conn
	bits uint32
}

// inlineTurnLimit is the period of the watch over inline turns: a turn
// run inline on a loop goroutine that is still running at two consecutive
// checks (so after one to two periods) gets the loop taken over by a
// stand-in goroutine, so a Handler that blocks does not hold up the loop's
// other connections for longer. The watch runs only while inline turns
// happen, at most once per period: arming a timer per turn would cost
// more than the hand-off the inline turn saves.
const inlineTurnLimit = time.Millisecond

// States of loop.inline.
const (
	inlineNone     = iota // the loop goroutine waits or dispatches
	inlineRunning         // it runs a connection's turn
	inlineReplaced        // that turn overran; a stand-in runs the loop
)

// watch runs on the standIn timer's goroutine every inlineTurnLimit while
// the loop runs turns inline. If the same inline turn is running as at the
// previous check, a new goroutine takes over the loop, and the one running
// the turn ends when the turn returns. A loop has at most one such
// overrunning goroutine: it runs no inline turn until that one has ended.
func (l *loop) watch() {
	if l.released.Load() {
		return // the overrunning turn, if any, ends on its own
	}
	seq := l.inlineSeq.Load()
	running := l.inline.Load() == inlineRunning
	if running && seq == l.watchedSeq.Load() && l.inline.CompareAndSwap(inlineRunning, inlineReplaced) {
		// The overrunning goroutine has not called Done yet, so the
		// WaitGroup count is positive: Add is safe even during stop.
		l.ep.wg.Add(1)
		go l.run()
		running = false
	}
	if running || seq != l.watchedSeq.Load() {
		l.watchedSeq.Store(seq)
		l.standIn.Reset(inlineTurnLimit)
		return
	}
	l.watching.Store(false)
	// An inline turn that began just now saw watching still set.
	if l.inline.Load() == inlineRunning && l.watching.CompareAndSwap(false, true) {
		l.standIn.Reset(inlineTurnLimit)
	}
}

// run waits for readiness and hands ready connections to the workers or,
// when a single connection is ready and nothing else is being served,
// runs its turn itself. It returns when release closes the epoll instance
// (or, after a stand-in took over, when the overrunning turn returns).
func (l *loop) run() {
	defer l.ep.wg.Done()
	events := make([]unix.EpollEvent, 256)
	ready := make([]readyConn, 0, len(events))
	sched := make([]*Conn, 0, len(events))
	w := &worker{} // for turns run inline
	var n int
	var werr error
	// Built once: a closure passed to RawConn.Read escapes.
	harvest := func(fd uintptr) bool {
		for {
			n, werr = unix.EpollWait(int(fd), events, 0)
			if werr != unix.EINTR {
				return n > 0 || werr != nil
			}
		}
	}
	for {
		if err := l.rc.Read(harvest); err != nil {
			return // released
		}
		if werr != nil {
			// Only EBADF, EFAULT or EINVAL are possible: a broken
			// invariant, not a runtime condition.
			panic(fmt.Sprintf("netpoll: epoll_wait: %v", werr))
		}
		l.mu.Lock()
		for i := range events[:n] {
			ev := &events[i]
			c := l.conns.get(ev.Fd)
			if c == nil || c.epoll.gen != uint32(ev.Pad) {
				continue // closed meanwhile, perhaps with the descriptor reused
			}
			var bits uint32
			if ev.Events&unix.EPOLLIN != 0 {
				bits |= evRead
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				bits |= evWrite
			}
			if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				bits |= evRead | evDrain
			}
			ready = append(ready, readyConn{c, bits})
		}
		l.mu.Unlock()
		if len(ready) == 1 && l.inline.Load() == inlineNone && l.ep.work.quiet() {
			// The only ready connection while every worker is idle:
			// serve it here rather than wake a worker for it. This
			// saves a goroutine hand-off per event when traffic is
			// light (one connection, one message in flight). The turn
			// is bounded like any other (what it leaves pending goes
			// to the work queue), and a Handler that blocks in it
			// gets the loop taken over by a stand-in.
			l.inlineSeq.Add(1)
			l.inline.Store(inlineRunning)
			if !l.watching.Load() && l.watching.CompareAndSwap(false, true) {
				l.standIn.Reset(inlineTurnLimit)
			}
			ready[0].c.runInline(ready[0].bits, w)
			if !l.inline.CompareAndSwap(inlineRunning, inlineNone) {
				// A stand-in runs the loop now.
				l.inline.Store(inlineNone)
				return
			}
		} else {
			// One work-queue lock and at most one wake-up per idle
			// worker for the whole batch, rather than a lock and a
			// signal per ready connection.
			for _, r := range ready {
				es := &r.c.epoll
				es.pending.Or(r.bits)
				if es.sched.CompareAndSwap(0, 1) {
					sched = append(sched, r.c)
				}
			}
			l.ep.work.pushBatch(sched)
			clear(sched)
			sched = sched[:0]
		}
		clear(ready)
		ready = ready[:0]
	}
}

func (l *loop) remove(c *Conn) {
	l.mu.Lock()
	if l.conns.get(c.fd) == c {
		l.conns.set(c.fd, nil)
	}
	l.mu.Unlock()
	// Closing the only descriptor would remove it from epoll too; the
	// explicit DEL keeps that true even if a child process inherited it.
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(c.fd), nil)
}

// register moves nc to epoll when it is a plain stream socket. It reports
// false, with no error, for connections that need the fallback.
func (ep *epollPoller) register(c *Conn, nc net.Conn) (bool, error) {
	var rc syscall.RawConn
	var err error
	switch t := nc.(type) {
	case *net.TCPConn:
		rc, err = t.SyscallConn()
	case *net.UnixConn:
		rc, err = t.SyscallConn()
	default:
		return false, nil
	}
	if err != nil {
		return false, err
	}
	fd := -1
	var opErr error
	stream := true
	if err := rc.Control(func(s uintptr) {
		typ, err := unix.GetsockoptInt(int(s), unix.SOL_SOCKET, unix.SO_TYPE)
		if err != nil || typ != unix.SOCK_STREAM {
			stream = false // unixgram or unixpacket: keep message boundaries
			return
		}
		fd, opErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return false, err
	}
	if !stream {
		return false, nil
	}
	if opErr != nil {
		return false, fmt.Errorf("dup: %w", opErr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return false, fmt.Errorf("set non-blocking: %w", err)
	}
	// The socket lives on in fd; closing nc makes the runtime poller
	// forget it, and releases the net.Conn's own memory.
	nc.Close()

	c.fd = int32(fd)
	l := ep.loops[int(ep.rr.Add(1))%len(ep.loops)]
	c.epoll.loop = l
	c.epoll.gen = ep.gen.Add(1)
	ev := unix.EpollEvent{Events: epollEvents, Fd: int32(fd), Pad: int32(c.epoll.gen)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return false, fmt.Errorf("epoll_ctl: %w", err)
	}
	if err := ep.p.track(c, false); err != nil {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		unix.Close(fd)
		return false, err
	}
	// Edges reported before the Conn was in the table were dropped by the
	// loop; one draining read turn now covers them (and delivers Buffered).
	c.notify(evRead | evDrain)
	return true, nil
}

// add makes c visible to its loop. Called by Poller.track under Poller.mu,
// so Poller.Close cannot miss a connection.
func (c *Conn) sysAdd() {
	l := c.epoll.loop
	l.mu.Lock()
	l.conns.set(c.fd, c)
	l.mu.Unlock()
}

func (ep *epollPoller) appendConns(dst []*Conn) []*Conn {
	for _, l := range ep.loops {
		l.mu.Lock()
		dst = l.conns.appendAll(dst)
		l.mu.Unlock()
	}
	return dst
}

// stop ends the loops and the workers and waits for them. Every connection
// is closed by then.
func (ep *epollPoller) stop() {
	for _, l := range ep.loops {
		l.release()
		l.hold.stop()
	}
	ep.work.stop()
	ep.wg.Wait()
}

// workQueue is the FIFO of scheduled connections: a ring that holds each
// Conn at most once (Conn.epoll.sched), so it never holds more than the
// open connections. It grows (doubling) when a burst of ready connections
// fills it and keeps its size, which a link field in every Conn would
// cost each idle connection instead.
type workQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	ring    []*Conn // length a power of two (or 0)
	head    int     // index of the oldest entry
	n       int     // entries
	idle    int     // workers waiting in pop
	workers int     // workers started
	stopped bool
}

// minWorkRing is the ring's first size.
const minWorkRing = 64

func (q *workQueue) push(c *Conn) {
	q.mu.Lock()
	q.appendLocked(c)
	wake := q.idle > 0
	q.mu.Unlock()
	if wake {
		q.cond.Signal()
	}
}

// pushBatch queues several connections under one lock and wakes as many
// idle workers as it queued, at most.
func (q *workQueue) pushBatch(cs []*Conn) {
	if len(cs) == 0 {
		return
	}
	q.mu.Lock()
	for _, c := range cs {
		q.appendLocked(c)
	}
	idle := q.idle
	q.mu.Unlock()
	if len(cs) >= idle {
		q.cond.Broadcast()
		return
	}
	for range len(cs) {
		q.cond.Signal()
	}
}

func (q *workQueue) appendLocked(c *Conn) {
	if q.n == len(q.ring) {
		ring := make([]*Conn, max(minWorkRing, 2*len(q.ring)))
		for i := range q.n {
			ring[i] = q.ring[(q.head+i)&(len(q.ring)-1)]
		}
		q.ring, q.head = ring, 0
	}
	q.ring[(q.head+q.n)&(len(q.ring)-1)] = c
	q.n++
}

// pop blocks for the next connection; nil after stop.
func (q *workQueue) pop() *Conn {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n == 0 {
		if q.stopped {
			return nil
		}
		q.idle++
		q.cond.Wait()
		q.idle--
	}
	c := q.ring[q.head]
	q.ring[q.head] = nil // a closed Conn is not kept reachable
	q.head = (q.head + 1) & (len(q.ring) - 1)
	q.n--
	return c
}

// quiet reports whether the queue is empty and every worker is parked in
// pop: nothing else is being served.
func (q *workQueue) quiet() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n == 0 && q.idle == q.workers
}

func (q *workQueue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// worker holds scratch space reused across turns.
type worker struct {
	iov       []unix.Iovec // scratch for writev; grows to the largest batch
	delivered bool         // the current turn called OnData
}

func (ep *epollPoller) worker() {
	defer ep.wg.Done()
	w := &worker{}
	for {
		c := ep.work.pop()
		if c == nil {
			return
		}
		c.turn(w)
	}
}

// notify records event bits and schedules the Conn unless it is already
// scheduled or running; a running turn sees the bits when it ends.
func (c *Conn) notify(bits uint32) {
	es := &c.epoll
	es.pending.Or(bits)
	if es.sched.CompareAndSwap(0, 1) {
		es.loop.ep.work.push(c)
	}
}

// flushHeld schedules the flushes of connections released by a loop's
// hold wheel, with one work-queue lock for the batch.
func (ep *epollPoller) flushHeld(batch []*Conn) {
	n := 0
	for _, c := range batch {
		if !c.releaseHold() {
			continue
		}
		es := &c.epoll
		es.pending.Or(evFlush)
		if es.sched.CompareAndSwap(0, 1) {
			batch[n] = c
			n++
		}
	}
	ep.work.pushBatch(batch[:n])
}

// sysWheel returns the hold wheel of an epoll connection's loop.
func (c *Conn) sysWheel() *holdWheel {
	if c.fd < 0 {
		return nil
	}
	return &c.epoll.loop.hold
}

// runInline records event bits like notify and, if c was not scheduled or
// running, runs its turn on the calling loop goroutine.
func (c *Conn) runInline(bits uint32, w *worker) {
	es := &c.epoll
	es.pending.Or(bits)
	if es.sched.CompareAndSwap(0, 1) {
		c.turn(w)
	}
}

// turn serves one scheduling of c on a worker (or inline on its loop).
func (c *Conn) turn(w *worker) {
	es := &c.epoll
	bits := es.pending.Swap(0)
	if !es.closed {
		c.serve(w, bits)
	}
	if es.closed {
		return // sched stays 1: never scheduled again
	}
	es.sched.Store(0)
	// Bits that arrived during the turn found sched at 1 and did not
	// schedule; whoever wins sched now does. Requeueing at the tail keeps
	// a busy connection from starving the others.
	if es.pending.Load() != 0 && es.sched.CompareAndSwap(0, 1) {
		es.loop.ep.work.push(c)
	}
}

func (c *Conn) serve(w *worker, bits uint32) {
	es := &c.epoll
	if c.closeReq.Load() == closeNow {
		c.shutdown(c.closeRequestErr())
		return
	}
	if bits&evDrain != 0 {
		es.drain = true
	}
	wasWaiting := es.waitWritable
	if bits&evWrite != 0 {
		es.waitWritable = false
	}
	// Read first: replies queued by OnData go out in this turn's flush,
	// held by write pacing or not (a peer waiting for an answer is not
	// kept waiting; what pacing held leaves with it).
	if bits&evRead != 0 || c.pendingInput() != nil {
		w.delivered = false
		if !c.readSocket(w) {
			return
		}
		const taken = evFlush | evClose
		bits |= es.pending.And(^uint32(taken)) & taken
		if w.delivered {
			bits |= evFlush
		}
		if c.closeReq.Load() == closeNow {
			c.shutdown(c.closeRequestErr())
			return
		}
	}
	if !es.waitWritable && (bits&evFlush != 0 || (bits&evWrite != 0 && wasWaiting)) {
		c.flush(w)
	}
}

// readSocket delivers Buffered, then reads until EAGAIN, a short read, EOF,
// an error or the per-turn limit. It reports false if c was closed.
func (c *Conn) readSocket(w *worker) bool {
	es := &c.epoll
	if pin := c.pendingInput(); pin != nil {
		data := *pin
		*pin = nil
		if len(*data) > 0 {
			w.delivered = true
			c.h.OnData(c, *data)
		}
		if c.closeReq.Load() == closeNow {
			c.shutdown(c.closeRequestErr())
			return false
		}
	}
	if c.suspended.Load() {
		return true // ResumeRead schedules a read
	}
	p := c.poller()
	bp := p.getReadBuf()
	buf := *bp
	defer p.putReadBuf(bp)
	total := 0
	for {
		n, err := unix.Read(int(c.fd), buf)
		switch {
		case err == nil && n > 0:
			p.stats.reads.Add(1)
			w.delivered = true
			c.h.OnData(c, buf[:n])
			if c.closeReq.Load() == closeNow {
				c.shutdown(c.closeRequestErr())
				return false
			}
			if c.suspended.Load() {
				return true
			}
			total += n
			if total >= p.opts.MaxReadPerTurn {
				es.pending.Or(evRead) // yield; read on in a later turn
				return true
			}
			if n < len(buf) && !es.drain {
				// The receive queue is drained; data arriving later
				// raises a new edge.
				return true
			}
		case err == nil:
			// The peer may still read after its half-close: what is
			// queued (a reply, a closing frame) gets one chance to go
			// out, without waiting.
			c.writeQueued(w, false)
			c.shutdown(c.eofErr())
			return false
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			es.drain = false
			return true
		default:
			c.shutdown(fmt.Errorf("netpoll: read: %w", err))
			return false
		}
	}
}

// eofErr is what OnClose reports for the peer's EOF: nil when we asked for
// the close (CloseAfterFlush), io.EOF otherwise.
func (c *Conn) eofErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lingering {
		return nil
	}
	return io.EOF
}

// maxWritevsPerTurn bounds the writev calls of one flush turn, so a
// connection whose queue refills as fast as it drains does not keep a
// worker from the others.
const maxWritevsPerTurn = 16

// flush writes the queue, then carries out a pending CloseAfterFlush once
// it is empty.
func (c *Conn) flush(w *worker) {
	drained, err := c.writeQueued(w, true)
	if err != nil {
		c.shutdown(err)
		return
	}
	if !drained || c.closeReq.Load() != closeAfterFlush {
		// closeReq is set before the flush it requests is scheduled, so
		// a CloseAfterFlush this load misses has a flush of its own.
		return
	}
	c.mu.Lock()
	if c.out.msgs > 0 {
		// Queued after writeQueued found the queue empty but before
		// CloseAfterFlush set wclosed (by another goroutine, or by
		// OnWritten): it must go out before the half-close, which would
		// otherwise cut it off. Nothing can be queued any more, so this
		// retry is the last.
		c.mu.Unlock()
		c.flush(w)
		return
	}
	// wclosed is set, so the queue stays empty.
	linger := c.closeReq.Load() == closeAfterFlush && !c.lingering
	wait := c.timerLocked() != nil
	if linger {
		c.lingering = true
	}
	c.mu.Unlock()
	if !linger {
		return
	}
	if !wait {
		c.shutdown(nil)
		return
	}
	// Half-close and read until the peer's EOF: closing with unread input
	// would send a reset, which can destroy the bytes just written before
	// the peer reads them.
	if err := unix.Shutdown(int(c.fd), unix.SHUT_WR); err != nil {
		c.shutdown(nil)
	}
}

// writeQueued hands the queue to writev until it is empty (drained), the
// socket is full (waitWritable is set; EPOLLOUT resumes), the per-turn
// bound is reached (the Conn is rescheduled) or, with pace, what was
// queued during a write is held by write pacing (its wheel reschedules).
func (c *Conn) writeQueued(w *worker, pace bool) (drained bool, err error) {
	es := &c.epoll
	complete := false // the previous writev took everything it was given
	for range maxWritevsPerTurn {
		c.mu.Lock()
		ents := c.out.pending()
		if len(ents) == 0 {
			c.mu.Unlock()
			return true, nil
		}
		// Messages queued while the previous write ran are subject to
		// pacing like any other.
		if complete && pace && c.holdLocked() {
			c.mu.Unlock()
			return false, nil
		}
		iov := w.iov[:0]
		total := 0
		for i := range ents {
			if len(iov) == maxIovecs {
				break
			}
			b := ents[i].b
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			iov = append(iov, v)
			total += len(b)
		}
		w.iov = iov // grown as batches need, up to maxIovecs
		c.mu.Unlock()

		n, err := writev(int(c.fd), iov)
		clear(iov) // do not keep callers' buffers reachable
		c.poller().stats.writes.Add(1)
		complete = n == total
		if n > 0 {
			var now int64
			if c.poller().writeDelay.Load() > 0 {
				now = c.poller().recentNow()
			}
			c.mu.Lock()
			empty := c.consumeLocked(n, now)
			written := c.writtenTotal
			c.mu.Unlock()
			c.wrote(n, written)
			if empty && err == nil {
				// The common case, one write taking everything: done
				// without taking the lock again to find the queue empty.
				return true, nil
			}
		}
		switch {
		case err == nil:
			// A partial write loops once more: EAGAIN, not a short count,
			// is what guarantees an EPOLLOUT edge later.
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			es.waitWritable = true
			c.poller().stats.writeBlocked.Add(1)
			return false, nil
		default:
			return false, fmt.Errorf("netpoll: write: %w", err)
		}
	}
	es.pending.Or(evFlush)
	return false, nil
}

func writev(fd int, iov []unix.Iovec) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// shutdown closes the socket and finishes c. Only c's turn calls it.
func (c *Conn) shutdown(err error) {
	c.epoll.closed = true
	c.epoll.loop.remove(c)
	unix.Close(int(c.fd))
	c.finish(err)
}
