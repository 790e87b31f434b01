// Package session is the protocol state machine of one client connection,
// independent of the transport that carries it.
//
// A transport adapter (WebSocket, TCP, UDP) accepts a connection, asks the
// Manager for a Session with a Transport of its own and the connection's
// codec, feeds every received message to Session.HandleMessage and reports
// the end of the connection with Session.HandleClose. The session decodes
// commands, enforces the protocol of docs/protocol.md (connect first and
// in time, token verification, namespace permissions, limits), talks to
// the hub, and answers every command with exactly one reply.
//
// Outgoing data takes two paths. Replies and per-session pushes (ping,
// unsubscribe, disconnect) are encoded by the session in the connection's
// codec and handed to Transport.Send. Publications, joins, leaves and
// direct messages arrive from the hub as a *hub.Delivery shared by every
// recipient and go to Transport.SendDelivery untouched: the transport
// encodes them once per format for all connections (encode once, write
// many).
//
// Slow consumers: transports queue without blocking and report overflow
// (ErrOverflow). The session then disconnects the client with 3001 (slow
// consumer, reconnect and recover) and counts it; other subscribers are
// never held back.
//
// Heartbeats: one goroutine per Manager serves every session through a
// timing wheel (see wheel.go), so an idle connection costs a slice entry
// and no timer. It closes sessions that send no connect in time (3006),
// pings connected ones every PingInterval (a ping push plus the
// transport's own ping, such as a WebSocket ping frame), closes those from
// which nothing arrived for PingInterval + PongTimeout (3002), and closes
// those whose token expired without a refresh (3005).
package session

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// Hub is what a session needs from the hub; *hub.Hub implements it.
type Hub interface {
	AddClient(sub hub.Subscriber) error
	RemoveClient(ctx context.Context, sub hub.Subscriber)
	ChannelOptions(channel string) (hub.ChannelOptions, error)
	Subscribe(ctx context.Context, sub hub.Subscriber, channel string, opts hub.SubscribeOptions, onResult hub.SubscribeResultFunc) error
	Unsubscribe(ctx context.Context, sub hub.Subscriber, channel string) error
	Subscribed(sub hub.Subscriber, channel string) bool
	NumSubscriptions(sub hub.Subscriber) int
	PublishResolved(ctx context.Context, channel string, opts hub.ChannelOptions, data []byte, info *wire.ClientInfo) (wire.StreamPosition, error)
	Presence(ctx context.Context, channel string) (map[string]*wire.ClientInfo, error)
	PresenceStats(ctx context.Context, channel string) (hub.PresenceStats, error)
	History(ctx context.Context, channel string, opts hub.HistoryOptions) (hub.HistoryResult, error)
	SendToUser(ctx context.Context, user string, data []byte, info *wire.ClientInfo) error
}

var (
	_ Hub                  = (*hub.Hub)(nil)
	_ hub.Subscriber       = (*Session)(nil)
	_ hub.ClientInfoSource = (*Session)(nil)
)

type state uint8

const (
	stateNew       state = iota // waiting for connect
	stateConnected              // registered with the hub
	stateClosing                // disconnect requested, waiting for HandleClose
	stateClosed                 // HandleClose ran
)

// Session is one client connection's protocol state.
//
// Concurrency: a transport calls HandleMessage for one connection from one
// goroutine at a time, in the order messages arrive, and reports the end
// with HandleClose after the last HandleMessage returned (the ws engine's
// event mode and netpoll guarantee both). Disconnect, Deliver and the
// other hub.Subscriber methods may be called from any goroutine at any
// time and never block.
type Session struct {
	m *Manager
	t Transport

	// info describes the client to the hub (presence, join and leave
	// events). info.Client is the id, whose bytes are idBuf; User (the
	// token's subject) and ConnInfo (its info claim) are set by connect
	// before the session is registered with the hub and never change
	// afterwards (refresh requires the same user). Kept inline: an idle
	// server holds one Session per connection, and one allocation for the
	// session, its description and its id is the cheapest.
	info wire.ClientInfo
	// rare holds what an idle session seldom needs (token limits, the
	// publisher description); nil until the first of them is set. The
	// pointer is set by the HandleMessage goroutine under mu.
	rare *sessionRare

	lastActivity atomic.Int64 // unix nanoseconds of the last message handled (see HandleMessage)

	// Fields are ordered to pack.
	closed atomic.Bool // no more sends: closing or closed
	// wheelSlot is the heartbeat wheel slot holding the session's live
	// entry, plus one; 0 when it has none. Guarded by the wheel's lock.
	wheelSlot int32
	mu        sync.Mutex
	state     state
	// registered: AddClient succeeded, so HandleClose must remove the
	// client.
	registered bool
	// codecID numbers the connection's codec in the Manager (see codec).
	codecID uint8
	// dataValid: the codec's DecodeCommand only succeeds when publish and
	// send data are one valid JSON value, so checkData need not scan it
	// again. Set by NewSession, never changed.
	dataValid   bool
	closeCode   uint16 // the first disconnect code
	badCommands uint16 // bounded by Config.MaxBadCommands + 1
	// Unix nanoseconds: the connect deadline while stateNew, the next ping
	// once connected.
	deadline int64
	// index is the session's place in Manager.sessions, -1 once removed.
	// Guarded by the Manager's mu.
	index int32
	// The client's subscriptions are the hub's record (Hub.Subscribed,
	// Hub.NumSubscriptions): the session keeps no copy.
	idBuf [clientIDLen]byte
}

