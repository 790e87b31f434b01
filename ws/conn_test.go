package ws

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestEcho checks RFC 6455 §5.6 data frames end to end: a client Conn
// sends text and binary messages of every length encoding (§5.2: 7-bit,
// 16-bit, 64-bit) and reads them back from an echoing server, over TCP
// and net.Pipe, in blocking and event mode, with and without
// permessage-deflate (RFC 7692).
func TestEcho(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 1000, 65535, 65536, 200_000}
	for _, tr := range transports {
		for _, mode := range modes {
			for _, deflate := range []bool{false, true} {
				name := tr.name + "/" + mode.name
				if deflate {
					name += "/deflate"
				}
				t.Run(name, func(t *testing.T) {
					sc, cc := tr.pair(t)
					var o pairOpts
					if deflate {
						o.serverDeflate = &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true, threshold: 64}
						o.clientDeflate = &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true, threshold: 64}
					}
					srv, cli := newConnPair(t, sc, cc, o)
					wait := startEcho(t, srv, mode.event)
					ctx := context.Background()
					for _, n := range sizes {
						for _, typ := range []MessageType{MessageText, MessageBinary} {
							msg := bytes.Repeat([]byte("héllo wörld "), n/13+1)[:0]
							msg = append(msg, strings.Repeat("a", n)...)
							if err := cli.Write(ctx, typ, msg); err != nil {
								t.Fatalf("write %d: %v", n, err)
							}
							gt, got, err := cli.Read(ctx)
							if err != nil {
								t.Fatalf("read %d: %v", n, err)
							}
							if gt != typ || !bytes.Equal(got, msg) {
								t.Fatalf("echo of %d bytes %v: got %v, %d bytes", n, typ, gt, len(got))
							}
						}
					}
					if err := cli.Close(StatusNormalClosure, "bye"); err != nil {
						t.Fatalf("close: %v", err)
					}
					err := wait()
					if CloseStatus(err) != StatusNormalClosure {
						t.Fatalf("server saw %v, want a 1000 close", err)
					}
					var ce *CloseError
					if !errors.As(err, &ce) || ce.Reason != "bye" {
						t.Fatalf("server saw %v, want reason bye", err)
					}
				})
			}
		}
	}
}

// TestStreaming checks fragmentation both ways (RFC 6455 §5.4): Writer
// sends a large message as several frames and Reader streams a large
// message without buffering it.
func TestStreaming(t *testing.T) {
	for _, mode := range modes {
		for _, deflate := range []bool{false, true} {
			t.Run(mode.name+map[bool]string{true: "/deflate", false: ""}[deflate], func(t *testing.T) {
				sc, cc := tcpPair(t)
				var o pairOpts
				if deflate {
					o.serverDeflate = &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true}
					o.clientDeflate = &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true}
				}
				srv, cli := newConnPair(t, sc, cc, o)
				wait := startEcho(t, srv, mode.event)
				ctx := context.Background()
				want := make([]byte, 300_000)
				for i := range want {
					want[i] = byte(i * 7 / 5)
				}
				w, err := cli.Writer(ctx, MessageBinary)
				if err != nil {
					t.Fatal(err)
				}
				for p := want; len(p) > 0; {
					n := min(len(p), 7777)
					if _, err := w.Write(p[:n]); err != nil {
						t.Fatal(err)
					}
					p = p[n:]
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				typ, r, err := cli.Reader(ctx)
				if err != nil || typ != MessageBinary {
					t.Fatalf("reader: %v %v", typ, err)
				}
				got, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("streamed echo differs: %d bytes", len(got))
				}
				if err := cli.Close(StatusGoingAway, ""); err != nil {
					t.Fatal(err)
				}
				if err := wait(); CloseStatus(err) != StatusGoingAway {
					t.Fatalf("server saw %v", err)
				}
			})
		}
	}
}

// TestPing checks RFC 6455 §5.5.2-5.5.3: Ping resolves on the pong that
// echoes it, in both directions and both modes.
func TestPing(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			sc, cc := tcpPair(t)
			srv, cli := newConnPair(t, sc, cc, pairOpts{})
			wait := startEcho(t, srv, mode.event)
			readErr := make(chan error, 1)
			go func() {
				_, _, err := cli.Read(context.Background())
				readErr <- err
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for range 3 {
				rtt, err := cli.Ping(ctx)
				if err != nil || rtt <= 0 {
					t.Fatalf("client ping: %v %v", rtt, err)
				}
			}
			if mode.event {
				// The server's poller reads its pongs.
				if _, err := srv.Ping(ctx); err != nil {
					t.Fatalf("server ping: %v", err)
				}
			}
			if err := srv.Close(StatusNormalClosure, ""); err != nil && !mode.event {
				t.Fatal(err)
			}
			if err := <-readErr; CloseStatus(err) != StatusNormalClosure {
				t.Fatalf("client read ended with %v", err)
			}
			wait()
		})
	}
}

// TestReadContext checks that a cancelled Read between messages leaves
// the connection usable.
func TestReadContext(t *testing.T) {
	sc, cc := tcpPair(t)
	srv, cli := newConnPair(t, sc, cc, pairOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := srv.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read: %v", err)
	}
	if err := cli.Write(context.Background(), MessageText, []byte("after")); err != nil {
		t.Fatal(err)
	}
	_, got, err := srv.Read(context.Background())
	if err != nil || string(got) != "after" {
		t.Fatalf("read after timeout: %q %v", got, err)
	}
	// A read abandoned inside a frame header resumes where it stopped.
	frame := fr(opText, true, text("split header")).bytes(true)
	if _, err := cc.Write(frame[:3]); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, _, err := srv.Read(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read: %v", err)
	}
	if _, err := cc.Write(frame[3:]); err != nil {
		t.Fatal(err)
	}
	if _, got, err := srv.Read(context.Background()); err != nil || string(got) != "split header" {
		t.Fatalf("resumed read: %q %v", got, err)
	}
}

