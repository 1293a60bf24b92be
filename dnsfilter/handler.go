package dnsfilter

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/miekg/dns"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/policy"
)

// EDNS tails of refusals: the OPT record (our UDP size, DO clear) with one
// Extended DNS Error option (RFC 8914), in wire form, appended to a
// refusal for an EDNS client. Built once per Filter and shared read-only.
type refusalTails struct {
	blocked     [256][]byte // code 15 "Blocked", by policy.Reason
	unsupported []byte      // code 21 "Not Supported": ANY, zone transfers, non-IN
	badVers     []byte      // no EDE; the extended rcode of BADVERS
}

// optDOByte is the offset, in an OPT record with the root name, of the
// flags byte that holds the DO bit.
const optDOByte = 7

func newRefusalTails() *refusalTails {
	t := &refusalTails{}
	for i := range t.blocked {
		t.blocked[i] = optTail(dns.ExtendedErrorCodeBlocked, "blocked by arcfence: "+policy.Reason(i).String())
	}
	t.unsupported = optTail(dns.ExtendedErrorCodeNotSupported,
		"refused by arcfence: ANY, zone transfers and non-IN classes are not answered")
	t.badVers = []byte{0, 0, typeOPT, maxUDPSize >> 8, maxUDPSize & 0xFF, dns.RcodeBadVers >> 4, 0, 0, 0, 0, 0}
	return t
}

func optTail(code uint16, text string) []byte {
	b := []byte{0, 0, typeOPT, maxUDPSize >> 8, maxUDPSize & 0xFF, 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(6+len(text))) // RDLENGTH
	b = binary.BigEndian.AppendUint16(b, dns.EDNS0EDE)        // OPTION-CODE
	b = binary.BigEndian.AppendUint16(b, uint16(2+len(text))) // OPTION-LENGTH
	b = binary.BigEndian.AppendUint16(b, code)                // INFO-CODE
	return append(b, text...)                                 // EXTRA-TEXT
}

// query is what the handler knows about one request.
type query struct {
	w      dns.ResponseWriter
	r      *dns.Msg
	opt    *dns.OPT // the client's OPT record, nil without EDNS
	tcp    bool
	maxLen int // largest answer the client accepts over this transport
}