// sessionRare is the part of a Session that most idle sessions do
// without: it exists once a token brought an expiry or channel grants, or
// the client published or sent.
type sessionRare struct {
	// Under Session.mu: the token's expiry in unix nanoseconds (0: never)
	// and the channels it grants.
	expiresAt int64
	grants    []string
	// detached is a copy of Session.info made for the first publish or
	// send: publications may outlive the connection in history, and must
	// not keep the session (and its transport) reachable. Used by the
	// HandleMessage goroutine only.
	detached *wire.ClientInfo
}

// rareLocked returns s.rare, creating it. Called by the HandleMessage
// goroutine with s.mu held.
func (s *Session) rareLocked() *sessionRare {
	if s.rare == nil {
		s.rare = new(sessionRare)
	}
	return s.rare
}

// expiresAtLocked returns the token's expiry in unix nanoseconds, 0 when
// it never expires. Called with s.mu held.
func (s *Session) expiresAtLocked() int64 {
	if s.rare == nil {
		return 0
	}
	return s.rare.expiresAt
}

// setTokenLocked records the limits of a verified token. Called by the
// HandleMessage goroutine with s.mu held.
func (s *Session) setTokenLocked(claims auth.Claims) {
	exp := unixNano(claims.ExpiresAt)
	if exp == 0 && len(claims.Channels) == 0 && s.rare == nil {
		return
	}
	r := s.rareLocked()
	r.expiresAt = exp
	r.grants = claims.Channels
}

// codec returns the connection's codec: it decodes commands and encodes
// replies and per-session pushes.
func (s *Session) codec() wire.Codec { return s.m.codecs.get(s.codecID).codec }

// user returns the token's subject ("" when anonymous or before connect).
func (s *Session) user() string { return s.info.User }

// unixNano converts a time to the session's representation: 0 for the
// zero time (and 1 for the one instant whose Unix nanoseconds are 0).
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if n := t.UnixNano(); n != 0 {
		return n
	}
	return 1
}

// A client id is a random value of clientIDBytes (120 bits, about what a
// random UUID carries), written in unpadded base64url: clientIDLen
// characters, with no character that needs escaping in JSON, URLs or
// broker keys and subjects. (The 20 bytes keep an idle Session at 176
// bytes, a size class.)
const (
	clientIDBytes = 15
	clientIDLen   = clientIDBytes / 3 * 4
)

// setNewID gives s a random id, whose characters are s.idBuf and which
// s.info.Client points into, so the id costs no allocation of its own.
// Strings that may outlive the session (a detached description) are
// copies.
func (s *Session) setNewID() {
	var b [clientIDBytes]byte
	_, _ = crand.Read(b[:])
	base64.RawURLEncoding.Encode(s.idBuf[:], b[:])
	s.info.Client = unsafe.String(&s.idBuf[0], len(s.idBuf))
}

// ID returns the server-assigned client id.
func (s *Session) ID() string { return s.info.Client }

// ClientID implements hub.Subscriber.
func (s *Session) ClientID() string { return s.info.Client }

// UserID implements hub.Subscriber: the token's subject, "" when
// anonymous.
func (s *Session) UserID() string { return s.info.User }

// ConnInfo implements hub.Subscriber: the token's info claim.
func (s *Session) ConnInfo() []byte { return s.info.ConnInfo }

// ClientInfo implements hub.ClientInfoSource: the hub shares the
// session's description for presence and join/leave events, which end
// with the connection's subscriptions.
func (s *Session) ClientInfo() *wire.ClientInfo { return &s.info }

// publisherInfo returns the description that goes with the client's
// publications and direct messages: a copy with its own id string, made
// once, so that history holding a publication does not hold the session.
func (s *Session) publisherInfo() *wire.ClientInfo {
	if s.rare == nil || s.rare.detached == nil {
		d := &wire.ClientInfo{Client: strings.Clone(s.info.Client), User: s.info.User, ConnInfo: s.info.ConnInfo}
		s.mu.Lock()
		s.rareLocked().detached = d
		s.mu.Unlock()
	}
	return s.rare.detached
}

