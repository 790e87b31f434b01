package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// ErrDraining is returned by NewSession once Drain or Close has begun.
var ErrDraining = errors.New("session: node is draining")

// Manager creates sessions, keeps the set of live ones and runs the single
// heartbeat goroutine that serves all of them (connect timeouts, pings,
// silent-client detection, token expiry).
//
// A Manager is safe for concurrent use. NewManager starts its goroutine;
// Close stops it and waits for it.
type Manager struct {
	cfg   Config
	wheel *wheel
	// pingPush caches the encoded ping push per codec: identical for every
	// session, so encoded once.
	pingPush sync.Map // wire.Codec name -> []byte

	ctx    context.Context // canceled by Close; parent of hub calls
	cancel context.CancelFunc

	mu sync.Mutex
	// sessions are the live sessions, in no order; each knows its index
	// (Session.index), so removal is a swap with the last. A slice rather
	// than a set: one pointer per idle connection.
	sessions []*Session
	draining bool
	emptied  chan struct{} // closed when sessions becomes empty while draining

	// Closes requested by Disconnect wait here for the sweeper goroutine,
	// which calls Transport.Close with no lock held: Disconnect is often
	// called from hub callbacks that hold a channel lock, and a transport
	// may report the end of the connection synchronously from Close.
	closeMu sync.Mutex
	toClose []*Session
	stopped bool // the sweeper has exited: close directly
	wakeups chan struct{}

	closeOnce sync.Once
	done      chan struct{}
}

// NewManager validates cfg, applies defaults and starts the heartbeat
// goroutine.
func NewManager(cfg Config) (*Manager, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg:     cfg,
		wheel:   newWheel(cfg.tick(), cfg.horizon(), time.Now()),
		ctx:     ctx,
		cancel:  cancel,
		wakeups: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	go m.sweep()
	return m, nil
}

// Config returns the effective configuration (defaults applied).
func (m *Manager) Config() Config { return m.cfg }

// NewSession creates the session of a new connection. The transport feeds
// it with HandleMessage and reports the end with HandleClose. codec is the
// connection's encoding: it decodes commands and encodes replies and
// per-session pushes. The session must receive connect within
// ConnectTimeout. It fails with ErrDraining once Drain or Close started;
// the adapter then refuses the connection.
func (m *Manager) NewSession(t Transport, codec wire.Codec) (*Session, error) {
	info := t.Info()
	s := &Session{
		m:         m,
		t:         t,
		codec:     codec,
		id:        newClientID(),
		dataValid: decodedDataValid(codec),
	}
	now := time.Now()
	s.lastActivity.Store(now.UnixNano())
	connectDeadline := now.Add(m.cfg.ConnectTimeout)
	s.deadline = connectDeadline.UnixNano()

	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		return nil, ErrDraining
	}
	s.index = int32(len(m.sessions))
	m.sessions = append(m.sessions, s)
	m.mu.Unlock()

	m.cfg.Metrics.SessionOpened(info.Name)
	m.wheel.schedule(s, connectDeadline)
	return s, nil
}

// Draining reports whether the Manager refuses new sessions (Drain or
// Close has begun). Transports check it to refuse connections early.
func (m *Manager) Draining() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.draining
}

// Len returns the number of live sessions.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

func (m *Manager) remove(s *Session) {
	m.wheel.unschedule(s)
	m.mu.Lock()
	if i := s.index; i >= 0 {
		last := len(m.sessions) - 1
		m.sessions[i] = m.sessions[last]
		m.sessions[i].index = i
		m.sessions[last] = nil
		m.sessions = m.sessions[:last]
		s.index = -1
		if cap(m.sessions) > 64 && len(m.sessions) < cap(m.sessions)/4 {
			m.sessions = slices.Clip(slices.Clone(m.sessions))
		}
	}
	if m.draining && len(m.sessions) == 0 && m.emptied != nil {
		close(m.emptied)
		m.emptied = nil
	}
	m.mu.Unlock()
}

