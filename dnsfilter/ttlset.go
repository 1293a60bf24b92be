package dnsfilter

import (
	"net/netip"
	"slices"
	"sync"
)

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

// maxNamesPerAddr bounds the names remembered for one address (a shared
// front answers many names with one address); a new name replaces the one
// that expires first.
const maxNamesPerAddr = 8

// addrNames remembers, for each address the filter handed out, the names
// it was handed out for, each valid until its expiry (Unix nanoseconds). It
// holds at most max (address, name) pairs; when full, the oldest insertion
// is evicted first. It is safe for concurrent use; lookups take a read lock
// only.
type addrNames struct {
	mu   sync.RWMutex
	m    map[netip.Addr][]nameExp
	ring []addrName // insertion order; an item whose expiry differs from m's is stale
	head int        // index of the oldest item
	n    int        // items in ring
}

type nameExp struct {
	name string
	exp  int64
}

type addrName struct {
	addr netip.Addr
	nameExp
}

func newAddrNames(max int) *addrNames {
	return &addrNames{m: make(map[netip.Addr][]nameExp), ring: make([]addrName, max)}
}

// names appends to dst the names a was handed out for that have not
// expired at now, and returns the extended slice.
func (s *addrNames) names(a netip.Addr, now int64, dst []string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, ne := range s.m[a] {
		if now < ne.exp {
			dst = append(dst, ne.name)
		}
	}
	return dst
}

// add records that a was handed out for name until exp, or extends that
// record to exp when later.
func (s *addrNames) add(a netip.Addr, name string, exp int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ne := range s.m[a] {
		if ne.name == name && ne.exp >= exp {
			return
		}
	}
	if s.n == len(s.ring) {
		s.evictOldest()
	}
	list := s.m[a]
	i := slices.IndexFunc(list, func(ne nameExp) bool { return ne.name == name })
	switch {
	case i >= 0:
		list[i].exp = exp
	case len(list) < maxNamesPerAddr:
		s.m[a] = append(list, nameExp{name, exp})
	default:
		first := 0
		for j := range list {
			if list[j].exp < list[first].exp {
				first = j
			}
		}
		list[first] = nameExp{name, exp}
	}
	s.ring[(s.head+s.n)%len(s.ring)] = addrName{a, nameExp{name, exp}}
	s.n++
}

// evictOldest drops the oldest insertion; if it is still its pair's
// current record, the pair goes too. The caller holds the write lock.
func (s *addrNames) evictOldest() {
	it := s.ring[s.head]
	s.ring[s.head] = addrName{}
	s.head = (s.head + 1) % len(s.ring)
	s.n--
	list := s.m[it.addr]
	i := slices.Index(list, it.nameExp)
	if i < 0 {
		return
	}
	if list = slices.Delete(list, i, i+1); len(list) == 0 {
		delete(s.m, it.addr)
	} else {
		s.m[it.addr] = list
	}
}

// len returns the (address, name) pairs held (expired ones included until
// evicted).
func (s *addrNames) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, l := range s.m {
		n += len(l)
	}
	return n
}