// Deliver implements hub.Subscriber: the delivery goes to the transport as
// is; overflow disconnects the client as a slow consumer.
func (s *Session) Deliver(d *hub.Delivery) {
	if s.closed.Load() {
		return
	}
	if err := s.t.SendDelivery(d); err != nil {
		s.sendFailed(err)
		return
	}
	s.m.cfg.Metrics.Sent(SentDelivery)
}

// ServerUnsubscribe implements hub.Subscriber.
func (s *Session) ServerUnsubscribe(channel string, code uint32, reason string, resubscribe bool) {
	s.sendPush(&wire.Push{Type: wire.PushUnsubscribe, Channel: channel,
		Unsubscribe: &wire.UnsubscribePush{Code: code, Reason: reason, Resubscribe: resubscribe}})
}

// ServerDisconnect implements hub.Subscriber.
func (s *Session) ServerDisconnect(code uint16, reason string) {
	s.Disconnect(wire.Disconnect{Code: code, Reason: reason, Reconnect: wire.DisconnectReconnects(code)})
}

// Disconnect sends the client a disconnect push and closes the connection
// with d.Code. Only the first call has an effect. It never blocks: the
// Manager's goroutine closes the transport right after.
func (s *Session) Disconnect(d wire.Disconnect) {
	s.mu.Lock()
	if s.state >= stateClosing {
		s.mu.Unlock()
		return
	}
	s.state = stateClosing
	s.closeCode = d.Code
	s.mu.Unlock()
	// Refuse further replies and deliveries, then queue the push: apart
	// from a delivery already on its way, it is the last message the
	// client gets before the close.
	s.closed.Store(true)
	dp := d
	if err := s.t.Send(s.codec().AppendPush(nil, &wire.Push{Type: wire.PushDisconnect, Disconnect: &dp})); err == nil {
		s.m.cfg.Metrics.Sent(SentPush)
	}
	s.m.requestClose(closeRequest{s: s, code: d.Code, reason: d.Reason})
}

func (s *Session) disconnect(code uint16, reason string) {
	s.Disconnect(wire.Disconnect{Code: code, Reason: reason, Reconnect: wire.DisconnectReconnects(code)})
}

// sendFailed applies the overflow policy after a failed send.
func (s *Session) sendFailed(err error) {
	if errors.Is(err, ErrOverflow) {
		s.disconnect(wire.DisconnectSlowConsumer, "slow consumer")
		return
	}
	// The connection is already gone; HandleClose follows.
	s.closed.Store(true)
}

func (s *Session) sendPush(p *wire.Push) {
	if s.closed.Load() {
		return
	}
	if err := s.t.Send(s.codec().AppendPush(nil, p)); err != nil {
		s.sendFailed(err)
		return
	}
	s.m.cfg.Metrics.Sent(SentPush)
}

// sendReply encodes and queues r and counts the command.
func (s *Session) sendReply(method wire.Method, r *wire.Reply) {
	var code uint32
	if r.Error != nil {
		code = r.Error.Code
	}
	s.m.cfg.Metrics.Command(method, code)
	if s.closed.Load() {
		return
	}
	if err := s.t.Send(encodeReply(s.codec(), r)); err != nil {
		s.sendFailed(err)
		return
	}
	s.m.cfg.Metrics.Sent(SentReply)
}

// replyBufs are scratch buffers replies are encoded in before being copied
// into one allocation of their exact size (appending to a nil slice would
// reallocate it several times for even a short reply).
var replyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooledReplyBuf keeps the buffers of unusually large replies (long
// history pages) out of the pool.
const maxPooledReplyBuf = 64 << 10

// encodeReply returns r in codec's encoding, in a slice of its own that the
// transport may keep.
func encodeReply(codec wire.Codec, r *wire.Reply) []byte {
	bp := replyBufs.Get().(*[]byte)
	var b []byte
	// Direct calls, which the compiler sees keep neither r nor what it
	// points to: the caller's reply and its result stay on its stack.
	switch c := codec.(type) {
	case wire.JSONCodec:
		b = c.AppendReply((*bp)[:0], r)
	case wire.BinaryCodec:
		b = c.AppendReply((*bp)[:0], r)
	default:
		b = codec.AppendReply((*bp)[:0], detachReply(r))
	}
	out := make([]byte, len(b))
	copy(out, b)
	if cap(b) <= maxPooledReplyBuf {
		*bp = b[:0]
		replyBufs.Put(bp)
	}
	return out
}

// detachReply copies r and each of its results for a codec the compiler
// cannot see through: handing it r itself would make every reply's result
// escape to the heap, whatever the codec.
func detachReply(r *wire.Reply) *wire.Reply {
	c := &wire.Reply{ID: r.ID}
	if r.Error != nil {
		v := *r.Error
		c.Error = &v
	}
	if r.Connect != nil {
		v := *r.Connect
		c.Connect = &v
	}
	if r.Subscribe != nil {
		v := *r.Subscribe
		c.Subscribe = &v
	}
	if r.Publish != nil {
		v := *r.Publish
		c.Publish = &v
	}
	if r.Presence != nil {
		v := *r.Presence
		c.Presence = &v
	}
	if r.PresenceStats != nil {
		v := *r.PresenceStats
		c.PresenceStats = &v
	}
	if r.History != nil {
		v := *r.History
		c.History = &v
	}
	if r.Refresh != nil {
		v := *r.Refresh
		c.Refresh = &v
	}
	return c
}

func (s *Session) replyError(cmd *wire.Command, code uint32, msg string) {
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, Error: &wire.Error{Code: code, Message: msg}})
}

