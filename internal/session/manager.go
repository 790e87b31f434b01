package session

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
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
	// codecs numbers the distinct codecs of the sessions; each session
	// keeps its codec's number.
	codecs codecSet

	ctx    context.Context // canceled by Close; parent of hub calls
	cancel context.CancelFunc
	// hubDeadline is the context commands bound their hub calls with,
	// shared by every command that starts while it is current (see
	// hubContext).
	hubDeadlineMu sync.Mutex
	hubDeadline   atomic.Pointer[sharedDeadline]
	// lastTick is the unix nanoseconds of the sweeper's latest tick: a
	// clock that costs an atomic load, for HandleMessage's activity stamp.
	lastTick atomic.Int64

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
	toClose []closeRequest
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
	m.lastTick.Store(time.Now().UnixNano())
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
	s := new(Session)
	if err := m.StartSession(s, t, codec); err != nil {
		return nil, err
	}
	return s, nil
}

// StartSession is NewSession for a Session the caller allocated: s must be
// a zero Session, typically a field of the transport's own per-connection
// struct, so that an idle connection's session and transport are one
// allocation. s must not be copied, and not reused after HandleClose.
// When StartSession fails, s is not a session and must not be used.
func (m *Manager) StartSession(s *Session, t Transport, codec wire.Codec) error {
	codecID, err := m.codecs.id(codec)
	if err != nil {
		return err
	}
	s.m, s.t = m, t
	s.codecID = codecID
	s.dataValid = decodedDataValid(codec)
	s.setNewID()
	now := time.Now()
	s.lastActivity.Store(now.UnixNano())
	connectDeadline := now.Add(m.cfg.ConnectTimeout)
	s.deadline = connectDeadline.UnixNano()

	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		return ErrDraining
	}
	s.index = int32(len(m.sessions))
	m.sessions = append(m.sessions, s)
	m.mu.Unlock()

	m.cfg.Metrics.SessionOpened(transportName(t))
	m.wheel.schedule(s, connectDeadline)
	return nil
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

// closeRequest is a disconnect waiting for the sweeper to close the
// session's transport with its code and reason.
type closeRequest struct {
	s      *Session
	code   uint16
	reason string
}

func (r closeRequest) run() { r.s.t.Close(r.code, r.reason) }

// requestClose hands a disconnected session to the sweeper goroutine,
// which closes its transport.
func (m *Manager) requestClose(r closeRequest) {
	m.closeMu.Lock()
	if m.stopped {
		m.closeMu.Unlock()
		r.run()
		return
	}
	m.toClose = append(m.toClose, r)
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
	for _, r := range list {
		r.run()
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
			m.lastTick.Store(now.UnixNano())
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

// sharedDeadline is a context with a deadline that every command starting
// before renewAt (unix nanoseconds) uses for its hub calls.
type sharedDeadline struct {
	ctx     context.Context
	cancel  context.CancelFunc // runs by itself at the deadline, or when Close cancels the parent
	renewAt int64
}

// hubContext returns a context that bounds a command's hub calls by
// HubTimeout: its deadline lies between HubTimeout and 1.25 x HubTimeout
// from now. One context serves every command that starts within a quarter
// of HubTimeout, so a command costs an atomic load instead of a context,
// a timer and a registration with the Manager's context (whose lock all
// sessions would share). Each context ends by itself at its deadline, so
// at most five are alive at a time.
func (m *Manager) hubContext() context.Context {
	now := time.Now().UnixNano()
	if d := m.hubDeadline.Load(); d != nil && now < d.renewAt {
		return d.ctx
	}
	m.hubDeadlineMu.Lock()
	defer m.hubDeadlineMu.Unlock()
	if d := m.hubDeadline.Load(); d != nil && now < d.renewAt {
		return d.ctx
	}
	slack := m.cfg.HubTimeout / 4
	d := &sharedDeadline{renewAt: now + int64(slack)}
	d.ctx, d.cancel = context.WithDeadline(m.ctx, time.Unix(0, now).Add(m.cfg.HubTimeout+slack))
	m.hubDeadline.Store(d)
	return d.ctx
}

// encodedPing returns the ping push in the encoding of codec number id.
func (m *Manager) encodedPing(id uint8) []byte { return m.codecs.get(id).ping }

// maxCodecs bounds the distinct codecs of one Manager (a session stores
// its codec's number in a byte).
const maxCodecs = 256

// codecSet numbers the distinct codecs of a Manager's sessions, so that a
// session holds a one-byte number instead of an interface value (memory
// per idle connection). Transports use one codec value per listener, so
// the set stays tiny. Safe for concurrent use; lookups are one atomic
// load.
type codecSet struct {
	mu   sync.Mutex
	list atomic.Pointer[[]registeredCodec] // copy on write
}

// registeredCodec is a codec and its encoded ping push (identical for
// every session, so encoded once).
type registeredCodec struct {
	codec wire.Codec
	ping  []byte
}

// id returns codec's number, registering it on first use. Codecs are told
// apart by ==, so their types must be comparable (the wire codecs are).
func (cs *codecSet) id(codec wire.Codec) (uint8, error) {
	if codec == nil {
		return 0, errors.New("session: nil codec")
	}
	if !reflect.TypeOf(codec).Comparable() {
		return 0, fmt.Errorf("session: codec type %T is not comparable", codec)
	}
	if list := cs.list.Load(); list != nil {
		for i, rc := range *list {
			if rc.codec == codec {
				return uint8(i), nil
			}
		}
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var list []registeredCodec
	if p := cs.list.Load(); p != nil {
		list = *p
	}
	for i, rc := range list {
		if rc.codec == codec {
			return uint8(i), nil
		}
	}
	if len(list) >= maxCodecs {
		return 0, fmt.Errorf("session: more than %d distinct codecs", maxCodecs)
	}
	list = append(slices.Clip(list), registeredCodec{codec: codec, ping: codec.AppendPush(nil, &wire.Push{Type: wire.PushPing})})
	cs.list.Store(&list)
	return uint8(len(list) - 1), nil
}

// get returns codec number id.
func (cs *codecSet) get(id uint8) *registeredCodec { return &(*cs.list.Load())[id] }
