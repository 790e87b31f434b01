package hub

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// MaxFormats is how many delivery formats NewFormat can register.
const MaxFormats = 8

// Format identifies one way a transport encodes a push (for example "JSON
// text frame", "JSON text frame, deflated", "binary TCP frame"). Transports
// register their formats once with NewFormat, normally from a package-level
// variable initialiser, and pass them to Delivery.Encoded.
type Format uint8

var (
	formatMu    sync.Mutex
	formatNames []string
)

// NewFormat registers a delivery format and returns its identifier. It is
// meant to run during package initialisation and panics when more than
// MaxFormats formats are registered, because that is a programming error.
func NewFormat(name string) Format {
	formatMu.Lock()
	defer formatMu.Unlock()
	if len(formatNames) >= MaxFormats {
		panic(fmt.Sprintf("hub: too many delivery formats registering %q (max %d)", name, MaxFormats))
	}
	formatNames = append(formatNames, name)
	return Format(len(formatNames) - 1)
}

// String returns the name f was registered with.
func (f Format) String() string {
	formatMu.Lock()
	defer formatMu.Unlock()
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

// Delivery is one push on its way to any number of local subscribers. The
// hub builds exactly one Delivery per publication (or join, leave, direct
// message) per node, and hands the same pointer to every recipient: this
// is how herald encodes once and writes many times.
//
// A Delivery is immutable apart from its encoding cache and is safe for
// concurrent use. Recipients must not modify the push or anything it
// points to.
type Delivery struct {
	push    wire.Push
	created time.Time // when the push entered this node (monotonic)

	encMu sync.Mutex // serialises the slow path of Encoded
	enc   [MaxFormats]atomic.Pointer[encoded]
	// first holds the first encoding asked for, so that the usual case,
	// one format per delivery, allocates no cache entry. Written once
	// under encMu before it is published through enc.
	first encoded
}

type encoded struct{ v any }

// NewDelivery wraps p. p and everything it points to must not be modified
// afterwards.
func NewDelivery(p wire.Push) *Delivery {
	return &Delivery{push: p, created: time.Now()}
}

// Created returns when the Delivery was built, that is when its push
// entered this node's fan-out; transports measure their publish-to-write
// latency from it.
func (d *Delivery) Created() time.Time { return d.created }

// Push returns the push. The caller must treat it as read-only.
func (d *Delivery) Push() *wire.Push { return &d.push }

// Channel returns the channel of the push ("" for direct messages).
func (d *Delivery) Channel() string { return d.push.Channel }

// Encoded returns the encoding of the push in format f, calling enc to
// produce it the first time f is asked for; later calls (from any
// goroutine, with any enc) return the cached value without calling enc.
// For one Delivery and one Format, enc runs at most once. The fast path is
// a single atomic load. The returned value is shared by every recipient
// and must be treated as read-only (typically an immutable []byte or a
// prepared frame).
func (d *Delivery) Encoded(f Format, enc func(*wire.Push) any) any {
	if int(f) >= MaxFormats {
		panic(fmt.Sprintf("hub: invalid delivery format %d", f))
	}
	if e := d.enc[f].Load(); e != nil {
		return e.v
	}
	d.encMu.Lock()
	defer d.encMu.Unlock()
	if e := d.enc[f].Load(); e != nil {
		return e.v
	}
	e := &d.first
	if e.v != nil {
		e = new(encoded)
	}
	e.v = enc(&d.push)
	if e.v == nil {
		// A nil encoding would look like an unused first slot: keep it
		// apart so the slot is never written twice.
		e = &encoded{}
	}
	d.enc[f].Store(e)
	return e.v
}
