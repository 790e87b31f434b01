//go:build linux

package netpoll

import (
	"bytes"
	"testing"

	"github.com/heraldhq/herald/internal/testwait"
)

// waitQuiet waits until p's only loop has no inline turn running and
// every worker of p is idle with nothing queued, so the next single event
// is served inline.
func waitQuiet(t *testing.T, p *Poller) *loop {
	t.Helper()
	ep := p.sys.(*epollPoller)
	l := ep.loops[0]
	testwait.Until(t, "poller quiet", func() bool {
		return l.inline.Load() == inlineNone && ep.work.quiet()
	})
	return l
}

// TestLoneEventServedInline checks that a single ready connection on an
// idle Poller is served by the loop itself (no worker hand-off), with the
// same echo a worker gives.
func TestLoneEventServedInline(t *testing.T) {
	p := newTestPoller(t, Options{Loops: 1, Workers: 2})
	s, client := tcpPair(t, listen(t))
	register(t, p, s, newRecorder(true))
	for round := range 3 {
		l := waitQuiet(t, p)
		before := l.inlineSeq.Load()
		msg := bytes.Repeat([]byte{byte('a' + round)}, 100)
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		if got := readFull(t, client, len(msg)); !bytes.Equal(got, msg) {
			t.Fatalf("echo %q, want %q", got, msg)
		}
		if l.inlineSeq.Load() == before {
			t.Fatalf("round %d: the lone event was not served inline", round)
		}
	}
}

// TestBlockedInlineHandlerDoesNotStallLoop blocks a Handler inside an
// inline turn (the Poller was idle, so the loop serves it) and checks that
// another connection of the same loop is still served, by the stand-in
// that takes the loop over and the only worker.
func TestBlockedInlineHandlerDoesNotStallLoop(t *testing.T) {
	p := newTestPoller(t, Options{Loops: 1, Workers: 1})
	ln := listen(t)
	blockedSrv, blockedCli := tcpPair(t, ln)
	entered := make(chan struct{})
	gate := make(chan struct{})
	blocked := newRecorder(false)
	first := true // OnData calls are never concurrent for one Conn
	blocked.onData = func(*Conn, []byte) {
		if first {
			first = false
			close(entered)
			<-gate
		}
	}
	register(t, p, blockedSrv, blocked)
	echoSrv, echoCli := tcpPair(t, ln)
	register(t, p, echoSrv, newRecorder(true))

	l := waitQuiet(t, p)
	before := l.inlineSeq.Load()
	if _, err := blockedCli.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	<-entered
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	defer release()
	if l.inlineSeq.Load() == before {
		t.Fatal("the blocking OnData did not run inline")
	}
	for round := range 3 {
		msg := []byte{'x', byte(round)}
		if _, err := echoCli.Write(msg); err != nil {
			t.Fatal(err)
		}
		if got := readFull(t, echoCli, len(msg)); !bytes.Equal(got, msg) {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
	release()
	// The overrunning goroutine ends once its turn returns; the loop then
	// serves lone events inline again.
	waitQuiet(t, p)
	if _, err := blockedCli.Write([]byte{2}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "second OnData", func() bool { return len(blocked.received()) == 2 })
}
