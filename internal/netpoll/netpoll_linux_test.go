//go:build linux

package netpoll

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testcert"
	"github.com/heraldhq/herald/internal/testwait"
)

func TestEchoManyConns(t *testing.T) {
	p := newTestPoller(t, Options{})
	ln := listen(t)
	const conns = 200
	clients := make([]net.Conn, conns)
	recs := make([]*recorder, conns)
	for i := range conns {
		s, c := tcpPair(t, ln)
		recs[i] = newRecorder(true)
		pc := register(t, p, s, recs[i])
		if pc.Fallback() {
			t.Fatal("TCP connection got the fallback")
		}
		if pc.RemoteAddr().String() != c.LocalAddr().String() || pc.LocalAddr().String() != c.RemoteAddr().String() {
			t.Fatalf("addresses %v %v, client %v %v", pc.LocalAddr(), pc.RemoteAddr(), c.LocalAddr(), c.RemoteAddr())
		}
		clients[i] = c
	}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, c := range clients {
		wg.Go(func() {
			for round := range 5 {
				msg := fmt.Appendf(nil, "conn %d round %d %s", i, round, bytes.Repeat([]byte{'x'}, i*37))
				if _, err := c.Write(msg); err != nil {
					errs <- err
					return
				}
				c.SetReadDeadline(time.Now().Add(testTimeout))
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("conn %d: echo %q, want %q", i, got, msg)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Open != conns || st.Fallback != 0 {
		t.Fatalf("stats %+v", st)
	}
	for _, c := range clients {
		c.Close()
	}
	for _, r := range recs {
		if err := r.waitClosed(t); err != io.EOF {
			t.Fatalf("OnClose err %v, want io.EOF", err)
		}
	}
	testwait.Until(t, "open count 0", func() bool { return p.Stats().Open == 0 })
}

func TestEchoUnixSocket(t *testing.T) {
	p := newTestPoller(t, Options{})
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	rec := newRecorder(true)
	c := register(t, p, server, rec)
	if c.Fallback() {
		t.Fatal("unix stream socket got the fallback")
	}
	client.Write([]byte("over unix"))
	if got := readFull(t, client, 9); string(got) != "over unix" {
		t.Fatalf("echo %q", got)
	}
}

func TestUnixgramGetsFallback(t *testing.T) {
	p := newTestPoller(t, Options{})
	dir := t.TempDir()
	a, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: dir + "/a", Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.DialUnix("unixgram", nil, a.LocalAddr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rec := newRecorder(false)
	c := register(t, p, a, rec)
	if !c.Fallback() {
		t.Fatal("datagram socket moved to epoll")
	}
	b.Write([]byte("dgram"))
	testwait.Until(t, "datagram", func() bool { return string(rec.received()) == "dgram" })
	c.Close()
	if err := rec.waitClosed(t); err != nil {
		t.Fatalf("OnClose err %v", err)
	}
}

func TestEchoFallbackTLS(t *testing.T) {
	p := newTestPoller(t, Options{})
	cert := testcert.New(t, "127.0.0.1")
	serverCfg, clientCfg := cert.ServerConfig(), cert.ClientConfig("127.0.0.1")
	ln := listen(t)
	s, cl := tcpPair(t, ln)
	tlsServer := tls.Server(s, serverCfg)
	rec := newRecorder(true)
	c := register(t, p, tlsServer, rec)
	if !c.Fallback() {
		t.Fatal("*tls.Conn did not get the fallback")
	}
	client := tls.Client(cl, clientCfg)
	defer client.Close()
	client.SetDeadline(time.Now().Add(testTimeout))
	var want bytes.Buffer
	for i := range 50 {
		msg := fmt.Appendf(nil, "tls message %d;", i)
		want.Write(msg)
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFull(t, client, want.Len()); !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("echo %q, want %q", got, want.Bytes())
	}
	// A local close reaches the peer as close_notify then EOF.
	c.Close()
	expectEOF(t, client)
	if err := rec.waitClosed(t); err != nil {
		t.Fatalf("OnClose err %v, want nil", err)
	}
}

// blockWorkers occupies every worker of p (Workers must be 1) with an
// OnData that waits until the returned release is called. The data is
// ConnOptions.Buffered, delivered by the registration's turn, which always
// runs on a worker (a socket event could be served inline by the loop).
func blockWorkers(t *testing.T, p *Poller, ln net.Listener) (release func()) {
	t.Helper()
	s, _ := tcpPair(t, ln)
	entered := make(chan struct{})
	gate := make(chan struct{})
	rec := newRecorder(false)
	rec.onData = func(*Conn, []byte) {
		close(entered)
		<-gate
	}
	if _, err := p.Register(s, rec, ConnOptions{Buffered: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	<-entered
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return release
}

func TestWritesCoalesceIntoOneWritev(t *testing.T) {
	p := newTestPoller(t, Options{Workers: 1})
	ln := listen(t)
	s, client := tcpPair(t, ln)
	c := register(t, p, s, newRecorder(false))
	release := blockWorkers(t, p, ln)
	before := p.Stats().Writes
	var want bytes.Buffer
	const msgs = 300
	for i := range msgs {
		msg := fmt.Appendf(nil, "frame %03d|", i)
		want.Write(msg)
		if err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	if b, m := c.Queued(); b != want.Len() || m != msgs {
		t.Fatalf("Queued() = %d, %d; want %d, %d", b, m, want.Len(), msgs)
	}
	release()
	if got := readFull(t, client, want.Len()); !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got %q", got)
	}
	testwait.Until(t, "queue drained", func() bool { b, m := c.Queued(); return b == 0 && m == 0 })
	if n := p.Stats().Writes - before; n != 1 {
		t.Fatalf("%d queued writes took %d writev calls, want 1", msgs, n)
	}
}

func TestWritevCapsIovecs(t *testing.T) {
	p := newTestPoller(t, Options{Workers: 1})
	ln := listen(t)
	s, client := tcpPair(t, ln)
	c := register(t, p, s, newRecorder(false))
	release := blockWorkers(t, p, ln)
	before := p.Stats().Writes
	const msgs = 2*maxIovecs + 10
	var want bytes.Buffer
	for i := range msgs {
		// Header and body as one message: two iovecs each.
		hdr := []byte{byte(i >> 8), byte(i)}
		body := []byte{'.'}
		want.Write(hdr)
		want.Write(body)
		if err := c.WriteBuffers(hdr, body); err != nil {
			t.Fatal(err)
		}
	}
	release()
	if got := readFull(t, client, want.Len()); !bytes.Equal(got, want.Bytes()) {
		t.Fatal("payload mismatch")
	}
	testwait.Until(t, "queue drained", func() bool { _, m := c.Queued(); return m == 0 })
	// 2*msgs iovecs at most maxIovecs per call.
	if n, min := p.Stats().Writes-before, uint64(2*msgs+maxIovecs-1)/maxIovecs; n != min {
		t.Fatalf("writev calls %d, want %d", n, min)
	}
}

func TestPartialWritesResumeOnEPOLLOUT(t *testing.T) {
	p := newTestPoller(t, Options{})
	ln := listen(t)
	s, client := tcpPair(t, ln)
	// A small send buffer makes the socket fill quickly. (A tiny receive
	// buffer on the peer would instead stall loopback TCP in silly-window
	// avoidance until the persist timer fires.)
	s.SetWriteBuffer(4 << 10)
	c := register(t, p, s, newRecorder(false))
	const total = 2 << 20
	payload := make([]byte, total)
	for i := range payload {
		payload[i] = byte(i * 7 / 3)
	}
	for off := 0; off < total; off += 64 << 10 {
		if err := c.Write(payload[off : off+64<<10]); err != nil {
			t.Fatal(err)
		}
	}
	// Nobody reads yet: the socket fills and the flush waits for EPOLLOUT.
	testwait.Until(t, "a blocked flush", func() bool { return p.Stats().WriteBlocked > 0 })
	if b, _ := c.Queued(); b == 0 {
		t.Fatal("queue drained although the peer reads nothing")
	}
	// A slow reader: small reads, each freeing a little space.
	client.SetReadDeadline(time.Now().Add(testTimeout))
	got := make([]byte, 0, total)
	buf := make([]byte, 1500)
	for len(got) < total {
		n, err := client.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload corrupted")
	}
	testwait.Until(t, "queue drained", func() bool { b, m := c.Queued(); return b == 0 && m == 0 })
	if st := p.Stats(); st.WriteBlocked < 2 || st.Writes < 3 {
		t.Fatalf("expected several partial flushes: %+v", st)
	}
}

func TestQueueFull(t *testing.T) {
	check := func(t *testing.T, c *Conn, p *Poller) {
		t.Helper()
		for i := range 10 {
			if err := c.Write(make([]byte, 10)); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
		}
		before := p.Stats().QueueFull
		// Message limit (10).
		if err := c.Write([]byte{1}); err != ErrQueueFull {
			t.Fatalf("11th message: %v, want ErrQueueFull", err)
		}
		if b, m := c.Queued(); b != 100 || m != 10 {
			t.Fatalf("Queued() = %d, %d", b, m)
		}
		if n := p.Stats().QueueFull - before; n != 1 {
			t.Fatalf("QueueFull counted %d", n)
		}
	}
	checkBytes := func(t *testing.T, c *Conn) {
		t.Helper()
		if err := c.Write(make([]byte, 600)); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteBuffers(make([]byte, 200), make([]byte, 200)); err != nil {
			t.Fatal(err)
		}
		// 1000 of 1000 bytes used: one more byte is over the limit, and a
		// rejected multi-buffer message queues none of its parts.
		if err := c.WriteBuffers([]byte{1}); err != ErrQueueFull {
			t.Fatalf("over byte limit: %v", err)
		}
		if b, m := c.Queued(); b != 1000 || m != 2 {
			t.Fatalf("Queued() = %d, %d", b, m)
		}
	}
	opts := ConnOptions{QueueBytes: 1000, QueueMessages: 10}

	t.Run("epoll", func(t *testing.T) {
		p := newTestPoller(t, Options{Workers: 1})
		ln := listen(t)
		s1, _ := tcpPair(t, ln)
		s2, _ := tcpPair(t, ln)
		c1 := register(t, p, s1, newRecorder(false), opts)
		c2 := register(t, p, s2, newRecorder(false), opts)
		// With the only worker held nothing drains, so the limits are
		// exact.
		blockWorkers(t, p, ln)
		check(t, c1, p)
		checkBytes(t, c2)
		if err := c2.Write(make([]byte, 1001)); err != ErrQueueFull {
			t.Fatalf("message over the limit: %v", err)
		}
	})
	t.Run("fallback", func(t *testing.T) {
		p := newTestPoller(t, Options{})
		s1, peer1 := net.Pipe()
		s2, peer2 := net.Pipe()
		defer peer1.Close()
		defer peer2.Close()
		c1 := register(t, p, s1, newRecorder(false), opts)
		c2 := register(t, p, s2, newRecorder(false), opts)
		// The peers never read: the flusher blocks in the pipe's Write and
		// nothing is consumed.
		check(t, c1, p)
		checkBytes(t, c2)
	})
}

func TestPeerCloseClosesSocket(t *testing.T) {
	p := newTestPoller(t, Options{})
	ln := listen(t)
	baseline := openFDs(t)
	s, client := tcpPair(t, ln)
	rec := newRecorder(false)
	c := register(t, p, s, rec)
	client.Write([]byte("bye"))
	// Half-close: the server sees EOF and must close its socket, which
	// the client observes as EOF on its read side.
	client.CloseWrite()
	if err := rec.waitClosed(t); err != io.EOF {
		t.Fatalf("OnClose err %v, want io.EOF", err)
	}
	if got := rec.received(); string(got) != "bye" {
		t.Fatalf("received %q", got)
	}
	expectEOF(t, client)
	assertNoCloseWait(t, ln.Addr().(*net.TCPAddr).Port)
	client.Close()
	testwait.Until(t, "descriptors released", func() bool { return openFDs(t) <= baseline })
	if err := c.Write([]byte("x")); err != ErrClosed {
		t.Fatalf("Write after peer close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	rec.waitClosed(t) // still exactly once
}

func TestPeerResetClosesWithError(t *testing.T) {
	p := newTestPoller(t, Options{})
	ln := listen(t)
	s, client := tcpPair(t, ln)
	rec := newRecorder(false)
	c := register(t, p, s, rec)
	if err := c.Write([]byte("unread")); err != nil {
		t.Fatal(err)
	}
	readFull(t, client, 6)
	client.SetLinger(0) // close sends RST
	client.Close()
	err := rec.waitClosed(t)
	if err == nil || err == io.EOF {
		t.Fatalf("OnClose err %v, want a reset error", err)
	}
}

// assertNoCloseWait fails if a socket with local port port is in
// CLOSE_WAIT (state 08 in /proc/net/tcp).
func assertNoCloseWait(t *testing.T, port int) {
	t.Helper()
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := readProcFile(file)
		if err != nil {
			continue
		}
		suffix := fmt.Appendf(nil, ":%04X", port)
		for _, line := range bytes.Split(data, []byte("\n"))[1:] {
			if !bytes.Contains(line, suffix) {
				continue // the table can hold many thousand sockets
			}
			f := bytes.Fields(line)
			if len(f) >= 4 && bytes.HasSuffix(f[1], suffix) && string(f[3]) == "08" {
				t.Fatalf("socket %s in CLOSE_WAIT", f[1])
			}
		}
	}
}

func TestCloseInsideOnData(t *testing.T) {
	for _, path := range []string{"epoll", "fallback"} {
		t.Run(path, func(t *testing.T) {
			p := newTestPoller(t, Options{})
			server, client := connPair(t, path)
			rec := newRecorder(false)
			var writeErr error
			rec.onData = func(c *Conn, data []byte) {
				c.Write([]byte("reply"))
				c.Close()
				c.Close()
				writeErr = c.Write([]byte("after"))
			}
			c := register(t, p, server, rec)
			go client.Write([]byte("hello"))
			if err := rec.waitClosed(t); err != nil {
				t.Fatalf("OnClose err %v, want nil", err)
			}
			if writeErr != ErrClosed {
				t.Fatalf("Write after Close: %v", writeErr)
			}
			expectEOF(t, client) // Close drops what was queued
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConcurrentWriters(t *testing.T) {
	for _, path := range []string{"epoll", "fallback"} {
		t.Run(path, func(t *testing.T) {
			p := newTestPoller(t, Options{})
			server, client := connPair(t, path)
			c := register(t, p, server, newRecorder(false))
			const writers, perWriter = 8, 300
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range perWriter {
						rec := make([]byte, 8)
						binary.BigEndian.PutUint32(rec, uint32(w))
						binary.BigEndian.PutUint32(rec[4:], uint32(i))
						// Header and payload as one message: they must not
						// interleave with other writers' messages.
						for {
							err := c.WriteBuffers(rec[:4], rec[4:])
							if err == nil {
								break
							}
							if err != ErrQueueFull {
								t.Error(err)
								return
							}
						}
					}
				})
			}
			got := readFull(t, client, writers*perWriter*8)
			wg.Wait()
			next := make([]uint32, writers)
			for off := 0; off < len(got); off += 8 {
				w := binary.BigEndian.Uint32(got[off:])
				i := binary.BigEndian.Uint32(got[off+4:])
				if w >= writers || i != next[w] {
					t.Fatalf("record %d: writer %d seq %d, want seq %d", off/8, w, i, next[min(w, writers-1)])
				}
				next[w]++
			}
		})
	}
}

func TestCloseAfterFlush(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	t.Run("epoll", func(t *testing.T) {
		p := newTestPoller(t, Options{})
		s, client := tcpPair(t, listen(t))
		rec := newRecorder(false)
		c := register(t, p, s, rec)
		for off := 0; off < len(payload); off += 4096 {
			if err := c.Write(payload[off : off+4096]); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.CloseAfterFlush(testTimeout); err != nil {
			t.Fatal(err)
		}
		if err := c.Write([]byte("x")); err != ErrClosed {
			t.Fatalf("Write after CloseAfterFlush: %v", err)
		}
		// The client gets every byte, then EOF (the server half-closed),
		// and still can send its goodbye, which the server reads.
		if got := readFull(t, client, len(payload)); !bytes.Equal(got, payload) {
			t.Fatal("payload mismatch")
		}
		expectEOF(t, client)
		client.Write([]byte("goodbye"))
		client.CloseWrite()
		if err := rec.waitClosed(t); err != nil {
			t.Fatalf("OnClose err %v, want nil", err)
		}
		if got := rec.received(); string(got) != "goodbye" {
			t.Fatalf("server read %q during the close", got)
		}
	})
	t.Run("epoll-no-wait", func(t *testing.T) {
		p := newTestPoller(t, Options{})
		s, client := tcpPair(t, listen(t))
		rec := newRecorder(false)
		c := register(t, p, s, rec)
		c.Write([]byte("last words"))
		c.CloseAfterFlush(0)
		if err := rec.waitClosed(t); err != nil {
			t.Fatalf("OnClose err %v", err)
		}
		if got := readFull(t, client, 10); string(got) != "last words" {
			t.Fatalf("got %q", got)
		}
		expectEOF(t, client)
	})
	t.Run("fallback-tls", func(t *testing.T) {
		p := newTestPoller(t, Options{})
		cert := testcert.New(t, "127.0.0.1")
		serverCfg, clientCfg := cert.ServerConfig(), cert.ClientConfig("127.0.0.1")
		s, cl := tcpPair(t, listen(t))
		rec := newRecorder(false)
		c := register(t, p, tls.Server(s, serverCfg), rec)
		client := tls.Client(cl, clientCfg)
		client.SetDeadline(time.Now().Add(testTimeout))
		if err := client.Handshake(); err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(payload); off += 4096 {
			if err := c.Write(payload[off : off+4096]); err != nil {
				t.Fatal(err)
			}
		}
		c.CloseAfterFlush(testTimeout)
		if got := readFull(t, client, len(payload)); !bytes.Equal(got, payload) {
			t.Fatal("payload mismatch")
		}
		expectEOF(t, client) // close_notify after the data
		client.Close()
		if err := rec.waitClosed(t); err != nil {
			t.Fatalf("OnClose err %v, want nil", err)
		}
	})
	t.Run("fallback-pipe", func(t *testing.T) {
		p := newTestPoller(t, Options{})
		s, client := net.Pipe()
		defer client.Close()
		rec := newRecorder(false)
		c := register(t, p, s, rec)
		c.Write([]byte("last words"))
		c.CloseAfterFlush(testTimeout) // a pipe cannot half-close: closes after the flush
		if got := readFull(t, client, 10); string(got) != "last words" {
			t.Fatalf("got %q", got)
		}
		expectEOF(t, client)
		if err := rec.waitClosed(t); err != nil {
			t.Fatalf("OnClose err %v", err)
		}
	})
}

// closingObserver is a recorder whose first OnWritten queues last and
// calls CloseAfterFlush: a message and a close that arrive after a flush
// found the queue empty, while that flush is still running.
type closingObserver struct {
	*recorder
	last []byte
	once sync.Once
}

func (o *closingObserver) OnWritten(c *Conn, _ int, _ uint64) {
	o.once.Do(func() {
		if err := c.Write(o.last); err != nil {
			panic(err)
		}
		if err := c.CloseAfterFlush(testTimeout); err != nil {
			panic(err)
		}
	})
}

// TestCloseAfterFlushQueuedDuringFlush: a message queued, and
// CloseAfterFlush called, after a flush found the queue empty but before
// that flush looked for a pending close, still reaches the peer before the
// half-close (it used to be cut off: the peer read EOF without it, and the
// next flush failed with EPIPE).
func TestCloseAfterFlushQueuedDuringFlush(t *testing.T) {
	for _, delay := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run(fmt.Sprintf("write-delay-%v", delay), func(t *testing.T) {
			p := newTestPoller(t, Options{WriteDelay: delay})
			s, client := tcpPair(t, listen(t))
			obs := &closingObserver{recorder: newRecorder(false), last: []byte("last words")}
			c := register(t, p, s, obs)
			if err := c.Write([]byte("first ")); err != nil {
				t.Fatal(err)
			}
			const want = "first last words"
			if got := readFull(t, client, len(want)); string(got) != want {
				t.Fatalf("client read %q, want %q", got, want)
			}
			expectEOF(t, client)
			client.Close()
			if err := obs.waitClosed(t); err != nil {
				t.Fatalf("OnClose err %v, want nil", err)
			}
		})
	}
}

func TestCloseAfterFlushTimeout(t *testing.T) {
	t.Run("epoll-unsent", func(t *testing.T) {
		p := newTestPoller(t, Options{})
		s, _ := tcpPair(t, listen(t))
		s.SetWriteBuffer(4 << 10)
		rec := newRecorder(false)
		c := register(t, p, s, rec)
		c.Write(make([]byte, 3<<20)) // far more than the socket buffers hold
		c.CloseAfterFlush(20 * time.Millisecond)
		if err := rec.waitClosed(t); !errors.Is(err, ErrFlushTimeout) {
			t.Fatalf("OnClose err %v, want ErrFlushTimeout", err)
		}
	})
	t.Run("epoll-peer-silent", func(t *testing.T) {
		p := newTestPoller(t, Options{})
		s, client := tcpPair(t, listen(t))
		rec := newRecorder(false)
		c := register(t, p, s, rec)
		c.Write([]byte("done"))
		testwait.Until(t, "flush", func() bool { _, m := c.Queued(); return m == 0 })
		c.CloseAfterFlush(20 * time.Millisecond)
		// Everything was sent; the peer just never closes: nil error.
		if err := rec.waitClosed(t); err != nil {
			t.Fatalf("OnClose err %v, want nil", err)
		}
		if got := readFull(t, client, 4); string(got) != "done" {
			t.Fatalf("got %q", got)
		}
		expectEOF(t, client)
	})
	t.Run("fallback-unsent", func(t *testing.T) {
		p := newTestPoller(t, Options{})
		s, client := net.Pipe()
		defer client.Close()
		rec := newRecorder(false)
		c := register(t, p, s, rec)
		c.Write([]byte("never read"))
		c.CloseAfterFlush(20 * time.Millisecond)
		if err := rec.waitClosed(t); !errors.Is(err, ErrFlushTimeout) {
			t.Fatalf("OnClose err %v, want ErrFlushTimeout", err)
		}
	})
}

func TestPollerClose(t *testing.T) {
	p, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	var recs []*recorder
	var clients []net.Conn
	for i := range 20 {
		var s, cl net.Conn
		if i%2 == 0 {
			s, cl = tcpPair(t, ln)
		} else {
			s, cl = net.Pipe()
			defer cl.Close()
		}
		rec := newRecorder(false)
		c := register(t, p, s, rec)
		c.Write([]byte("queued")) // pending writes must not block Close
		recs = append(recs, rec)
		clients = append(clients, cl)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := r.waitClosed(t); err != nil {
			t.Fatalf("OnClose err %v, want nil", err)
		}
	}
	// The TCP peer sees the close (whether or not "queued" made it out).
	clients[0].SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadAll(clients[0]); err != nil {
		t.Fatalf("TCP peer after Poller.Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ := net.Pipe()
	if _, err := p.Register(s, newRecorder(false)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v", err)
	}
	if st := p.Stats(); st.Open != 0 {
		t.Fatalf("open after Close: %d", st.Open)
	}
}

func TestConcurrentPollerCloseAndRegister(t *testing.T) {
	p, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	pairs := make([]net.Conn, 40)
	for i := range pairs {
		pairs[i], _ = tcpPair(t, ln)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var recs []*recorder
	for _, s := range pairs {
		wg.Go(func() {
			rec := newRecorder(true)
			if _, err := p.Register(s, rec); err == nil {
				mu.Lock()
				recs = append(recs, rec)
				mu.Unlock()
			} else if !errors.Is(err, ErrClosed) {
				t.Error(err)
			}
		})
	}
	p.Close()
	wg.Wait()
	for _, r := range recs {
		r.waitClosed(t)
	}
}

func TestBufferedDeliveredFirst(t *testing.T) {
	for _, path := range []string{"epoll", "fallback"} {
		t.Run(path, func(t *testing.T) {
			p := newTestPoller(t, Options{})
			server, client := connPair(t, path)
			// The peer's bytes are already in flight when Register runs.
			go client.Write([]byte("world"))
			rec := newRecorder(false)
			if _, err := p.Register(server, rec, ConnOptions{Buffered: []byte("hello "), UserData: 42}); err != nil {
				t.Fatal(err)
			}
			testwait.Until(t, "all bytes", func() bool { return len(rec.received()) == 11 })
			if got := rec.received(); string(got) != "hello world" {
				t.Fatalf("got %q", got)
			}
		})
	}
}

func TestSuspendResume(t *testing.T) {
	for _, path := range []string{"epoll", "fallback"} {
		t.Run(path, func(t *testing.T) {
			p := newTestPoller(t, Options{})
			server, client := connPair(t, path)
			rec := newRecorder(false)
			var suspend atomic.Bool
			suspend.Store(true)
			rec.onData = func(c *Conn, _ []byte) {
				if suspend.Load() {
					c.SuspendRead()
				}
			}
			c := register(t, p, server, rec)
			client.Write([]byte("a"))
			testwait.Until(t, "first byte", func() bool { return len(rec.received()) == 1 })
			wrote := make(chan struct{})
			go func() {
				client.Write([]byte("b")) // on a pipe this completes only once read
				close(wrote)
			}()
			if path == "epoll" {
				<-wrote
				// The byte sits in the kernel: a round trip on the write
				// side shows the connection's worker ran meanwhile.
				c.Write([]byte("ping"))
				readFull(t, client, 4)
			}
			if got := rec.received(); string(got) != "a" {
				t.Fatalf("read %q while suspended", got)
			}
			suspend.Store(false)
			c.ResumeRead()
			testwait.Until(t, "second byte", func() bool { return string(rec.received()) == "ab" })
			<-wrote
		})
	}
}

func TestDefault(t *testing.T) {
	p := Default()
	if Default() != p {
		t.Fatal("Default returned two pollers")
	}
	defer func() {
		p.Close()
		defaultOnce = sync.Once{}
		defaultPoller = nil
	}()
	s, client := tcpPair(t, listen(t))
	if _, err := p.Register(s, newRecorder(true)); err != nil {
		t.Fatal(err)
	}
	client.Write([]byte("default"))
	if got := readFull(t, client, 7); string(got) != "default" {
		t.Fatalf("echo %q", got)
	}
}

func TestReplyToHalfClosedPeer(t *testing.T) {
	p := newTestPoller(t, Options{})
	s, client := tcpPair(t, listen(t))
	rec := newRecorder(false)
	rec.onData = func(c *Conn, data []byte) {
		if err := c.Write([]byte("pong")); err != nil {
			t.Error(err)
		}
	}
	if _, err := p.Register(s, rec); err != nil {
		t.Fatal(err)
	}
	// The request and the FIN usually arrive together: the reply must
	// still go out before the server closes.
	client.Write([]byte("ping"))
	client.CloseWrite()
	if got := readFull(t, client, 4); string(got) != "pong" {
		t.Fatalf("got %q", got)
	}
	expectEOF(t, client)
	if err := rec.waitClosed(t); err != io.EOF {
		t.Fatalf("OnClose err %v", err)
	}
}
