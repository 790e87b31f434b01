package netpoll

import "testing"

func TestOutQueueAccounting(t *testing.T) {
	var q outQueue
	q.push([][]byte{[]byte("head"), nil, []byte("payload")}, 11) // one message, empty part skipped
	q.push([][]byte{[]byte("x")}, 1)
	if q.bytes != 12 || q.msgs != 2 || len(q.pending()) != 3 {
		t.Fatalf("bytes %d msgs %d entries %d", q.bytes, q.msgs, len(q.pending()))
	}
	q.consume(6) // "head" and "pa": the first message is not done
	if q.bytes != 6 || q.msgs != 2 || string(q.pending()[0].b) != "yload" {
		t.Fatalf("after partial: bytes %d msgs %d head %q", q.bytes, q.msgs, q.pending()[0].b)
	}
	q.consume(5)
	if q.bytes != 1 || q.msgs != 1 {
		t.Fatalf("after first message: bytes %d msgs %d", q.bytes, q.msgs)
	}
	q.consume(1)
	if q.bytes != 0 || q.msgs != 0 || q.ents != nil {
		t.Fatalf("drained queue keeps state: bytes %d msgs %d array %v", q.bytes, q.msgs, q.ents != nil)
	}
}

func TestOutQueueNeverDrainingStaysBounded(t *testing.T) {
	var q outQueue
	msg := []byte("m")
	q.push([][]byte{msg}, 1)
	// The array comes from a pool shared with every queue, so it may
	// start larger than queueInitialCap; what must not happen is growth.
	limit := max(2*queueInitialCap, cap(*q.ents))
	for range 100000 {
		// Always one message behind: the queue never empties.
		q.push([][]byte{msg}, 1)
		q.consume(1)
	}
	if c := cap(*q.ents); c > limit {
		t.Fatalf("array grew to %d entries for a 1-message queue", c)
	}
	q.reset()
	if q.ents != nil || q.bytes != 0 || q.msgs != 0 {
		t.Fatal("reset left state")
	}
}
