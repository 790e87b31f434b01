package redisbroker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/brokercodec"
	"github.com/heraldhq/herald/internal/hub"
)

// shard is one Redis deployment (a server, a Sentinel-managed master or a
// cluster) with its command client and its one pub/sub connection.
type shard struct {
	b      *Broker
	index  int
	addr   string
	client redis.UniversalClient
	ps     *redis.PubSub

	// sharded selects SSUBSCRIBE/SPUBLISH; set by detect before the
	// reader starts and read-only afterwards.
	sharded    bool
	publishCmd string

	// subMu serializes subscription changes so that each one is followed
	// by its own barrier ping.
	subMu sync.Mutex

	mu      sync.Mutex
	waiters map[string]chan struct{} // ping token -> closed when the pong arrives
	tokens  uint64
	// syncing maps a pub/sub channel being subscribed in cluster mode to
	// the token of its in-band barrier; messages before it are dropped.
	syncing map[string]string
}

// reconnectToken is the payload of the ping that marks the end of a
// resubscription after a reconnect.
const reconnectToken = "herald-reconnect"

func (b *Broker) newShard(index int, addr string, c redis.UniversalClient) *shard {
	return &shard{b: b, index: index, addr: addr, client: c, waiters: make(map[string]chan struct{}), syncing: make(map[string]string)}
}

// detect checks that the shard answers and chooses its pub/sub commands.
func (s *shard) detect(ctx context.Context) error {
	octx, cancel := s.b.opContext(ctx)
	defer cancel()
	mode := s.b.opts.PubSub
	if s.b.opts.Cluster {
		mode = PubSubClassic
	}
	if err := s.client.Ping(octx).Err(); err != nil {
		return wrapErr(ctx, "connect to shard", s.addr, err)
	}
	if mode == PubSubAuto {
		// COMMAND INFO answers nil for commands the server does not know.
		info, err := s.client.Do(octx, "COMMAND", "INFO", "SPUBLISH").Slice()
		if err != nil {
			return wrapErr(ctx, "detect pub/sub mode of shard", s.addr, err)
		}
		mode = PubSubClassic
		if len(info) == 1 && info[0] != nil {
			mode = PubSubSharded
		}
	}
	s.sharded = mode == PubSubSharded
	if s.sharded {
		s.publishCmd = "SPUBLISH"
		s.ps = s.client.SSubscribe(s.b.ctx)
	} else {
		s.publishCmd = "PUBLISH"
		s.ps = s.client.Subscribe(s.b.ctx)
	}
	return nil
}

// subscribe subscribes the pub/sub channel name, which carries channel's
// events ("" for the control channel).
func (s *shard) subscribe(ctx context.Context, name, channel string) error {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	octx, cancel := s.b.opContext(ctx)
	defer cancel()
	var token string
	if s.b.opts.Cluster && channel != "" {
		// Drop the channel's messages from now until the barrier.
		token = s.startSync(name)
		defer s.endSync(name, token)
	}
	var err error
	if s.sharded {
		err = s.ps.SSubscribe(octx, name)
	} else {
		err = s.ps.Subscribe(octx, name)
	}
	if err != nil {
		return wrapErr(ctx, "subscribe", name, err)
	}
	if err := s.barrier(ctx, octx, name); err != nil {
		return err
	}
	if token != "" {
		return s.inBandBarrier(ctx, octx, name, channel, token)
	}
	return nil
}

func (s *shard) startSync(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens++
	token := "herald-sync-" + strconv.FormatUint(s.tokens, 10)
	s.waiters[token] = make(chan struct{})
	s.syncing[name] = token
	return token
}

func (s *shard) endSync(name, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.waiters, token)
	if s.syncing[name] == token {
		delete(s.syncing, name)
	}
}

// inBandBarrier is needed in Redis Cluster, where classic pub/sub messages
// reach the node our connection uses through the cluster bus, later than
// they were published: a confirmed subscription may still receive messages
// published before it. Every message of a channel is published by its slot
// owner, so a barrier message published there after the subscription was
// confirmed arrives after all of them; messages before it are dropped.
func (s *shard) inBandBarrier(parent, ctx context.Context, name, channel, token string) error {
	s.mu.Lock()
	done := s.waiters[token]
	s.mu.Unlock()
	if err := s.b.publishViaOwner(ctx, s, s.b.metaKey(channel), name, []byte("b"+token)); err != nil {
		return wrapErr(parent, "confirm subscription", name, err)
	}
	select {
	case <-done:
		return nil
	case <-s.b.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		return wrapErr(parent, "confirm subscription", name, ctx.Err())
	}
}

func (s *shard) unsubscribe(ctx context.Context, name string) error {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	octx, cancel := s.b.opContext(ctx)
	defer cancel()
	var err error
	if s.sharded {
		err = s.ps.SUnsubscribe(octx, name)
	} else {
		err = s.ps.Unsubscribe(octx, name)
	}
	if err != nil {
		return wrapErr(ctx, "unsubscribe", name, err)
	}
	return s.barrier(ctx, octx, name)
}

// barrier sends a PING on the pub/sub connection and waits until the reader
// has seen its reply: Redis answers in order, so every earlier command on
// the connection has taken effect and every message sent before it has been
// handled.
func (s *shard) barrier(parent, ctx context.Context, name string) error {
	s.mu.Lock()
	s.tokens++
	token := "herald-barrier-" + strconv.FormatUint(s.tokens, 10)
	done := make(chan struct{})
	s.waiters[token] = done
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiters, token)
		s.mu.Unlock()
	}()
	if err := s.ps.Ping(ctx, token); err != nil {
		return wrapErr(parent, "confirm subscription", name, err)
	}
	select {
	case <-done:
		return nil
	case <-s.b.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		return wrapErr(parent, "confirm subscription", name, ctx.Err())
	}
}

