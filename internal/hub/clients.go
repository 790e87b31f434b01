package hub

import "hash/maphash"

// clientTable indexes the registered clients by id: an open-addressing
// hash table of client pointers with linear probing, so the index costs
// one word per slot (under two words per client at the lowest load) where
// a map would hold the key beside each pointer plus its own metadata. The
// id's hash is recomputed from the client when a slot's home is needed,
// which only removal and growth do. Guarded by Hub.clientsMu.
type clientTable struct {
	seed  maphash.Seed
	slots []*client // len is 0 or a power of two
	n     int
	// hashOf replaces the id hash in tests, to force collisions.
	hashOf func(id string) uint64
}

const (
	// clientTableMinSlots is the size of a table's first array.
	clientTableMinSlots = 8
	// A table grows when more than 3/4 of its slots would be full, and
	// shrinks to half when less than 1/8 are, so a server that shed its
	// clients gives the array back without resizing back and forth.
	clientTableMaxLoadNum, clientTableMaxLoadDen = 3, 4
	clientTableShrinkDen                         = 8
)

func newClientTable() clientTable {
	return clientTable{seed: maphash.MakeSeed()}
}

func (t *clientTable) hash(id string) uint64 {
	if t.hashOf != nil {
		return t.hashOf(id)
	}
	return maphash.String(t.seed, id)
}

// home returns the slot where probing for id starts.
func (t *clientTable) home(id string) int {
	return int(t.hash(id) & uint64(len(t.slots)-1))
}

// get returns the client with id, or nil.
func (t *clientTable) get(id string) *client {
	if t.n == 0 {
		return nil
	}
	mask := len(t.slots) - 1
	for i := t.home(id); ; i = (i + 1) & mask {
		c := t.slots[i]
		if c == nil {
			return nil
		}
		if c.info.Client == id {
			return c
		}
	}
}

// add indexes c; the caller has checked that its id is not present.
func (t *clientTable) add(c *client) {
	if (t.n+1)*clientTableMaxLoadDen > len(t.slots)*clientTableMaxLoadNum {
		t.resize(max(clientTableMinSlots, 2*len(t.slots)))
	}
	t.insert(c)
	t.n++
}

// insert puts c in the first free slot of its probe sequence.
func (t *clientTable) insert(c *client) {
	mask := len(t.slots) - 1
	i := t.home(c.info.Client)
	for t.slots[i] != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = c
}

// resize rehashes every client into a new array of size slots.
func (t *clientTable) resize(size int) {
	old := t.slots
	t.slots = make([]*client, size)
	for _, c := range old {
		if c != nil {
			t.insert(c)
		}
	}
}

// remove unindexes c if it is present.
func (t *clientTable) remove(c *client) {
	if t.n == 0 {
		return
	}
	mask := len(t.slots) - 1
	i := t.home(c.info.Client)
	for t.slots[i] != c {
		if t.slots[i] == nil {
			return // not indexed
		}
		i = (i + 1) & mask
	}
	// Backward-shift deletion: move later members of the probe run into
	// the hole when their home does not lie after it, so every client
	// stays reachable from its home without tombstones.
	for j := i; ; {
		t.slots[i] = nil
		for {
			j = (j + 1) & mask
			d := t.slots[j]
			if d == nil {
				t.n--
				if t.n == 0 {
					t.slots = nil
				} else if len(t.slots) > clientTableMinSlots && t.n*clientTableShrinkDen < len(t.slots) {
					t.resize(len(t.slots) / 2)
				}
				return
			}
			k := t.home(d.info.Client)
			// d stays when its home k lies cyclically in (i, j].
			if (i < j && i < k && k <= j) || (i > j && (k > i || k <= j)) {
				continue
			}
			t.slots[i] = d
			i = j
			break
		}
	}
}

func (t *clientTable) len() int { return t.n }

// each calls fn for every client.
func (t *clientTable) each(fn func(*client)) {
	for _, c := range t.slots {
		if c != nil {
			fn(c)
		}
	}
}
