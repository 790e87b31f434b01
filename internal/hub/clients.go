package hub

import "hash/maphash"

// clientTable indexes the registered clients by id. It maps a 64-bit hash
// of the id to the clients whose ids have that hash, chained through
// client.next (a chain is almost always one client long), so the index
// costs a map entry of two words per client instead of one holding the id
// string as well. Guarded by Hub.clientsMu.
type clientTable struct {
	seed   maphash.Seed
	byHash map[uint64]*client
	n      int
	// hashOf replaces the id hash in tests, to force collisions.
	hashOf func(id string) uint64
}

func newClientTable() clientTable {
	return clientTable{seed: maphash.MakeSeed(), byHash: make(map[uint64]*client)}
}

func (t *clientTable) hash(id string) uint64 {
	if t.hashOf != nil {
		return t.hashOf(id)
	}
	return maphash.String(t.seed, id)
}

// get returns the client with id, or nil.
func (t *clientTable) get(id string) *client {
	for c := t.byHash[t.hash(id)]; c != nil; c = c.next {
		if c.info.Client == id {
			return c
		}
	}
	return nil
}

// add indexes c; the caller has checked that its id is not present.
func (t *clientTable) add(c *client) {
	h := t.hash(c.info.Client)
	c.next = t.byHash[h]
	t.byHash[h] = c
	t.n++
}

// remove unindexes c if it is present.
func (t *clientTable) remove(c *client) {
	h := t.hash(c.info.Client)
	head := t.byHash[h]
	if head == c {
		if c.next == nil {
			delete(t.byHash, h)
		} else {
			t.byHash[h] = c.next
		}
	} else {
		p := head
		for p != nil && p.next != c {
			p = p.next
		}
		if p == nil {
			return // not indexed
		}
		p.next = c.next
	}
	c.next = nil
	t.n--
}

func (t *clientTable) len() int { return t.n }

// each calls fn for every client.
func (t *clientTable) each(fn func(*client)) {
	for _, head := range t.byHash {
		for c := head; c != nil; c = c.next {
			fn(c)
		}
	}
}
