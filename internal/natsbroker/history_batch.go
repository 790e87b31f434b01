package natsbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/hub"
)

// historyBatch is the most messages one pull request asks for. A history
// of a thousand publications then takes four pulls, and one reply holds a
// bounded number of messages.
const historyBatch = 256

// minReaderIdle is the shortest inactivity after which the server deletes
// a history reader left behind (its node crashed or lost the connection
// before deleting it).
const minReaderIdle = time.Second

// historySelection keeps the publications a History call returns while a
// channel's history subject streams past, oldest first: those after the
// last marker, of the head's epoch, with offsets above after (the size
// window and Since), not expired by their TTL. With a limit it holds at
// most limit of them: the oldest ones, or the newest ones when newest is
// set (a ring). Memory is therefore bounded by the limit and by the
// history size, whatever the subject still holds.
type historySelection struct {
	epoch  string
	after  uint64
	limit  int // < 0: no limit
	newest bool
	now    time.Time

	pubs []storedPub
	ring int // index of the oldest entry once the ring is full
}

func newHistorySelection(h *streamHead, opts hub.HistoryOptions, now time.Time) *historySelection {
	s := &historySelection{epoch: h.epoch, limit: opts.Limit, newest: opts.Reverse, now: now}
	if uint64(h.size) < h.offset {
		s.after = h.offset - uint64(h.size)
	}
	if opts.Since != nil {
		s.after = max(s.after, opts.Since.Offset)
	}
	return s
}

// add considers one message of the subject, in stream order.
func (s *historySelection) add(hdr nats.Header, stored time.Time, data []byte) {
	if hdr.Get(hdrKind) != kindPublication {
		// Markers hide everything before them.
		s.pubs, s.ring = s.pubs[:0], 0
		return
	}
	off, err := strconv.ParseUint(hdr.Get(hdrOffset), 10, 64)
	if err != nil || hdr.Get(hdrEpoch) != s.epoch || off <= s.after {
		return
	}
	if ttl := parseMS(hdr.Get(hdrTTL)); ttl > 0 && !s.now.Before(stored.Add(ttl)) {
		return
	}
	p := storedPub{offset: off, data: data}
	switch {
	case s.limit < 0 || len(s.pubs) < s.limit:
		s.pubs = append(s.pubs, p)
	case s.newest && s.limit > 0:
		s.pubs[s.ring] = p
		s.ring = (s.ring + 1) % s.limit
	}
}

// result returns the kept publications, oldest first.
func (s *historySelection) result() []storedPub {
	if s.ring == 0 {
		return s.pubs
	}
	out := make([]storedPub, 0, len(s.pubs))
	out = append(out, s.pubs[s.ring:]...)
	return append(out, s.pubs[:s.ring]...)
}

// readSelected streams the history subject up to the head h through a
// selection made from opts and returns what it kept, oldest first.
//
// JetStream 2.9 has no batched direct get, and stream sequences are shared
// by every channel, so the sequence of a given offset cannot be computed
// from the head. The read therefore starts at the subject's first retained
// message; publishing keeps the subject trimmed near its history size, so
// that bounds the transfer, and the selection bounds memory.
func (b *Broker) readSelected(ctx context.Context, subject string, h *streamHead, opts hub.HistoryOptions) ([]storedPub, error) {
	if h.kind != kindPublication {
		return nil, nil // a marker at the head hides every publication
	}
	sel := newHistorySelection(h, opts, time.Now())
	if err := b.scanSubject(ctx, subject, h.seq, sel.add); err != nil {
		return nil, err
	}
	return sel.result(), nil
}

// scanSubject calls fn for every message of subject up to stream sequence
// last, in stream order. It reads through an ephemeral pull consumer
// filtered on subject, historyBatch messages per request: a subject of n
// messages costs two requests (create, delete) and ceil(n/historyBatch)
// pulls. The consumer is deleted when the scan ends; should that fail, the
// server removes it after it has been idle for the operation timeout.
func (b *Broker) scanSubject(ctx context.Context, subject string, last uint64, fn func(hdr nats.Header, stored time.Time, data []byte)) error {
	cons, err := b.historyStream().CreateConsumer(ctx, jetstream.ConsumerConfig{
		Name:              readerName(),
		Description:       "herald history read",
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     subject,
		InactiveThreshold: max(b.opts.OpTimeout, minReaderIdle),
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil {
		return err
	}
	name := cons.CachedInfo().Name
	defer b.deleteReader(ctx, name)

	// Pulls do not wait for messages: each returns what the subject holds
	// at once. They are sized by the count the server reported when the
	// consumer was made, so that the last one needs no end-of-batch reply;
	// should that count fall short, full pulls go on until the head.
	remaining := cons.CachedInfo().NumPending
	for {
		want := historyBatch
		if remaining > 0 {
			want = int(min(remaining, historyBatch))
		}
		batch, err := cons.FetchNoWait(want)
		if err != nil {
			return fmt.Errorf("pull history: %w", err)
		}
		got, done, err := drainBatch(ctx, batch, last, fn)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if got < want {
			// The subject ended before the head: its messages were purged
			// meanwhile, unless the pull was cut short by a lost
			// connection, which must not pass for a short history.
			return b.check()
		}
		remaining -= min(remaining, uint64(got))
	}
}

// drainBatch hands batch's messages up to stream sequence last to fn. It
// reports how many messages arrived and whether last was reached.
func drainBatch(ctx context.Context, batch jetstream.MessageBatch, last uint64, fn func(nats.Header, time.Time, []byte)) (got int, done bool, err error) {
	msgs := batch.Messages()
	for {
		select {
		case <-ctx.Done():
			return got, false, ctx.Err()
		case m, ok := <-msgs:
			if !ok {
				if err := batch.Error(); err != nil {
					return got, false, fmt.Errorf("pull history: %w", err)
				}
				return got, done, nil
			}
			got++
			if done {
				continue // appended after the head was read
			}
			meta, err := m.Metadata()
			if err != nil {
				return got, false, fmt.Errorf("pull history: %w", err)
			}
			if meta.Sequence.Stream > last {
				done = true
				continue
			}
			fn(m.Headers(), meta.Timestamp, m.Data())
			done = meta.Sequence.Stream == last
		}
	}
}

// deleteReader removes a history reader. Best effort: the server deletes
// it anyway once it is idle.
func (b *Broker) deleteReader(ctx context.Context, name string) {
	if ctx.Err() != nil {
		return
	}
	err := b.historyStream().DeleteConsumer(ctx, name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		b.opts.Logger.Debug("nats history reader delete failed", "consumer", name, "error", err)
	}
}

// readerName names a history reader; names are unique so that concurrent
// reads of one channel, from any node, never share a consumer.
func readerName() string {
	var buf [12]byte
	_, _ = rand.Read(buf[:])
	return "herald_read_" + hex.EncodeToString(buf[:])
}
