package natsbroker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/brokercodec"
	"github.com/heraldhq/herald/internal/hub"
)

// Presence entries live in the KV bucket under "<channel token>.<client
// token>". The value is the entry's TTL in milliseconds (8 bytes, big
// endian) followed by the encoded ClientInfo; an entry is live until its
// storage time plus its TTL. Reads delete expired entries; the bucket's
// MaxAge removes entries nobody reads.

func presenceKey(channel, clientID string) string { return token(channel) + "." + token(clientID) }

func (b *Broker) bucket() jetstream.KeyValue { return *b.kv.Load() }

// AddPresence implements hub.PresenceManager. ttl 0 means
// DefaultPresenceTTL.
func (b *Broker) AddPresence(ctx context.Context, channel, clientID string, info *hub.ClientInfo, ttl time.Duration) error {
	if err := b.check(); err != nil {
		return err
	}
	if ttl <= 0 {
		ttl = DefaultPresenceTTL
	}
	if info == nil {
		info = &hub.ClientInfo{Client: clientID}
	}
	val := binary.BigEndian.AppendUint64(nil, uint64(ttl/time.Millisecond))
	val = brokercodec.AppendClientInfo(val, info)
	octx, cancel := context.WithTimeout(ctx, b.opts.OpTimeout)
	defer cancel()
	_, err := b.bucket().Put(octx, presenceKey(channel, clientID), val)
	return b.wrapErr(ctx, "add presence to", channel, err)
}

// RemovePresence implements hub.PresenceManager.
func (b *Broker) RemovePresence(ctx context.Context, channel, clientID string) error {
	if err := b.check(); err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, b.opts.OpTimeout)
	defer cancel()
	err := b.bucket().Delete(octx, presenceKey(channel, clientID))
	return b.wrapErr(ctx, "remove presence from", channel, err)
}

// Presence implements hub.PresenceManager.
func (b *Broker) Presence(ctx context.Context, channel string) (map[string]*hub.ClientInfo, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, b.opts.OpTimeout)
	defer cancel()
	kv := b.bucket()
	w, err := kv.Watch(octx, token(channel)+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, b.wrapErr(ctx, "presence of", channel, err)
	}
	defer func() { _ = w.Stop() }()
	now := time.Now()
	out := make(map[string]*hub.ClientInfo)
	var expired []jetstream.KeyValueEntry
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-octx.Done():
			return nil, b.wrapErr(ctx, "presence of", channel, octx.Err())
		}
		if e == nil {
			break // the initial values are complete
		}
		v := e.Value()
		if len(v) < 8 {
			return nil, fmt.Errorf("natsbroker: presence of %q: corrupt entry %q", channel, e.Key())
		}
		ttl := time.Duration(binary.BigEndian.Uint64(v[:8])) * time.Millisecond
		if !now.Before(e.Created().Add(ttl)) {
			expired = append(expired, e)
			continue
		}
		info, err := brokercodec.DecodeClientInfo(v[8:])
		if err != nil {
			return nil, fmt.Errorf("natsbroker: presence of %q, entry %q: %w", channel, e.Key(), err)
		}
		id := info.Client
		if _, key, ok := cutToken(e.Key()); ok {
			id = key
		}
		out[id] = info
	}
	for _, e := range expired {
		// Only if not refreshed meanwhile; a failure leaves it to MaxAge.
		err := kv.Delete(octx, e.Key(), jetstream.LastRevision(e.Revision()))
		if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			b.opts.Logger.Debug("nats: deleting expired presence failed", "key", e.Key(), "error", err)
		}
	}
	return out, nil
}

// cutToken splits a presence key into channel and client id.
func cutToken(key string) (channel, clientID string, ok bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '.' {
			ch, ok1 := channelOfToken(key[:i])
			id, ok2 := channelOfToken(key[i+1:])
			return ch, id, ok1 && ok2
		}
	}
	return "", "", false
}

// PresenceStats implements hub.PresenceManager.
func (b *Broker) PresenceStats(ctx context.Context, channel string) (hub.PresenceStats, error) {
	p, err := b.Presence(ctx, channel)
	if err != nil {
		return hub.PresenceStats{}, err
	}
	users := make(map[string]struct{})
	for _, info := range p {
		if info.User != "" {
			users[info.User] = struct{}{}
		}
	}
	return hub.PresenceStats{NumClients: len(p), NumUsers: len(users)}, nil
}
