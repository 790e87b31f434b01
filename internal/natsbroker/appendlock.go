package natsbroker

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// appendLocks serialises the appends of this node to each history subject.
// JetStream accepts only one of several appends expecting the same last
// sequence, so concurrent publishers of one node to one channel would
// reject each other and retry; queued behind a per-subject lock, each
// append instead expects the head the previous one left in the cache and
// succeeds in one round trip. Only appends of different nodes still
// conflict.
//
// An entry exists only while an append holds or waits for it: memory is
// bounded by the number of publishes in flight. Waiters are served in
// arrival order and give up when their context ends. The zero value is
// ready to use; it is safe for concurrent use.
type appendLocks struct {
	mu sync.Mutex
	m  map[string]*appendLock
}

type appendLock struct {
	held chan struct{} // capacity 1: full while held
	refs int           // holder and waiters, guarded by appendLocks.mu
}

// acquire waits until key is free or ctx ends. On success the caller must
// call release exactly once.
func (l *appendLocks) acquire(ctx context.Context, key string) (release func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*appendLock)
	}
	e := l.m[key]
	if e == nil {
		e = &appendLock{held: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()

	select {
	case e.held <- struct{}{}:
		return func() {
			<-e.held
			l.drop(key, e)
		}, nil
	case <-ctx.Done():
		l.drop(key, e)
		return nil, ctx.Err()
	}
}

func (l *appendLocks) drop(key string, e *appendLock) {
	l.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(l.m, key)
	}
	l.mu.Unlock()
}

// inFlight reports how many subjects have an append in flight or waiting.
func (l *appendLocks) inFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// Backoff between appends rejected because another node appended first.
const (
	minConflictBackoff = time.Millisecond
	maxConflictBackoff = 32 * time.Millisecond
)

// conflictBackoff is the pause before the retry that follows the n-th
// consecutive conflict (n >= 1). The first retry goes at once: it carries
// the head the conflict revealed, and most contention is two nodes racing
// once. Later retries wait a random time in [c/2, c), c doubling from
// minConflictBackoff to maxConflictBackoff, so that nodes racing for a
// hot channel fall out of step and each gets appends through.
func conflictBackoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	c := min(maxConflictBackoff, minConflictBackoff<<min(n-2, 10))
	return c/2 + rand.N(c/2)
}

// sleepCtx pauses for d or until ctx ends, whichever is first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
