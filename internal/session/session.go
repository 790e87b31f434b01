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
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

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
	Publish(ctx context.Context, channel string, data []byte, info *wire.ClientInfo) (wire.StreamPosition, error)
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
	m     *Manager
	t     Transport
	codec wire.Codec
	id    string

	// info is set by connect before the session is registered with the
	// hub and never changed afterwards (refresh requires the same user);
	// nil before connect. It holds the user and the token's info claim.
	info *wire.ClientInfo

	lastActivity atomic.Int64 // unix nanoseconds of the last message handled

	// Fields are ordered to pack: an idle server holds one Session per
	// connection.
	closed atomic.Bool // no more sends: closing or closed
	mu     sync.Mutex
	// wheelGen is guarded by the Manager's wheel lock.
	wheelGen   uint32
	state      state
	registered bool // AddClient succeeded: HandleClose must remove the client
	// dataValid: the codec's DecodeCommand only succeeds when publish and
	// send data are one valid JSON value, so checkData need not scan it
	// again. Set by NewSession, never changed.
	dataValid   bool
	closeCode   uint16 // the first disconnect code
	badCommands uint16 // bounded by Config.MaxBadCommands + 1
	// index is the session's place in Manager.sessions, -1 once removed.
	// Guarded by the Manager's mu.
	index int32
	// Unix nanoseconds: the connect deadline while stateNew, the next ping
	// once connected; expiresAt 0 means the token never expires.
	deadline  int64
	expiresAt int64
	grants    []string
	// subs are the channels subscribed or subscribing: a short slice, as
	// most clients hold a few (MaxSubscriptions bounds it).
	subs        []string
	closeReason string
}

// user returns the token's subject ("" when anonymous or before connect).
func (s *Session) user() string {
	if s.info == nil {
		return ""
	}
	return s.info.User
}

// hasSubLocked reports whether channel is in s.subs; s.mu is held.
func (s *Session) hasSubLocked(channel string) bool {
	for _, c := range s.subs {
		if c == channel {
			return true
		}
	}
	return false
}

// removeSubLocked removes channel from s.subs; s.mu is held.
func (s *Session) removeSubLocked(channel string) {
	for i, c := range s.subs {
		if c == channel {
			last := len(s.subs) - 1
			s.subs[i] = s.subs[last]
			s.subs[last] = ""
			s.subs = s.subs[:last]
			if last == 0 {
				s.subs = nil
			}
			return
		}
	}
}

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

// newClientID returns a random 128-bit hex id.
func newClientID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ID returns the server-assigned client id.
func (s *Session) ID() string { return s.id }

// ClientID implements hub.Subscriber.
func (s *Session) ClientID() string { return s.id }

// UserID implements hub.Subscriber: the token's subject, "" when
// anonymous.
func (s *Session) UserID() string { return s.user() }

// ConnInfo implements hub.Subscriber: the token's info claim.
func (s *Session) ConnInfo() []byte {
	if s.info == nil {
		return nil
	}
	return s.info.ConnInfo
}

// ClientInfo implements hub.ClientInfoSource: the hub shares the
// session's description (nil before connect).
func (s *Session) ClientInfo() *wire.ClientInfo { return s.info }

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
	s.mu.Lock()
	s.removeSubLocked(channel)
	s.mu.Unlock()
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
	s.closeReason = d.Reason
	s.mu.Unlock()
	// Refuse further replies and deliveries, then queue the push: apart
	// from a delivery already on its way, it is the last message the
	// client gets before the close.
	s.closed.Store(true)
	dp := d
	if err := s.t.Send(s.codec.AppendPush(nil, &wire.Push{Type: wire.PushDisconnect, Disconnect: &dp})); err == nil {
		s.m.cfg.Metrics.Sent(SentPush)
	}
	s.m.requestClose(s)
}

// closeTransport closes the connection with the recorded disconnect.
func (s *Session) closeTransport() {
	s.mu.Lock()
	code, reason := s.closeCode, s.closeReason
	s.mu.Unlock()
	s.t.Close(code, reason)
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
	if err := s.t.Send(s.codec.AppendPush(nil, p)); err != nil {
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
	if err := s.t.Send(s.codec.AppendReply(nil, r)); err != nil {
		s.sendFailed(err)
		return
	}
	s.m.cfg.Metrics.Sent(SentReply)
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
	s.subs = nil
	s.mu.Unlock()
	s.closed.Store(true)

	s.m.remove(s)
	if wasRegistered {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.m.ctx), s.m.cfg.HubTimeout)
		s.m.cfg.Hub.RemoveClient(ctx, s)
		cancel()
	}
	s.m.cfg.Metrics.SessionClosed(s.t.Info().Name, code)
}