// Drain refuses new sessions and disconnects every live one with d (for a
// shutdown: wire.DisconnectShutdown, reconnect true), spreading the
// disconnects evenly over spread so that clients do not all reconnect to
// other nodes in the same instant. It then waits until every session has
// ended. When ctx ends first, the sessions not yet told are disconnected
// at once and Drain returns ctx's error without waiting further.
// Calling Drain again disconnects whatever sessions remain.
func (m *Manager) Drain(ctx context.Context, d wire.Disconnect, spread time.Duration) error {
	m.mu.Lock()
	m.draining = true
	list := slices.Clone(m.sessions)
	var emptied chan struct{}
	if len(m.sessions) > 0 {
		if m.emptied == nil {
			m.emptied = make(chan struct{})
		}
		emptied = m.emptied
	}
	m.mu.Unlock()

	var step time.Duration
	if len(list) > 1 && spread > 0 {
		step = spread / time.Duration(len(list))
	}
	var timer *time.Timer
	for i, s := range list {
		if step > 0 && i > 0 {
			if timer == nil {
				timer = time.NewTimer(step)
			} else {
				timer.Reset(step)
			}
			select {
			case <-timer.C:
			case <-ctx.Done():
				for _, rest := range list[i:] {
					rest.Disconnect(d)
				}
				timer.Stop()
				return fmt.Errorf("session: drain: %w", ctx.Err())
			}
		}
		s.Disconnect(d)
	}
	if timer != nil {
		timer.Stop()
	}
	if emptied == nil {
		return nil
	}
	select {
	case <-emptied:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("session: drain: waiting for %d sessions: %w", m.Len(), ctx.Err())
	}
}

// Close stops the heartbeat goroutine and waits for it, and refuses new
// sessions. It does not disconnect live sessions (Drain does); their
// pending hub calls are canceled, and disconnects requested afterwards
// close their transport directly. Idempotent.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.draining = true
		m.mu.Unlock()
		m.cancel()
	})
	<-m.done
	return nil
}

// requestClose hands s to the sweeper goroutine, which closes its
// transport.
func (m *Manager) requestClose(s *Session) {
	m.closeMu.Lock()
	if m.stopped {
		m.closeMu.Unlock()
		s.closeTransport()
		return
	}
	m.toClose = append(m.toClose, s)
	m.closeMu.Unlock()
	select {
	case m.wakeups <- struct{}{}:
	default:
	}
}

// runCloses closes the transports of every session waiting for it; with
// stop set it also makes later requests close directly.
func (m *Manager) runCloses(stop bool) {
	m.closeMu.Lock()
	list := m.toClose
	m.toClose = nil
	if stop {
		m.stopped = true
	}
	m.closeMu.Unlock()
	for _, s := range list {
		s.closeTransport()
	}
}

// sweep is the Manager's goroutine: every tick it visits the sessions due
// in the wheel, and it closes the transports of disconnected sessions.
func (m *Manager) sweep() {
	defer close(m.done)
	ticker := time.NewTicker(m.wheel.tick)
	defer ticker.Stop()
	var due []*Session
	for {
		select {
		case <-m.ctx.Done():
			m.runCloses(true)
			return
		case <-m.wakeups:
			m.runCloses(false)
		case now := <-ticker.C:
			due = m.wheel.due(now, due[:0])
			for _, s := range due {
				if next, ok := s.heartbeat(now); ok {
					m.wheel.schedule(s, next)
				}
			}
			clear(due)
		}
	}
}

// encodedPing returns the ping push in codec's encoding.
func (m *Manager) encodedPing(codec wire.Codec) []byte {
	if b, ok := m.pingPush.Load(codec.Name()); ok {
		return b.([]byte)
	}
	b := codec.AppendPush(nil, &wire.Push{Type: wire.PushPing})
	m.pingPush.Store(codec.Name(), b)
	return b
}
