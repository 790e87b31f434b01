package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// Publish publishes data (one JSON value, validated by the caller) to
// channel with the namespace's history options and returns the position
// the broker assigned (zero when the namespace keeps no history). info
// identifies the publishing client, nil for the server API. Client
// permission to publish (ChannelOptions.AllowPublish) is the caller's to
// check.
func (h *Hub) Publish(ctx context.Context, channel string, data []byte, info *ClientInfo) (StreamPosition, error) {
	opts, err := h.resolve(channel)
	if err != nil {
		return StreamPosition{}, err
	}
	return h.publish(ctx, channel, opts, data, info)
}

// PublishResolved is Publish for a caller that has already resolved
// channel with ChannelOptions (a client's publish checks its permissions
// first): opts must be what ChannelOptions returned for channel, which
// spares resolving the name a second time.
func (h *Hub) PublishResolved(ctx context.Context, channel string, opts ChannelOptions, data []byte, info *ClientInfo) (StreamPosition, error) {
	return h.publish(ctx, channel, opts, data, info)
}

func (h *Hub) publish(ctx context.Context, channel string, opts ChannelOptions, data []byte, info *ClientInfo) (StreamPosition, error) {
	if !h.ready.Load() {
		return StreamPosition{}, ErrNotRunning
	}
	pub := &Publication{Data: data, Info: info, Time: time.Now().UnixMilli()}
	pos, err := h.cfg.Broker.Publish(ctx, channel, pub, PublishOptions{
		HistorySize:    opts.HistorySize,
		HistoryTTL:     opts.HistoryTTL,
		HistoryMetaTTL: opts.HistoryMetaTTL,
	})
	if err != nil {
		h.counters.brokerErrors.Add(1)
		return StreamPosition{}, fmt.Errorf("hub: publish to %q: %w", channel, err)
	}
	h.counters.published.Add(1)
	return pos, nil
}

// BroadcastResult is the outcome of publishing to one channel of a
// Broadcast.
type BroadcastResult struct {
	Channel  string
	Position StreamPosition
	Err      error
}

// Broadcast publishes data to every channel. It validates all channel
// names and namespaces first and publishes nothing if one is invalid;
// afterwards each channel is published independently and its outcome
// reported in the result at the same index.
func (h *Hub) Broadcast(ctx context.Context, channels []string, data []byte, info *ClientInfo) ([]BroadcastResult, error) {
	opts := make([]ChannelOptions, len(channels))
	for i, c := range channels {
		o, err := h.resolve(c)
		if err != nil {
			return nil, fmt.Errorf("hub: broadcast to %q: %w", c, err)
		}
		opts[i] = o
	}
	out := make([]BroadcastResult, len(channels))
	for i, c := range channels {
		pos, err := h.publish(ctx, c, opts[i], data, info)
		out[i] = BroadcastResult{Channel: c, Position: pos, Err: err}
	}
	return out, nil
}

// History reads channel's history (ErrNotAvailable when its namespace keeps
// none). A negative or too large opts.Limit is capped at the namespace's
// HistorySize; opts.MetaTTL is taken from the namespace.
func (h *Hub) History(ctx context.Context, channel string, opts HistoryOptions) (HistoryResult, error) {
	ns, err := h.resolve(channel)
	if err != nil {
		return HistoryResult{}, err
	}
	if !ns.Recoverable() {
		return HistoryResult{}, fmt.Errorf("hub: history of %q: %w", channel, ErrNotAvailable)
	}
	if opts.Limit < 0 || opts.Limit > ns.HistorySize {
		opts.Limit = ns.HistorySize
	}
	opts.MetaTTL = ns.HistoryMetaTTL
	res, err := h.cfg.Broker.History(ctx, channel, opts)
	if err != nil {
		h.counters.brokerErrors.Add(1)
		return HistoryResult{}, fmt.Errorf("hub: history of %q: %w", channel, err)
	}
	return res, nil
}