// HandleMessage handles one message received from the client: one encoded
// command in the session's codec. data is not retained. Calls for one
// session must not overlap.
func (s *Session) HandleMessage(data []byte) {
	s.lastActivity.Store(time.Now().UnixNano())
	if s.closed.Load() {
		return
	}
	cmd, err := s.codec.DecodeCommand(data)
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

func (s *Session) hubCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.m.ctx, s.m.cfg.HubTimeout)
}

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
	s.info = &wire.ClientInfo{Client: s.id, User: claims.Subject, ConnInfo: claims.Info}
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
			s.m.cfg.Logger.Warn("session: register client", "client", s.id, "err", err)
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
		Client:  s.id,
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
	s.state = stateConnected
	s.expiresAt = unixNano(claims.ExpiresAt)
	s.grants = claims.Channels
	s.deadline = now.Add(half + rand.N(half+1)).UnixNano()
	if s.expiresAt != 0 {
		res.Expires = true
		res.TTL = ttlSeconds(claims.ExpiresAt, now)
	}
	s.mu.Unlock()
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, Connect: res})
	s.m.wheel.schedule(s, s.nextDue())
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
	if s.expiresAt != 0 && s.expiresAt < due {
		due = s.expiresAt
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
		case s.expiresAt != 0 && now.UnixNano() >= s.expiresAt:
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
	if err := s.t.Send(s.m.encodedPing(s.codec)); err != nil {
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
	s.expiresAt = unixNano(claims.ExpiresAt)
	s.grants = claims.Channels
	if s.expiresAt != 0 {
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
	for _, g := range s.grants {
		if g == channel {
			return true
		}
	}
	return false
}

func (s *Session) isSubscribed(channel string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hasSubLocked(channel)
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
	s.mu.Lock()
	if s.hasSubLocked(ch) {
		s.mu.Unlock()
		s.replyError(cmd, wire.ErrAlreadySubscribed, "already subscribed")
		return
	}
	if len(s.subs) >= s.m.cfg.MaxSubscriptions {
		s.mu.Unlock()
		s.replyError(cmd, wire.ErrLimitExceeded, "too many subscriptions")
		return
	}
	s.subs = append(s.subs, ch)
	s.mu.Unlock()

	opts := hub.SubscribeOptions{Since: cmd.Subscribe.Since, Granted: s.granted(ch)}
	id, method := cmd.ID, cmd.Method
	ctx, cancel := s.hubCtx()
	defer cancel()
	// The hub calls onResult before any live push of the channel, possibly
	// under the channel lock: it only encodes and queues.
	err := s.m.cfg.Hub.Subscribe(ctx, s, ch, opts, func(res *wire.SubscribeResult) {
		s.sendReply(method, &wire.Reply{ID: id, Subscribe: res})
	})
	if err != nil {
		s.mu.Lock()
		s.removeSubLocked(ch)
		s.mu.Unlock()
		s.hubFailed(cmd, err)
	}
}

// hubFailed answers cmd with the protocol error for a hub failure.
func (s *Session) hubFailed(cmd *wire.Command, err error) {
	we := hub.WireError(err)
	if we.Code == wire.ErrInternal {
		s.m.cfg.Logger.Warn("session: hub call failed", "method", cmd.Method.String(), "client", s.id, "err", err)
	}
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID, Error: we})
}

func (s *Session) handleUnsubscribe(cmd *wire.Command) {
	ch := cmd.Unsubscribe.Channel
	if !s.isSubscribed(ch) {
		s.replyError(cmd, wire.ErrNotSubscribed, "not subscribed")
		return
	}
	ctx, cancel := s.hubCtx()
	defer cancel()
	err := s.m.cfg.Hub.Unsubscribe(ctx, s, ch)
	s.mu.Lock()
	s.removeSubLocked(ch)
	s.mu.Unlock()
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
	ctx, cancel := s.hubCtx()
	defer cancel()
	pos, err := s.m.cfg.Hub.Publish(ctx, p.Channel, p.Data, s.info)
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
	ctx, cancel := s.hubCtx()
	defer cancel()
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
	ctx, cancel := s.hubCtx()
	defer cancel()
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
	ctx, cancel := s.hubCtx()
	defer cancel()
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
	ctx, cancel := s.hubCtx()
	defer cancel()
	if err := s.m.cfg.Hub.SendToUser(ctx, p.User, p.Data, s.info); err != nil {
		s.hubFailed(cmd, err)
		return
	}
	s.sendReply(cmd.Method, &wire.Reply{ID: cmd.ID})
}
