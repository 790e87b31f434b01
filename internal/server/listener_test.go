package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

// emfileChildEnv makes the test binary act as the subprocess of
// TestEMFILERecovery. Its name avoids the HERALD_ prefix on purpose.
const emfileChildEnv = "HERALDTEST_EMFILE_CHILD"

// TestEMFILERecovery runs an echo server behind fdLimitListener in a
// subprocess whose RLIMIT_NOFILE leaves room for only a few connections,
// so the limit cannot disturb other tests. It checks what a client sees:
// connections beyond the limit wait in the accept queue, connections
// already accepted keep being served, and once a descriptor is freed the
// waiting connection is accepted and served. The exhaustion is logged
// once, not once per failed accept.
func TestEMFILERecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEMFILEChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), emfileChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child logs to stdout too, so that its log lines and ACCEPTED
	// lines arrive in the order they happened.
	outLines := make(chan string, 256)
	go func() {
		defer close(outLines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			outLines <- sc.Text()
		}
	}()
	errDone := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(stderr)
		errDone <- b
	}()
	defer func() {
		stdin.Close()
		for range outLines {
		}
		errOut := <-errDone
		if err := cmd.Wait(); err != nil {
			t.Errorf("child: %v\nstderr:\n%s", err, errOut)
		}
	}()

	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	var seen []string
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-outLines:
			if !ok {
				t.Fatalf("child stdout closed; output so far:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			return l
		case <-deadline.C:
			t.Fatalf("timed out; child output so far:\n%s", strings.Join(seen, "\n"))
		}
		return ""
	}
	out := next()
	addr, ok := strings.CutPrefix(out, "ADDR ")
	if !ok {
		t.Fatalf("first child line %q", out)
	}

	echo := func(c net.Conn, msg string) error {
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			return err
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if got != msg+"\n" {
			return fmt.Errorf("echo %q, want %q", got, msg)
		}
		return nil
	}

	// Dial until the child reports exhaustion instead of an accept. Once
	// exhausted nothing is accepted until a descriptor is freed, so the
	// connection dialed when the exhaustion line arrives is waiting.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var pending net.Conn
	for i := 0; pending == nil; i++ {
		if i == 200 {
			t.Fatal("200 connections accepted: the descriptor limit did not apply")
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		for accepted := false; !accepted && pending == nil; {
			switch l := next(); {
			case l == "ACCEPTED":
				accepted = true
			case strings.Contains(l, "out of file descriptors"):
				pending = c
			}
		}
	}
	if len(conns) < 2 {
		t.Fatal("no connection was accepted before the limit")
	}
	// Accepted connections are still served while accept fails.
	if err := echo(conns[0], "still served"); err != nil {
		t.Fatalf("accepted connection not served during exhaustion: %v", err)
	}
	// The waiting connection's data is already in flight; free one
	// descriptor and it must be accepted and answered.
	if _, err := io.WriteString(pending, "waiting\n"); err != nil {
		t.Fatal(err)
	}
	conns[0].Close()
	sawAccept, sawRecovery := false, false
	for !sawAccept || !sawRecovery {
		switch l := next(); {
		case l == "ACCEPTED":
			sawAccept = true
		case strings.Contains(l, "accepting connections again"):
			sawRecovery = true
		case strings.Contains(l, "out of file descriptors") && !sawRecovery:
			// Accept kept failing with backoff, but each episode is
			// logged once.
			t.Fatalf("exhaustion logged twice in one episode: %q", l)
		}
	}
	if err := pending.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(pending).ReadString('\n')
	if err != nil || got != "waiting\n" {
		t.Fatalf("connection accepted after recovery: got %q, %v", got, err)
	}
	t.Logf("child output:\n%s", strings.Join(seen, "\n"))
}