// RemoveHistory deletes channel's history; its epoch and offset stay, so
// subscribers keep their continuity but cannot recover what was removed.
func (h *Hub) RemoveHistory(ctx context.Context, channel string) error {
	if _, err := h.resolve(channel); err != nil {
		return err
	}
	if err := h.cfg.Broker.RemoveHistory(ctx, channel); err != nil {
		h.counters.brokerErrors.Add(1)
		return fmt.Errorf("hub: remove history of %q: %w", channel, err)
	}
	return nil
}

// Presence returns the clients subscribed to channel across the cluster
// (ErrNotAvailable when the namespace tracks no presence).
func (h *Hub) Presence(ctx context.Context, channel string) (map[string]*ClientInfo, error) {
	if err := h.checkPresence(channel); err != nil {
		return nil, err
	}
	p, err := h.cfg.Presence.Presence(ctx, channel)
	if err != nil {
		h.counters.presenceErrors.Add(1)
		return nil, fmt.Errorf("hub: presence of %q: %w", channel, err)
	}
	return p, nil
}

// PresenceStats counts channel's present clients and users across the
// cluster.
func (h *Hub) PresenceStats(ctx context.Context, channel string) (PresenceStats, error) {
	if err := h.checkPresence(channel); err != nil {
		return PresenceStats{}, err
	}
	st, err := h.cfg.Presence.PresenceStats(ctx, channel)
	if err != nil {
		h.counters.presenceErrors.Add(1)
		return PresenceStats{}, fmt.Errorf("hub: presence stats of %q: %w", channel, err)
	}
	return st, nil
}

func (h *Hub) checkPresence(channel string) error {
	ns, err := h.resolve(channel)
	if err != nil {
		return err
	}
	if !ns.Presence {
		return fmt.Errorf("hub: presence of %q: %w", channel, ErrNotAvailable)
	}
	return nil
}

// SendToUser sends a message push with data (one JSON value, validated by
// the caller) to every connection of user on every node. info identifies
// the sender, nil for the server API. It fails with ErrDataTooLarge when
// the encoded message exceeds MaxControlSize.
func (h *Hub) SendToUser(ctx context.Context, user string, data []byte, info *ClientInfo) error {
	if user == "" {
		return errors.New("hub: send to user: empty user id")
	}
	return h.control(ctx, &controlMessage{Type: ctlMessage, User: user, Data: data, Info: info})
}

// Disconnect asks the connections of user (only client clientID when it is
// set; clientID alone selects one connection of any user) on every node to
// close with code and reason. The sessions close and call RemoveClient.
func (h *Hub) Disconnect(ctx context.Context, user, clientID string, code uint16, reason string) error {
	if user == "" && clientID == "" {
		return errors.New("hub: disconnect: neither user nor client given")
	}
	return h.control(ctx, &controlMessage{Type: ctlDisconnect, User: user, Client: clientID, Code: uint32(code), Reason: reason})
}

// ServerUnsubscribe removes the subscriptions of user (only of client
// clientID when set) to channel on every node; the clients get an
// unsubscribe push with wire.UnsubscribeServer.
func (h *Hub) ServerUnsubscribe(ctx context.Context, user, clientID, channel string) error {
	if user == "" && clientID == "" {
		return errors.New("hub: unsubscribe: neither user nor client given")
	}
	if err := ValidateChannel(channel); err != nil {
		return err
	}
	return h.control(ctx, &controlMessage{
		Type: ctlUnsubscribe, User: user, Client: clientID, Channel: channel,
		Code: wire.UnsubscribeServer, Reason: "unsubscribed by server",
	})
}

func (h *Hub) control(ctx context.Context, m *controlMessage) error {
	if !h.ready.Load() {
		return ErrNotRunning
	}
	m.From = h.nodeID
	b, err := encodeControl(m)
	if err != nil {
		return fmt.Errorf("hub: %s: %w", m.Type, err)
	}
	if err := h.cfg.Broker.PublishControl(ctx, b); err != nil {
		h.counters.brokerErrors.Add(1)
		return fmt.Errorf("hub: %s: %w", m.Type, err)
	}
	return nil
}
