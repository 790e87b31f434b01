package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/wire"
)

// Request and response bodies. Field names are the API's JSON names.

type publishRequest struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

type positionJSON struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

func (a *API) publish(ctx context.Context, req *publishRequest) (any, error) {
	pos, err := a.publishPosition(ctx, req)
	if err != nil {
		return nil, err
	}
	return pos, nil
}

func (a *API) publishPosition(ctx context.Context, req *publishRequest) (positionJSON, error) {
	if err := requireChannel(req.Channel); err != nil {
		return positionJSON{}, err
	}
	if err := requireData(req.Data); err != nil {
		return positionJSON{}, err
	}
	pos, err := a.b.Publish(ctx, req.Channel, req.Data)
	if err != nil {
		return positionJSON{}, err
	}
	return positionJSON{Offset: pos.Offset, Epoch: pos.Epoch}, nil
}

// publishEndpoint is POST /api/publish: endpoint(a.publish), with the
// usual body scanned without reflection.
func (a *API) publishEndpoint(ctx context.Context, body []byte) (any, error) {
	var req publishRequest
	if !scanPublishRequest(body, &req) {
		if err := decode(body, &req); err != nil {
			return nil, err
		}
	}
	pos, err := a.publishPosition(ctx, &req)
	if err != nil {
		return nil, err
	}
	return encodedJSON(appendPosition(make([]byte, 0, 48+len(pos.Epoch)), pos)), nil
}

// appendPosition appends pos as encoding/json encodes it.
func appendPosition(dst []byte, pos positionJSON) []byte {
	dst = append(dst, `{"offset":`...)
	dst = strconv.AppendUint(dst, pos.Offset, 10)
	dst = append(dst, `,"epoch":`...)
	dst = appendJSONString(dst, pos.Epoch)
	return append(dst, '}')
}

type broadcastRequest struct {
	Channels []string        `json:"channels"`
	Data     json.RawMessage `json:"data"`
}

type broadcastResult struct {
	Channel string        `json:"channel"`
	Result  *positionJSON `json:"result,omitempty"`
	Error   *wire.Error   `json:"error,omitempty"`
}

// broadcast publishes to several channels: an invalid channel fails the
// whole request before anything is published; afterwards each channel
// reports its own outcome and one failure does not undo the others.
func (a *API) broadcast(ctx context.Context, req *broadcastRequest) (any, error) {
	if len(req.Channels) == 0 {
		return nil, badRequest("channels is required")
	}
	if len(req.Channels) > a.opts.MaxBroadcastChannels {
		return nil, badRequest("%d channels, more than the limit of %d", len(req.Channels), a.opts.MaxBroadcastChannels)
	}
	for _, ch := range req.Channels {
		if err := requireChannel(ch); err != nil {
			return nil, err
		}
	}
	if err := requireData(req.Data); err != nil {
		return nil, err
	}
	outcomes, err := a.b.Broadcast(ctx, req.Channels, req.Data)
	if err != nil {
		return nil, err
	}
	if len(outcomes) != len(req.Channels) {
		return nil, fmt.Errorf("broadcast: %d outcomes for %d channels", len(outcomes), len(req.Channels))
	}
	out := make([]broadcastResult, len(req.Channels))
	for i, ch := range req.Channels {
		out[i].Channel = ch
		if o := outcomes[i]; o.Err != nil {
			out[i].Error = a.wireError("broadcast", o.Err)
		} else {
			out[i].Result = &positionJSON{Offset: o.Position.Offset, Epoch: o.Position.Epoch}
		}
	}
	return struct {
		Responses []broadcastResult `json:"responses"`
	}{out}, nil
}

