package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/brokercodec"
	"github.com/heraldhq/herald/internal/hub"
)

// Message headers. Every message of a history subject carries kind, offset,
// epoch and meta TTL; publications also carry the history size and TTL in
// force when they were published.
const (
	hdrKind    = "Herald-Kind"
	hdrOffset  = "Herald-Offset"
	hdrEpoch   = "Herald-Epoch"
	hdrSize    = "Herald-Size"
	hdrTTL     = "Herald-TTL"      // history TTL in ms, 0 none
	hdrMetaTTL = "Herald-Meta-TTL" // ms after storage when the stream is forgotten
)

// Message kinds.
const (
	kindPublication = "p"
	kindJoin        = "j"
	kindLeave       = "l"
	kindEpoch       = "e" // starts an epoch at offset 0
	kindRemoved     = "r" // hides every earlier publication
)

// streamHead is the last message of a channel's history subject: the
// channel's stream position.
type streamHead struct {
	seq     uint64 // stream sequence, for optimistic concurrency
	kind    string
	offset  uint64
	epoch   string
	size    int
	metaTTL time.Duration
	stored  time.Time
}

func (h *streamHead) expired(now time.Time) bool {
	return !now.Before(h.stored.Add(h.metaTTL))
}

// ms formats d in whole milliseconds, rounding a positive d up to 1ms.
func ms(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return strconv.FormatInt(max(int64(d/time.Millisecond), 1), 10)
}

func parseMS(s string) time.Duration {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Duration(n) * time.Millisecond
}

func (b *Broker) historyStream() jetstream.Stream { return *b.stream.Load() }

// head reads the last message of subject; nil when there is none.
func (b *Broker) head(ctx context.Context, subject string) (*streamHead, error) {
	m, err := b.historyStream().GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseHead(m)
}

func parseHead(m *jetstream.RawStreamMsg) (*streamHead, error) {
	h := &streamHead{
		seq:     m.Sequence,
		kind:    m.Header.Get(hdrKind),
		epoch:   m.Header.Get(hdrEpoch),
		metaTTL: parseMS(m.Header.Get(hdrMetaTTL)),
		stored:  m.Time,
	}
	var err error
	if h.offset, err = strconv.ParseUint(m.Header.Get(hdrOffset), 10, 64); err != nil || h.epoch == "" {
		return nil, fmt.Errorf("history message %d has no valid position", m.Sequence)
	}
	h.size, _ = strconv.Atoi(m.Header.Get(hdrSize))
	return h, nil
}

// isConflict reports a failed Nats-Expected-Last-Subject-Sequence check:
// another append won; the caller reads the new head and retries.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func isStreamMissing(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound
}

// appendMsg appends m to the history stream if subject's last message is
// still expectSeq.
func (b *Broker) appendMsg(ctx context.Context, m *nats.Msg, expectSeq uint64) (uint64, error) {
	ack, err := b.js.PublishMsg(ctx, m,
		jetstream.WithExpectStream(b.streamName),
		jetstream.WithExpectLastSequencePerSubject(expectSeq))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// retry runs attempt until it reports done, within Options.OpTimeout,
// retrying conflicts and recreating the stream once if a restarted server
// lost it.
func (b *Broker) retry(ctx context.Context, op, channel string, attempt func(ctx context.Context) (bool, error)) error {
	octx, cancel := context.WithTimeout(ctx, b.opts.OpTimeout)
	defer cancel()
	return b.retryWithin(ctx, octx, op, channel, attempt)
}

// retryWithin is retry with the operation's context octx (derived from
// the caller's ctx) already made. Conflicts are retried at once the first
// time and after a jittered, growing pause later (conflictBackoff); every
// conflict means another append succeeded, so the channel makes progress.
func (b *Broker) retryWithin(ctx, octx context.Context, op, channel string, attempt func(ctx context.Context) (bool, error)) error {
	recreated := false
	conflicts := 0
	for {
		done, err := attempt(octx)
		switch {
		case err == nil && done:
			return nil
		case err == nil || isConflict(err):
			conflicts++
			if err := sleepCtx(octx, conflictBackoff(conflicts)); err != nil {
				return b.wrapErr(ctx, op, channel, err)
			}
			continue
		case isStreamMissing(err) && !recreated:
			recreated = true
			if err := b.ensureStorage(octx); err != nil {
				return err
			}
			continue
		default:
			return b.wrapErr(ctx, op, channel, err)
		}
	}
}

// conflictSeq returns the subject's actual last sequence from a failed
// expected-sequence check ("wrong last sequence: 42").
func conflictSeq(err error) (uint64, bool) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return 0, false
	}
	rest, ok := strings.CutPrefix(apiErr.Description, "wrong last sequence: ")
	if !ok {
		return 0, false
	}
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	seq, err := strconv.ParseUint(rest, 10, 64)
	return seq, err == nil
}

