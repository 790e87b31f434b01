package server

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// chunkConn is a net.Conn whose reads return data a few bytes at a
// time, then io.EOF.
type chunkConn struct {
	net.Conn // nil: only Read and SetReadDeadline are used
	data     []byte
	chunk    int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.data[:min(len(c.data), c.chunk)])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) SetReadDeadline(time.Time) error { return nil }

// FuzzWSFrontRoute feeds arbitrary first bytes, split anywhere, to the
// front's routing and checks its decision against a plain reading of the
// request: a connection goes to the WebSocket handshake only when its
// complete head is a GET of /ws (with or without a query) carrying an
// Upgrade field that lists websocket, and what was read is always
// exactly a prefix of what the client sent.
func FuzzWSFrontRoute(f *testing.F) {
	f.Add([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), uint8(1))
	f.Add([]byte("GET /ws?t=1 HTTP/1.1\nupgrade: h2c, WebSocket\n\n\x81\x80abcd"), uint8(7))
	f.Add([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"), uint8(3))
	f.Add([]byte("POST /api/publish HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"), uint8(200))
	f.Add([]byte("GET /wsx HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		front := &wsFront{path: "/ws", headTimeout: time.Second}
		buf := make([]byte, 256)
		n, upgrade, err := front.readStart(&chunkConn{data: data, chunk: int(chunk%64) + 1}, buf)
		if n > len(data) || !bytes.Equal(buf[:n], data[:n]) {
			t.Fatalf("read %q, not a prefix of %q", buf[:n], data)
		}
		if err != nil && err != io.EOF {
			t.Fatalf("unexpected error %v", err)
		}
		if !upgrade {
			return
		}
		got := string(buf[:n])
		end := strings.Index(got, "\n\n")
		if i := strings.Index(got, "\n\r\n"); i >= 0 && (end < 0 || i < end) {
			end = i
		}
		if end < 0 {
			t.Fatalf("upgrade without a complete head: %q", got)
		}
		head := got[:end]
		if !strings.HasPrefix(head, "GET /ws ") && !strings.HasPrefix(head, "GET /ws?") {
			t.Fatalf("upgrade of another request line: %q", head)
		}
		found := false
		for line := range strings.Lines(head) {
			name, value, ok := strings.Cut(line, ":")
			if !ok || !strings.EqualFold(name, "upgrade") {
				continue
			}
			for v := range strings.SplitSeq(value, ",") {
				if strings.EqualFold(strings.Trim(v, " \t\r\n"), "websocket") {
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("upgrade without Upgrade: websocket: %q", head)
		}
	})
}