// TestEMFILEChild is the subprocess of TestEMFILERecovery.
func TestEMFILEChild(t *testing.T) {
	if os.Getenv(emfileChildEnv) != "1" {
		t.Skip("runs only as the subprocess of TestEMFILERecovery")
	}
	var outMu sync.Mutex // one line at a time on stdout
	log := slog.New(slog.NewTextHandler(lockedWriter{&outMu, os.Stdout}, nil))
	raw, err := listen(context.Background(), "127.0.0.1:0", 16)
	if err != nil {
		t.Fatal(err)
	}
	ln := newFDLimitListener(raw, log)
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	// Room for three connections beyond what is open now (the ReadDir
	// descriptor is closed again).
	limit := uint64(len(entries) + 3)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit + 1000}); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ADDR %s\n", ln.Addr())

	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			outMu.Lock()
			fmt.Println("ACCEPTED")
			outMu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
	ln.Close()
	mu.Lock()
	for _, c := range open {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
}

func TestListenBacklog(t *testing.T) {
	ln, err := listen(context.Background(), "127.0.0.1:0", 7)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestFDLimitListenerCloseInterruptsAccept(t *testing.T) {
	raw, err := listen(context.Background(), "127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	ln := newFDLimitListener(raw, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	ln.Close()
	ln.Close() // idempotent
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Accept after Close returned a connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

func TestRaiseFDLimit(t *testing.T) {
	soft, hard, err := raiseFDLimit()
	if err != nil {
		t.Fatal(err)
	}
	if soft != hard {
		t.Fatalf("soft %d not raised to hard %d", soft, hard)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// frontFixture is a wsFront in front of an http.Server whose handler
// answers "http METHOD PATH", with serveWS recording what it is given and
// answering "ws" with the bytes it was handed.
type frontFixture struct {
	addr  string
	front *wsFront
	srv   *http.Server
	heads chan string // what serveWS was given
	done  chan struct{}
}

func newFrontFixture(t *testing.T) *frontFixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &frontFixture{addr: ln.Addr().String(), heads: make(chan string, 16), done: make(chan struct{})}
	f.front = newWSFront(ln, "/ws", func(nc net.Conn, read []byte) {
		f.heads <- string(read)
		_, _ = io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		nc.Close()
	}, 2*time.Second)
	f.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "http %s %s %s", r.Method, r.URL.RequestURI(), body)
		}),
		MaxHeaderBytes: 16 << 10,
	}
	go func() {
		defer close(f.done)
		_ = f.srv.Serve(f.front)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-f.done
		if err := f.front.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return f
}

func (f *frontFixture) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// readResponses reads n responses from br and returns their status codes
// and bodies.
func readResponses(t *testing.T, br *bufio.Reader, n int) (codes []int, bodies []string) {
	t.Helper()
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", len(codes)+1, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.StatusCode)
		bodies = append(bodies, string(b))
	}
	return codes, bodies
}

const frontUpgrade = "GET /ws?v=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n" +
	"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

