package web

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"
)

// TickerChannel is the channel the demo ticker publishes to.
const TickerChannel = "demo:ticker"

// TickerInterval is the time between two ticks.
const TickerInterval = 250 * time.Millisecond

// Tick is one ticker publication, encoded as JSON.
type Tick struct {
	Seq    uint64  `json:"seq"`    // 1, 2, 3, ... since the ticker started
	Symbol string  `json:"symbol"` // instrument name
	Price  float64 `json:"price"`  // a bounded random walk, two decimals
	Change float64 `json:"change"` // difference from the previous tick
	Time   int64   `json:"time"`   // unix milliseconds when the tick was made
}

// RunTicker publishes a Tick to TickerChannel every TickerInterval until
// ctx is done, then returns. It calls publish from the calling goroutine
// only, one tick at a time; a tick whose publish fails is dropped (the next
// one follows on schedule) and the failure is logged once per distinct
// error message, so an unavailable broker does not flood the log.
func RunTicker(ctx context.Context, publish func(ctx context.Context, channel string, data []byte) error) {
	t := time.NewTicker(TickerInterval)
	defer t.Stop()
	walk := newPriceWalk(rand.Uint64())
	var lastErr string
	for seq := uint64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			price, change := walk.next()
			data, err := json.Marshal(Tick{Seq: seq, Symbol: "HRLD", Price: price, Change: change, Time: now.UnixMilli()})
			if err != nil {
				// A struct of numbers and a string always marshals.
				panic(err)
			}
			if err := publish(ctx, TickerChannel, data); err != nil {
				if ctx.Err() != nil {
					return
				}
				if msg := err.Error(); msg != lastErr {
					lastErr = msg
					slog.Warn("demo ticker: publish failed", "channel", TickerChannel, "err", err)
				}
				continue
			}
			lastErr = ""
		}
	}
}

// priceWalk is a random walk kept between priceFloor and priceCeiling.
type priceWalk struct {
	rng   *rand.Rand
	price float64
}

const (
	priceStart   = 100.0
	priceFloor   = 50.0
	priceCeiling = 150.0
)

func newPriceWalk(seed uint64) *priceWalk {
	return &priceWalk{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), price: priceStart}
}

// next moves the price by up to ±0.5% and returns it and the change, both
// rounded to cents.
func (w *priceWalk) next() (price, change float64) {
	prev := w.price
	p := prev * (1 + (w.rng.Float64()-0.5)*0.01)
	p = math.Min(priceCeiling, math.Max(priceFloor, p))
	p = math.Round(p*100) / 100
	w.price = p
	return p, math.Round((p-prev)*100) / 100
}