// ServeDNS answers one query. It implements dns.Handler; every answer is
// written with ResponseWriter.Write. Safe for concurrent use.
func (f *Filter) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	q := query{w: w, r: r, maxLen: dns.MaxMsgSize}
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		q.tcp = true
	}
	q.opt = r.IsEdns0()
	if !q.tcp {
		q.maxLen = dns.MinMsgSize
		if q.opt != nil {
			q.maxLen = min(max(int(q.opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
		}
	}
	if r.Response {
		return
	}
	if r.Opcode != dns.OpcodeQuery {
		f.writeHeaderOnly(&q, dns.RcodeNotImplemented)
		return
	}
	if len(r.Question) != 1 {
		f.writeHeaderOnly(&q, dns.RcodeFormatError)
		return
	}
	if q.opt != nil && q.opt.Version() != 0 {
		// RFC 6891 section 6.1.3: BADVERS, with the version we speak (0).
		f.writeRefusal(&q, dns.RcodeBadVers, f.tails.badVers)
		return
	}
	qs := r.Question[0]
	switch {
	case qs.Qtype == dns.TypeANY, qs.Qtype == dns.TypeAXFR, qs.Qtype == dns.TypeIXFR,
		qs.Qclass != dns.ClassINET:
		f.writeRefusal(&q, dns.RcodeRefused, f.tails.unsupported)
		return
	}

	st := f.set.Load()
	now := f.now().UnixNano()
	d, learn, profile, known := st.decide(qs.Name, w.RemoteAddr())
	if !known {
		f.countDecision(d, false, "")
		f.audit.Refused(audit.Event{Component: audit.ComponentDNS, Client: clientIP(w.RemoteAddr()), Host: d.Host,
			QType: typeName(qs.Qtype), Reason: d.Reason, Mode: modeName(st.learn)})
		f.writeRefusal(&q, st.denyRcode, f.tails.blocked[d.Reason])
		return
	}
	viaCNAME := false
	if !d.Allowed() && d.Reason == policy.NotInAllowlist && f.cnames.has(d.Host, now) {
		viaCNAME = true
	}
	f.countDecision(d, viaCNAME, profile)
	allowed := d.Allowed() || viaCNAME
	if !allowed {
		proceed := learn && d.Reason.Learnable()
		f.audit.Refused(audit.Event{
			Component: audit.ComponentDNS,
			Client:    clientIP(w.RemoteAddr()),
			Host:      d.Host,
			QType:     typeName(qs.Qtype),
			Reason:    d.Reason,
			Mode:      modeName(learn),
			Profile:   profile,
			Proceeded: proceed,
		})
		if !proceed {
			f.writeRefusal(&q, st.denyRcode, f.tails.blocked[d.Reason])
			return
		}
	}

	key := cacheKey{name: d.Host, qtype: qs.Qtype, qclass: qs.Qclass, flags: q.flagsKey()}
	if f.cache != nil {
		if e := f.cache.get(key, now); e != nil {
			f.writeWire(&q, e, now)
			return
		}
	}

	raw, err := f.forward(r, q.opt != nil && q.opt.Do(), q.tcp)
	if err != nil {
		f.writeHeaderOnlyQ(&q, dns.RcodeServerFailure)
		return
	}
	// The common answer is rewritten in wire form; anything unusual
	// (hop-by-hop EDNS options, an OPT record not last, TSIG, trailing
	// bytes) goes through a full unpack and pack.
	e := f.fastWire(&q, raw, key, allowed, now)
	if e == nil {
		resp := new(dns.Msg)
		if err := resp.Unpack(raw); err != nil {
			f.writeHeaderOnlyQ(&q, dns.RcodeServerFailure)
			return
		}
		if allowed {
			f.learn(resp, key.name, now)
		}
		if e = f.toWire(&q, resp, key.name, now); e == nil {
			f.writeHeaderOnlyQ(&q, dns.RcodeServerFailure)
			return
		}
	}
	f.writeWire(&q, e, now)
}

// learn records the addresses (handed out for name, the normalized
// question name) and the CNAME targets of an allowed answer.
func (f *Filter) learn(m *dns.Msg, name string, now int64) {
	for _, rr := range m.Answer {
		h := rr.Header()
		exp := now + int64(h.Ttl)*1e9
		switch v := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(v.A); ok && h.Ttl > 0 {
				f.learned.add(a.Unmap(), name, exp)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(v.AAAA); ok && h.Ttl > 0 {
				f.learned.add(a.Unmap(), name, exp)
			}
		case *dns.CNAME:
			if t, ok := policy.NormalizeHost(v.Target); ok && h.Ttl > 0 {
				f.cnames.add(t, exp)
			}
		}
	}
}

// toWire turns an upstream answer into the cached wire form (lower-case
// question, ID 0, RD clear; OPT per the client's EDNS), caching it when
// cacheable. nil when it cannot be packed.
func (f *Filter) toWire(q *query, resp *dns.Msg, name string, now int64) *wireAnswer {
	qs := q.r.Question[0]
	qs.Name = dns.Fqdn(name)
	resp.Id = 0
	resp.Response = true
	resp.Opcode = dns.OpcodeQuery
	resp.RecursionDesired = false
	resp.Question = []dns.Question{qs}
	resp.Compress = true
	// EDNS: the client's OPT gets ours (size, DO mirrored, the upstream's
	// extended rcode and options but hop-by-hop ones); no OPT for clients
	// that sent none (RFC 6891 section 7).
	var upOpt *dns.OPT
	extra := resp.Extra[:0]
	for _, rr := range resp.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			upOpt = o
			continue
		}
		extra = append(extra, rr)
	}
	resp.Extra = extra
	if q.opt != nil {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(maxUDPSize)
		o.SetDo(q.opt.Do())
		if upOpt != nil {
			for _, opt := range upOpt.Option {
				switch opt.Option() {
				case dns.EDNS0COOKIE, dns.EDNS0PADDING, dns.EDNS0TCPKEEPALIVE:
				default:
					o.Option = append(o.Option, opt)
				}
			}
		}
		resp.Extra = append(resp.Extra, o)
	} else if resp.Rcode > 0xF {
		resp.Rcode = dns.RcodeServerFailure
	}
	wire, err := resp.Pack()
	if err != nil {
		return nil
	}
	e := &wireAnswer{wire: wire, stored: now}
	ttl := cacheTTL(resp)
	if f.cache != nil && ttl > 0 && len(wire) <= maxCachedAnswer {
		offs, ttls, ok := ttlOffsets(wire)
		if ok {
			e.ttlOff, e.ttl = offs, ttls
			e.exp = now + int64(ttl)*1e9
			f.cache.put(cacheKey{name: name, qtype: qs.Qtype, qclass: qs.Qclass, flags: q.flagsKey()}, e)
		}
	}
	return e
}

