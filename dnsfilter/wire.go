package dnsfilter

import (
	"encoding/binary"
	"net/netip"

	"github.com/miekg/dns"

	"github.com/arcfence/arcfence/policy"
)

// Wire layout constants (RFC 1035 section 4.1, RFC 6891 section 6.1.2).
const (
	typeOPT  = 41
	typeTSIG = 250
)

// fastWire turns an upstream answer b into the cached wire form (see
// wireAnswer) without unpacking it: it walks the records once, notes their
// TTL offsets and the cache lifetime, learns the addresses (for key.name)
// and CNAME targets of an allowed answer, and fixes the OPT record for this client:
// our UDP size and the client's DO bit when the client spoke EDNS, no OPT
// record when it did not (RFC 6891 section 7). It returns nil for anything
// unusual (hop-by-hop EDNS options to strip, an OPT record that is not the
// last record, an extended rcode, TSIG, bytes after the last record), which
// the caller handles with a full unpack. b is modified.
func (f *Filter) fastWire(q *query, b []byte, key cacheKey, allowed bool, now int64) *wireAnswer {
	if len(b) < 12 || binary.BigEndian.Uint16(b[4:]) != 1 {
		return nil
	}
	an := int(binary.BigEndian.Uint16(b[6:]))
	ar := int(binary.BigEndian.Uint16(b[10:]))
	nameEnd, ok := skipName(b, 12)
	if !ok || nameEnd+4 > len(b) {
		return nil
	}
	// The cached form carries the lower-case name; label length bytes
	// (below 64) are not letters, so the whole name can be lowered.
	for i := 12; i < nameEnd; i++ {
		b[i] = lowerByte(b[i])
	}
	w, ok := f.walkRecords(b, nameEnd+4, key, allowed, now)
	if !ok {
		return nil
	}
	out := fixOPT(q, b, ar, w.optOff, w.optEnd)
	if out == nil {
		return nil
	}
	out[0], out[1] = 0, 0
	out[2] &^= 0x01 // RD: set per client

	e := &wireAnswer{wire: out, stored: now}
	if ttl := w.cacheTTL(out, an); f.cache != nil && ttl > 0 && len(out) <= maxCachedAnswer {
		e.ttlOff, e.ttl = w.offs, w.ttls
		e.exp = now + int64(ttl)*1e9
		f.cache.put(key, e)
	}
	return e
}

// records is what walkRecords notes of an answer's records.
type records struct {
	offs    []uint16 // the TTL offset of each record but OPT
	ttls    []uint32 // and its TTL
	minTTL  uint32   // the least TTL, capped at maxPositiveTTL
	soaTTL  uint32   // the negative-caching TTL of the first authority SOA
	haveSOA bool
	optOff  int // the OPT record's start and end; -1 when none
	optEnd  int
}

// walkRecords walks every record of b from off (after the question) once:
// it notes TTL offsets, the cache lifetimes and the OPT record, and for an
// allowed answer learns the addresses (for key.name) and CNAME targets of
// its answer section. ok is false for anything unusual (see fastWire).
func (f *Filter) walkRecords(b []byte, off int, key cacheKey, allowed bool, now int64) (w records, ok bool) {
	an := int(binary.BigEndian.Uint16(b[6:]))
	ns := int(binary.BigEndian.Uint16(b[8:]))
	n := an + ns + int(binary.BigEndian.Uint16(b[10:]))
	w = records{offs: make([]uint16, 0, n), ttls: make([]uint32, 0, n), minTTL: maxPositiveTTL, optOff: -1, optEnd: -1}
	for i := 0; i < n; i++ {
		start := off
		if off, ok = skipName(b, off); !ok || off+10 > len(b) {
			return w, false
		}
		typ := binary.BigEndian.Uint16(b[off:])
		ttl := binary.BigEndian.Uint32(b[off+4:])
		rdata := off + 10
		end := rdata + int(binary.BigEndian.Uint16(b[off+8:]))
		if end > len(b) {
			return w, false
		}
		switch {
		case typ == typeOPT:
			if i < an+ns || w.optOff >= 0 || b[start] != 0 || b[off+4] != 0 || !plainOptions(b[rdata:end]) {
				return w, false
			}
			w.optOff, w.optEnd = start, end
			off = end
			continue
		case typ == typeTSIG:
			return w, false
		}
		w.offs = append(w.offs, uint16(off+4))
		w.ttls = append(w.ttls, ttl)
		w.minTTL = min(w.minTTL, ttl)
		if i >= an && i < an+ns && typ == dns.TypeSOA && !w.haveSOA && end-rdata >= 22 {
			w.soaTTL = min(ttl, binary.BigEndian.Uint32(b[end-4:]), maxNegativeTTL)
			w.haveSOA = true
		}
		if allowed && i < an && ttl > 0 {
			f.learnRecord(b, typ, rdata, end, key.name, now+int64(ttl)*1e9)
		}
		off = end
	}
	return w, off == len(b)
}