// HandleClose tells the session that its connection has ended, for
// whatever reason (client closed, network error, after Disconnect). It
// removes the client from the hub (subscriptions, presence, leave events)
// and from the Manager. Only the first call has an effect; it may block for
// the hub's broker calls, bounded by HubTimeout. It must not overlap a
// HandleMessage call of the same session (transports report the end after
// the last message).
func (s *Session) HandleClose(err error) {
	_ = err // the code the session chose, if any, is what gets counted
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		return
	}
	wasRegistered := s.registered
	code := s.closeCode
	if code == 0 {
		code = wire.DisconnectNormal
	}
	s.state = stateClosed
	s.mu.Unlock()
	s.closed.Store(true)

	s.m.remove(s)
	if wasRegistered {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.m.ctx), s.m.cfg.HubTimeout)
		s.m.cfg.Hub.RemoveClient(ctx, s)
		cancel()
	}
	s.m.cfg.Metrics.SessionClosed(transportName(s.t), code)
}

// HandleMessage handles one message received from the client: one encoded
// command in the session's codec. data is not retained. Calls for one
// session must not overlap.
func (s *Session) HandleMessage(data []byte) {
	// Stamp the activity once per heartbeat tick at most: a stamp no
	// older than the latest tick is within a tick of the truth, which is
	// finer than any decision the sweeper makes with it (its silence
	// limit is at least eight ticks), so a client that sends many
	// commands pays for the clock once.
	if s.lastActivity.Load() < s.m.lastTick.Load() {
		s.lastActivity.Store(time.Now().UnixNano())
	}
	if s.closed.Load() {
		return
	}
	cmd, err := s.codec().DecodeCommand(data)
	if err != nil {
		s.handleDecodeError(err)
		return
	}
	s.handleCommand(cmd)
}

func (s *Session) handleDecodeError(err error) {
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		s.m.cfg.Metrics.Command(wire.MethodUnknown, wire.ErrBadRequest)
		s.disconnect(pe.Code, pe.Reason)
		return
	}
	var ce *wire.CommandError
	if !errors.As(err, &ce) || ce.ID == 0 {
		s.m.cfg.Metrics.Command(wire.MethodUnknown, wire.ErrBadRequest)
		s.disconnect(wire.DisconnectBadRequest, "malformed command")
		return
	}
	s.sendReply(ce.Method, ce.Reply())
	if s.countBad() {
		s.disconnect(wire.DisconnectBadRequest, "too many bad commands")
	}
}

// countBad counts a malformed command and reports whether the limit is
// exceeded.
func (s *Session) countBad() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(s.badCommands) <= s.m.cfg.MaxBadCommands {
		s.badCommands++
	}
	return int(s.badCommands) > s.m.cfg.MaxBadCommands
}

func (s *Session) currentState() state {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// hubCtx bounds a command's hub calls (see Manager.hubContext).
func (s *Session) hubCtx() context.Context { return s.m.hubContext() }

func (s *Session) handleCommand(cmd *wire.Command) {
	st := s.currentState()
	if st >= stateClosing {
		return
	}
	if cmd.Method == wire.MethodPong {
		// Activity is already recorded; pong has no reply.
		s.m.cfg.Metrics.Command(cmd.Method, 0)
		return
	}
	if st == stateNew && cmd.Method != wire.MethodConnect {
		s.replyError(cmd, wire.ErrNotConnected, "connect first")
		return
	}
	switch cmd.Method {
	case wire.MethodConnect:
		s.handleConnect(cmd)
	case wire.MethodSubscribe:
		s.handleSubscribe(cmd)
	case wire.MethodUnsubscribe:
		s.handleUnsubscribe(cmd)
	case wire.MethodPublish:
		s.handlePublish(cmd)
	case wire.MethodPresence:
		s.handlePresence(cmd)
	case wire.MethodPresenceStats:
		s.handlePresenceStats(cmd)
	case wire.MethodHistory:
		s.handleHistory(cmd)
	case wire.MethodPing:
		s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID})
	case wire.MethodRefresh:
		s.handleRefresh(cmd)
	case wire.MethodSend:
		s.handleSend(cmd)
	default:
		s.replyError(cmd, wire.ErrMethodNotFound, "unknown method")
	}
}