func (b *Broker) metaTTL(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return b.opts.HistoryMetaTTL
}

// startEpoch appends an epoch marker after h (nil: the subject is empty)
// and drops the older messages. It returns the new head.
func (b *Broker) startEpoch(ctx context.Context, subject string, h *streamHead, metaTTL time.Duration) (*streamHead, error) {
	var expect uint64
	if h != nil {
		expect = h.seq
	}
	nh := &streamHead{kind: kindEpoch, epoch: newEpoch(), metaTTL: metaTTL}
	m := nats.NewMsg(subject)
	m.Header.Set(hdrKind, kindEpoch)
	m.Header.Set(hdrOffset, "0")
	m.Header.Set(hdrEpoch, nh.epoch)
	m.Header.Set(hdrMetaTTL, ms(metaTTL))
	seq, err := b.appendMsg(ctx, m, expect)
	if err != nil {
		return nil, err
	}
	nh.seq, nh.stored = seq, time.Now()
	if h != nil {
		b.purgeBelow(ctx, subject, seq)
	}
	return nh, nil
}

// purgeBelow drops subject's messages older than seq. Best effort: reads
// ignore them anyway.
func (b *Broker) purgeBelow(ctx context.Context, subject string, seq uint64) {
	if err := b.historyStream().Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(seq)); err != nil {
		b.opts.Logger.Debug("nats history purge failed", "subject", subject, "error", err)
	}
}

func (b *Broker) purgeKeep(ctx context.Context, subject string, keep int) {
	if err := b.historyStream().Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeKeep(uint64(keep))); err != nil {
		b.opts.Logger.Debug("nats history purge failed", "subject", subject, "error", err)
	}
}

// Publish implements hub.Broker.
//
// Appends of this node to one channel take turns (appendLocks), each
// expecting the head the previous one cached, so they need one round trip
// and never reject each other. An append rejected because another node
// appended first learns the new last sequence from the rejection; when the
// delivery of that node's publication already updated the cache
// (observeHead) the retry appends against it at once, otherwise it reads
// the head. Waiting for the turn, conflicts and retries all count against
// Options.OpTimeout.
func (b *Broker) Publish(ctx context.Context, channel string, pub *hub.Publication, opts hub.PublishOptions) (hub.StreamPosition, error) {
	if err := b.check(); err != nil {
		return hub.StreamPosition{}, err
	}
	if opts.HistorySize < 0 {
		return hub.StreamPosition{}, fmt.Errorf("natsbroker: publish to %q: negative history size %d", channel, opts.HistorySize)
	}
	blob := brokercodec.AppendPublication(nil, pub)
	if opts.HistorySize == 0 {
		return hub.StreamPosition{}, b.publishCore(ctx, channel, kindPublication, blob)
	}
	subject := b.histSubject(channel)
	octx, cancel := context.WithTimeout(ctx, b.opts.OpTimeout)
	defer cancel()
	pos, purge, err := b.appendPublication(ctx, octx, channel, subject, blob, opts)
	if err != nil {
		return hub.StreamPosition{}, err
	}
	if purge != nil {
		// Outside the channel's turn: trimming is best effort and must not
		// delay the next append.
		purge(octx)
	}
	return pos, nil
}

