package hub_test

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
)

// asyncBroker wraps the in-memory broker so that events reach the hub on a
// separate goroutine after Publish returned, the way a networked broker
// delivers them: history can then be ahead of live delivery. It can also
// lose chosen publications, to simulate a broker outage.
type asyncBroker struct {
	*membroker.Broker
	events chan func(hub.EventHandler)
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	// started is set once Run started the delivery goroutine.
	started atomic.Bool

	mu    sync.Mutex
	h     hub.EventHandler
	drops map[string]int // channel -> publications still to lose
	// dropIf, when set before Run, loses the publications it selects.
	dropIf func(channel string, pos hub.StreamPosition) bool
}

func newAsyncBroker(mb *membroker.Broker) *asyncBroker {
	return &asyncBroker{
		Broker: mb,
		events: make(chan func(hub.EventHandler), 1<<14),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		drops:  make(map[string]int),
	}
}

func (a *asyncBroker) Run(ctx context.Context, h hub.EventHandler) error {
	a.mu.Lock()
	a.h = h
	a.mu.Unlock()
	a.started.Store(true)
	go a.loop(h)
	return a.Broker.Run(ctx, forwarder{a})
}

func (a *asyncBroker) loop(h hub.EventHandler) {
	defer close(a.done)
	for {
		select {
		case f := <-a.events:
			f(h)
		case <-a.stop:
			return
		}
	}
}

// Close stops the delivery goroutine; the wrapped broker is closed by its
// owner.
func (a *asyncBroker) Close(context.Context) error {
	a.once.Do(func() { close(a.stop) })
	if a.started.Load() {
		<-a.done
	}
	return nil
}

// loseNext makes the broker lose the next n publications of channel.
func (a *asyncBroker) loseNext(channel string, n int) {
	a.mu.Lock()
	a.drops[channel] += n
	a.mu.Unlock()
}

func (a *asyncBroker) enqueue(f func(hub.EventHandler)) {
	select {
	case a.events <- f:
	case <-a.stop:
	}
}

type forwarder struct{ a *asyncBroker }

func (f forwarder) HandlePublication(channel string, pub *hub.Publication, pos hub.StreamPosition) {
	f.a.mu.Lock()
	if f.a.drops[channel] > 0 || (f.a.dropIf != nil && f.a.dropIf(channel, pos)) {
		if f.a.drops[channel] > 0 {
			f.a.drops[channel]--
		}
		f.a.mu.Unlock()
		return
	}
	f.a.mu.Unlock()
	f.a.enqueue(func(h hub.EventHandler) { h.HandlePublication(channel, pub, pos) })
}

func (f forwarder) HandleJoin(channel string, info *hub.ClientInfo) {
	f.a.enqueue(func(h hub.EventHandler) { h.HandleJoin(channel, info) })
}

func (f forwarder) HandleLeave(channel string, info *hub.ClientInfo) {
	f.a.enqueue(func(h hub.EventHandler) { h.HandleLeave(channel, info) })
}

func (f forwarder) HandleControl(data []byte) {
	data = append([]byte(nil), data...)
	f.a.enqueue(func(h hub.EventHandler) { h.HandleControl(data) })
}

func (f forwarder) HandleReconnect() {
	f.a.enqueue(func(h hub.EventHandler) { h.HandleReconnect() })
}