func (q *query) flagsKey() uint8 {
	var fl uint8
	if q.opt != nil {
		fl |= keyEDNS
		if q.opt.Do() {
			fl |= keyDO
		}
	}
	if q.r.CheckingDisabled {
		fl |= keyCD
	}
	return fl
}

// writeWire sends a wire answer patched for this client: its ID, its RD
// bit, its spelling of the name, TTLs aged since the answer was stored. An
// answer too large for the client's UDP size is truncated (TC set) so the
// client retries over TCP.
func (f *Filter) writeWire(q *query, e *wireAnswer, now int64) {
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	b := append((*bp)[:0], e.wire...)
	binary.BigEndian.PutUint16(b, q.r.Id)
	if q.r.RecursionDesired {
		b[2] |= 0x01
	}
	if !setQName(b, q.r.Question[0].Name) {
		b = append(b[:0], e.wire...)
		binary.BigEndian.PutUint16(b, q.r.Id)
		if q.r.RecursionDesired {
			b[2] |= 0x01
		}
	}
	if !q.r.AuthenticatedData && (q.opt == nil || !q.opt.Do()) {
		b[3] &^= 0x20 // AD only for clients that asked with AD or DO (RFC 6840 5.8)
	}
	if len(e.ttlOff) > 0 {
		age := uint32(max(0, (now-e.stored)/1e9))
		for i, off := range e.ttlOff {
			t := e.ttl[i]
			if t > age {
				t -= age
			} else {
				t = 0
			}
			binary.BigEndian.PutUint32(b[off:], t)
		}
	}
	if cap(b) <= 1<<16 {
		*bp = b[:0]
	}
	if len(b) > q.maxLen {
		f.writeTruncated(q, b)
		return
	}
	rc := int(b[3] & 0xF)
	if _, err := q.w.Write(b); err == nil {
		f.countRcode(rc)
	}
}

// writeTruncated sends b cut down to the client's size with TC set.
func (f *Filter) writeTruncated(q *query, b []byte) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		f.writeHeaderOnlyQ(q, dns.RcodeServerFailure)
		return
	}
	m.Truncate(q.maxLen)
	m.Truncated = true
	out, err := m.Pack()
	if err != nil {
		return
	}
	if _, err := q.w.Write(out); err == nil {
		f.countRcode(m.Rcode)
	}
}

// writeRefusal answers with rcode, the question, and, for EDNS clients, the
// OPT record tail carrying an Extended DNS Error. It writes the wire form
// directly: refusals are the filter's hottest path under a misconfigured or
// hostile client.
func (f *Filter) writeRefusal(q *query, rcode int, tail []byte) {
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	b := (*bp)[:cap(*bp)]
	r := q.r
	binary.BigEndian.PutUint16(b, r.Id)
	b[2] = 0x80 | byte(r.Opcode&0xF)<<3
	if r.RecursionDesired {
		b[2] |= 0x01
	}
	b[3] = 0x80 | byte(rcode&0xF) // RA
	if r.CheckingDisabled {
		b[3] |= 0x10
	}
	binary.BigEndian.PutUint32(b[4:], 1<<16) // QDCOUNT 1, ANCOUNT 0
	binary.BigEndian.PutUint32(b[8:], 0)     // NSCOUNT 0, ARCOUNT 0
	qs := r.Question[0]
	off, err := dns.PackDomainName(qs.Name, b, 12, nil, false)
	if err != nil || off+4+len(tail) > len(b) {
		f.writeHeaderOnlyQ(q, rcode)
		return
	}
	binary.BigEndian.PutUint16(b[off:], qs.Qtype)
	binary.BigEndian.PutUint16(b[off+2:], qs.Qclass)
	off += 4
	if q.opt != nil {
		b[11] = 1
		copy(b[off:], tail)
		setDO(b[off+optDOByte:], q.opt.Do())
		off += len(tail)
	}
	if _, err := q.w.Write(b[:off]); err == nil {
		f.countRcode(rcode)
	}
}

