package redisbroker

import (
	"hash/fnv"
	"slices"
	"strconv"
)

// hashRing maps channel names to shards by consistent hashing: every shard
// owns VirtualNodes points on a 64-bit circle, derived from its address,
// and a channel belongs to the first point at or after the channel's hash.
// Adding or removing one shard moves only about 1/n of the channels, and
// every node configured with the same address list computes the same
// mapping whatever the order of the list. A hashRing is immutable and safe
// for concurrent use.
type hashRing struct {
	points []uint64
	owners []int // owners[i] is the shard index of points[i]
}

func newHashRing(addrs []string, virtualNodes int) *hashRing {
	type point struct {
		h     uint64
		owner int
	}
	pts := make([]point, 0, len(addrs)*virtualNodes)
	for i, a := range addrs {
		for v := range virtualNodes {
			pts = append(pts, point{hash64(a + "#" + strconv.Itoa(v)), i})
		}
	}
	// Ties (astronomically rare) are broken by address so every node agrees.
	slices.SortFunc(pts, func(x, y point) int {
		if x.h != y.h {
			if x.h < y.h {
				return -1
			}
			return 1
		}
		switch {
		case addrs[x.owner] < addrs[y.owner]:
			return -1
		case addrs[x.owner] > addrs[y.owner]:
			return 1
		}
		return 0
	})
	r := &hashRing{points: make([]uint64, len(pts)), owners: make([]int, len(pts))}
	for i, p := range pts {
		r.points[i], r.owners[i] = p.h, p.owner
	}
	return r
}

// shard returns the index of the shard owning key.
func (r *hashRing) shard(key string) int {
	if len(r.points) == 0 {
		return 0
	}
	h := hash64(key)
	i, _ := slices.BinarySearch(r.points, h)
	if i == len(r.points) {
		i = 0
	}
	return r.owners[i]
}

// hash64 is FNV-1a followed by a 64-bit finalizer (from SplitMix64), which
// spreads similar names (chat:1, chat:2) evenly over the circle.
func hash64(s string) uint64 {
	f := fnv.New64a()
	_, _ = f.Write([]byte(s))
	h := f.Sum64()
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