// TestCloseIdempotent checks that Close and CloseNow may be called from
// many goroutines, any number of times.
func TestCloseIdempotent(t *testing.T) {
	sc, cc := tcpPair(t)
	srv, cli := newConnPair(t, sc, cc, pairOpts{})
	wait := startEcho(t, srv, false)
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			_ = cli.Close(StatusNormalClosure, "")
			_ = cli.CloseNow()
		}()
	}
	for range 4 {
		<-done
	}
	wait()
	if err := cli.Write(context.Background(), MessageText, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// TestLastRead checks that LastRead advances when a frame arrives, in
// both modes.
func TestLastRead(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			sc, cc := tcpPair(t)
			srv, cli := newConnPair(t, sc, cc, pairOpts{})
			start := srv.LastRead()
			wait := startEcho(t, srv, mode.event)
			ctx := context.Background()
			deadline := time.Now().Add(5 * time.Second)
			for !srv.LastRead().After(start) {
				if time.Now().After(deadline) {
					t.Fatal("LastRead did not advance")
				}
				if err := cli.Write(ctx, MessageText, []byte("tick")); err != nil {
					t.Fatal(err)
				}
				if _, _, err := cli.Read(ctx); err != nil {
					t.Fatal(err)
				}
			}
			cli.Close(StatusNormalClosure, "")
			wait()
		})
	}
}

// TestNothingAfterClose checks RFC 6455 §5.5.1 in blocking mode: frames
// after the peer's close frame are not delivered, whatever the number of
// Read calls.
func TestNothingAfterClose(t *testing.T) {
	sc, cc := tcpPair(t)
	srv, _ := newConnPair(t, sc, cc, pairOpts{})
	frames := concat(fr(opClose, true, closePayload(StatusGoingAway, "")).bytes(true), fr(opText, true, text("late")).bytes(true))
	if _, err := cc.Write(frames); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, got, err := srv.Read(context.Background()); CloseStatus(err) != StatusGoingAway {
			t.Fatalf("Read = %q, %v; want the close", got, err)
		}
	}
}

// TestPingMatching checks RFC 6455 §5.5.3: a pong whose payload matches
// no ping does not resolve Ping; the matching one does.
func TestPingMatching(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			sc, cc := tcpPair(t)
			srv := newConn(connConfig{netConn: sc, isServer: true})
			defer srv.CloseNow()
			wait := startEcho(t, srv, mode.event)
			peer := &rawPeer{t: t, conn: cc}
			type result struct {
				rtt time.Duration
				err error
			}
			res := make(chan result, 1)
			go func() {
				rtt, err := srv.Ping(context.Background())
				res <- result{rtt, err}
			}()
			ping, err := peer.readFrame(true)
			if err != nil || ping.op != opPing || len(ping.data) != 8 {
				t.Fatalf("ping frame: %+v %v", ping, err)
			}
			wrong := append([]byte(nil), ping.data...)
			wrong[0] ^= 0xff
			// The echoed message proves the wrong pong was processed.
			peer.write(concat(fr(opPong, true, wrong).bytes(true), fr(opText, true, text("sync")).bytes(true)))
			if f, err := peer.readFrame(true); err != nil || string(f.data) != "sync" {
				t.Fatalf("echo: %v", err)
			}
			select {
			case r := <-res:
				t.Fatalf("Ping resolved by a foreign pong: %v", r)
			default:
			}
			peer.write(fr(opPong, true, ping.data).bytes(true))
			if r := <-res; r.err != nil || r.rtt <= 0 {
				t.Fatalf("Ping: %v %v", r.rtt, r.err)
			}
			peer.write(fr(opClose, true, closePayload(StatusNormalClosure, "")).bytes(true))
			peer.expectClose(true)
			wait()
		})
	}
}

// TestCancelledWrite checks that a write whose context is already done
// sends nothing and leaves the connection usable.
func TestCancelledWrite(t *testing.T) {
	sc, cc := tcpPair(t)
	srv, cli := newConnPair(t, sc, cc, pairOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := cli.Write(ctx, MessageText, []byte("never")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write: %v", err)
	}
	if err := cli.Write(context.Background(), MessageText, []byte("sent")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := srv.Read(context.Background()); err != nil || string(got) != "sent" {
		t.Fatalf("Read: %q %v", got, err)
	}
}

// TestBlockingReadReleasesBuffer checks that a blocking connection gives
// its read buffer back once a message is read and nothing is pending.
func TestBlockingReadReleasesBuffer(t *testing.T) {
	sc, cc := tcpPair(t)
	srv, cli := newConnPair(t, sc, cc, pairOpts{})
	for _, n := range []int{10, 100_000} {
		if err := cli.Write(context.Background(), MessageBinary, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := srv.Read(context.Background()); err != nil || len(got) != n {
			t.Fatalf("read: %d %v", len(got), err)
		}
		if b := srv.blocking.Load(); b != nil && b.rbuf != nil {
			t.Fatalf("read buffer held after a %d-byte message", n)
		}
	}
}