// appendPublication appends blob to subject in this node's turn for it. It
// returns the position and, when the subject is due for trimming, the
// purge to run after the turn.
func (b *Broker) appendPublication(ctx, octx context.Context, channel, subject string, blob []byte, opts hub.PublishOptions) (hub.StreamPosition, func(context.Context), error) {
	release, err := b.locks.acquire(octx, subject)
	if err != nil {
		return hub.StreamPosition{}, nil, b.wrapErr(ctx, "publish to", channel, err)
	}
	defer release()
	if err := b.check(); err != nil { // the connection may have dropped while waiting
		return hub.StreamPosition{}, nil, err
	}
	metaTTL := b.metaTTL(opts.HistoryMetaTTL)
	var (
		pos   hub.StreamPosition
		purge func(context.Context)
		// useCache: the cached head may be current. After a conflict it is
		// used only if it is the head the conflict reported.
		useCache  = true
		actualSeq uint64
		conflict  bool
	)
	err = b.retryWithin(ctx, octx, "publish to", channel, func(ctx context.Context) (bool, error) {
		var h *streamHead
		if useCache {
			var ok bool
			h, ok = b.cachedHead(subject)
			if ok && conflict && h.seq != actualSeq {
				ok = false
			}
			useCache = ok
		}
		if !useCache {
			var err error
			if h, err = b.head(ctx, subject); err != nil {
				return false, err
			}
		}
		var expect uint64
		reset := h != nil && h.expired(time.Now())
		next := hub.StreamPosition{Offset: 1, Epoch: newEpoch()}
		if h != nil {
			expect = h.seq
			if !reset {
				next = hub.StreamPosition{Offset: h.offset + 1, Epoch: h.epoch}
			}
		}
		m := nats.NewMsg(subject)
		m.Header.Set(hdrKind, kindPublication)
		m.Header.Set(hdrOffset, strconv.FormatUint(next.Offset, 10))
		m.Header.Set(hdrEpoch, next.Epoch)
		m.Header.Set(hdrSize, strconv.Itoa(opts.HistorySize))
		m.Header.Set(hdrTTL, ms(opts.HistoryTTL))
		m.Header.Set(hdrMetaTTL, ms(metaTTL))
		m.Data = blob
		seq, err := b.appendMsg(ctx, m, expect)
		if err != nil {
			actualSeq, conflict = conflictSeq(err)
			conflict = conflict && isConflict(err)
			useCache = conflict
			if conflict {
				b.appendConflicts.Add(1)
			} else {
				b.forgetHead(subject)
			}
			return false, err
		}
		b.cacheHead(subject, streamHead{
			seq: seq, kind: kindPublication, offset: next.Offset, epoch: next.Epoch,
			size: opts.HistorySize, metaTTL: metaTTL, stored: time.Now(),
		})
		pos = next
		switch {
		case reset:
			purge = func(ctx context.Context) { b.purgeBelow(ctx, subject, seq) }
		case next.Offset%uint64(max(1, opts.HistorySize/8)) == 0:
			// Keep the subject's physical size near HistorySize; reads
			// apply the exact limit.
			purge = func(ctx context.Context) { b.purgeKeep(ctx, subject, opts.HistorySize) }
		}
		return true, nil
	})
	return pos, purge, err
}

// maxCachedHeads bounds the head cache; when full, an arbitrary entry is
// evicted.
const maxCachedHeads = 10000

func (b *Broker) cachedHead(subject string) (*streamHead, bool) {
	b.headsMu.Lock()
	defer b.headsMu.Unlock()
	h, ok := b.heads[subject]
	if !ok {
		return nil, false
	}
	return &h, true
}

// cacheHead records the head this node just appended. It overwrites
// whatever is cached: the append's acknowledgement is authoritative, and
// an entry observed meanwhile from another node's later append only makes
// the cache stale, which costs one conflict.
func (b *Broker) cacheHead(subject string, h streamHead) {
	b.headsMu.Lock()
	defer b.headsMu.Unlock()
	if _, ok := b.heads[subject]; !ok && len(b.heads) >= maxCachedHeads {
		for k := range b.heads {
			delete(b.heads, k)
			break
		}
	}
	b.heads[subject] = h
}

func (b *Broker) forgetHead(subject string) {
	b.headsMu.Lock()
	delete(b.heads, subject)
	b.headsMu.Unlock()
}