// learnRecord remembers, until exp, the address of an A or AAAA record of
// an allowed answer (handed out for name) or the target of its CNAME.
func (f *Filter) learnRecord(b []byte, typ uint16, rdata, end int, name string, exp int64) {
	switch {
	case typ == dns.TypeA && end-rdata == 4:
		f.learned.add(netip.AddrFrom4([4]byte(b[rdata:end])), name, exp)
	case typ == dns.TypeAAAA && end-rdata == 16:
		f.learned.add(netip.AddrFrom16([16]byte(b[rdata:end])).Unmap(), name, exp)
	case typ == dns.TypeCNAME:
		if t, _, err := dns.UnpackDomainName(b, rdata); err == nil {
			if h, ok := policy.NormalizeHost(t); ok {
				f.cnames.add(h, exp)
			}
		}
	}
}

// fixOPT makes b's OPT record right for the client of q: our UDP size and
// its DO bit when it spoke EDNS, no OPT record when it did not (RFC 6891
// section 7). ar is b's additional count; optOff and optEnd locate its OPT
// record (-1: none). nil means b needs a full unpack.
func fixOPT(q *query, b []byte, ar, optOff, optEnd int) []byte {
	switch {
	case q.opt != nil && optOff >= 0:
		binary.BigEndian.PutUint16(b[optOff+3:], maxUDPSize)
		setDO(b[optOff+7:], q.opt.Do())
		return b
	case q.opt != nil:
		out := append(b, 0, 0, typeOPT, maxUDPSize>>8, maxUDPSize&0xFF, 0, 0, 0, 0, 0, 0)
		setDO(out[len(out)-4:], q.opt.Do())
		binary.BigEndian.PutUint16(out[10:], uint16(ar+1))
		return out
	case optOff >= 0:
		if optEnd != len(b) {
			return nil
		}
		out := b[:optOff]
		binary.BigEndian.PutUint16(out[10:], uint16(ar-1))
		return out
	}
	return b
}

// cacheTTL is how long the answer out (an answers) may be cached: the
// least record TTL of a positive answer, the SOA's for a negative one, 0
// for a truncated one or another rcode.
func (w *records) cacheTTL(out []byte, an int) uint32 {
	rcode := int(out[3] & 0x0F)
	switch {
	case out[2]&0x02 != 0: // TC: never cached
	case rcode == dns.RcodeSuccess && an > 0:
		return w.minTTL
	case (rcode == dns.RcodeSuccess || rcode == dns.RcodeNameError) && w.haveSOA:
		return w.soaTTL
	}
	return 0
}

// setDO sets or clears the DO bit in the flags bytes of an OPT TTL field.
func setDO(flags []byte, do bool) {
	if do {
		flags[0] |= 0x80
	} else {
		flags[0] &^= 0x80
	}
}

// plainOptions reports whether the EDNS options in rdata parse and include
// none of the hop-by-hop ones the filter strips (cookie, padding, TCP
// keepalive).
func plainOptions(rdata []byte) bool {
	for len(rdata) > 0 {
		if len(rdata) < 4 {
			return false
		}
		code := binary.BigEndian.Uint16(rdata)
		l := int(binary.BigEndian.Uint16(rdata[2:]))
		if 4+l > len(rdata) {
			return false
		}
		switch code {
		case dns.EDNS0COOKIE, dns.EDNS0PADDING, dns.EDNS0TCPKEEPALIVE:
			return false
		}
		rdata = rdata[4+l:]
	}
	return true
}