// wireError reduces err to the code and message a per-item result of
// method (a broadcast's channel, a batch's command) shows.
func (a *API) wireError(method string, err error) *wire.Error {
	var we *wire.Error
	switch {
	case errors.Is(err, hub.ErrBrokerUnavailable):
		return &wire.Error{Code: wire.ErrBrokerUnavailable, Message: "broker unavailable, retry later", Temporary: true}
	case errors.As(err, &we):
		return &wire.Error{Code: we.Code, Message: we.Message, Temporary: we.Temporary}
	case errors.Is(err, context.DeadlineExceeded):
		return &wire.Error{Code: wire.ErrInternal, Message: "timed out, retry later", Temporary: true}
	}
	a.opts.Logger.Error("server API item failed", "method", method, "error", err)
	return &wire.Error{Code: wire.ErrInternal, Message: "internal error", Temporary: true}
}

type sendRequest struct {
	User string          `json:"user"`
	Data json.RawMessage `json:"data"`
}

type empty struct{}

func (a *API) send(ctx context.Context, req *sendRequest) (any, error) {
	if req.User == "" {
		return nil, badRequest("user is required")
	}
	if err := requireData(req.Data); err != nil {
		return nil, err
	}
	if err := a.b.Send(ctx, req.User, req.Data); err != nil {
		return nil, err
	}
	return empty{}, nil
}

type channelRequest struct {
	Channel string `json:"channel"`
}

// clientInfoJSON is wire.ClientInfo with its raw JSON fields kept raw.
type clientInfoJSON struct {
	Client   string          `json:"client"`
	User     string          `json:"user,omitempty"`
	ConnInfo json.RawMessage `json:"conn_info,omitempty"`
	ChanInfo json.RawMessage `json:"chan_info,omitempty"`
}

func clientInfo(ci *wire.ClientInfo) *clientInfoJSON {
	if ci == nil {
		return nil
	}
	return &clientInfoJSON{Client: ci.Client, User: ci.User, ConnInfo: ci.ConnInfo, ChanInfo: ci.ChanInfo}
}

func (a *API) presence(ctx context.Context, req *channelRequest) (any, error) {
	if err := requireChannel(req.Channel); err != nil {
		return nil, err
	}
	p, err := a.b.Presence(ctx, req.Channel)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*clientInfoJSON, len(p))
	for id, ci := range p {
		out[id] = clientInfo(ci)
	}
	return struct {
		Presence map[string]*clientInfoJSON `json:"presence"`
	}{out}, nil
}

func (a *API) presenceStats(ctx context.Context, req *channelRequest) (any, error) {
	if err := requireChannel(req.Channel); err != nil {
		return nil, err
	}
	s, err := a.b.PresenceStats(ctx, req.Channel)
	if err != nil {
		return nil, err
	}
	return struct {
		NumClients int `json:"num_clients"`
		NumUsers   int `json:"num_users"`
	}{s.NumClients, s.NumUsers}, nil
}

type historyRequest struct {
	Channel string               `json:"channel"`
	Limit   *int                 `json:"limit"`
	Since   *wire.StreamPosition `json:"since"`
	Reverse bool                 `json:"reverse"`
}

type publicationJSON struct {
	Offset uint64          `json:"offset,omitempty"`
	Data   json.RawMessage `json:"data"`
	Info   *clientInfoJSON `json:"info,omitempty"`
	Time   int64           `json:"time,omitempty"`
}

// history reads a channel's history. An absent limit returns up to
// MaxHistoryLimit publications; 0 returns only the position; larger or
// negative limits are capped at MaxHistoryLimit.
func (a *API) history(ctx context.Context, req *historyRequest) (any, error) {
	if err := requireChannel(req.Channel); err != nil {
		return nil, err
	}
	limit := a.opts.MaxHistoryLimit
	if req.Limit != nil && *req.Limit >= 0 && *req.Limit < limit {
		limit = *req.Limit
	}
	res, err := a.b.History(ctx, req.Channel, hub.HistoryOptions{Since: req.Since, Limit: limit, Reverse: req.Reverse})
	if err != nil {
		return nil, err
	}
	pubs := make([]publicationJSON, len(res.Publications))
	for i, p := range res.Publications {
		pubs[i] = publicationJSON{Offset: p.Offset, Data: p.Data, Info: clientInfo(p.Info), Time: p.Time}
	}
	a.opts.Metrics.ObserveHistoryRead(len(pubs))
	return struct {
		Publications []publicationJSON `json:"publications"`
		Offset       uint64            `json:"offset"`
		Epoch        string            `json:"epoch"`
	}{pubs, res.Position.Offset, res.Position.Epoch}, nil
}

