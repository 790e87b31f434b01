//go:build linux

package netpoll

import "testing"

// TestConnTable: descriptors map to their connections across pages,
// removal clears only its slot, and appendAll finds exactly the present
// ones.
func TestConnTable(t *testing.T) {
	var tab connTable
	fds := []int32{0, 1, 511, 512, 1<<connPageBits*3 + 7, 70000}
	conns := make(map[int32]*Conn)
	for _, fd := range fds {
		c := &Conn{fd: fd}
		conns[fd] = c
		tab.set(fd, c)
	}
	for _, fd := range fds {
		if got := tab.get(fd); got != conns[fd] {
			t.Fatalf("get(%d) = %p, want %p", fd, got, conns[fd])
		}
	}
	for _, fd := range []int32{-1, 2, 513, 70001, 1 << 30} {
		if got := tab.get(fd); got != nil {
			t.Fatalf("get(%d) = %p, want nil", fd, got)
		}
	}
	tab.set(512, nil)
	tab.set(1<<20, nil) // beyond the pages: nothing to remove, nothing allocated
	if tab.get(512) != nil || tab.get(511) != conns[511] || len(tab.pages) > int(70000>>connPageBits)+1 {
		t.Fatalf("removal: get(512) %p get(511) %p, %d pages", tab.get(512), tab.get(511), len(tab.pages))
	}
	all := tab.appendAll(nil)
	if len(all) != len(fds)-1 {
		t.Fatalf("appendAll found %d connections, want %d", len(all), len(fds)-1)
	}
	for _, c := range all {
		if c.fd == 512 || conns[c.fd] != c {
			t.Fatalf("appendAll returned fd %d", c.fd)
		}
	}
}

// TestWorkQueueRing: the ring keeps FIFO order while it wraps around and
// grows, and drops its references as connections leave it.
func TestWorkQueueRing(t *testing.T) {
	var q workQueue
	q.cond.L = &q.mu
	conns := make([]*Conn, 3*minWorkRing)
	for i := range conns {
		conns[i] = &Conn{fd: int32(i)}
	}
	next := 0 // next connection expected out
	in := 0   // next connection to push
	// Interleave pushes and pops so that head moves before each growth.
	for in < len(conns) {
		for range 5 {
			if in < len(conns) {
				q.push(conns[in])
				in++
			}
		}
		for range 2 {
			if c := q.pop(); c != conns[next] {
				t.Fatalf("popped fd %d, want %d", c.fd, next)
			}
			next++
		}
	}
	for next < len(conns) {
		if c := q.pop(); c != conns[next] {
			t.Fatalf("popped fd %d, want %d", c.fd, next)
		}
		next++
	}
	if q.n != 0 {
		t.Fatalf("%d entries left", q.n)
	}
	for i, c := range q.ring {
		if c != nil {
			t.Fatalf("ring slot %d still holds fd %d", i, c.fd)
		}
	}
	q.stop()
	if c := q.pop(); c != nil {
		t.Fatalf("pop after stop returned fd %d", c.fd)
	}
}