// ttlSeconds returns the whole seconds until exp, at least 1.
func ttlSeconds(exp, now time.Time) uint32 {
	d := exp.Sub(now)
	if d < time.Second {
		return 1
	}
	return uint32(min(d/time.Second, 1<<32-1))
}

func (s *Session) handleConnect(cmd *wire.Command) {
	if s.currentState() != stateNew {
		s.replyError(cmd, wire.ErrAlreadyConnected, "already connected")
		return
	}
	var claims auth.Claims
	switch {
	case cmd.Connect.Token == "":
		if !s.m.cfg.AllowAnonymous {
			s.replyError(cmd, wire.ErrUnauthorized, "token required")
			s.disconnect(wire.DisconnectUnauthorized, "unauthorized")
			return
		}
	case s.m.cfg.Verifier == nil:
		s.replyError(cmd, wire.ErrUnauthorized, "tokens are not accepted by this server")
		s.disconnect(wire.DisconnectUnauthorized, "unauthorized")
		return
	default:
		var err error
		claims, err = s.m.cfg.Verifier.Verify(cmd.Connect.Token)
		if errors.Is(err, auth.ErrTokenExpired) {
			s.replyError(cmd, wire.ErrTokenExpired, "token expired")
			s.disconnect(wire.DisconnectTokenExpired, "token expired")
			return
		}
		if err != nil {
			s.replyError(cmd, wire.ErrUnauthorized, "invalid token")
			s.disconnect(wire.DisconnectUnauthorized, "unauthorized")
			return
		}
	}

	now := time.Now()
	s.mu.Lock()
	s.info.User, s.info.ConnInfo = claims.Subject, claims.Info
	s.mu.Unlock()

	if err := s.m.cfg.Hub.AddClient(s); err != nil {
		switch {
		case errors.Is(err, hub.ErrConnectionLimit):
			s.replyError(cmd, wire.ErrLimitExceeded, "connection limit reached")
			s.disconnect(wire.DisconnectConnectionLimit, "connection limit reached")
		case errors.Is(err, hub.ErrShuttingDown):
			s.replyError(cmd, wire.ErrInternal, "server shutting down")
			s.disconnect(wire.DisconnectShutdown, "server shutting down")
		default:
			s.m.cfg.Logger.Warn("session: register client", "client", s.info.Client, "err", err)
			s.replyError(cmd, wire.ErrInternal, "internal error")
			s.disconnect(wire.DisconnectServerError, "internal error")
		}
		return
	}
	s.mu.Lock()
	s.registered = true
	// A transport that ended the connection while AddClient ran has
	// already been through HandleClose, which saw registered unset.
	closedMeanwhile := s.state == stateClosed
	s.mu.Unlock()
	if closedMeanwhile {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.m.ctx), s.m.cfg.HubTimeout)
		s.m.cfg.Hub.RemoveClient(ctx, s)
		cancel()
		return
	}

	res := &wire.ConnectResult{
		Client:  s.info.Client,
		Version: s.m.cfg.Version,
		Node:    s.m.cfg.Node,
		Ping:    uint32(s.m.cfg.PingInterval / time.Second),
		Pong:    true,
	}
	// The first ping is jittered over the second half of the interval so
	// that a crowd that connected together is not pinged together.
	half := s.m.cfg.PingInterval / 2
	s.mu.Lock()
	if s.state != stateNew {
		// Disconnected meanwhile; HandleClose removes the client.
		s.mu.Unlock()
		return
	}
	connectDeadline := s.deadline
	s.state = stateConnected
	s.setTokenLocked(claims)
	s.deadline = now.Add(half + rand.N(half+1)).UnixNano()
	if s.expiresAtLocked() != 0 {
		res.Expires = true
		res.TTL = ttlSeconds(claims.ExpiresAt, now)
	}
	s.mu.Unlock()
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, Connect: res})
	// The session still sits in the wheel for its connect deadline. When
	// nothing is due before then (the first ping comes later unless the
	// ping interval is shorter than the connect timeout, or the token
	// expires sooner), that entry serves: its visit finds the session
	// connected and schedules the next one. Otherwise a second entry
	// would linger, stale, until its slot is swept.
	if next := s.nextDue(); next.UnixNano() < connectDeadline {
		s.m.wheel.schedule(s, next)
	}
}

