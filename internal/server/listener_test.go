package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
