package dnsfilter

import "sync"

// ttlSet is a bounded set of keys, each valid until its expiry (Unix
// nanoseconds). When full, the oldest insertion is evicted first. It is safe
// for concurrent use; lookups take a read lock only.
type ttlSet[K comparable] struct {
	mu   sync.RWMutex
	m    map[K]int64
	ring []ttlItem[K] // insertion order; an item whose expiry differs from m's is stale
	head int          // index of the oldest item
	n    int          // items in ring
}

type ttlItem[K comparable] struct {
	key K
	exp int64
}

func newTTLSet[K comparable](max int) *ttlSet[K] {
	return &ttlSet[K]{m: make(map[K]int64), ring: make([]ttlItem[K], max)}
}

// has reports whether k is in the set and not expired at now.
func (s *ttlSet[K]) has(k K, now int64) bool {
	s.mu.RLock()
	exp, ok := s.m[k]
	s.mu.RUnlock()
	return ok && now < exp
}

// add inserts k valid until exp, or extends k's validity to exp when later.
func (s *ttlSet[K]) add(k K, exp int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[k]; ok && old >= exp {
		return
	}
	if s.n == len(s.ring) {
		// Full: drop the oldest insertion (if it is still the key's
		// current one, the key goes too).
		it := s.ring[s.head]
		if cur, ok := s.m[it.key]; ok && cur == it.exp {
			delete(s.m, it.key)
		}
		var zero ttlItem[K]
		s.ring[s.head] = zero
		s.head = (s.head + 1) % len(s.ring)
		s.n--
	}
	s.m[k] = exp
	s.ring[(s.head+s.n)%len(s.ring)] = ttlItem[K]{key: k, exp: exp}
	s.n++
}

// len returns the number of keys held (expired ones included until evicted).
func (s *ttlSet[K]) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}