// nextDue is the next moment the heartbeat must look at a connected
// session.
func (s *Session) nextDue() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextDueLocked(s.lastRead())
}

func (s *Session) nextDueLocked(last time.Time) time.Time {
	due := s.deadline // the next ping
	if silent := last.Add(s.m.cfg.PingInterval + s.m.cfg.PongTimeout).UnixNano(); silent < due {
		due = silent
	}
	if exp := s.expiresAtLocked(); exp != 0 && exp < due {
		due = exp
	}
	return time.Unix(0, due)
}

// lastRead is the later of the last command and the transport's last
// inbound bytes.
func (s *Session) lastRead() time.Time {
	last := time.Unix(0, s.lastActivity.Load())
	if t := s.t.LastRead(); t.After(last) {
		last = t
	}
	return last
}

// heartbeat is the sweeper's visit: it enforces the connect timeout,
// silence limit and token expiry, sends a ping when one is due, and
// returns when to visit next (ok false: forget the session).
func (s *Session) heartbeat(now time.Time) (next time.Time, ok bool) {
	var (
		closeCode uint16
		reason    string
		ping      bool
	)
	s.mu.Lock()
	switch s.state {
	case stateNew:
		if now.UnixNano() < s.deadline {
			next = time.Unix(0, s.deadline)
			break
		}
		closeCode, reason = wire.DisconnectConnectTimeout, "connect timeout"
	case stateConnected:
		last := s.lastRead()
		switch {
		case now.Sub(last) >= s.m.cfg.PingInterval+s.m.cfg.PongTimeout:
			closeCode, reason = wire.DisconnectNoPong, "no pong"
		case s.expiresAtLocked() != 0 && now.UnixNano() >= s.expiresAtLocked():
			closeCode, reason = wire.DisconnectTokenExpired, "token expired"
		default:
			if now.UnixNano() >= s.deadline {
				ping = true
				s.deadline = now.Add(s.m.cfg.PingInterval).UnixNano()
			}
			next = s.nextDueLocked(last)
		}
	default:
		s.mu.Unlock()
		return time.Time{}, false
	}
	s.mu.Unlock()

	if closeCode != 0 {
		s.disconnect(closeCode, reason)
		return time.Time{}, false
	}
	if ping {
		s.sendPing()
	}
	return next, !s.closed.Load()
}

func (s *Session) sendPing() {
	if s.closed.Load() {
		return
	}
	if err := s.t.Send(s.m.encodedPing(s.codecID)); err != nil {
		s.sendFailed(err)
		return
	}
	s.m.cfg.Metrics.Sent(SentPush)
	if err := s.t.Ping(); err != nil {
		s.sendFailed(err)
	}
}

func (s *Session) handleRefresh(cmd *wire.Command) {
	if s.m.cfg.Verifier == nil {
		s.replyError(cmd, wire.ErrUnauthorized, "tokens are not accepted by this server")
		return
	}
	claims, err := s.m.cfg.Verifier.Verify(cmd.Refresh.Token)
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		s.replyError(cmd, wire.ErrTokenExpired, "token expired")
		return
	case err != nil:
		s.replyError(cmd, wire.ErrUnauthorized, "invalid token")
		return
	case claims.Subject != s.user():
		s.replyError(cmd, wire.ErrUnauthorized, "token is for another user")
		return
	}
	now := time.Now()
	res := &wire.RefreshResult{}
	s.mu.Lock()
	s.setTokenLocked(claims)
	if s.expiresAtLocked() != 0 {
		res.Expires = true
		res.TTL = ttlSeconds(claims.ExpiresAt, now)
	}
	s.mu.Unlock()
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, Refresh: res})
	s.m.wheel.schedule(s, s.nextDue())
}

// granted reports whether the token grants channel.
func (s *Session) granted(channel string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rare == nil {
		return false
	}
	for _, g := range s.rare.grants {
		if g == channel {
			return true
		}
	}
	return false
}

// isSubscribed reports whether the client holds a subscription to
// channel.
func (s *Session) isSubscribed(channel string) bool {
	return s.m.cfg.Hub.Subscribed(s, channel)
}

