package web

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestRunTickerPublishesTicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var ticks []Tick
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			RunTicker(ctx, func(_ context.Context, channel string, data []byte) error {
				if channel != TickerChannel {
					t.Errorf("channel %q, want %q", channel, TickerChannel)
				}
				var tk Tick
				if err := json.Unmarshal(data, &tk); err != nil {
					t.Errorf("tick is not JSON: %v: %s", err, data)
				}
				ticks = append(ticks, tk)
				return nil
			})
		}()
		time.Sleep(10*TickerInterval + TickerInterval/2)
		cancel()
		<-done
		if len(ticks) != 10 {
			t.Fatalf("%d ticks in 10.5 intervals, want 10", len(ticks))
		}
		for i, tk := range ticks {
			if tk.Seq != uint64(i+1) {
				t.Errorf("tick %d has seq %d", i, tk.Seq)
			}
			if tk.Symbol == "" || tk.Price < priceFloor || tk.Price > priceCeiling {
				t.Errorf("tick %d: %+v", i, tk)
			}
			wantTime := start.Add(time.Duration(i+1) * TickerInterval).UnixMilli()
			if tk.Time != wantTime {
				t.Errorf("tick %d time %d, want %d", i, tk.Time, wantTime)
			}
			if i > 0 {
				if d := tk.Price - ticks[i-1].Price; d-tk.Change > 0.011 || tk.Change-d > 0.011 {
					t.Errorf("tick %d change %.2f, price moved %.2f", i, tk.Change, d)
				}
			}
		}
	})
}

func TestRunTickerKeepsGoingAfterErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		done := make(chan struct{})
		go func() {
			defer close(done)
			RunTicker(ctx, func(context.Context, string, []byte) error {
				calls++
				if calls <= 3 {
					return errors.New("broker unavailable")
				}
				return nil
			})
		}()
		time.Sleep(6*TickerInterval + TickerInterval/2)
		cancel()
		<-done
		if calls != 6 {
			t.Errorf("%d publish calls, want 6 (failures must not stop the ticker)", calls)
		}
	})
}

func TestRunTickerStopsWhenPublishSeesCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		RunTicker(ctx, func(ctx context.Context, _ string, _ []byte) error {
			calls++
			cancel()
			return ctx.Err()
		})
		if calls != 1 {
			t.Errorf("%d calls after cancellation, want 1", calls)
		}
	})
}

func TestPriceWalkStaysBounded(t *testing.T) {
	w := newPriceWalk(1)
	for range 100000 {
		p, _ := w.next()
		if p < priceFloor || p > priceCeiling {
			t.Fatalf("price %v outside [%v, %v]", p, priceFloor, priceCeiling)
		}
	}
}
