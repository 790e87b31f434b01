package hub

import (
	"fmt"
	"strings"
	"testing"
)

// Every joiner given back while any test of the package runs is checked:
// a joiner still pending on its channel (reachable from a broker goroutine
// through ch.pending) must never reach the pool, where another subscribe
// would take it over.
func init() { joinerReleased = checkJoinerReleased }

func checkJoinerReleased(j *joiner) {
	if j.s == nil {
		return // never set up
	}
	ch := j.s.ch
	if ch == nil {
		return // never registered with a channel state
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if j.outcome == joinPending {
		panic(fmt.Sprintf("hub: joiner of %q given back while pending", j.s.ch.name))
	}
	for _, p := range ch.pending {
		if p == j {
			panic(fmt.Sprintf("hub: joiner of %q given back while in the channel's pending list", j.s.ch.name))
		}
	}
}

// TestJoinerReleaseCheck shows that the check above catches a joiner given
// back while its channel still refers to it, and accepts one that left.
func TestJoinerReleaseCheck(t *testing.T) {
	cl := &client{info: &ClientInfo{Client: "c1"}}
	ch := &channel{name: "news"}
	j := getJoiner()
	j.s = &subscription{cl: cl, ch: ch, idx: -1}
	ch.pending = append(ch.pending, j)

	panicked := func() (msg string) {
		defer func() {
			if r := recover(); r != nil {
				msg = fmt.Sprint(r)
			}
		}()
		putJoiner(j)
		return ""
	}
	if msg := panicked(); !strings.Contains(msg, "while pending") {
		t.Fatalf("pending joiner given back: panic %q, want the pending check", msg)
	}
	if j.s == nil {
		t.Fatal("a rejected joiner was cleared")
	}
	j.outcome = joinLive // outcome set but still listed: the list check
	if msg := panicked(); !strings.Contains(msg, "pending list") {
		t.Fatalf("listed joiner given back: panic %q, want the list check", msg)
	}
	ch.removePending(j)
	if msg := panicked(); msg != "" {
		t.Fatalf("finished joiner given back: panic %q", msg)
	}
	if j.s != nil || j.onResult != nil || j.out != nil {
		t.Fatal("joiner not cleared when given back")
	}
}