// writeHeaderOnly answers with the header alone (FORMERR, NOTIMP): never
// more bytes than the query had.
func (f *Filter) writeHeaderOnly(q *query, rcode int) {
	m := replyHeader(q.r, rcode)
	f.pack(q, &m)
}

// writeHeaderOnlyQ answers with the header and the question (SERVFAIL).
func (f *Filter) writeHeaderOnlyQ(q *query, rcode int) {
	m := replyHeader(q.r, rcode)
	m.RecursionAvailable = true
	m.Question = q.r.Question
	f.pack(q, &m)
}

// replyHeader is the header of an answer to r with rcode (4 bits).
func replyHeader(r *dns.Msg, rcode int) dns.Msg {
	m := dns.Msg{}
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	m.RecursionDesired = r.RecursionDesired
	m.Rcode = rcode & 0xF
	return m
}

func (f *Filter) pack(q *query, m *dns.Msg) {
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	out, err := m.PackBuffer((*bp)[:cap(*bp)])
	if err != nil {
		return
	}
	if len(out) > q.maxLen {
		m.Truncate(q.maxLen)
		if out, err = m.PackBuffer((*bp)[:cap(*bp)]); err != nil {
			return
		}
	}
	if _, err := q.w.Write(out); err == nil {
		f.countRcode(m.Rcode)
	}
}

func (f *Filter) countDecision(d policy.Decision, viaCNAME bool, profile string) {
	if f.metrics == nil {
		return
	}
	k := decisionKey{verdict: d.Verdict, reason: d.Reason, offering: d.Offering, profile: profile}
	if viaCNAME {
		k = decisionKey{verdict: policy.Allow, profile: profile}
	}
	f.decMu.RLock()
	c := f.decCounters[k]
	f.decMu.RUnlock()
	if c == nil {
		c = f.metrics.Decisions.WithLabelValues(k.verdict.String(), k.reason.String(), k.offering, audit.ComponentDNS, k.profile)
		f.decMu.Lock()
		if len(f.decCounters) < 1024 { // offerings and reasons are few; bound it anyway
			f.decCounters[k] = c
		}
		f.decMu.Unlock()
	}
	c.Inc()
}

// decisionKey is the label set of a decision counter.
type decisionKey struct {
	verdict  policy.Verdict
	reason   policy.Reason
	offering string
	profile  string
}

func modeName(learn bool) string {
	if learn {
		return policy.ModeLearn.String()
	}
	return policy.ModeEnforce.String()
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return dns.Type(t).String()
}

// decide decides a question name: with the policy, or the profiles
// (dns.profiles union: the first profile that admits it, refusals by the
// default profile's policy; client: the source's profile). It returns the
// mode and profile name that apply, and false when the source is in no
// profile (dns.profiles client; d is then client-not-allowed).
func (st *settings) decide(name string, from net.Addr) (d policy.Decision, learn bool, profile string, known bool) {
	if st.profiles == nil {
		return st.pol.DecideName(name), st.learn, policy.DefaultProfile, true
	}
	if st.byClient {
		p, ok := st.profiles.For(clientAddr(from))
		if !ok {
			d = st.pol.DecideName(name)
			return policy.Decision{Verdict: policy.Deny, Reason: policy.ClientNotAllowed, Host: d.Host}, st.learn, "", false
		}
		return p.Policy.DecideName(name), p.Mode == policy.ModeLearn, p.Name, true
	}
	list := st.profiles.List()
	for _, pc := range list {
		if d = pc.Profile.Policy.DecideName(name); d.Allowed() {
			return d, st.learn, pc.Profile.Name, true
		}
	}
	// Refused by every profile: the default's decision (the last one
	// made) names the reason.
	return d, st.learn, list[len(list)-1].Profile.Name, true
}

// clientAddr returns the IP address of a query's source (IPv4-mapped
// addresses as IPv4).
func clientAddr(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return v.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func clientIP(a net.Addr) string {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v.IP.String()
	case *net.TCPAddr:
		return v.IP.String()
	case nil:
		return ""
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}