func (s *Session) handleSubscribe(cmd *wire.Command) {
	ch := cmd.Subscribe.Channel
	if _, err := s.m.cfg.Hub.ChannelOptions(ch); err != nil {
		s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, Error: hub.WireError(err)})
		return
	}
	if since := cmd.Subscribe.Since; since != nil && since.Epoch == "" && since.Offset > 0 {
		s.replyError(cmd, wire.ErrBadRequest, "since needs an epoch")
		return
	}
	// Commands of one session are handled one at a time, so nothing else
	// adds a subscription between these checks and Subscribe.
	if s.isSubscribed(ch) {
		s.replyError(cmd, wire.ErrAlreadySubscribed, "already subscribed")
		return
	}
	if s.m.cfg.Hub.NumSubscriptions(s) >= s.m.cfg.MaxSubscriptions {
		s.replyError(cmd, wire.ErrLimitExceeded, "too many subscriptions")
		return
	}

	opts := hub.SubscribeOptions{Since: cmd.Subscribe.Since, Granted: s.granted(ch)}
	id, method := cmd.ID, cmd.Method
	ctx := s.hubCtx()
	// The hub calls onResult before any live push of the channel, possibly
	// under the channel lock: it only encodes and queues.
	err := s.m.cfg.Hub.Subscribe(ctx, s, ch, opts, func(res *wire.SubscribeResult) {
		s.sendReply(method, &wire.Reply{ID: id, Subscribe: res})
	})
	if err != nil {
		s.hubFailed(cmd, err)
	}
}

// hubFailed answers cmd with the protocol error for a hub failure.
func (s *Session) hubFailed(cmd *wire.Command, err error) {
	we := hub.WireError(err)
	if we.Code == wire.ErrInternal {
		s.m.cfg.Logger.Warn("session: hub call failed", "method", cmd.Method.String(), "client", s.info.Client, "err", err)
	}
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, Error: we})
}

func (s *Session) handleUnsubscribe(cmd *wire.Command) {
	ch := cmd.Unsubscribe.Channel
	if !s.isSubscribed(ch) {
		s.replyError(cmd, wire.ErrNotSubscribed, "not subscribed")
		return
	}
	ctx := s.hubCtx()
	err := s.m.cfg.Hub.Unsubscribe(ctx, s, ch)
	if err != nil && !errors.Is(err, hub.ErrNotSubscribed) {
		s.hubFailed(cmd, err)
		return
	}
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID})
}

// channelAccess resolves channel for a publish, presence or history
// command and checks that this client may read or write it. Channels
// whose namespace restricts subscribers (user-limited, grant-only) are
// open only to clients subscribed to them, since the subscribe already
// passed the namespace's checks.
func (s *Session) channelAccess(cmd *wire.Command, channel string) (hub.ChannelOptions, bool) {
	opts, err := s.m.cfg.Hub.ChannelOptions(channel)
	if err != nil {
		s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, Error: hub.WireError(err)})
		return opts, false
	}
	if s.user() == "" && !opts.AllowAnonymous && !s.granted(channel) {
		s.replyError(cmd, wire.ErrPermissionDenied, "permission denied")
		return opts, false
	}
	if (opts.UserLimited || opts.RequireGrant) && !s.isSubscribed(channel) {
		s.replyError(cmd, wire.ErrPermissionDenied, "permission denied: subscribe first")
		return opts, false
	}
	return opts, true
}

// decodedDataValid reports whether codec's DecodeCommand guarantees that
// the data of the commands it returns is one valid JSON value. The JSON
// codec validates the whole command before it returns one (its fast
// decoder scans every value, data included, and anything it does not
// accept goes to encoding/json, which rejects invalid input), so data
// that decoded is data that is valid. The binary codec carries data as
// raw bytes: its data must be checked.
func decodedDataValid(codec wire.Codec) bool {
	switch codec.(type) {
	case wire.JSONCodec, *wire.JSONCodec:
		return true
	}
	return false
}

// checkData validates publish and send data: present, within the size
// limit, and one JSON value (scanned here only when the codec has not
// already validated it).
func (s *Session) checkData(cmd *wire.Command, data []byte) bool {
	switch {
	case len(data) == 0:
		s.replyError(cmd, wire.ErrBadRequest, "missing data")
	case len(data) > s.m.cfg.MaxDataSize:
		s.replyError(cmd, wire.ErrLimitExceeded, "data too large")
	case !s.dataValid && !wire.ValidJSON(data):
		s.replyError(cmd, wire.ErrDataNotJSON, "data is not one JSON value")
	default:
		return true
	}
	return false
}

