package client

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
)

// eventQueue hands events to the client's handler goroutine in order.
// Data events (publications, join/leave, messages) are bounded by limit;
// state events (connected, disconnected, subscribed, unsubscribed) are
// few per connection and always accepted, so that the application never
// misses a state change.
type eventQueue struct {
	limit int

	mu     sync.Mutex
	items  []event
	spare  []event
	data   int // data events in items or in the batch being run
	closed bool
	wake   chan struct{} // capacity 1

	done chan struct{} // closed when the dispatcher returned
	gid  atomic.Uint64 // dispatcher goroutine id
}

type event struct {
	fn   func()
	data bool
}

func newEventQueue(limit int) *eventQueue {
	return &eventQueue{limit: limit, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues fn. It returns false when the queue is closed, or for a
// data event when limit data events are already waiting.
func (q *eventQueue) push(fn func(), data bool) bool {
	q.mu.Lock()
	if q.closed || (data && q.data >= q.limit) {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, event{fn, data})
	if data {
		q.data++
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// close makes push fail; the dispatcher runs what is queued, then returns.
func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run is the dispatcher: it calls every queued event in order.
func (q *eventQueue) run() {
	defer close(q.done)
	q.gid.Store(goroutineID())
	for {
		q.mu.Lock()
		batch := q.items
		q.items, q.spare = q.spare, nil
		closed := q.closed
		q.mu.Unlock()
		if len(batch) == 0 {
			if closed {
				return
			}
			<-q.wake
			continue
		}
		n := 0
		for i, e := range batch {
			e.fn()
			batch[i] = event{}
			if e.data {
				n++
			}
		}
		q.mu.Lock()
		q.data -= n
		if q.spare == nil && cap(batch) <= 4*q.limit {
			q.spare = batch[:0]
		}
		q.mu.Unlock()
	}
}

// inDispatcher reports whether the caller runs on the dispatcher
// goroutine, that is inside a handler.
func (q *eventQueue) inDispatcher() bool {
	id := q.gid.Load()
	return id != 0 && id == goroutineID()
}

// goroutineID returns the id of the calling goroutine. Close uses it to
// tell whether it was called from a handler, where waiting for the
// handler goroutine would deadlock.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}
