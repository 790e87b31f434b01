package ws

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestEnqueue checks the event-mode queue contract: Enqueue needs Serve,
// a message over the queue limit fails with ErrQueueFull and leaves the
// connection open, and queued prepared messages arrive in order.
func TestEnqueue(t *testing.T) {
	sc, cc := tcpPair(t)
	srv, cli := newConnPair(t, sc, cc, pairOpts{opts: ConnOptions{QueueBytes: 1000}})
	pm := NewPreparedMessage(MessageText, text("prepared"))
	if err := srv.Enqueue(pm); !errors.Is(err, ErrNotServed) {
		t.Fatalf("Enqueue before Serve: %v", err)
	}
	wait := startEcho(t, srv, true)
	if err := srv.Enqueue(NewPreparedMessage(MessageBinary, make([]byte, 2000))); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("oversized Enqueue: %v, want ErrQueueFull", err)
	}
	if err := srv.EnqueueMessage(MessageBinary, make([]byte, 2000)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("oversized EnqueueMessage: %v, want ErrQueueFull", err)
	}
	for range 3 {
		if err := srv.Enqueue(pm); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		typ, got, err := cli.Read(ctx)
		if err != nil || typ != MessageText || string(got) != "prepared" {
			t.Fatalf("read: %v %q %v", typ, got, err)
		}
	}
	if err := srv.Serve(newEchoHandler()); !errors.Is(err, ErrServed) {
		t.Fatalf("second Serve: %v", err)
	}
	if _, _, err := srv.Read(ctx); !errors.Is(err, ErrServed) {
		t.Fatalf("Read in event mode: %v", err)
	}
	cli.Close(StatusNormalClosure, "")
	if err := wait(); CloseStatus(err) != StatusNormalClosure {
		t.Fatalf("server: %v", err)
	}
	if err := srv.Enqueue(pm); !errors.Is(err, ErrClosed) {
		t.Fatalf("Enqueue after close: %v", err)
	}
}

// TestServeBuffered checks that bytes read before Serve (for example
// past the handshake) are parsed first.
func TestServeBuffered(t *testing.T) {
	sc, cc := tcpPair(t)
	first := fr(opText, true, text("early")).bytes(true)
	srv := newConn(connConfig{netConn: sc, isServer: true, buffered: first})
	defer srv.CloseNow()
	wait := startEcho(t, srv, true)
	peer := &rawPeer{t: t, conn: cc}
	f, err := peer.readFrame(true)
	if err != nil || string(f.data) != "early" {
		t.Fatalf("echo of buffered message: %q %v", f.data, err)
	}
	peer.write(fr(opClose, true, closePayload(StatusNormalClosure, "")).bytes(true))
	if code, _ := peer.expectClose(true); code != StatusNormalClosure {
		t.Fatalf("close %v", code)
	}
	peer.expectEOF()
	wait()
}

// TestPreparedShared checks that a prepared message's compressed frame is
// built once per parameter set and shared, that connections with
// context takeover do not share it, and that client connections mask a
// copy.
func TestPreparedShared(t *testing.T) {
	payload := bytes.Repeat(text("shared payload "), 100)
	pm := NewPreparedMessage(MessageText, payload)
	mk := func(server bool, p *deflateParams) *Conn {
		sc, _ := tcpPair(t)
		c := newConn(connConfig{netConn: sc, isServer: server, deflate: p})
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	noCtx := func(bits int) *deflateParams {
		return &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true, writeWindowBits: bits}
	}
	a, b := mk(true, noCtx(15)), mk(true, noCtx(15))
	fa, pa, rsv1, shared := pm.encodingFor(a)
	fb, _, _, _ := pm.encodingFor(b)
	if !rsv1 || !shared || &fa[0] != &fb[0] {
		t.Fatal("connections with the same parameters do not share one compressed frame")
	}
	fc, _, _, _ := pm.encodingFor(mk(true, noCtx(10)))
	if &fc[0] == &fa[0] {
		t.Fatal("different windows share a frame")
	}
	if _, _, _, shared := pm.encodingFor(mk(true, &deflateParams{readNoContextTakeover: true})); shared {
		t.Fatal("a context-takeover connection uses the shared frame")
	}
	fp, _, rsv1, _ := pm.encodingFor(mk(true, nil))
	if rsv1 || &fp[0] != &pm.frame[0] {
		t.Fatal("an uncompressed connection does not use the prepared frame")
	}
	if got := inflateMsg(t, pa); !bytes.Equal(got, payload) {
		t.Fatal("shared compressed frame does not inflate to the payload")
	}
}

// TestEventWriter checks that a Writer works in event mode and that
// concurrent Enqueue calls never land between its fragments.
func TestEventWriter(t *testing.T) {
	sc, cc := tcpPair(t)
	srv, cli := newConnPair(t, sc, cc, pairOpts{})
	wait := startEcho(t, srv, true)
	big := bytes.Repeat([]byte{7}, 100_000)
	pm := NewPreparedMessage(MessageText, text("between"))
	w, err := srv.Writer(context.Background(), MessageBinary)
	if err != nil {
		t.Fatal(err)
	}
	enq := make(chan error, 1)
	go func() { enq <- srv.Enqueue(pm) }()
	for p := big; len(p) > 0; p = p[min(len(p), 30_000):] {
		w.Write(p[:min(len(p), 30_000)])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-enq; err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var gotBig, gotSmall bool
	for range 2 {
		_, got, err := cli.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case bytes.Equal(got, big):
			gotBig = true
		case string(got) == "between":
			gotSmall = true
		default:
			t.Fatalf("unexpected message of %d bytes", len(got))
		}
	}
	if !gotBig || !gotSmall {
		t.Fatal("missing message")
	}
	cli.Close(StatusNormalClosure, "")
	wait()
}

// TestQueueFullContextTakeover checks that with write context takeover a
// message that may not fit the queue is refused before it is compressed,
// so the shared LZ77 window stays in step with the peer's.
func TestQueueFullContextTakeover(t *testing.T) {
	sc, cc := tcpPair(t)
	p := func() *deflateParams { return &deflateParams{threshold: 1} }
	srv, cli := newConnPair(t, sc, cc, pairOpts{serverDeflate: p(), clientDeflate: p(), opts: ConnOptions{QueueBytes: 1000}})
	wait := startEcho(t, srv, true)
	big := bytes.Repeat(text("x"), 2000)
	if err := srv.EnqueueMessage(MessageText, big); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("EnqueueMessage: %v, want ErrQueueFull", err)
	}
	ctx := context.Background()
	for _, m := range []string{"still", "in step", "still in step"} {
		if err := srv.EnqueueMessage(MessageText, text(m)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := cli.Read(ctx); err != nil || string(got) != m {
			t.Fatalf("read %q: %q %v", m, got, err)
		}
	}
	cli.Close(StatusNormalClosure, "")
	wait()
}
