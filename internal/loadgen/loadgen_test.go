package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/bits"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/ws"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The ws engine's process-wide poller lives as long as the process.
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*epollPoller).loop"),
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*epollPoller).worker"),
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*worker).run"),
		goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*loop).run"),
	)
}

func TestSeqWindowInOrderReorderAndDuplicates(t *testing.T) {
	w := newSeqWindow()
	for _, s := range []uint64{1, 2, 4, 3, 5} {
		if !w.add(s) {
			t.Fatalf("add(%d) reported a duplicate", s)
		}
	}
	if w.add(3) {
		t.Fatal("second add(3) reported new")
	}
	if w.distinct != 5 || w.dups != 1 {
		t.Fatalf("distinct=%d dups=%d, want 5 and 1", w.distinct, w.dups)
	}
	// A gap is not counted by the window: loss is published minus distinct.
	w.add(10)
	if w.distinct != 6 {
		t.Fatalf("distinct=%d after a gap, want 6", w.distinct)
	}
}

func TestSeqWindowSlides(t *testing.T) {
	w := newSeqWindow()
	w.add(1)
	w.add(2)
	// Jumping far ahead settles 1 and 2; they leave the bitmap.
	far := uint64(10 * seqWindowBits)
	if !w.add(far) {
		t.Fatal("add(far) reported a duplicate")
	}
	if got := w.pending(); got != 1 {
		t.Fatalf("pending=%d after a far jump, want 1", got)
	}
	// A number that fell below the window is counted as a duplicate.
	if w.add(3) {
		t.Fatal("add(3) below the window reported new")
	}
	// Sliding by less than the window keeps the numbers still inside.
	w2 := newSeqWindow()
	for s := uint64(1); s <= seqWindowBits; s++ {
		w2.add(s)
	}
	w2.add(seqWindowBits + 10) // slides base to 11
	if got := w2.pending(); got != seqWindowBits-10+1 {
		t.Fatalf("pending=%d, want %d", got, seqWindowBits-10+1)
	}
	if w2.add(seqWindowBits) {
		t.Fatal("re-adding a number inside the window reported new")
	}
	if w2.distinct != seqWindowBits+1 || w2.dups != 1 {
		t.Fatalf("distinct=%d dups=%d", w2.distinct, w2.dups)
	}
}

