package natsbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/hub/brokertest"
	"github.com/heraldhq/herald/internal/testservers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// suiteOpTimeout is generous: the suites run on loaded two-core CI
// machines with the race detector, and timing is not what they check.
const suiteOpTimeout = 5 * time.Second

// uniquePrefix isolates a test's stream, bucket and subjects on a shared
// server. Test streams use memory storage so they cost no disk.
func uniquePrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "ht" + hex.EncodeToString(b[:])
}

// dropStorage deletes the stream and bucket of prefix from a shared server
// when the test ends.
func dropStorage(t testing.TB, url, prefix string) {
	t.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, prefix+"_history"); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("cleanup: delete stream: %v", err)
		}
		if err := js.DeleteKeyValue(ctx, prefix+"_presence"); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Errorf("cleanup: delete bucket: %v", err)
		}
	})
}

// testOptions fills in what a test leaves out: a prefix of its own and
// the generous suite timeout.
func testOptions(o Options) Options {
	if o.Prefix == "" {
		o.Prefix = uniquePrefix()
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = suiteOpTimeout
	}
	return o
}

// newTestBroker returns a broker that is closed when the test ends.
func newTestBroker(t *testing.T, opts Options) *Broker {
	t.Helper()
	b, err := New(testOptions(opts))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	brokertest.CloseAtEnd(t, b)
	return b
}

// suiteBrokers is the suites' constructor of brokers made with opts.
func suiteBrokers(opts Options) func(t *testing.T) (hub.Broker, hub.PresenceManager) {
	return brokertest.Constructor(func() (*Broker, error) { return New(testOptions(opts)) })
}

func TestSuite(t *testing.T) {
	url := testservers.NATSURL(t)
	prefix := uniquePrefix()
	dropStorage(t, url, prefix)
	brokertest.RunSuite(t, suiteBrokers(Options{URL: url, Prefix: prefix, Storage: MemoryStorage}))
}

func hist(n int) hub.PublishOptions {
	return hub.PublishOptions{HistorySize: n, HistoryMetaTTL: time.Hour}
}

// TestTwoNodes runs two brokers (two nodes) on one server.
func TestTwoNodes(t *testing.T) {
	url := testservers.NATSURL(t)
	prefix := uniquePrefix()
	dropStorage(t, url, prefix)
	brokertest.RunTwoNodeSuite(t, suiteBrokers(Options{URL: url, Prefix: prefix, Storage: MemoryStorage}))
}

// TestOutageAndRecovery stops a private NATS server during traffic. The
// file store survives the restart, so the stream continues in the same
// epoch; the memory store does not, so a new epoch starts.
func TestOutageAndRecovery(t *testing.T) {
	for storage, resumed := range map[Storage]func(*testing.T, hub.StreamPosition, hub.StreamPosition){
		FileStorage:   brokertest.StreamContinues,
		MemoryStorage: brokertest.StreamRestarts,
	} {
		t.Run(string(storage), func(t *testing.T) {
			brokertest.RunOutageSuite(t, func(t *testing.T) brokertest.Outage {
				srv := testservers.StartNATS(t)
				const opTimeout = 2 * time.Second
				b, err := New(Options{URL: srv.URL(), Prefix: uniquePrefix(), Storage: storage, OpTimeout: opTimeout, ReconnectWait: 50 * time.Millisecond})
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return brokertest.Outage{
					Broker: b, Presence: b, OpTimeout: opTimeout,
					Stop: srv.Stop, Start: srv.Start,
					Connected: func() bool { return b.nc.IsConnected() },
					Resumed:   resumed,
				}
			})
		})
	}
}

func TestNewValidates(t *testing.T) {
	for name, o := range map[string]Options{
		"prefix":  {Prefix: "a.b"},
		"storage": {Storage: "tape"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestRunFailsWithoutServer(t *testing.T) {
	srv := testservers.StartNATS(t)
	srv.Stop()
	b := newTestBroker(t, Options{URL: srv.URL(), OpTimeout: 500 * time.Millisecond})
	if err := b.Run(context.Background(), brokertest.NewRecorder()); !errors.Is(err, hub.ErrBrokerUnavailable) {
		t.Fatalf("Run without server: %v", err)
	}
}

func TestTokenRoundTrip(t *testing.T) {
	for _, ch := range []string{"", "a", "chat:room.1", "x y*>", "ünïcode/\x00"} {
		tok := token(ch)
		for _, c := range tok {
			if c == '.' || c == '*' || c == '>' || c == ' ' {
				t.Fatalf("token %q of %q has %q", tok, ch, c)
			}
		}
		if back, ok := channelOfToken(tok); !ok || back != ch {
			t.Fatalf("round trip of %q: %q %v", ch, back, ok)
		}
	}
	if _, ok := channelOfToken("zzz"); ok {
		t.Fatal("foreign token decoded")
	}
}

func BenchmarkPublish(b *testing.B) {
	url := testservers.NATSURL(b)
	prefix := uniquePrefix()
	dropStorage(b, url, prefix)
	br, err := New(Options{URL: url, Prefix: prefix, Storage: MemoryStorage, OpTimeout: suiteOpTimeout})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close(context.Background())
	if err := br.Run(context.Background(), brokertest.NewRecorder()); err != nil {
		b.Fatal(err)
	}
	pub := &hub.Publication{Data: []byte(`{"text":"hello, world"}`)}
	b.ReportAllocs()
	b.ResetTimer()
	// Channels per goroutine: publishers to one channel contend for its
	// next offset; distinct channels show the throughput of the path.
	var n int64
	var mu sync.Mutex
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		n++
		ch := fmt.Sprintf("bench-%d", n)
		mu.Unlock()
		for pb.Next() {
			if _, err := br.Publish(context.Background(), ch, pub, hist(100)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func FuzzChannelOfToken(f *testing.F) {
	f.Add("c" + "YQ")
	f.Add("cY2hhdDoxLjI.cdTE")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, tok string) {
		if ch, ok := channelOfToken(tok); ok {
			if back, ok := channelOfToken(token(ch)); !ok || back != ch {
				t.Fatalf("channel %q does not round-trip", ch)
			}
		}
		if ch, id, ok := cutToken(tok); ok && presenceKey(ch, id) != tok && len(tok) > 0 {
			// Non-canonical base64 may decode; the key must still parse.
			if _, _, ok := cutToken(presenceKey(ch, id)); !ok {
				t.Fatalf("presence key of %q/%q does not parse", ch, id)
			}
		}
	})
}
