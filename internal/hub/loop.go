package hub

import (
	"context"
	"time"
)

// cleanupQueueSize bounds deferred presence/leave updates; overflow drops
// the update (counted in Counters.CleanupsDropped) and presence then
// expires by its TTL.
const cleanupQueueSize = 4096

// cleanupTask is work the hub defers to its background goroutine because
// it needs the broker and arises where blocking is not allowed (broker
// goroutines, under a channel lock).
type cleanupTask struct {
	// release, when set, asks to give up the channel's broker
	// subscription if it is still unused.
	release *channel

	cl       *client
	channel  string
	info     *ClientInfo
	presence bool // remove the presence entry
	leave    bool // publish a leave event
}

func (h *Hub) enqueueCleanup(t cleanupTask) {
	select {
	case h.cleanups <- t:
	default:
		h.counters.cleanupsDropped.Add(1)
	}
}

// loop is the hub's one background goroutine, started by Run and ended by
// Shutdown.
func (h *Hub) loop() {
	defer close(h.loopDone)
	ctx := h.loopCtx
	housekeeping := time.NewTicker(h.cfg.HousekeepingInterval)
	defer housekeeping.Stop()
	nodeInfo := time.NewTicker(h.cfg.NodeInfoInterval)
	defer nodeInfo.Stop()
	grace := time.NewTimer(time.Hour)
	grace.Stop()
	defer grace.Stop()
	var expected map[*channel]StreamPosition

	h.publishNodeInfo(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-h.cleanups:
			h.runCleanup(ctx, t)
		case <-housekeeping.C:
			h.housekeep(ctx)
		case <-nodeInfo.C:
			h.publishNodeInfo(ctx)
		case <-h.announce:
			h.publishNodeInfo(ctx)
		case <-h.reconnect:
			expected = h.readPositions(ctx)
			grace.Reset(h.cfg.ReconnectGrace)
		case <-grace.C:
			h.checkPositions(expected)
			expected = nil
		}
	}
}

func (h *Hub) runCleanup(ctx context.Context, t cleanupTask) {
	if t.release != nil {
		h.release(ctx, t.release)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, brokerOpTimeout)
	defer cancel()
	if t.presence {
		t.cl.mu.Lock()
		resubscribed := t.cl.subs.get(t.channel) != nil
		t.cl.mu.Unlock()
		if !resubscribed {
			if err := h.cfg.Presence.RemovePresence(ctx, t.channel, t.cl.info.Client); err != nil {
				h.counters.presenceErrors.Add(1)
				h.cfg.Logger.Warn("remove presence failed", "channel", t.channel, "error", err)
			}
		}
	}
	if t.leave {
		if err := h.cfg.Broker.PublishLeave(ctx, t.channel, t.info); err != nil {
			h.counters.brokerErrors.Add(1)
			h.cfg.Logger.Warn("publish leave failed", "channel", t.channel, "error", err)
		}
	}
	if ch := h.lookupChannel(t.channel); ch != nil {
		h.release(ctx, ch)
	}
}

type presenceRefresh struct {
	channel string
	client  string
	info    *ClientInfo
	ttl     time.Duration
}

// housekeep refreshes presence entries that are due and releases channels
// left without subscribers.
func (h *Hub) housekeep(ctx context.Context) {
	now := time.Now()
	var due []presenceRefresh
	var unused []*channel
	// Channels are visited under their shard's read lock (lock order:
	// shard, then channel) rather than copied out first: with many
	// channels this runs every second, and usually finds nothing to do.
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, ch := range sh.channels {
			ch.mu.Lock()
			if ch.state == chActive && ch.empty() {
				unused = append(unused, ch)
			}
			if ch.opts.Presence && len(ch.live) > 0 && !now.Before(ch.nextRefresh) {
				ttl := ch.opts.presenceTTL()
				ch.nextRefresh = now.Add(ttl / 3)
				for _, s := range ch.live {
					if s.presence {
						due = append(due, presenceRefresh{ch.name, s.cl.info.Client, s.info, ttl})
					}
				}
			}
			ch.mu.Unlock()
		}
		sh.mu.RUnlock()
	}
	for _, ch := range unused {
		h.release(ctx, ch)
	}
	for _, r := range due {
		if ctx.Err() != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, brokerOpTimeout)
		err := h.cfg.Presence.AddPresence(rctx, r.channel, r.client, r.info, r.ttl)
		cancel()
		if err != nil {
			h.counters.presenceErrors.Add(1)
			h.cfg.Logger.Warn("refresh presence failed", "channel", r.channel, "error", err)
		}
	}
}

func (h *Hub) publishNodeInfo(ctx context.Context) {
	info := h.reportInfo(h.othersKnown())
	if err := h.control(ctx, &controlMessage{Type: ctlNode, Node: &info}); err != nil && ctx.Err() == nil {
		h.cfg.Logger.Warn("publish node info failed", "error", err)
	}
}

// readPositions reads the broker's current position of every recoverable
// channel with live subscribers, after a broker reconnect.
func (h *Hub) readPositions(ctx context.Context) map[*channel]StreamPosition {
	out := make(map[*channel]StreamPosition)
	for _, ch := range h.channelsSnapshot() {
		ch.mu.Lock()
		check := ch.state == chActive && ch.opts.Recoverable() && len(ch.live) > 0 && ch.posKnown
		ch.mu.Unlock()
		if !check {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, brokerOpTimeout)
		res, err := h.cfg.Broker.History(rctx, ch.name, HistoryOptions{MetaTTL: ch.opts.HistoryMetaTTL})
		cancel()
		if err != nil {
			h.counters.brokerErrors.Add(1)
			h.cfg.Logger.Warn("position check after reconnect failed", "channel", ch.name, "error", err)
			continue
		}
		out[ch] = res.Position
	}
	return out
}

// checkPositions runs ReconnectGrace after readPositions: a channel whose
// live position is still behind (or in another epoch than) what the broker
// reported has lost publications, and its subscribers must recover.
func (h *Hub) checkPositions(expected map[*channel]StreamPosition) {
	for ch, want := range expected {
		ch.mu.Lock()
		if ch.state == chActive && len(ch.live) > 0 && ch.posKnown &&
			(ch.pos.Epoch != want.Epoch || ch.pos.Offset < want.Offset) {
			h.counters.gaps.Add(1)
			h.counters.insufficientState.Add(uint64(len(ch.live)))
			ch.resetLive(h)
			ch.pos = want
			ch.completeWaiting(h)
		}
		ch.mu.Unlock()
	}
}
