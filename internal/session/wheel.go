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
// Rescheduling never searches a slot: it appends the session to its new
// slot and records that slot in the session (Session.wheelSlot); entries
// in other slots are stale and skipped when their slot is swept. An entry
// is one pointer.
type wheel struct {
	tick time.Duration

	mu    sync.Mutex
	slots [][]*Session
	cur   int       // index of the next slot to sweep
	base  time.Time // the moment slot cur becomes due
	spare []*Session
}

func newWheel(tick, horizon time.Duration, now time.Time) *wheel {
	n := int(horizon/tick) + 2
	return &wheel{tick: tick, slots: make([][]*Session, n), base: now.Add(tick)}
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
	i := (w.cur + k) % len(w.slots)
	if s.wheelSlot == int32(i)+1 {
		return // already there
	}
	s.wheelSlot = int32(i) + 1
	w.slots[i] = append(w.slots[i], s)
}

// unschedule drops s from the wheel (its entry becomes stale).
func (w *wheel) unschedule(s *Session) {
	w.mu.Lock()
	s.wheelSlot = 0
	w.mu.Unlock()
}

// due removes and returns the sessions of every slot due at now, appended
// to dst, each once. The caller visits them without holding the wheel lock
// and reschedules them.
func (w *wheel) due(now time.Time, dst []*Session) []*Session {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.base.After(now) {
		slot := w.slots[w.cur]
		live := int32(w.cur) + 1
		for _, s := range slot {
			// A session whose entry went stale and which was then
			// scheduled into this slot again has two entries here:
			// resetting wheelSlot makes the second one stale.
			if s.wheelSlot == live {
				s.wheelSlot = 0
				dst = append(dst, s)
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
