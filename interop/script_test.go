package interop

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// The script every client/server pairing runs. Servers echo every data
// message, except these text commands:
//
//	cmd:ping        the server pings the client; when the pong arrives it
//	                sends "pong-ok"
//	cmd:close       the server starts the closing handshake with
//	                serverCloseCode/serverCloseReason
//	cmd:compressed  herald servers answer "true" or "false" (whether
//	                permessage-deflate was negotiated); others "unknown"
//
// A server reports how its connection ended on its ends channel.
const (
	clientCloseCode   = 4001
	clientCloseReason = "client bye"
	serverCloseCode   = 4002
	serverCloseReason = "server bye"

	// readLimit lets the 1 MiB messages through every implementation.
	readLimit = 4 << 20

	opText   = 1
	opBinary = 2
)

// serverEnd is how a server's connection ended: the close code and reason
// the client sent, or the outcome of the server's own Close.
type serverEnd struct {
	code   int
	reason string
	err    error
}

// client is one WebSocket client implementation under test.
type client interface {
	// write sends a message in the given number of frames (1: unfragmented).
	write(typ int, p []byte, frames int) error
	read() (typ int, p []byte, err error)
	// ping sends a ping and waits for its pong (echoing messages meanwhile
	// so that the reply can be read).
	ping() error
	close(code int, reason string) error
	// closeCode extracts the close code from a read error, or -1.
	closeCode(err error) int
	// negotiated reports whether permessage-deflate was negotiated.
	negotiated() bool
	// kill drops the connection without a closing handshake.
	kill()
}

type message struct {
	name   string
	typ    int
	data   []byte
	frames int
}

// scriptMessages are built once: generating megabytes under the race
// detector is slow.
var scriptMessages = sync.OnceValue(func() []message {
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	random := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rng.Read(b) // ChaCha8.Read never fails
		return b
	}
	// Compressible, like the JSON a gateway carries.
	var js strings.Builder
	for i := 0; js.Len() < 1<<20; i++ {
		fmt.Fprintf(&js, `{"channel":"news","offset":%d,"data":{"text":"hello world %d"}},`, i, i%97)
	}
	text := []byte(js.String()[:1<<20])
	return []message{
		{"text hello", opText, []byte("hello, herald"), 1},
		{"empty text", opText, []byte{}, 1},
		{"empty binary", opBinary, []byte{}, 1},
		{"utf-8 text", opText, []byte("héllo wörld ✓ 😀"), 1},
		{"binary 125 (7-bit length)", opBinary, random(125), 1},
		{"binary 126 (16-bit length)", opBinary, random(126), 1},
		{"text 300 (above threshold)", opText, text[:300], 1},
		{"binary 65535", opBinary, random(65535), 1},
		{"binary 65536 (64-bit length)", opBinary, random(65536), 1},
		{"text fragmented", opText, text[:10000], 3},
		{"binary fragmented", opBinary, random(70000), 5},
		{"text 1 MiB", opText, text, 1},
		{"binary 1 MiB", opBinary, random(1 << 20), 1},
		{"text 256 KiB fragmented", opText, text[:256<<10], 4},
	}
})

// runScript drives one connection that the client ends, then one the
// server ends. dial opens a new client connection; ends receives the
// server side's outcome of each.
func runScript(t *testing.T, dial func(t *testing.T) client, ends <-chan serverEnd, wantCompressed, heraldServer bool) {
	t.Run("messages and client close", func(t *testing.T) {
		c := dial(t)
		defer c.kill()
		if got := c.negotiated(); got != wantCompressed {
			t.Fatalf("client: permessage-deflate negotiated = %v, want %v", got, wantCompressed)
		}
		if heraldServer {
			expectReply(t, c, "cmd:compressed", fmt.Sprint(wantCompressed))
		}
		for _, m := range scriptMessages() {
			if err := c.write(m.typ, m.data, m.frames); err != nil {
				t.Fatalf("%s: write: %v", m.name, err)
			}
			typ, got, err := c.read()
			if err != nil {
				t.Fatalf("%s: read: %v", m.name, err)
			}
			if typ != m.typ || !bytes.Equal(got, m.data) {
				t.Fatalf("%s: echo is type %d, %d bytes; want type %d, %d bytes", m.name, typ, len(got), m.typ, len(m.data))
			}
		}
		// RFC 6455 §5.5.2-3: client ping, server pong.
		if err := c.ping(); err != nil {
			t.Fatalf("client ping: %v", err)
		}
		// Server ping, client pong.
		expectReply(t, c, "cmd:ping", "pong-ok")
		// RFC 6455 §7: the client closes with an application code.
		if err := c.close(clientCloseCode, clientCloseReason); err != nil {
			t.Fatalf("client close: %v", err)
		}
		end := waitEnd(t, ends)
		if end.code != clientCloseCode || end.reason != clientCloseReason {
			t.Fatalf("server saw close %d %q (%v), want %d %q", end.code, end.reason, end.err, clientCloseCode, clientCloseReason)
		}
	})
	t.Run("server close", func(t *testing.T) {
		c := dial(t)
		defer c.kill()
		if err := c.write(opText, []byte("cmd:close"), 1); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.read()
		if code := c.closeCode(err); code != serverCloseCode {
			t.Fatalf("client read error %v (code %d), want close code %d", err, code, serverCloseCode)
		}
		if end := waitEnd(t, ends); end.err != nil {
			t.Fatalf("server close: %v", end.err)
		}
	})
}

func expectReply(t *testing.T, c client, cmd, want string) {
	t.Helper()
	if err := c.write(opText, []byte(cmd), 1); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	typ, got, err := c.read()
	if err != nil || typ != opText || string(got) != want {
		t.Fatalf("%s: reply %d %q %v, want %q", cmd, typ, got, err, want)
	}
}

func waitEnd(t *testing.T, ends <-chan serverEnd) serverEnd {
	t.Helper()
	select {
	case e := <-ends:
		return e
	case <-time.After(15 * time.Second):
		t.Fatal("the server did not report the end of the connection")
		return serverEnd{}
	}
}

// pingWhileEchoing runs ping (which needs someone reading the connection
// to see the pong) while it echoes small messages, until ping returns.
func pingWhileEchoing(c client, ping func() error) error {
	done := make(chan error, 1)
	go func() { done <- ping() }()
	for {
		if err := c.write(opText, []byte("x"), 1); err != nil {
			return errors.Join(err, <-done)
		}
		if _, _, err := c.read(); err != nil {
			return errors.Join(err, <-done)
		}
		select {
		case err := <-done:
			return err
		default:
		}
	}
}

// splitFrames cuts p into n nearly equal parts (at least one, maybe empty).
func splitFrames(p []byte, n int) [][]byte {
	if n < 1 {
		n = 1
	}
	parts := make([][]byte, 0, n)
	size := (len(p) + n - 1) / n
	for i := 0; i < n; i++ {
		lo, hi := min(i*size, len(p)), min((i+1)*size, len(p))
		parts = append(parts, p[lo:hi])
	}
	return parts
}