type unsubscribeRequest struct {
	User    string `json:"user"`
	Channel string `json:"channel"`
}

func (a *API) unsubscribe(ctx context.Context, req *unsubscribeRequest) (any, error) {
	if req.User == "" {
		return nil, badRequest("user is required")
	}
	if err := requireChannel(req.Channel); err != nil {
		return nil, err
	}
	if err := a.b.Unsubscribe(ctx, req.User, req.Channel); err != nil {
		return nil, err
	}
	return empty{}, nil
}

type disconnectRequest struct {
	User      string  `json:"user"`
	Code      *uint16 `json:"code"`
	Reason    string  `json:"reason"`
	Reconnect *bool   `json:"reconnect"`
}

// disconnect closes every connection of a user. Without a code, the code
// is 3003 (reconnect allowed) or, with "reconnect": false, 3503. A code
// decides reconnection by its range; a reconnect flag contradicting it is
// refused.
func (a *API) disconnect(ctx context.Context, req *disconnectRequest) (any, error) {
	if req.User == "" {
		return nil, badRequest("user is required")
	}
	if len(req.Reason) > 123 {
		// A WebSocket close frame carries at most 123 bytes of reason.
		return nil, badRequest("reason longer than 123 bytes")
	}
	d := wire.Disconnect{Code: wire.DisconnectForceReconnect, Reason: req.Reason, Reconnect: true}
	switch {
	case req.Code != nil:
		if *req.Code < 3000 || *req.Code > 4999 {
			return nil, badRequest("code %d outside 3000..4999", *req.Code)
		}
		d.Code = *req.Code
		d.Reconnect = wire.DisconnectReconnects(d.Code)
		if req.Reconnect != nil && *req.Reconnect != d.Reconnect {
			// Clients decide from the code alone (docs/protocol.md).
			return nil, badRequest("reconnect %v contradicts code %d (3000-3499 reconnect, 3500-4999 do not)",
				*req.Reconnect, d.Code)
		}
	case req.Reconnect != nil && !*req.Reconnect:
		d.Code = wire.DisconnectForceNoReconnect
		d.Reconnect = false
	}
	if d.Reason == "" {
		d.Reason = "disconnected by the server API"
	}
	if err := a.b.Disconnect(ctx, req.User, d); err != nil {
		return nil, err
	}
	return empty{}, nil
}

func (a *API) channels(ctx context.Context, _ *noParams) (any, error) {
	chs, err := a.b.Channels(ctx)
	if err != nil {
		return nil, err
	}
	if chs == nil {
		chs = map[string]ChannelInfo{}
	}
	return struct {
		Channels map[string]ChannelInfo `json:"channels"`
	}{chs}, nil
}

func (a *API) info(ctx context.Context, _ *noParams) (any, error) {
	nodes, err := a.b.Info(ctx)
	if err != nil {
		return nil, err
	}
	if nodes == nil {
		nodes = []NodeInfo{}
	}
	return struct {
		Nodes []NodeInfo `json:"nodes"`
	}{nodes}, nil
}

// noParams is the request of methods without parameters: an empty body
// or an empty JSON object.
type noParams struct{}

// endpoint adapts a method to a request body: decode it into the method's
// request type (refusing unknown fields), then run. Methods without
// parameters also accept an empty body.
func endpoint[R any](run func(context.Context, *R) (any, error)) func(context.Context, []byte) (any, error) {
	return func(ctx context.Context, body []byte) (any, error) {
		var req R
		if _, none := any(&req).(*noParams); !none || len(body) > 0 {
			if err := decode(body, &req); err != nil {
				return nil, err
			}
		}
		return run(ctx, &req)
	}
}
