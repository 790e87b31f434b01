package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
)

// flakyInstance is a memory broker whose Run fails with runErr.
type flakyInstance struct {
	*membroker.Broker
	runErr error
	closed atomic.Bool
}

func (f *flakyInstance) Run(ctx context.Context, h hub.EventHandler) error {
	if f.runErr != nil {
		return f.runErr
	}
	return f.Broker.Run(ctx, h)
}

func (f *flakyInstance) Close(ctx context.Context) error {
	f.closed.Store(true)
	return f.Broker.Close(ctx)
}

// instanceFactory hands out instances whose Run fails with the next error
// of errs (nil: succeeds), recording every instance.
type instanceFactory struct {
	// gate, when set, holds back the instance that will connect until it
	// is closed.
	gate      chan struct{}
	mu        sync.Mutex
	errs      []error
	instances []*flakyInstance
}

func (f *instanceFactory) next() (brokerBackend, error) {
	f.mu.Lock()
	var err error
	if len(f.errs) > 0 {
		err, f.errs = f.errs[0], f.errs[1:]
	}
	f.mu.Unlock()
	if err == nil && f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	inst := &flakyInstance{Broker: membroker.New(membroker.Options{}), runErr: err}
	f.instances = append(f.instances, inst)
	return inst, nil
}

func (f *instanceFactory) all() []*flakyInstance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*flakyInstance(nil), f.instances...)
}

type nopHandler struct{}

func (nopHandler) HandlePublication(string, *hub.Publication, hub.StreamPosition) {}
func (nopHandler) HandleJoin(string, *hub.ClientInfo)                             {}
func (nopHandler) HandleLeave(string, *hub.ClientInfo)                            {}
func (nopHandler) HandleControl([]byte)                                           {}
func (nopHandler) HandleReconnect()                                               {}

var errDown = fmt.Errorf("dial: connection refused: %w", hub.ErrBrokerUnavailable)

func TestRetryingBrokerConnectsLater(t *testing.T) {
	f := &instanceFactory{errs: []error{errDown, errDown, nil}, gate: make(chan struct{})}
	b, err := newRetryingBroker("test", slog.New(slog.DiscardHandler), f.next)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Run(ctx, nopHandler{}); err != nil {
		t.Fatalf("Run with the service down: %v", err)
	}
	// Until an attempt connects every operation fails as unavailable.
	if _, err := b.History(ctx, "ch", hub.HistoryOptions{}); !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("history before connecting: %v", err)
	}
	if brokerConnected(b) {
		t.Fatal("brokerConnected true before connecting")
	}
	close(f.gate)
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !b.Connected() {
		select {
		case <-deadline.C:
			t.Fatal("not connected after 5s")
		case <-tick.C:
		}
	}
	if !brokerConnected(b) {
		t.Fatal("brokerConnected false after connecting")
	}
	pos, err := b.Publish(ctx, "ch", &hub.Publication{Data: []byte("1")}, hub.PublishOptions{HistorySize: 1})
	if err != nil || pos.Offset != 1 {
		t.Fatalf("publish after connecting: %+v %v", pos, err)
	}
	insts := f.all()
	if len(insts) != 3 || !insts[0].closed.Load() || !insts[1].closed.Load() || insts[2].closed.Load() {
		t.Fatalf("failed attempts must be closed, the connected one kept: %d instances", len(insts))
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !insts[2].closed.Load() {
		t.Fatal("connected instance not closed by Close")
	}
}

func TestRetryingBrokerFailsFastOnOtherErrors(t *testing.T) {
	f := &instanceFactory{errs: []error{errors.New("WRONGPASS invalid password")}}
	b, err := newRetryingBroker("test", slog.New(slog.DiscardHandler), f.next)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Run(context.Background(), nopHandler{})
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("Run: %v", err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRetryingBrokerCloseStopsRetrying(t *testing.T) {
	errs := make([]error, 1000)
	for i := range errs {
		errs[i] = errDown
	}
	f := &instanceFactory{errs: errs}
	b, err := newRetryingBroker("test", slog.New(slog.DiscardHandler), f.next)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Run(context.Background(), nopHandler{}); err != nil {
		t.Fatal(err)
	}
	// Close waits for the retry goroutine (goleak checks it ended).
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b.Connected() {
		t.Fatal("connected after Close")
	}
	if _, err := b.History(context.Background(), "ch", hub.HistoryOptions{}); !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("History after Close: %v", err)
	}
}

func TestNewBrokerByType(t *testing.T) {
	for _, tc := range []struct {
		typ   string
		retry bool
	}{{"memory", false}, {"redis", true}, {"nats", true}} {
		cfg := config.Default()
		cfg.Broker.Type = tc.typ
		cfg.Broker.Redis.Addrs = []string{"127.0.0.1:1"}
		cfg.Broker.NATS.URL = "nats://127.0.0.1:1"
		b, err := newBroker(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatalf("%s: %v", tc.typ, err)
		}
		if _, ok := b.(*retryingBroker); ok != tc.retry {
			t.Fatalf("%s: retrying wrapper %v, want %v", tc.typ, ok, tc.retry)
		}
		if err := b.Close(context.Background()); err != nil {
			t.Fatalf("%s: close: %v", tc.typ, err)
		}
	}
	cfg := config.Default()
	cfg.Broker.Type = "carrier-pigeon"
	if _, err := newBroker(cfg, slog.Default()); err == nil {
		t.Fatal("unknown broker type accepted")
	}
}
