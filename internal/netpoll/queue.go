package netpoll

import "sync"

// outEntry is one queued buffer; end marks the last buffer of a message.
type outEntry struct {
	b   []byte
	end bool
}

// outQueue is a connection's outbound queue: references to callers' bytes,
// consumed from the head by the one flusher, appended to under Conn.mu. Its
// backing array comes from a pool while the queue is non-empty and goes
// back when it drains, so an idle connection holds none.
type outQueue struct {
	ents *[]outEntry
	// due is when the oldest unsent message's write was due, by
	// Poller.recentNow: when it was queued on an empty queue, or when the
	// write-pacing hold that kept it ends (0: unknown, or pacing off).
	// Write pacing measures from it rather than from when a worker got
	// to the write, so a wait in the work queue never turns into a hold.
	due   int64
	bytes int32 // unsent bytes (at most Conn.maxBytes)
	head  int32 // index of the first unsent entry
	msgs  int32 // messages with at least one unsent byte
}

const (
	queueInitialCap = 16
	// queuePoolMaxCap keeps arrays grown by a burst out of the pool.
	queuePoolMaxCap = 1024
)

var queueArrays = sync.Pool{New: func() any {
	s := make([]outEntry, 0, queueInitialCap)
	return &s
}}

// push appends the non-empty buffers of bs as one message of n bytes.
func (q *outQueue) push(bs [][]byte, n int) {
	if q.ents == nil {
		q.ents = queueArrays.Get().(*[]outEntry)
		q.head = 0
	} else if q.head > 0 && len(*q.ents)+len(bs) > cap(*q.ents) {
		// Reuse the consumed head instead of growing: a queue that never
		// drains must not grow without bound.
		s := *q.ents
		n := copy(s, s[q.head:])
		clear(s[n:])
		*q.ents = s[:n]
		q.head = 0
	}
	last := len(bs) - 1
	for last >= 0 && len(bs[last]) == 0 {
		last--
	}
	for i, b := range bs[:last+1] {
		if len(b) > 0 {
			*q.ents = append(*q.ents, outEntry{b: b, end: i == last})
		}
	}
	q.bytes += int32(n) // the caller checked it against an int32 limit
	q.msgs++
}

// pending returns the unsent entries. They stay valid (the byte slices they
// reference are never modified) even if push grows the array meanwhile.
func (q *outQueue) pending() []outEntry {
	if q.ents == nil {
		return nil
	}
	return (*q.ents)[q.head:]
}

// consume drops n written bytes from the head.
func (q *outQueue) consume(n int) {
	q.bytes -= int32(n)
	ents := *q.ents
	for n > 0 {
		e := &ents[q.head]
		if n < len(e.b) {
			e.b = e.b[n:]
			return
		}
		n -= len(e.b)
		if e.end {
			q.msgs--
		}
		*e = outEntry{}
		q.head++
	}
	if int(q.head) == len(ents) {
		q.release()
	}
}

// reset drops everything queued.
func (q *outQueue) reset() {
	if q.ents == nil {
		return
	}
	clear(*q.ents)
	q.bytes, q.msgs = 0, 0
	q.release()
}

// release returns the (cleared) array to the pool once the queue is empty.
func (q *outQueue) release() {
	s := (*q.ents)[:0]
	if cap(s) <= queuePoolMaxCap {
		*q.ents = s
		queueArrays.Put(q.ents)
	}
	q.ents = nil
	q.head = 0
	q.due = 0
}
