package server

import (
	"context"

	"github.com/heraldhq/herald/internal/httpapi"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// apiBackend adapts the hub to httpapi.Backend. Hub errors become the
// protocol errors clients see (hub.WireError) except broker outages, which
// stay wrapped so the API answers 503.
type apiBackend struct {
	h *hub.Hub
}

var _ httpapi.Backend = apiBackend{}

// apiError converts err for the API: refusals (unknown namespace,
// feature off, ...) as *wire.Error, unknown failures unchanged so they are
// logged as internal errors.
func apiError(err error) error {
	if err == nil {
		return nil
	}
	we := hub.WireError(err)
	switch we.Code {
	case wire.ErrInternal, wire.ErrBrokerUnavailable:
		return err
	}
	return we
}

func (b apiBackend) Publish(ctx context.Context, channel string, data []byte) (wire.StreamPosition, error) {
	pos, err := b.h.Publish(ctx, channel, data, nil)
	return pos, apiError(err)
}

func (b apiBackend) Broadcast(ctx context.Context, channels []string, data []byte) ([]httpapi.BroadcastOutcome, error) {
	res, err := b.h.Broadcast(ctx, channels, data, nil)
	if err != nil {
		return nil, apiError(err)
	}
	out := make([]httpapi.BroadcastOutcome, len(res))
	for i, r := range res {
		out[i] = httpapi.BroadcastOutcome{Position: r.Position, Err: apiError(r.Err)}
	}
	return out, nil
}

func (b apiBackend) Send(ctx context.Context, user string, data []byte) error {
	return apiError(b.h.SendToUser(ctx, user, data, nil))
}

func (b apiBackend) Presence(ctx context.Context, channel string) (map[string]*wire.ClientInfo, error) {
	p, err := b.h.Presence(ctx, channel)
	return p, apiError(err)
}

func (b apiBackend) PresenceStats(ctx context.Context, channel string) (hub.PresenceStats, error) {
	s, err := b.h.PresenceStats(ctx, channel)
	return s, apiError(err)
}

func (b apiBackend) History(ctx context.Context, channel string, opts hub.HistoryOptions) (hub.HistoryResult, error) {
	r, err := b.h.History(ctx, channel, opts)
	return r, apiError(err)
}

func (b apiBackend) Unsubscribe(ctx context.Context, user, channel string) error {
	return apiError(b.h.ServerUnsubscribe(ctx, user, "", channel))
}

func (b apiBackend) Disconnect(ctx context.Context, user string, d wire.Disconnect) error {
	// The hub carries the code alone: clients derive reconnection from
	// it, and httpapi refuses a reconnect flag that contradicts it.
	return apiError(b.h.Disconnect(ctx, user, "", d.Code, d.Reason))
}

func (b apiBackend) Channels(context.Context) (map[string]httpapi.ChannelInfo, error) {
	chs := b.h.ClusterChannels()
	out := make(map[string]httpapi.ChannelInfo, len(chs))
	for name, n := range chs {
		out[name] = httpapi.ChannelInfo{NumClients: n}
	}
	return out, nil
}

func (b apiBackend) Info(context.Context) ([]httpapi.NodeInfo, error) {
	nodes := b.h.Nodes()
	out := make([]httpapi.NodeInfo, len(nodes))
	for i, n := range nodes {
		name := n.Name
		if name == "" {
			name = n.ID
		}
		out[i] = httpapi.NodeInfo{
			Name: name, Version: n.Version, UptimeSeconds: n.UptimeSeconds,
			NumClients: n.Clients, NumUsers: n.Users, NumChannels: n.Channels, NumSubscriptions: n.Subscriptions,
		}
	}
	return out, nil
}