func TestLatencyRecorderPercentiles(t *testing.T) {
	r := newLatencyRecorder(4)
	for i := 1; i <= 1000; i++ {
		r.record(i, time.Duration(i)*time.Millisecond)
	}
	sec := r.takeSecond()
	if sec.TotalCount() != 1000 {
		t.Fatalf("second count %d", sec.TotalCount())
	}
	if r.takeSecond().TotalCount() != 0 {
		t.Fatal("takeSecond did not reset")
	}
	l := summarize(r.takeStep())
	near := func(got, want float64) bool { return got >= want*0.99 && got <= want*1.01 }
	if l.Count != 1000 || !near(l.P50, 500) || !near(l.P90, 900) || !near(l.P99, 990) || !near(l.Max, 1000) {
		t.Fatalf("summary %+v", l)
	}
	// Out-of-range values are clamped, not dropped.
	r.record(0, -time.Second)
	r.record(0, time.Hour)
	if n := r.takeStep().TotalCount(); n != 2 {
		t.Fatalf("clamped count %d, want 2", n)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	sent := time.Unix(1763750000, 123456789)
	b := payload(nil, 42, 7, sent, 100)
	if len(b) != 100 {
		t.Fatalf("payload is %d bytes, want 100: %s", len(b), b)
	}
	if !json.Valid(b) {
		t.Fatalf("payload is not JSON: %s", b)
	}
	// Inside a herald push, too.
	push := append(append([]byte(`{"type":"publication","channel":"bench:x","data":`), b...), `,"time":1}`...)
	p, ok := parseFrame(push)
	if !ok || p.ch != 42 || p.seq != 7 || p.sent != sent.UnixNano() {
		t.Fatalf("parseFrame = %+v, %v", p, ok)
	}
	for _, bad := range []string{`{"id":1,"result":{}}`, `{"type":"ping"}`, `{"bch":1,"bseq":0,"bts":5}`, `{"bch":1,"bseq":}`} {
		if _, ok := parseFrame([]byte(bad)); ok {
			t.Errorf("parseFrame(%s) accepted", bad)
		}
	}
	small := payload(nil, 1, 1, sent, 10)
	if !json.Valid(small) {
		t.Fatalf("small payload not JSON: %s", small)
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add([]byte(`{"bch":1,"bseq":2,"bts":3,"pad":""}`))
	f.Add([]byte(`{"type":"publication","data":{"bch":0,"bseq":99999999999999999999,"bts":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := parseFrame(b)
		if ok && (p.ch < 0 || p.seq == 0) {
			t.Fatalf("accepted %+v", p)
		}
	})
}

func TestSourceAddrs(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "localhost", "127.0.0.9"} {
		a := sourceAddrs(host)
		if len(a) != 253 || !a[0].Equal(net.IPv4(127, 0, 0, 2)) || !a[252].Equal(net.IPv4(127, 0, 0, 254)) {
			t.Fatalf("sourceAddrs(%q) = %d addresses from %v", host, len(a), a[0])
		}
	}
	for _, host := range []string{"10.1.2.3", "::1", "example.com"} {
		if a := sourceAddrs(host); a != nil {
			t.Fatalf("sourceAddrs(%q) = %v, want none", host, a)
		}
	}
}

func TestCheckFDs(t *testing.T) {
	if err := checkFDs(1000, 20000); err != nil {
		t.Fatal(err)
	}
	err := checkFDs(50000, 20000)
	if err == nil {
		t.Fatal("50000 connections fit in 20000 descriptors")
	}
	for _, want := range []string{"50000 connections", "at most 20000", "run 3 bench processes of --conns 19936"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	lim, err := raiseFDLimit()
	if err != nil || lim == 0 {
		t.Fatalf("raiseFDLimit = %d, %v", lim, err)
	}
}

func TestReadProcSelf(t *testing.T) {
	ps, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if ps.RSS <= 0 {
		t.Fatalf("RSS %d", ps.RSS)
	}
	if _, err := readProc(-1); err == nil {
		t.Fatal("readProc(-1) succeeded")
	}
}

func TestWriteSVG(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSVG(&b, "t<1>", []Point{{T: 1, Deliveries: 10, P50: 1, P99: 2}, {T: 2, Deliveries: 20, P50: 1, P99: 3}}); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	if !strings.HasPrefix(s, "<svg") || strings.Count(s, "<polyline") != 3 || !strings.Contains(s, "t&lt;1&gt;") {
		t.Fatalf("unexpected SVG:\n%s", s)
	}
}

// fakeServer speaks the raw protocol and misbehaves on purpose: the first
// subscriber misses every publication whose sequence number is a multiple
// of 7, the second receives those that are multiples of 5 twice. It also
// records the source addresses of its connections.
type fakeServer struct {
	faithful bool // deliver everything once, no misbehaviour
	mu       sync.Mutex
	subs     []*ws.Conn
	sources  map[string]bool
	pubs     int64 // publications received
	wg       sync.WaitGroup
}

func (s *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ws":
		c, err := ws.Accept(w, r, nil)
		if err != nil {
			return
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		s.mu.Lock()
		s.sources[host] = true
		s.mu.Unlock()
		s.wg.Add(1)
		defer s.wg.Done()
		for {
			_, msg, err := c.Read(context.Background())
			if err != nil {
				c.CloseNow()
				return
			}
			var cmd struct{ Sub string }
			if json.Unmarshal(msg, &cmd) == nil && cmd.Sub != "" {
				s.mu.Lock()
				s.subs = append(s.subs, c)
				s.mu.Unlock()
				ok, _ := json.Marshal(map[string]string{"ok": cmd.Sub})
				_ = c.Write(context.Background(), ws.MessageText, ok)
			}
		}
	case "/publish":
		var req struct {
			Data json.RawMessage
		}
		body, _ := io.ReadAll(r.Body)
		if json.Unmarshal(body, &req) != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		p, ok := parseFrame(req.Data)
		if !ok {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		subs := append([]*ws.Conn(nil), s.subs...)
		s.pubs++
		s.mu.Unlock()
		for i, c := range subs {
			n := 1
			if i == 0 && p.seq%7 == 0 && !s.faithful {
				n = 0
			}
			if i == 1 && p.seq%5 == 0 && !s.faithful {
				n = 2
			}
			for range n {
				_ = c.Write(r.Context(), ws.MessageText, req.Data)
			}
		}
		_, _ = io.WriteString(w, "{}")
	default:
		http.NotFound(w, r)
	}
}

// startFake serves fs on 127.0.0.1 until the test ends and returns its
// WebSocket URL.
func startFake(t *testing.T, fs *fakeServer) string {
	srv := httptest.NewServer(fs)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		fs.wg.Wait()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

func TestFanoutAccountsLossAndDuplicates(t *testing.T) {
	fs := &fakeServer{sources: map[string]bool{}}
	wsURL := startFake(t, fs)
	res, err := Run(context.Background(), Config{
		URL:        wsURL,
		Protocol:   ProtocolRaw,
		Conns:      4,
		Rates:      []int{200},
		Step:       500 * time.Millisecond,
		Publishers: 1,  // one publisher keeps the server's order; the fake drops by position
		Warmup:     -1, // the step's sequence numbers start at 1: the counts below are exact
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 4 || len(res.Steps) != 1 {
		t.Fatalf("connected %d, steps %d", res.Connected, len(res.Steps))
	}
	st := res.Steps[0]
	n := st.Published
	if n < 14 {
		t.Fatalf("only %d published", n)
	}
	wantLost, wantDups := n/7, n/5
	if st.Expected != 4*n || st.Lost != wantLost || st.Duplicates != wantDups || st.Delivered != 4*n-wantLost {
		t.Fatalf("published %d: expected %d delivered %d lost %d dups %d; want lost %d dups %d",
			n, st.Expected, st.Delivered, st.Lost, st.Duplicates, wantLost, wantDups)
	}
	if st.OK || !st.Saturated() {
		t.Fatal("a step with loss passed")
	}
	if st.Latency.Count != st.Delivered {
		t.Fatalf("latency count %d, delivered %d", st.Latency.Count, st.Delivered)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.sources) != 4 || fs.sources["127.0.0.1"] {
		t.Fatalf("connections came from %v, want 4 spread addresses", fs.sources)
	}
}

// The warm-up publishes before the first step and none of it is counted.
func TestFanoutWarmupIsNotMeasured(t *testing.T) {
	fs := &fakeServer{faithful: true, sources: map[string]bool{}}
	wsURL := startFake(t, fs)
	res, err := Run(context.Background(), Config{
		URL:        wsURL,
		Protocol:   ProtocolRaw,
		Conns:      3,
		Rates:      []int{100},
		Step:       400 * time.Millisecond,
		Warmup:     200 * time.Millisecond,
		Publishers: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 1 {
		t.Fatalf("%d steps, want 1", len(res.Steps))
	}
	st := res.Steps[0]
	fs.mu.Lock()
	total := fs.pubs
	fs.mu.Unlock()
	if st.Published < 10 || total < st.Published+10 {
		t.Fatalf("server got %d publications, the step counted %d: want at least 10 more from the warm-up", total, st.Published)
	}
	if st.Expected != 3*st.Published || st.Delivered != st.Expected || st.Lost != 0 || st.Duplicates != 0 || st.Latency.Count != st.Delivered {
		t.Fatalf("step counted warm-up traffic: %+v", st)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{
		{},
		{URL: "tcp://127.0.0.1:1"},
		{URL: "http://127.0.0.1:1"},
		{URL: "ws://127.0.0.1:1", Mode: "nope"},
		{URL: "ws://127.0.0.1:1", Protocol: "nope"},
		{URL: "ws://127.0.0.1:1", Rates: []int{-1}},
		{URL: "ws://127.0.0.1:1", PublishVia: "pigeon"},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("Run(%+v) succeeded", c)
		}
	}
	_, err := Run(context.Background(), Config{URL: "tcp://127.0.0.1:1", Protocol: ProtocolRaw, PublishVia: "ws"})
	if err == nil || !strings.Contains(err.Error(), "use --protocol herald") {
		t.Fatalf("raw over tcp:// error %v", err)
	}
	_, err = Run(context.Background(), Config{URL: "tcp://127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "needs PublishURL") {
		t.Fatalf("tcp:// without a publish URL: error %v", err)
	}
	_, err = Run(context.Background(), Config{URL: "tcp://127.0.0.1", Mode: ModeIdle})
	if err == nil || !strings.Contains(err.Error(), "needs a port") {
		t.Fatalf("tcp:// without a port: error %v", err)
	}
}

// pending reports how many numbers the window has marked.
func (w *seqWindow) pending() int {
	n := 0
	for _, b := range w.bits {
		n += bits.OnesCount64(b)
	}
	return n
}

// tcpStream is n publication pushes of channel 0 in herald's TCP framing,
// with a keepalive and a ping push among them.
func tcpStream(n int) []byte {
	var b []byte
	for i := 1; i <= n; i++ {
		p := payload(nil, 0, uint64(i), time.Now(), 60)
		push := append(append([]byte(`{"type":"publication","channel":"bench:all","data":`), p...), '}')
		b = wire.AppendFrame(b, push)
		if i == n/2 {
			b = append(b, 0, 0, 0, 0) // keepalive
			b = wire.AppendFrame(b, []byte(`{"type":"ping"}`))
		}
	}
	return b
}

func newTestSubscriber() *subscriber {
	r := &run{cfg: Config{Mode: ModeFanout, Channels: 1}, lat: newLatencyRecorder(1), hi: 1, counters: make([]subCounters, 1)}
	return r.newSubscriber(0)
}

func TestTCPStreamSplitAnywhere(t *testing.T) {
	stream := tcpStream(5)
	for chunk := 1; chunk <= len(stream); chunk++ {
		s := newTestSubscriber()
		pongs := 0
		for b := stream; len(b) > 0; {
			n := min(chunk, len(b))
			if err := s.consumeTCP(b[:n], time.Now().UnixNano(), func() error { pongs++; return nil }); err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
			b = b[n:]
		}
		if d, u := s.ctr.delivered.Load(), s.ctr.dups.Load(); d != 5 || u != 0 || pongs != 1 || len(s.pend) != 0 {
			t.Fatalf("chunk %d: delivered %d dups %d pongs %d pending %d", chunk, d, u, pongs, len(s.pend))
		}
	}
	// A length over the limit ends the stream before anything is buffered.
	s := newTestSubscriber()
	if err := s.consumeTCP([]byte{0xff, 0xff, 0xff, 0xff, 'x'}, 0, nil); err == nil || len(s.pend) != 0 {
		t.Fatalf("oversized frame: %v, pending %d", err, len(s.pend))
	}
}

func FuzzTCPStream(f *testing.F) {
	f.Add(tcpStream(2), uint8(7))
	f.Add([]byte{0, 0, 0, 3, '{', '}', 0, 0}, uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		s := newTestSubscriber()
		n := max(int(chunk), 1)
		for b := stream; len(b) > 0; {
			k := min(n, len(b))
			if err := s.consumeTCP(b[:k], 0, func() error { return nil }); err != nil {
				return
			}
			if len(s.pend) > maxMessage+4 {
				t.Fatalf("pending %d bytes", len(s.pend))
			}
			b = b[k:]
		}
		if s.ctr.delivered.Load() < 0 || s.ctr.dups.Load() < 0 {
			t.Fatal("negative counts")
		}
	})
}

func TestParseReply(t *testing.T) {
	for _, c := range []struct {
		in        string
		id        uint32
		isErr, ok bool
	}{
		{`{"id":7,"result":{"offset":1,"epoch":"x"}}`, 7, false, true},
		{`{"id":9,"error":{"code":103,"message":"permission denied"}}`, 9, true, true},
		{`{"id":12}`, 12, false, true}, // the raw servers' answer
		{`{"type":"ping"}`, 0, false, false},
		{`{"id":0}`, 0, false, false},
		{`{"id":99999999999}`, 0, false, false},
		{`{"type":"publication","data":{"bch":1,"bseq":2,"bts":3,"id":4}}`, 0, false, false},
	} {
		id, isErr, ok := parseReply([]byte(c.in))
		if id != c.id || isErr != c.isErr || ok != c.ok {
			t.Errorf("parseReply(%s) = %d, %v, %v", c.in, id, isErr, ok)
		}
	}
}

// TestEachMessage: a centrifuge frame is split into its lines (a server
// joins replies and pushes that way), any other frame is one message.
func TestEachMessage(t *testing.T) {
	collect := func(proto Protocol, frame string, stopAfter int) []string {
		var got []string
		eachMessage(proto, []byte(frame), func(msg []byte) bool {
			got = append(got, string(msg))
			return len(got) != stopAfter
		})
		return got
	}
	joined := "{\"id\":3,\"result\":{}}\n{\"result\":{\"channel\":\"b1\",\"data\":{\"data\":{\"bch\":1}}}}\n"
	if got := collect(ProtocolCentrifuge, joined, 0); len(got) != 2 || got[0] != `{"id":3,"result":{}}` ||
		!strings.HasPrefix(got[1], `{"result":`) {
		t.Fatalf("centrifuge frame split into %q", got)
	}
	if got := collect(ProtocolCentrifuge, joined, 1); len(got) != 1 {
		t.Fatalf("did not stop when asked: %q", got)
	}
	if got := collect(ProtocolCentrifuge, "\n\n", 0); len(got) != 0 {
		t.Fatalf("empty lines gave %q", got)
	}
	if got := collect(ProtocolHerald, "a\nb", 0); len(got) != 1 || got[0] != "a\nb" {
		t.Fatalf("herald frame split into %q", got)
	}
}

// TestPublishFrameShapes pins the publish command of each protocol.
func TestPublishFrameShapes(t *testing.T) {
	data := []byte(`{"bch":1}`)
	for _, c := range []struct {
		proto Protocol
		id    uint32
		want  string
	}{
		{ProtocolHerald, 5, `{"id":5,"method":"publish","params":{"channel":"c","data":{"bch":1}}}`},
		{ProtocolCentrifuge, 6, `{"id":6,"method":3,"params":{"channel":"c","data":{"bch":1}}}`},
		{ProtocolRaw, 0, `{"pub":"c","data":{"bch":1}}`},
		{ProtocolRaw, 7, `{"pub":"c","id":7,"data":{"bch":1}}`},
	} {
		if got := string(publishFrame(nil, c.proto, c.id, "c", data)); got != c.want {
			t.Errorf("%s: %s, want %s", c.proto, got, c.want)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	f.Add([]byte(`{"id":7,"result":{}}`))
	f.Add([]byte(`{"id":4294967296,"error":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if id, _, ok := parseReply(b); ok && id == 0 {
			t.Fatal("accepted id 0")
		}
	})
}

func TestChooseProcs(t *testing.T) {
	child := func() (*exec.Cmd, error) { return nil, errors.New("not started in this test") }
	for _, c := range []struct {
		cfg     Config
		limit   uint64
		want    int
		wantErr string
	}{
		{Config{Conns: 1000, Mode: ModeFanout}, 20000, 1, ""},
		{Config{Conns: 50000, Mode: ModeFanout, ChildCommand: child}, 20000, 3, ""},
		{Config{Conns: 50000, Mode: ModeFanout}, 20000, 0, "run 3 bench processes"},
		{Config{Conns: 50000, Mode: ModeFanout, Procs: 2, ChildCommand: child}, 20000, 0, "use --procs 3"},
		{Config{Conns: 50000, Mode: ModeFanout, Procs: 4, ChildCommand: child}, 20000, 4, ""},
		{Config{Conns: 10, Mode: ModeFanout, Procs: 2}, 20000, 0, "ChildCommand"},
		{Config{Conns: 10, Mode: ModeEcho, Procs: 2, ChildCommand: child}, 20000, 0, "echo runs in one process"},
		{Config{Conns: 2, Mode: ModeIdle, Procs: 3, ChildCommand: child}, 20000, 0, "3 processes for 2 connections"},
	} {
		got, err := chooseProcs(c.cfg, 0, c.limit)
		if got != c.want || (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("chooseProcs(conns %d, procs %d, %s) = %d, %v; want %d, %q", c.cfg.Conns, c.cfg.Procs, c.cfg.Mode, got, err, c.want, c.wantErr)
		}
	}
}

func TestRunChildRejectsBadSetup(t *testing.T) {
	for _, setup := range []string{"", "nope\n", `{"proc":0,"procs":2,"config":{"URL":"ws://127.0.0.1:1/ws"}}` + "\n",
		`{"proc":1,"procs":2,"config":{"URL":"ftp://x"}}` + "\n"} {
		var out bytes.Buffer
		if err := RunChild(context.Background(), strings.NewReader(setup), &out); err == nil {
			t.Errorf("setup %q accepted", setup)
		}
	}
}

func TestFanoutStopsAfterP99FailuresAndMeasuresCPU(t *testing.T) {
	fs := &fakeServer{sources: map[string]bool{}, faithful: true}
	wsURL := startFake(t, fs)
	res, err := Run(context.Background(), Config{
		URL:        wsURL,
		Protocol:   ProtocolRaw,
		Conns:      2,
		Rates:      []int{20, 40, 80, 160},
		Step:       200 * time.Millisecond,
		MaxP99:     time.Nanosecond, // every step fails p99 only
		ServerPID:  os.Getpid(),
		Baseline:   100 * time.Millisecond,
		Publishers: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 || res.Best != -1 || res.FirstFailed != 0 || !strings.Contains(res.Stopped, "2 consecutive steps over p99") {
		t.Fatalf("%d steps, best %d, first failed %d, stopped %q", len(res.Steps), res.Best, res.FirstFailed, res.Stopped)
	}
	for _, st := range res.Steps {
		if st.Saturated() || st.Delivered != st.Expected || st.Delivered == 0 {
			t.Fatalf("step %+v", st)
		}
		if st.MarginalCPUPerDelivery > st.CPUPerDelivery || st.ClientCPU < 0 {
			t.Fatalf("marginal %.0f over raw %.0f ns/delivery, client CPU %.1f%%", st.MarginalCPUPerDelivery, st.CPUPerDelivery, st.ClientCPU)
		}
		if got := st.Failure(time.Nanosecond); !strings.Contains(got, "p99") {
			t.Fatalf("failure %q", got)
		}
	}
	if res.IdleCPU < 0 {
		t.Fatalf("idle CPU %.1f", res.IdleCPU)
	}
}

// signalWriter closes first on its first write.
type signalWriter struct {
	once  sync.Once
	first chan struct{}
}

func (w *signalWriter) Write(b []byte) (int, error) {
	w.once.Do(func() { close(w.first) })
	return len(b), nil
}

// TestProgressWhileConnecting: the progress line is printed while
// connections are still being made (a server slow to answer the
// handshake), and reads the counters without racing with connect.
func TestProgressWhileConnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	progress := &signalWriter{first: make(chan struct{})}
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		// Hold the handshake until a progress line was printed.
		select {
		case <-progress.first:
		case <-time.After(10 * time.Second):
		}
		c.Close()
	}()
	defer func() {
		ln.Close()
		<-served
	}()
	_, err = Run(context.Background(), Config{
		URL: "ws://" + ln.Addr().String() + "/ws", Conns: 1, Rates: []int{10}, Step: time.Second,
		Progress: progress, NoSpread: true,
	})
	select {
	case <-progress.first:
	default:
		t.Fatalf("no progress line while connecting (run ended with %v)", err)
	}
}
