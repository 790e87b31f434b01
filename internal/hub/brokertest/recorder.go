package brokertest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
)

// Recorder is a hub.EventHandler that records every event a broker hands
// it, for tests to wait on and inspect. It is safe for concurrent use: the
// broker calls the Handle methods from its own goroutines while the test
// reads through the accessors, which return copies.
type Recorder struct {
	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every event
	pubs       map[string][]RecordedPublication
	joins      map[string][]*hub.ClientInfo
	leaves     map[string][]*hub.ClientInfo
	controls   [][]byte
	reconnects int
	// inCall detects concurrent handler calls for one channel.
	inCall   map[string]bool
	overlaps int
}

// RecordedPublication is one HandlePublication call.
type RecordedPublication struct {
	Pub *hub.Publication
	Pos hub.StreamPosition
}

var _ hub.EventHandler = (*Recorder)(nil)

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{
		changed: make(chan struct{}),
		pubs:    make(map[string][]RecordedPublication),
		joins:   make(map[string][]*hub.ClientInfo),
		leaves:  make(map[string][]*hub.ClientInfo),
		inCall:  make(map[string]bool),
	}
}

// Start runs b with a new Recorder as its event handler and returns the
// Recorder. Closing b stays with the caller.
func Start(t testing.TB, b hub.Broker) *Recorder {
	t.Helper()
	rec := NewRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Run(ctx, rec); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rec
}

// Constructor adapts a broker package's constructor to the suites'
// newBroker argument: every call makes a new broker with newBroker and
// fails the test if it cannot.
func Constructor[B interface {
	hub.Broker
	hub.PresenceManager
}](newBroker func() (B, error)) func(t *testing.T) (hub.Broker, hub.PresenceManager) {
	return func(t *testing.T) (hub.Broker, hub.PresenceManager) {
		t.Helper()
		b, err := newBroker()
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b, b
	}
}

// CloseAtEnd closes b when the test ends and reports a failed Close.
func CloseAtEnd(t testing.TB, b hub.Broker) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

// enter and leave bracket a handler call for channel; overlapping calls
// for one channel are a contract violation counted in overlaps.
func (r *Recorder) enter(channel string) {
	r.mu.Lock()
	if r.inCall[channel] {
		r.overlaps++
	}
	r.inCall[channel] = true
	r.mu.Unlock()
}

func (r *Recorder) leave(channel string) {
	r.mu.Lock()
	r.inCall[channel] = false
	r.notifyLocked()
	r.mu.Unlock()
}

func (r *Recorder) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// HandlePublication implements hub.EventHandler.
func (r *Recorder) HandlePublication(channel string, pub *hub.Publication, pos hub.StreamPosition) {
	r.enter(channel)
	r.mu.Lock()
	r.pubs[channel] = append(r.pubs[channel], RecordedPublication{pub, pos})
	r.mu.Unlock()
	r.leave(channel)
}

// HandleJoin implements hub.EventHandler.
func (r *Recorder) HandleJoin(channel string, info *hub.ClientInfo) {
	r.enter(channel)
	r.mu.Lock()
	r.joins[channel] = append(r.joins[channel], info)
	r.mu.Unlock()
	r.leave(channel)
}

// HandleLeave implements hub.EventHandler.
func (r *Recorder) HandleLeave(channel string, info *hub.ClientInfo) {
	r.enter(channel)
	r.mu.Lock()
	r.leaves[channel] = append(r.leaves[channel], info)
	r.mu.Unlock()
	r.leave(channel)
}

// HandleControl implements hub.EventHandler.
func (r *Recorder) HandleControl(data []byte) {
	r.mu.Lock()
	r.controls = append(r.controls, slices.Clone(data))
	r.notifyLocked()
	r.mu.Unlock()
}

// HandleReconnect implements hub.EventHandler.
func (r *Recorder) HandleReconnect() {
	r.mu.Lock()
	r.reconnects++
	r.notifyLocked()
	r.mu.Unlock()
}

// WaitFor re-evaluates cond after every recorded event until it holds,
// failing the test after waitTimeout. cond reads the Recorder through its
// accessors.
func (r *Recorder) WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		// Take the channel before evaluating cond, so an event between
		// the two still wakes the wait.
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Publications returns the publications delivered for channel, in
// delivery order.
func (r *Recorder) Publications(channel string) []RecordedPublication {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pubs[channel])
}

// Data returns the data of the publications delivered for channel, in
// delivery order.
func (r *Recorder) Data(channel string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.pubs[channel]))
	for i, rp := range r.pubs[channel] {
		out[i] = string(rp.Pub.Data)
	}
	return out
}

// Joins returns the join events delivered for channel.
func (r *Recorder) Joins(channel string) []*hub.ClientInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.joins[channel])
}

// Leaves returns the leave events delivered for channel.
func (r *Recorder) Leaves(channel string) []*hub.ClientInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.leaves[channel])
}

// Controls returns the control messages delivered, in order.
func (r *Recorder) Controls() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.controls)
}

// Reconnects returns how many times HandleReconnect was called.
func (r *Recorder) Reconnects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reconnects
}

// Overlaps returns how many handler calls for a channel overlapped another
// for the same channel, a violation of the hub.EventHandler contract.
func (r *Recorder) Overlaps() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.overlaps
}
