package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

// tcpClient speaks the TCP transport with the JSON encoding.
type tcpClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialTCP(t *testing.T, addr string) *tcpClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return newTCPClient(t, c)
}

// newTCPClient runs the JSON hello on c (plain or TLS) and closes c at the
// end of the test.
func newTCPClient(t *testing.T, c net.Conn) *tcpClient {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte{'H', 'R', 'L', 'D', 1, 0}); err != nil {
		t.Fatal(err)
	}
	tc := &tcpClient{t: t, c: c, r: bufio.NewReader(c)}
	var hello [7]byte
	if _, err := io.ReadFull(tc.r, hello[:]); err != nil {
		t.Fatal(err)
	}
	if string(hello[:4]) != "HRLD" || hello[6] != 0 {
		t.Fatalf("server hello % x", hello)
	}
	return tc
}

func (tc *tcpClient) send(msg string) {
	tc.t.Helper()
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	if _, err := tc.c.Write(append(frame, msg...)); err != nil {
		tc.t.Fatal(err)
	}
}

// next returns the next message, or nil at EOF.
func (tc *tcpClient) next() map[string]any {
	tc.t.Helper()
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(tc.r, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			tc.t.Fatal(err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			continue // keepalive
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(tc.r, buf); err != nil {
			tc.t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(buf, &m); err != nil {
			tc.t.Fatalf("frame not JSON: %q", buf)
		}
		return m
	}
}

// TestTCPTransport: a TCP client subscribes, receives a publication made
// through the API, and gets a 1001 disconnect push at shutdown.
func TestTCPTransport(t *testing.T) {
	s, _ := startServer(t, func(c *config.Config) {
		c.TCPListen = "127.0.0.1:0"
		c.UDPListen = "127.0.0.1:0"
	})
	if s.TCPAddr() == "" || s.UDPAddr() == "" {
		t.Fatalf("tcp %q udp %q not bound", s.TCPAddr(), s.UDPAddr())
	}
	tc := dialTCP(t, s.TCPAddr())
	tc.send(`{"id":1,"method":"connect","params":{}}`)
	if m := tc.next(); m["id"] != float64(1) || m["result"] == nil {
		t.Fatalf("connect reply %v", m)
	}
	tc.send(`{"id":2,"method":"subscribe","params":{"channel":"chat:tcp"}}`)
	if m := tc.next(); m["id"] != float64(2) || m["result"] == nil {
		t.Fatalf("subscribe reply %v", m)
	}
	if status, body := apiCall(t, s, s.APIKey(), "publish", `{"channel":"chat:tcp","data":{"over":"tcp"}}`); status != 200 {
		t.Fatalf("publish %d %v", status, body)
	}
	for {
		m := tc.next()
		if m == nil {
			t.Fatal("connection closed before the publication")
		}
		if m["type"] == "publication" {
			if d, _ := m["data"].(map[string]any); d["over"] != "tcp" {
				t.Fatalf("publication %v", m)
			}
			break
		}
	}
	waitMetrics(t, s, map[string]func(string) bool{
		"tcp messages read": func(p string) bool {
			v, _ := metricValue(p, `herald_messages_received_total{transport="tcp"}`)
			return v == 2
		},
		"tcp bytes read":             above(`herald_bytes_received_total{transport="tcp"}`, 0),
		"tcp bytes written":          above(`herald_bytes_sent_total{transport="tcp"}`, 0),
		"tcp publish-to-write timed": above(`herald_publish_to_write_seconds_count{transport="tcp"}`, 0),
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	var disconnect map[string]any
	for m := tc.next(); m != nil; m = tc.next() {
		if m["type"] == "disconnect" {
			disconnect = m
		}
	}
	if disconnect == nil || disconnect["code"] != float64(1001) || disconnect["reconnect"] != true {
		t.Fatalf("disconnect push %v, want code 1001 with reconnect", disconnect)
	}
	tc.c.Close() // as a client does on EOF
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The TCP listener is closed.
	if c, err := net.DialTimeout("tcp", s.TCPAddr(), time.Second); err == nil {
		c.Close()
		t.Error("TCP listener still accepts after shutdown")
	}
}
