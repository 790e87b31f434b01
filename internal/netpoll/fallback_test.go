package netpoll

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

func TestEchoFallbackPipe(t *testing.T) {
	p := newTestPoller(t, Options{})
	server, client := net.Pipe()
	defer client.Close()
	rec := newRecorder(true)
	c := register(t, p, server, rec)
	if !c.Fallback() {
		t.Fatal("net.Pipe did not get the fallback")
	}
	for i := range 20 {
		msg := fmt.Appendf(nil, "message %d", i)
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		if got := readFull(t, client, len(msg)); !bytes.Equal(got, msg) {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
	client.Close()
	if err := rec.waitClosed(t); err != io.EOF {
		t.Fatalf("OnClose err %v, want io.EOF", err)
	}
	if err := c.Write([]byte("late")); err != ErrClosed {
		t.Fatalf("Write after close: %v", err)
	}
}

func TestUserData(t *testing.T) {
	p := newTestPoller(t, Options{})
	s, client := net.Pipe()
	defer client.Close()
	seen := make(chan any, 1)
	rec := newRecorder(false)
	rec.onData = func(c *Conn, _ []byte) { seen <- c.UserData() }
	c := register(t, p, s, rec, ConnOptions{UserData: "first"})
	go client.Write([]byte("x"))
	if v := <-seen; v != "first" {
		t.Fatalf("UserData %v", v)
	}
	c.SetUserData(7)
	if v := c.UserData(); v != 7 {
		t.Fatalf("UserData %v", v)
	}
}

func TestRegisterRejectsBadArguments(t *testing.T) {
	p := newTestPoller(t, Options{})
	s, client := net.Pipe()
	defer client.Close()
	if _, err := p.Register(s, nil); err == nil {
		t.Fatal("nil handler accepted")
	}
	// Register owns nc even on failure: it is closed.
	client.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("pipe not closed: %v", err)
	}
	s2, c2 := net.Pipe()
	defer c2.Close()
	if _, err := p.Register(s2, newRecorder(false), ConnOptions{}, ConnOptions{}); err == nil {
		t.Fatal("two ConnOptions accepted")
	}
}

func TestFallbackClearsDeadline(t *testing.T) {
	p := newTestPoller(t, Options{})
	server, client := net.Pipe()
	defer client.Close()
	// Left over from a handshake: it must not fail the connection later.
	server.SetDeadline(time.Now().Add(-time.Second))
	if _, err := p.Register(server, newRecorder(true)); err != nil {
		t.Fatal(err)
	}
	go client.Write([]byte("still open"))
	if got := readFull(t, client, 10); string(got) != "still open" {
		t.Fatalf("echo %q", got)
	}
}
