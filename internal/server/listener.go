package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Accept backoff bounds when the process or the system runs out of file
// descriptors.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// listen opens a TCP listener on addr. backlog > 0 replaces the accept
// queue length Go chose (net.core.somaxconn) by calling listen(2) again on
// the bound socket, which Linux allows; the kernel still caps it at
// net.core.somaxconn.
func listen(ctx context.Context, addr string, backlog int) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if backlog > 0 {
		if err := setBacklog(ln, backlog); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %s: backlog %d: %w", addr, backlog, err)
		}
	}
	return ln, nil
}

func setBacklog(ln net.Listener, backlog int) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return errors.New("not a TCP listener")
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		lerr = syscall.Listen(int(fd), backlog)
	}); err != nil {
		return err
	}
	return lerr
}

// fdLimitListener wraps a listener so that running out of file descriptors
// (EMFILE, ENFILE) does not end the accept loop or flood the log: Accept
// logs the first failure of an episode, retries with exponential backoff up
// to acceptBackoffMax while existing connections keep being served, and
// logs once more when an accept succeeds again. Pending connections wait in
// the kernel's accept queue meanwhile.
//
// Accept must be called from one goroutine at a time (as http.Server and
// every accept loop do); Close may be called from any goroutine and
// interrupts a backoff wait.
type fdLimitListener struct {
	net.Listener
	log *slog.Logger

	closeOnce sync.Once
	closed    chan struct{}

	exhausted bool // in an episode of EMFILE/ENFILE; touched by Accept only
	failures  int
}

func newFDLimitListener(ln net.Listener, log *slog.Logger) *fdLimitListener {
	return &fdLimitListener{Listener: ln, log: log, closed: make(chan struct{})}
}

// isFDExhausted reports whether err is the process (EMFILE) or the system
// (ENFILE) running out of file descriptors.
func isFDExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

func (l *fdLimitListener) Accept() (net.Conn, error) {
	backoff := acceptBackoffMin
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			if l.exhausted {
				l.exhausted = false
				l.log.Warn("accepting connections again: file descriptors available",
					"addr", l.Addr().String(), "failed_accepts", l.failures)
				l.failures = 0
			}
			return c, nil
		}
		if !isFDExhausted(err) {
			return nil, err
		}
		l.failures++
		if !l.exhausted {
			l.exhausted = true
			l.log.Error("accept failed: out of file descriptors; existing connections keep being served, "+
				"new ones wait in the accept queue (raise the open file limit)",
				"addr", l.Addr().String(), "error", err)
		}
		if timer == nil {
			timer = time.NewTimer(backoff)
		} else {
			timer.Reset(backoff)
		}
		select {
		case <-timer.C:
		case <-l.closed:
			return nil, net.ErrClosed
		}
		backoff = min(backoff*2, acceptBackoffMax)
	}
}

// Close closes the listener once; later calls return nil, so that the
// HTTP server closing it again during its own shutdown is not an error.
func (l *fdLimitListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.Listener.Close()
	})
	return err
}

// raiseFDLimit raises the soft RLIMIT_NOFILE to the hard limit, so that the
// number of client connections is bounded by the hard limit the operator
// set rather than by the (often 1024) soft default, and returns both.
func raiseFDLimit() (soft, hard uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, 0, fmt.Errorf("setrlimit: %w", err)
		}
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, 0, fmt.Errorf("getrlimit: %w", err)
		}
	}
	return rl.Cur, rl.Max, nil
}