func (s *shard) wake(token string) {
	s.mu.Lock()
	if c := s.waiters[token]; c != nil {
		close(c)
		delete(s.waiters, token)
	}
	s.mu.Unlock()
}

// read is the shard's reader goroutine: it hands messages to the event
// handler, answers barriers, checks the idle connection and, after the
// connection broke, reconnects and reports it.
func (s *shard) read() {
	defer s.b.wg.Done()
	ctx := s.b.ctx
	log := s.b.opts.Logger.With("shard", s.addr)
	lost := false        // the connection broke; HandleReconnect is due
	pingPending := false // an idle health ping awaits its pong
	const minGap = 50 * time.Millisecond
	gap := minGap
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		msg, err := s.ps.ReceiveTimeout(ctx, s.b.opts.PingInterval)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var nerr interface{ Timeout() bool }
			if errors.As(err, &nerr) && nerr.Timeout() && !lost {
				if !pingPending {
					// Idle: check that the connection still works.
					pingPending = true
					if s.b.opts.SentinelMaster != "" {
						s.probeMaster(ctx)
					}
					if perr := s.ps.Ping(ctx, "herald-health"); perr == nil {
						continue
					}
				}
				// The previous health ping went unanswered.
			}
			if !lost {
				lost = true
				log.Warn("redis pub/sub connection lost", "error", err)
			}
			pingPending = false
			// Ping (re)connects, which resubscribes every channel first;
			// its reply thus marks the end of the resubscription.
			for {
				timer.Reset(gap)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
				gap = min(gap*2, s.b.opts.MaxReconnectGap)
				if s.ps.Ping(ctx, reconnectToken) == nil {
					break
				}
			}
			continue
		}
		gap = minGap
		switch m := msg.(type) {
		case *redis.Message:
			s.dispatch(m)
		case *redis.Pong:
			switch {
			case m.Payload == reconnectToken:
				if lost {
					lost = false
					log.Info("redis pub/sub connection restored")
					s.b.handler.HandleReconnect()
				}
			case m.Payload == "herald-health":
				pingPending = false
			default:
				s.wake(m.Payload)
			}
		case *redis.Subscription:
			// Confirmations are covered by the barrier pings.
		}
	}
}

// probeMaster runs a command through the command pool. After a failover
// go-redis has dropped its pooled connections to the old master, so this
// dials the new one and the masterTracker closes the pub/sub connection
// left on the old master, which the reader then replaces. Without it a
// node that only subscribes would stay on the old master until the
// Sentinel demotes it. Errors are the command path's business.
func (s *shard) probeMaster(ctx context.Context) {
	octx, cancel := s.b.opContext(ctx)
	defer cancel()
	_ = s.client.Ping(octx).Err()
}

// dispatch decodes one pub/sub message and calls the event handler.
func (s *shard) dispatch(m *redis.Message) {
	b := s.b
	if m.Channel == b.controlChannel {
		b.handler.HandleControl([]byte(m.Payload))
		return
	}
	channel, ok := b.channelOf(m.Channel)
	if !ok || len(m.Payload) == 0 {
		b.opts.Logger.Warn("redis message on unknown channel", "channel", m.Channel)
		return
	}
	payload := []byte(m.Payload)
	s.mu.Lock()
	token, syncing := s.syncing[m.Channel]
	if syncing && m.Payload == "b"+token {
		delete(s.syncing, m.Channel)
		if c := s.waiters[token]; c != nil {
			close(c)
			delete(s.waiters, token)
		}
	}
	s.mu.Unlock()
	if syncing {
		return // published before the subscription took effect
	}
	switch payload[0] {
	case 'b':
		// Another node's subscription barrier.
	case 'p':
		pub, pos, err := decodePublicationMessage(payload[1:])
		if err != nil {
			b.opts.Logger.Warn("undecodable redis publication", "channel", channel, "error", err)
			return
		}
		b.handler.HandlePublication(channel, pub, pos)
	case 'j', 'l':
		info, err := brokercodec.DecodeClientInfo(payload[1:])
		if err != nil {
			b.opts.Logger.Warn("undecodable redis presence event", "channel", channel, "error", err)
			return
		}
		if payload[0] == 'j' {
			b.handler.HandleJoin(channel, info)
		} else {
			b.handler.HandleLeave(channel, info)
		}
	default:
		b.opts.Logger.Warn("unknown redis message kind", "channel", channel, "kind", payload[0])
	}
}

// decodePublicationMessage parses "<offset> <epoch> <encoded publication>".
func decodePublicationMessage(b []byte) (*hub.Publication, hub.StreamPosition, error) {
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return nil, hub.StreamPosition{}, errors.New("missing offset")
	}
	off, err := strconv.ParseUint(string(b[:i]), 10, 64)
	if err != nil {
		return nil, hub.StreamPosition{}, fmt.Errorf("bad offset: %w", err)
	}
	b = b[i+1:]
	j := bytes.IndexByte(b, ' ')
	if j < 0 {
		return nil, hub.StreamPosition{}, errors.New("missing epoch")
	}
	pos := hub.StreamPosition{Offset: off, Epoch: string(b[:j])}
	pub, err := brokercodec.DecodePublication(b[j+1:])
	if err != nil {
		return nil, hub.StreamPosition{}, err
	}
	pub.Offset = off
	return pub, pos, nil
}
