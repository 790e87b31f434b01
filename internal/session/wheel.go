package session

import (
	"sync"
	"time"
)

// wheel is the timing wheel behind the Manager's single heartbeat
// goroutine. Each session sits in exactly one slot: the one for the next
// moment something may be due for it (its connect deadline, its next ping,
// the moment it would have been silent too long, its token expiry). Every
// tick the sweeper takes the due slot and visits only those sessions, so
// the cost of a tick is proportional to the sessions due in it, not to all
// sessions, and an idle connection costs one slice entry.
//
// Slots are tick wide and the ring covers the longest delay ever scheduled
// (longer delays are clamped: the session is visited early and simply
// rescheduled). Because each session's first ping is jittered and later
// pings follow its own previous one, 15k sessions that connect in the same
// second are spread over half a ping interval rather than pinged in one
// instant.
//
// Rescheduling never searches a slot: it appends a new entry and bumps the
// session's generation, and entries whose generation is stale are skipped
// when their slot is swept.
type wheel struct {
	tick time.Duration

	mu    sync.Mutex
	slots [][]wheelEntry
	cur   int       // index of the next slot to sweep
	base  time.Time // the moment slot cur becomes due
	spare []wheelEntry
}

type wheelEntry struct {
	s   *Session
	gen uint32
}

func newWheel(tick, horizon time.Duration, now time.Time) *wheel {
	n := int(horizon/tick) + 2
	return &wheel{tick: tick, slots: make([][]wheelEntry, n), base: now.Add(tick)}
}

// schedule places s in the slot due at (or just after) at. A time in the
// past is due at the next tick. It supersedes any earlier schedule of s.
func (w *wheel) schedule(s *Session, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := 0
	if d := at.Sub(w.base); d > 0 {
		k = int((d + w.tick - 1) / w.tick)
	}
	if k > len(w.slots)-1 {
		k = len(w.slots) - 1
	}
	s.wheelGen++
	i := (w.cur + k) % len(w.slots)
	w.slots[i] = append(w.slots[i], wheelEntry{s: s, gen: s.wheelGen})
}

// unschedule drops s from the wheel (its entry becomes stale).
func (w *wheel) unschedule(s *Session) {
	w.mu.Lock()
	s.wheelGen++
	w.mu.Unlock()
}

// due removes and returns the live entries of every slot due at now,
// appended to dst. The caller visits them without holding the wheel lock
// and reschedules them.
func (w *wheel) due(now time.Time, dst []*Session) []*Session {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.base.After(now) {
		slot := w.slots[w.cur]
		for _, e := range slot {
			if e.gen == e.s.wheelGen {
				dst = append(dst, e.s)
			}
		}
		// Keep the larger backing array for reuse; drop the pointers so
		// closed sessions can be collected.
		clear(slot)
		w.slots[w.cur] = w.spare[:0]
		w.spare = slot[:0]
		w.cur = (w.cur + 1) % len(w.slots)
		w.base = w.base.Add(w.tick)
	}
	return dst
}