// The front sends WebSocket upgrades of /ws to serveWS with everything
// read so far, and every other request to the HTTP server with the bytes
// replayed: other paths, non-upgrade requests to /ws, keep-alive and
// pipelined requests, bodies, heads that arrive a few bytes at a time.
func TestWSFrontRoutes(t *testing.T) {
	f := newFrontFixture(t)

	t.Run("upgrade", func(t *testing.T) {
		c := f.dial(t)
		if _, err := io.WriteString(c, frontUpgrade+"\x81\x80abcd"); err != nil {
			t.Fatal(err)
		}
		codes, _ := readResponses(t, bufio.NewReader(c), 1)
		if codes[0] != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", codes[0])
		}
		if got := <-f.heads; !strings.HasPrefix(got, frontUpgrade) {
			t.Fatalf("serveWS got %q", got)
		}
	})

	t.Run("upgrade head arriving a byte at a time", func(t *testing.T) {
		c := f.dial(t)
		for i := range len(frontUpgrade) {
			if _, err := io.WriteString(c, frontUpgrade[i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
		if codes, _ := readResponses(t, bufio.NewReader(c), 1); codes[0] != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", codes[0])
		}
		if got := <-f.heads; got != frontUpgrade {
			t.Fatalf("serveWS got %q, want the whole head", got)
		}
	})

	for _, tc := range []struct {
		name   string
		chunks []string
		want   []string
	}{
		{name: "other path", chunks: []string{"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"}, want: []string{"http GET /healthz "}},
		{name: "path with the same prefix", chunks: []string{"GET /wsx HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"}, want: []string{"http GET /wsx "}},
		{name: "ws path without upgrade", chunks: []string{"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"}, want: []string{"http GET /ws "}},
		{name: "slow request line", chunks: []string{"G", "ET /w", "s HTTP/1.1\r\nHo", "st: x\r\n", "\r\n"}, want: []string{"http GET /ws "}},
		{name: "post with body", chunks: []string{"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"}, want: []string{"http POST /ws hello"}},
		{
			name:   "keep-alive",
			chunks: []string{"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"},
			want:   []string{"http GET /a ", "http GET /b "},
		},
		{
			// Only a connection's first request is routed: a later
			// upgrade belongs to net/http like the rest.
			name:   "pipelined, an upgrade of /ws last",
			chunks: []string{"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" + frontUpgrade},
			want:   []string{"http GET /a ", "http POST /b hi", "http GET /ws?v=1 "},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.dial(t)
			br := bufio.NewReader(c)
			var bodies []string
			for i, chunk := range tc.chunks {
				if _, err := io.WriteString(c, chunk); err != nil {
					t.Fatal(err)
				}
				if tc.name == "keep-alive" {
					// One request at a time on the same connection.
					_, b := readResponses(t, br, 1)
					bodies = append(bodies, b...)
					continue
				}
				if i == len(tc.chunks)-1 {
					_, bodies = readResponses(t, br, len(tc.want))
				}
			}
			if strings.Join(bodies, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("bodies %q, want %q", bodies, tc.want)
			}
			select {
			case h := <-f.heads:
				t.Fatalf("serveWS was given %q", h)
			default:
			}
		})
	}

	t.Run("upgrade head larger than the front's buffer", func(t *testing.T) {
		// Too large for the front, within net/http's limit: net/http
		// serves it (and in herald routes it to the WebSocket handler).
		c := f.dial(t)
		req := strings.Replace(frontUpgrade, "Host: x\r\n", "Host: x\r\nX-Pad: "+strings.Repeat("p", frontHeadSize)+"\r\n", 1)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		_, bodies := readResponses(t, bufio.NewReader(c), 1)
		if bodies[0] != "http GET /ws?v=1 " {
			t.Fatalf("body %q", bodies[0])
		}
	})

	t.Run("oversized head", func(t *testing.T) {
		c := f.dial(t)
		req := strings.Replace(frontUpgrade, "Host: x\r\n", "Host: x\r\nX-Pad: "+strings.Repeat("p", 64<<10)+"\r\n", 1)
		go func() { _, _ = io.WriteString(c, req) }() // the server stops reading
		codes, _ := readResponses(t, bufio.NewReader(c), 1)
		if codes[0] != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", codes[0])
		}
	})
}

// Close interrupts connections whose head is still being read and waits
// for the front's goroutines; the client sees its connection closed.
func TestWSFrontCloseInterruptsHeads(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := newWSFront(ln, "/ws", func(nc net.Conn, _ []byte) { nc.Close() }, time.Minute)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /ws HTTP/1.1\r\n"); err != nil { // no end of head
		t.Fatal(err)
	}
	// Wait until the front reads the head, then close it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		front.mu.Lock()
		n := len(front.sniffing)
		front.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection never accepted")
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- front.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: the head being read was not interrupted")
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Close")
	}
	if _, err := front.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

func TestWSRequestLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want requestLineKind
	}{
		{"", lineUnknown},
		{"G", lineUnknown},
		{"GET /w", lineUnknown},
		{"GET /ws", lineUnknown},
		{"GET /ws ", lineUpgradePath},
		{"GET /ws?a=b ", lineUpgradePath},
		{"GET /ws/", lineOther},
		{"GET /wsx", lineOther},
		{"POST /ws ", lineOther},
		{"get /ws ", lineOther},
		{"\r\nGET /ws ", lineOther},
		{"GET http://x/ws ", lineOther},
	} {
		if got := wsRequestLine([]byte(tc.in), "/ws"); got != tc.want {
			t.Errorf("wsRequestLine(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestHasUpgradeWebSocket(t *testing.T) {
	for _, tc := range []struct {
		head string
		want bool
	}{
		{"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nupgrade:WebSocket\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nUpgrade: h2c, websocket\r\n\r\n", true},
		{"GET / HTTP/1.1\nUPGRADE: websocket\n\n", true},
		{"GET / HTTP/1.1\r\nUpgrade: websockets\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nX-Upgrade: websocket\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n", false},
	} {
		if got := hasUpgradeWebSocket([]byte(tc.head)); got != tc.want {
			t.Errorf("hasUpgradeWebSocket(%q) = %v, want %v", tc.head, got, tc.want)
		}
	}
}

// Through the whole server (no TLS, so through the front): WebSocket
// clients, the API, the demo and health checks share the port, and
// requests the WebSocket handshake refuses get the statuses they got
// when every request went through net/http.
func TestWSFrontEndToEnd(t *testing.T) {
	s, _ := startServer(t, func(c *config.Config) {
		c.Demo.Enabled = true
		c.AllowedOrigins = []string{"allowed.example"}
	})
	if s.front == nil {
		t.Fatal("no front on a plain listener")
	}
	wc := dialClient(t, s)
	wc.call("connect", map[string]any{})
	wc.call("subscribe", map[string]any{"channel": "chat:front"})
	if status, body := apiCall(t, s, s.APIKey(), "publish", `{"channel":"chat:front","data":{"n":1}}`); status != 200 {
		t.Fatalf("publish: %d %v", status, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for msg := wc.read(ctx); msg["type"] != "publication"; msg = wc.read(ctx) {
	}
	if body := get(t, "http://"+s.Addr()+"/"); !strings.Contains(strings.ToLower(body), "<html") {
		t.Fatalf("demo page: %.80q", body)
	}
	if body := get(t, "http://"+s.Addr()+"/healthz"); !strings.Contains(body, "ok") {
		t.Fatalf("healthz: %q", body)
	}

	upgrade := func(edit func(string) string) string {
		r := "GET /ws HTTP/1.1\r\nHost: " + s.Addr() + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
		return edit(r)
	}
	same := func(r string) string { return r }
	for _, tc := range []struct {
		name string
		req  string
		want int
	}{
		{"upgrade", upgrade(same), http.StatusSwitchingProtocols},
		{"origin allowed", upgrade(func(r string) string {
			return strings.Replace(r, "\r\n\r\n", "\r\nOrigin: https://allowed.example\r\n\r\n", 1)
		}), http.StatusSwitchingProtocols},
		{"origin refused", upgrade(func(r string) string {
			return strings.Replace(r, "\r\n\r\n", "\r\nOrigin: https://evil.example\r\n\r\n", 1)
		}), http.StatusForbidden},
		{"bad version", upgrade(func(r string) string { return strings.Replace(r, "Version: 13", "Version: 8", 1) }), http.StatusUpgradeRequired},
		{"bad key", upgrade(func(r string) string { return strings.Replace(r, "dGhlIHNhbXBsZSBub25jZQ==", "short", 1) }), http.StatusBadRequest},
		{"not an upgrade", "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusUpgradeRequired},
		{"upgrade head too large for the front", upgrade(func(r string) string {
			// Served through net/http and the handler's ServeHTTP.
			return strings.Replace(r, "\r\n\r\n", "\r\nX-Pad: "+strings.Repeat("p", frontHeadSize)+"\r\n\r\n", 1)
		}), http.StatusSwitchingProtocols},
		{"oversized head", upgrade(func(r string) string {
			return strings.Replace(r, "\r\n\r\n", "\r\nX-Pad: "+strings.Repeat("p", 64<<10)+"\r\n\r\n", 1)
		}), http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			go func() { _, _ = io.WriteString(c, tc.req) }() // a refused oversized head is not read to its end
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want != http.StatusSwitchingProtocols {
				return
			}
			// The client protocol runs on the upgraded connection: a
			// masked connect command gets its reply.
			cmd := []byte(`{"id":1,"method":"connect","params":{}}`)
			frame := append([]byte{0x81, 0x80 | byte(len(cmd)), 0, 0, 0, 0}, cmd...)
			if _, err := c.Write(frame); err != nil {
				t.Fatal(err)
			}
			hdr := make([]byte, 2)
			if _, err := io.ReadFull(c, hdr); err != nil {
				t.Fatal(err)
			}
			if hdr[0] != 0x81 {
				t.Fatalf("reply frame starts with %#x, want a text frame", hdr[0])
			}
		})
	}
}