// forgetAllHeads empties the head cache, after a reconnect: a server that
// lost the stream numbers its messages from 1 again.
func (b *Broker) forgetAllHeads() {
	b.headsMu.Lock()
	clear(b.heads)
	b.headsMu.Unlock()
}

// observeHead advances the cached head of a channel this node publishes
// to when the stream's republication of a newer message of its subject
// arrives, typically another node's append. A node that then loses an
// append race already knows the winner's head and retries without reading
// it. Channels without a cached head are left alone, so only channels this
// node publishes to occupy the cache.
func (b *Broker) observeHead(channel string, m *nats.Msg) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return
	}
	off, err := strconv.ParseUint(m.Header.Get(hdrOffset), 10, 64)
	epoch := m.Header.Get(hdrEpoch)
	if err != nil || epoch == "" {
		return
	}
	stored := time.Now()
	if ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer)); err == nil {
		stored = ts
	}
	size, _ := strconv.Atoi(m.Header.Get(hdrSize))
	subject := b.histSubject(channel)
	b.headsMu.Lock()
	defer b.headsMu.Unlock()
	if h, ok := b.heads[subject]; ok && seq > h.seq {
		b.heads[subject] = streamHead{
			seq: seq, kind: m.Header.Get(hdrKind), offset: off, epoch: epoch,
			size: size, metaTTL: parseMS(m.Header.Get(hdrMetaTTL)), stored: stored,
		}
	}
}

// storedPub is a publication found in the history subject, not yet decoded.
type storedPub struct {
	offset uint64
	data   []byte
}

// History implements hub.Broker.
func (b *Broker) History(ctx context.Context, channel string, opts hub.HistoryOptions) (hub.HistoryResult, error) {
	if err := b.check(); err != nil {
		return hub.HistoryResult{}, err
	}
	subject := b.histSubject(channel)
	var res hub.HistoryResult
	err := b.retry(ctx, "history of", channel, func(ctx context.Context) (bool, error) {
		h, err := b.head(ctx, subject)
		if err != nil {
			return false, err
		}
		if h == nil || h.expired(time.Now()) {
			if h, err = b.startEpoch(ctx, subject, h, b.metaTTL(opts.MetaTTL)); err != nil {
				return false, err
			}
		}
		res = hub.HistoryResult{Position: hub.StreamPosition{Offset: h.offset, Epoch: h.epoch}}
		if opts.Limit == 0 || h.kind == kindEpoch || (opts.Since != nil && opts.Since.Epoch != h.epoch) {
			return true, nil
		}
		pubs, err := b.readSelected(ctx, subject, h, opts)
		if err != nil {
			return false, err
		}
		if opts.Reverse {
			slices.Reverse(pubs)
		}
		res.Publications = make([]*hub.Publication, 0, len(pubs))
		for _, sp := range pubs {
			p, err := brokercodec.DecodePublication(sp.data)
			if err != nil {
				return false, fmt.Errorf("publication %d: %w", sp.offset, err)
			}
			p.Offset = sp.offset
			res.Publications = append(res.Publications, p)
		}
		return true, nil
	})
	return res, err
}

// RemoveHistory implements hub.Broker: a marker hides the publications and
// keeps the position; the hidden messages are then purged.
func (b *Broker) RemoveHistory(ctx context.Context, channel string) error {
	if err := b.check(); err != nil {
		return err
	}
	subject := b.histSubject(channel)
	return b.retry(ctx, "remove history of", channel, func(ctx context.Context) (bool, error) {
		h, err := b.head(ctx, subject)
		if err != nil {
			return false, err
		}
		if h == nil || h.expired(time.Now()) || h.kind != kindPublication {
			return true, nil // nothing visible to remove
		}
		m := nats.NewMsg(subject)
		m.Header.Set(hdrKind, kindRemoved)
		m.Header.Set(hdrOffset, strconv.FormatUint(h.offset, 10))
		m.Header.Set(hdrEpoch, h.epoch)
		m.Header.Set(hdrSize, strconv.Itoa(h.size))
		m.Header.Set(hdrMetaTTL, ms(h.metaTTL))
		seq, err := b.appendMsg(ctx, m, h.seq)
		if err != nil {
			return false, err
		}
		b.purgeBelow(ctx, subject, seq)
		return true, nil
	})
}