func (s *Session) handlePublish(cmd *wire.Command) {
	p := cmd.Publish
	opts, ok := s.channelAccess(cmd, p.Channel)
	if !ok {
		return
	}
	if !opts.AllowPublish {
		s.replyError(cmd, wire.ErrNotAvailable, "publishing is not allowed in this namespace")
		return
	}
	if !s.checkData(cmd, p.Data) {
		return
	}
	ctx := s.hubCtx()
	pos, err := s.m.cfg.Hub.PublishResolved(ctx, p.Channel, opts, p.Data, s.publisherInfo())
	if err != nil {
		s.hubFailed(cmd, err)
		return
	}
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, Publish: &wire.PublishResult{Offset: pos.Offset, Epoch: pos.Epoch}})
}

func (s *Session) presenceAccess(cmd *wire.Command, channel string) bool {
	opts, ok := s.channelAccess(cmd, channel)
	if !ok {
		return false
	}
	if !opts.Presence || !opts.AllowPresence {
		s.replyError(cmd, wire.ErrNotAvailable, "presence is not available in this namespace")
		return false
	}
	return true
}

func (s *Session) handlePresence(cmd *wire.Command) {
	ch := cmd.Presence.Channel
	if !s.presenceAccess(cmd, ch) {
		return
	}
	ctx := s.hubCtx()
	p, err := s.m.cfg.Hub.Presence(ctx, ch)
	if err != nil {
		s.hubFailed(cmd, err)
		return
	}
	if p == nil {
		p = map[string]*wire.ClientInfo{}
	}
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, Presence: &wire.PresenceResult{Presence: p}})
}

func (s *Session) handlePresenceStats(cmd *wire.Command) {
	ch := cmd.PresenceStats.Channel
	if !s.presenceAccess(cmd, ch) {
		return
	}
	ctx := s.hubCtx()
	st, err := s.m.cfg.Hub.PresenceStats(ctx, ch)
	if err != nil {
		s.hubFailed(cmd, err)
		return
	}
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, PresenceStats: &wire.PresenceStatsResult{
		NumClients: uint32(st.NumClients), NumUsers: uint32(st.NumUsers)}})
}

func (s *Session) handleHistory(cmd *wire.Command) {
	h := cmd.History
	opts, ok := s.channelAccess(cmd, h.Channel)
	if !ok {
		return
	}
	if !opts.Recoverable() || !opts.AllowHistory {
		s.replyError(cmd, wire.ErrNotAvailable, "history is not available in this namespace")
		return
	}
	limit := h.Limit
	if limit < 0 || limit > s.m.cfg.HistoryMaxLimit {
		limit = s.m.cfg.HistoryMaxLimit
	}
	ctx := s.hubCtx()
	res, err := s.m.cfg.Hub.History(ctx, h.Channel, hub.HistoryOptions{Since: h.Since, Limit: limit, Reverse: h.Reverse})
	if err != nil {
		s.hubFailed(cmd, err)
		return
	}
	if h.Since != nil && !historyContinues(h.Since, res, h.Reverse, limit) {
		s.replyError(cmd, wire.ErrUnrecoverable, "position is outside the retained history")
		return
	}
	pubs := res.Publications
	if pubs == nil {
		pubs = []*wire.Publication{}
	}
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, History: &wire.HistoryResult{
		Publications: pubs, Offset: res.Position.Offset, Epoch: res.Position.Epoch}})
}

// historyContinues reports whether a history read since a position joins
// that position without a gap: same epoch, and the oldest publication
// returned is the one right after it (or nothing was published since).
func historyContinues(since *wire.StreamPosition, res hub.HistoryResult, reverse bool, limit int) bool {
	if since.Epoch != res.Position.Epoch || since.Offset > res.Position.Offset {
		return false
	}
	if since.Offset == res.Position.Offset {
		return true
	}
	pubs := res.Publications
	if len(pubs) == 0 {
		// Publications after since exist but none came back: fine when
		// only the position was asked for, lost otherwise.
		return limit == 0
	}
	if reverse {
		// Newest first: a page shorter than the gap does not reach back to
		// since, so only the newest end can be checked.
		return pubs[0].Offset == res.Position.Offset
	}
	return pubs[0].Offset == since.Offset+1
}

func (s *Session) handleSend(cmd *wire.Command) {
	p := cmd.Send
	if !s.m.cfg.AllowSend {
		s.replyError(cmd, wire.ErrNotAvailable, "send is not enabled")
		return
	}
	if s.user() == "" {
		s.replyError(cmd, wire.ErrPermissionDenied, "anonymous clients cannot send")
		return
	}
	if p.User == "" {
		s.replyError(cmd, wire.ErrBadRequest, "missing user")
		return
	}
	if !s.checkData(cmd, p.Data) {
		return
	}
	ctx := s.hubCtx()
	if err := s.m.cfg.Hub.SendToUser(ctx, p.User, p.Data, s.publisherInfo()); err != nil {
		s.hubFailed(cmd, err)
		return
	}
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID})
}
