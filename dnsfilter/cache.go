package dnsfilter

import (
	"encoding/binary"
	"sync"

	"github.com/miekg/dns"
)

// Cache bounds (RFC 2308 section 5 suggests capping negative TTLs at hours;
// positive ones are capped so a bogus TTL cannot pin an answer for weeks).
const (
	maxPositiveTTL = 86400
	maxNegativeTTL = 3 * 3600
)

// maxCachedAnswer is the largest answer cached, in bytes: with cache_size
// entries the cache holds at most cache_size × 8 KiB of answers (TCP
// answers may reach 64 KiB; Arc's are a few hundred bytes).
const maxCachedAnswer = 8192

// Cache key flag bits: answers differ by whether the client spoke EDNS
// (the OPT record is in the answer or not), the DO bit and the CD bit.
const (
	keyEDNS uint8 = 1 << iota
	keyDO
	keyCD
)

type cacheKey struct {
	name   string // normalized: lower case, no trailing dot
	qtype  uint16
	qclass uint16
	flags  uint8
}

// wireAnswer is an answer in wire form, as sent to a client whose question
// is the lower-case name, with ID 0 and RD clear. ttlOff are the offsets of
// the TTL fields of every record but OPT, ttl their values when stored.
type wireAnswer struct {
	wire   []byte
	ttlOff []uint16
	ttl    []uint32
	stored int64 // Unix ns
	exp    int64 // Unix ns
}

// answerCache is a bounded cache of wire answers; the oldest insertion is
// evicted first. Hits take a read lock only.
type answerCache struct {
	mu   sync.RWMutex
	m    map[cacheKey]*wireAnswer
	ring []cacheKey
	head int
	n    int
}

func newAnswerCache(size int) *answerCache {
	return &answerCache{m: make(map[cacheKey]*wireAnswer, size), ring: make([]cacheKey, size)}
}

// get returns the live entry for k at now, or nil.
func (c *answerCache) get(k cacheKey, now int64) *wireAnswer {
	c.mu.RLock()
	e := c.m[k]
	c.mu.RUnlock()
	if e == nil || now >= e.exp {
		return nil
	}
	return e
}

func (c *answerCache) put(k cacheKey, e *wireAnswer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		c.m[k] = e // refresh in place; keeps its place in the eviction order
		return
	}
	if c.n == len(c.ring) {
		delete(c.m, c.ring[c.head])
		c.ring[c.head] = cacheKey{}
		c.head = (c.head + 1) % len(c.ring)
		c.n--
	}
	c.m[k] = e
	c.ring[(c.head+c.n)%len(c.ring)] = k
	c.n++
}

func (c *answerCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// cacheTTL returns how many seconds the answer m may be cached: the
// smallest TTL of its records for a positive answer; for NXDOMAIN and
// NODATA the SOA's min(TTL, MINIMUM) (RFC 2308 section 5). 0 = do not cache
// (TC answers, other rcodes, negative answers without SOA, TTL 0).
func cacheTTL(m *dns.Msg) uint32 {
	if m.Truncated {
		return 0
	}
	negative := m.Rcode == dns.RcodeNameError
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0:
		negative = true
	case m.Rcode == dns.RcodeSuccess, m.Rcode == dns.RcodeNameError:
	default:
		return 0
	}
	if negative {
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				return min(soa.Hdr.Ttl, soa.Minttl, maxNegativeTTL)
			}
		}
		return 0
	}
	ttl := uint32(maxPositiveTTL)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			ttl = min(ttl, h.Ttl)
		}
	}
	return ttl
}

// ttlOffsets walks a packed message and returns the offsets and values of
// the TTL fields of every record but OPT. ok is false when wire does not
// parse (never for what Pack produced).
func ttlOffsets(wire []byte) (offs []uint16, ttls []uint32, ok bool) {
	if len(wire) < 12 || len(wire) > 0xffff {
		return nil, nil, false
	}
	qd := int(binary.BigEndian.Uint16(wire[4:]))
	rrs := int(binary.BigEndian.Uint16(wire[6:])) + int(binary.BigEndian.Uint16(wire[8:])) + int(binary.BigEndian.Uint16(wire[10:]))
	off := 12
	for i := 0; i < qd; i++ {
		if off, ok = skipName(wire, off); !ok || off+4 > len(wire) {
			return nil, nil, false
		}
		off += 4
	}
	offs = make([]uint16, 0, rrs)
	ttls = make([]uint32, 0, rrs)
	for i := 0; i < rrs; i++ {
		if off, ok = skipName(wire, off); !ok || off+10 > len(wire) {
			return nil, nil, false
		}
		typ := binary.BigEndian.Uint16(wire[off:])
		if typ != dns.TypeOPT {
			offs = append(offs, uint16(off+4))
			ttls = append(ttls, binary.BigEndian.Uint32(wire[off+4:]))
		}
		off += 10 + int(binary.BigEndian.Uint16(wire[off+8:]))
		if off > len(wire) {
			return nil, nil, false
		}
	}
	return offs, ttls, true
}

// skipName returns the offset after the (possibly compressed) name at off.
func skipName(wire []byte, off int) (int, bool) {
	for off < len(wire) {
		c := int(wire[off])
		switch {
		case c == 0:
			return off + 1, true
		case c&0xC0 == 0xC0:
			return off + 2, off+2 <= len(wire)
		case c&0xC0 != 0:
			return 0, false
		}
		off += c + 1
	}
	return 0, false
}

// setQName copies the client's spelling of the question name (same letters,
// any case: DNS 0x20) over the cached lower-case one at offset 12. name is
// the presentation form of a name that policy.NormalizeHost accepted, so it
// has no escapes. It reports false when the shapes differ.
func setQName(wire []byte, name string) bool {
	off, i := 12, 0
	for off < len(wire) {
		l := int(wire[off])
		if l == 0 {
			return i == len(name) || i == len(name)+1
		}
		if l&0xC0 != 0 || off+1+l > len(wire) || i+l > len(name) {
			return false
		}
		copy(wire[off+1:off+1+l], name[i:i+l])
		i += l + 1
		off += l + 1
	}
	return false
}
