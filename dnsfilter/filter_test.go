package dnsfilter

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/arcfence/arcfence/policy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestAllowedAnsweredWhole(t *testing.T) {
	e := startFilter(t, Options{CacheSize: 0})
	cases := []struct {
		name  string
		qtype uint16
		check func(t *testing.T, r *dns.Msg)
	}{
		{nameA, dns.TypeA, func(t *testing.T, r *dns.Msg) {
			if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "203.0.113.10" {
				t.Errorf("answer %v", r.Answer)
			}
		}},
		{nameA, dns.TypeAAAA, func(t *testing.T, r *dns.Msg) {
			if len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "2001:db8::10" {
				t.Errorf("answer %v", r.Answer)
			}
		}},
		{nameTXT, dns.TypeTXT, func(t *testing.T, r *dns.Msg) {
			if len(r.Answer) != 1 || strings.Join(r.Answer[0].(*dns.TXT).Txt, "|") != "v=arc|second string" {
				t.Errorf("answer %v", r.Answer)
			}
		}},
		{nameChain, dns.TypeA, func(t *testing.T, r *dns.Msg) {
			if len(r.Answer) != 3 {
				t.Fatalf("chain not whole: %v", r.Answer)
			}
			if r.Answer[0].(*dns.CNAME).Target != nameTM || r.Answer[1].(*dns.CNAME).Target != nameEdge ||
				r.Answer[2].(*dns.A).A.String() != "203.0.113.20" {
				t.Errorf("chain %v", r.Answer)
			}
		}},
		{nameNX, dns.TypeA, func(t *testing.T, r *dns.Msg) {
			if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
				t.Errorf("upstream NXDOMAIN not passed: rcode %d ns %v", r.Rcode, r.Ns)
			}
		}},
	}
	for _, netw := range []string{"udp", "tcp"} {
		for _, c := range cases {
			t.Run(netw+"/"+c.name+"/"+dns.TypeToString[c.qtype], func(t *testing.T) {
				// Mixed case (DNS 0x20) and a chosen ID must come back as sent.
				name := strings.ToUpper(c.name[:1]) + c.name[1:]
				q := question(name, c.qtype, true)
				q.Id = 4242
				r := ask(t, e.f.Addr(), netw, q)
				if len(r.Question) != 1 || r.Question[0].Name != name || r.Question[0].Qtype != c.qtype {
					t.Errorf("question %v, want %s", r.Question, name)
				}
				if c.name != nameNX && r.Rcode != dns.RcodeSuccess {
					t.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
				}
				if !r.RecursionDesired {
					t.Error("RD not echoed")
				}
				c.check(t, r)
			})
		}
	}
	if got := waitCount(e.metrics.Decisions.WithLabelValues("allow", "", "servers", "dns", "default"), 8); got < 8 {
		t.Errorf("allow decisions counted %v", got)
	}
	if got := waitCount(e.metrics.DNSQueries.WithLabelValues("NOERROR"), 8); got < 8 {
		t.Errorf("NOERROR answers counted %v", got)
	}
}

func TestDeniedGetsRcodeAndEDE(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rcode DenyRcode
		want  int
	}{{"zero", DenyNXDomain, dns.RcodeNameError}, {"nxdomain", DenyNXDomain, dns.RcodeNameError}, {"refused", DenyRefused, dns.RcodeRefused}} {
		t.Run("deny_rcode="+tc.name, func(t *testing.T) {
			e := startFilter(t, Options{DenyRcode: tc.rcode, CacheSize: 100})
			for _, netw := range []string{"udp", "tcp"} {
				q := question("Example.COM.", dns.TypeA, true)
				r := ask(t, e.f.Addr(), netw, q)
				if r.Rcode != tc.want {
					t.Errorf("%s: rcode %s, want %s", netw, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.want])
				}
				if len(r.Answer) != 0 || len(r.Question) != 1 || r.Question[0].Name != "Example.COM." {
					t.Errorf("%s: answer %v question %v", netw, r.Answer, r.Question)
				}
				x := ede(r)
				if x == nil || x.InfoCode != dns.ExtendedErrorCodeBlocked || !strings.Contains(x.ExtraText, "arcfence") ||
					!strings.Contains(x.ExtraText, "not-in-allowlist") {
					t.Errorf("%s: EDE %v, want code 15 naming arcfence and the reason", netw, x)
				}
				if o := r.IsEdns0(); o == nil || o.Do() || o.UDPSize() != maxUDPSize {
					t.Errorf("%s: OPT %v", netw, o)
				}
				qdo := question("example.com.", dns.TypeA, false)
				qdo.SetEdns0(4096, true)
				if o := ask(t, e.f.Addr(), netw, qdo).IsEdns0(); o == nil || !o.Do() {
					t.Errorf("%s: DO not mirrored in the refusal: %v", netw, o)
				}
				// Without EDNS there is no OPT record (RFC 6891), the rcode stays.
				r = ask(t, e.f.Addr(), netw, question("example.com.", dns.TypeAAAA, false))
				if r.Rcode != tc.want || r.IsEdns0() != nil {
					t.Errorf("%s no EDNS: rcode %d opt %v", netw, r.Rcode, r.IsEdns0())
				}
			}
			if n := e.stub.total(nameDenied, dns.TypeA); n != 0 {
				t.Errorf("denied name reached the upstream %d times", n)
			}
			logs := e.logs.String()
			for _, want := range []string{`"msg":"denied"`, `"component":"dns"`, `"qtype":"A"`, `"host":"example.com"`,
				`"reason":"not-in-allowlist"`, `"mode":"enforce"`, `"client":"127.0.0.1"`} {
				if !strings.Contains(logs, want) {
					t.Errorf("refusal log lacks %s:\n%s", want, logs)
				}
			}
			if got := waitCount(e.metrics.Decisions.WithLabelValues("deny", "not-in-allowlist", "", "dns", "default"), 4); got < 4 {
				t.Errorf("deny decisions counted %v", got)
			}
			if got := waitCount(e.metrics.DNSQueries.WithLabelValues(dns.RcodeToString[tc.want]), 4); got < 4 {
				t.Errorf("%s answers counted %v", dns.RcodeToString[tc.want], got)
			}
		})
	}
}

func TestInvalidAndExplicitDeny(t *testing.T) {
	pol, err := policy.Compile(policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"},
		Deny: []string{"x.his.arc.azure.com"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := startFilter(t, Options{Policy: pol, Mode: policy.ModeLearn})
	for _, c := range []struct {
		name   string
		reason string
	}{
		{nameA, "explicit-deny"},
		{"bad_name.his.arc.azure.com.", "invalid-host"},
	} {
		r := ask(t, e.f.Addr(), "udp", question(c.name, dns.TypeA, true))
		// Learn mode still refuses explicit-deny and invalid names.
		if r.Rcode != dns.RcodeNameError {
			t.Errorf("%s: rcode %s", c.name, dns.RcodeToString[r.Rcode])
		}
		if x := ede(r); x == nil || !strings.Contains(x.ExtraText, c.reason) {
			t.Errorf("%s: EDE %v, want reason %s", c.name, x, c.reason)
		}
	}
}

func TestANYRefused(t *testing.T) {
	e := startFilter(t, Options{})
	for _, netw := range []string{"udp", "tcp"} {
		r := ask(t, e.f.Addr(), netw, question(nameA, dns.TypeANY, true))
		if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
			t.Errorf("%s: ANY got %s %v", netw, dns.RcodeToString[r.Rcode], r.Answer)
		}
	}
	if n := e.stub.total(nameA, dns.TypeANY); n != 0 {
		t.Errorf("ANY forwarded %d times", n)
	}
}

func TestBadVersion(t *testing.T) {
	e := startFilter(t, Options{})
	q := question(nameA, dns.TypeA, true)
	q.IsEdns0().SetVersion(1)
	r := ask(t, e.f.Addr(), "udp", q)
	o := r.IsEdns0()
	if r.Rcode != dns.RcodeBadVers || o == nil || o.Version() != 0 || len(r.Answer) != 0 {
		t.Errorf("EDNS version 1: rcode %d, OPT %v", r.Rcode, o)
	}
	if n := e.stub.total(nameA, dns.TypeA); n != 0 {
		t.Errorf("forwarded %d times", n)
	}
}

func TestQuestionCount(t *testing.T) {
	e := startFilter(t, Options{})
	for _, qs := range [][]dns.Question{
		{},
		{{Name: nameA, Qtype: dns.TypeA, Qclass: dns.ClassINET}, {Name: nameTXT, Qtype: dns.TypeTXT, Qclass: dns.ClassINET}},
	} {
		for _, netw := range []string{"udp", "tcp"} {
			m := new(dns.Msg)
			m.Id = dns.Id()
			m.RecursionDesired = true
			m.Question = qs
			c := &dns.Client{Net: netw, Timeout: 5 * time.Second}
			r, _, err := c.Exchange(m, e.f.Addr())
			if err != nil {
				t.Fatalf("%d questions over %s: %v", len(qs), netw, err)
			}
			if r.Rcode != dns.RcodeFormatError || r.Id != m.Id || len(r.Answer) != 0 {
				t.Errorf("%d questions over %s: %s", len(qs), netw, r)
			}
		}
	}
}

// TestGarbageNoReply sends, over one TCP connection (served in order),
// messages that do not parse and then a sentinel query: the first answer
// read must be the sentinel's.
func TestGarbageNoReply(t *testing.T) {
	e := startFilter(t, Options{})
	valid := question(nameDenied, dns.TypeA, false)
	valid.Id = 7
	vw, _ := valid.Pack()
	garbage := [][]byte{
		{0x12},
		[]byte("hello, world"),
		append(append([]byte{}, vw[:12]...), 0xC0, 0x0C, 0, 1, 0, 1),             // pointer to itself
		append([]byte{}, vw[:len(vw)-2]...),                                      // cut question
		func() []byte { b := append([]byte{}, vw...); b[2] |= 0x80; return b }(), // a response
	}
	conn, err := net.DialTimeout("tcp", e.f.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	sentinel := question("sentinel.example.", dns.TypeA, false)
	sentinel.Id = 0xBEEF
	sw, _ := sentinel.Pack()
	for _, g := range append(garbage, sw) {
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(g)))
		if _, err := conn.Write(append(l[:], g...)); err != nil {
			t.Fatal(err)
		}
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, b); err != nil {
		t.Fatal(err)
	}
	var r dns.Msg
	if err := r.Unpack(b); err != nil || r.Id != 0xBEEF {
		t.Fatalf("first answer is not the sentinel's: id %d err %v", r.Id, err)
	}
}

func TestCNAMETargetAnswerableForTTL(t *testing.T) {
	e := startFilter(t, Options{CacheSize: 0})
	addr := e.f.Addr()
	// Before any allowed answer named it, the target is refused.
	if r := ask(t, addr, "udp", question(nameTM, dns.TypeA, true)); r.Rcode != dns.RcodeNameError || ede(r) == nil {
		t.Fatalf("unlisted target before the chain: %s", dns.RcodeToString[r.Rcode])
	}
	r := ask(t, addr, "udp", question(nameChain, dns.TypeA, true))
	if len(r.Answer) != 3 {
		t.Fatalf("chain %v", r.Answer)
	}
	for _, n := range []string{nameTM, nameEdge} {
		r := ask(t, addr, "udp", question(n, dns.TypeA, true))
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			t.Errorf("%s within TTL: %s %v", n, dns.RcodeToString[r.Rcode], r.Answer)
		}
	}
	e.clock.Advance((chainTTL + 1) * time.Second)
	for _, n := range []string{nameTM, nameEdge} {
		r := ask(t, addr, "udp", question(n, dns.TypeA, true))
		if r.Rcode != dns.RcodeNameError || ede(r) == nil {
			t.Errorf("%s after TTL: %s, want refused", n, dns.RcodeToString[r.Rcode])
		}
	}
}

func TestCNAMETargetsBounded(t *testing.T) {
	s := newTTLSet[string](3)
	for i, k := range []string{"a", "b", "c", "d"} {
		s.add(k, int64(100+i))
	}
	if s.has("a", 0) || !s.has("b", 0) || !s.has("d", 0) || s.len() != 3 {
		t.Errorf("oldest not evicted first: a=%v b=%v d=%v len=%d", s.has("a", 0), s.has("b", 0), s.has("d", 0), s.len())
	}
	if s.has("d", 103) {
		t.Error("expired key still answered")
	}
	// Refreshing b moves it to the back: c goes before b.
	s.add("b", 200)
	s.add("e", 104)
	if !s.has("b", 0) || s.has("c", 0) {
		t.Errorf("refresh: b=%v c=%v", s.has("b", 0), s.has("c", 0))
	}
}

func TestFailover(t *testing.T) {
	st := startStub(t)
	e := startFilter(t, Options{Upstreams: []string{blackhole(t), st.addr}, Timeout: time.Second})
	r := ask(t, e.f.Addr(), "udp", question(nameA, dns.TypeA, true))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("failover answer: %s %v", dns.RcodeToString[r.Rcode], r.Answer)
	}
	if st.total(nameA, dns.TypeA) != 1 {
		t.Errorf("second upstream saw %d queries", st.total(nameA, dns.TypeA))
	}
	// SERVFAIL from the first upstream also moves on.
	st2 := startStub(t)
	e2 := startFilter(t, Options{Upstreams: []string{st.addr, st2.addr}})
	r = ask(t, e2.f.Addr(), "udp", question(nameServfail, dns.TypeA, true))
	if r.Rcode != dns.RcodeServerFailure {
		t.Errorf("SERVFAIL from both: %s", dns.RcodeToString[r.Rcode])
	}
	if st.total(nameServfail, dns.TypeA) != 1 || st2.total(nameServfail, dns.TypeA) != 1 {
		t.Errorf("SERVFAIL not failed over: %d %d", st.total(nameServfail, dns.TypeA), st2.total(nameServfail, dns.TypeA))
	}
}

func TestAllUpstreamsFailServfail(t *testing.T) {
	st := startStub(t)
	e := startFilter(t, Options{Upstreams: []string{blackhole(t), blackhole(t)},
		Timeout: 100 * time.Millisecond, QueryTimeout: time.Second, Attempts: 3})
	for _, netw := range []string{"udp", "tcp"} {
		r := ask(t, e.f.Addr(), netw, question(nameA, dns.TypeA, true))
		if r.Rcode != dns.RcodeServerFailure || len(r.Question) != 1 {
			t.Errorf("%s: %s, want SERVFAIL", netw, dns.RcodeToString[r.Rcode])
		}
	}
	// A slow upstream (3 s) is cut off by the per-attempt timeout.
	e2 := startFilter(t, Options{Upstreams: []string{st.addr}, Timeout: 100 * time.Millisecond, QueryTimeout: time.Second})
	r := ask(t, e2.f.Addr(), "udp", question(nameSlow, dns.TypeA, true))
	if r.Rcode != dns.RcodeServerFailure {
		t.Errorf("slow upstream: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if n := st.total(nameSlow, dns.TypeA); n > 2 {
		t.Errorf("retries not bounded: %d attempts", n)
	}
}

func TestTruncation(t *testing.T) {
	e := startFilter(t, Options{CacheSize: 100})
	// Without EDNS the client accepts 512 bytes: TC, no full answer.
	r := ask(t, e.f.Addr(), "udp", question(nameBig, dns.TypeA, false))
	if !r.Truncated || len(r.Answer) >= bigCount {
		t.Fatalf("udp: TC=%v with %d records", r.Truncated, len(r.Answer))
	}
	if e.stub.count(nameBig, dns.TypeA, "tcp") != 1 {
		t.Errorf("upstream TC answer not retried over TCP (tcp queries %d)", e.stub.count(nameBig, dns.TypeA, "tcp"))
	}
	r = ask(t, e.f.Addr(), "tcp", question(nameBig, dns.TypeA, false))
	if r.Truncated || len(r.Answer) != bigCount {
		t.Errorf("tcp: TC=%v with %d records, want %d", r.Truncated, len(r.Answer), bigCount)
	}
	// With EDNS 1232 still too big over UDP.
	r = ask(t, e.f.Addr(), "udp", question(nameBig, dns.TypeA, true))
	if !r.Truncated {
		t.Errorf("udp edns: TC=%v with %d records", r.Truncated, len(r.Answer))
	}
}

func TestEDNSAndDNSSECPassThrough(t *testing.T) {
	e := startFilter(t, Options{CacheSize: 100})
	q := question(nameA, dns.TypeA, false)
	q.SetEdns0(4096, true)
	for i := 0; i < 2; i++ { // forwarded, then from the cache
		r := ask(t, e.f.Addr(), "udp", q)
		if !e.stub.lastDO.Load() {
			t.Error("DO bit not forwarded")
		}
		o := r.IsEdns0()
		if o == nil || !o.Do() || o.UDPSize() != maxUDPSize {
			t.Errorf("OPT %v: want DO and size %d", o, maxUDPSize)
		}
		var sig *dns.RRSIG
		for _, a := range r.Answer {
			if s, ok := a.(*dns.RRSIG); ok {
				sig = s
			}
		}
		if sig == nil || sig.Signature != "c2lnbmF0dXJl" || sig.KeyTag != 12345 {
			t.Errorf("RRSIG not passed untouched: %v", r.Answer)
		}
	}
	if n := e.stub.total(nameA, dns.TypeA); n != 1 {
		t.Errorf("upstream queries %d, want 1", n)
	}
	// A query without DO is a different cache entry and gets no RRSIG.
	r := ask(t, e.f.Addr(), "udp", question(nameA, dns.TypeA, true))
	for _, a := range r.Answer {
		if _, ok := a.(*dns.RRSIG); ok {
			t.Error("RRSIG served to a client without DO")
		}
	}
}

// TestUpstreamOPT: the upstream's OPT record is rewritten for the client:
// our UDP size and the client's DO bit for EDNS clients, its options passed
// but hop-by-hop ones (cookie); no OPT at all for clients without EDNS.
func TestUpstreamOPT(t *testing.T) {
	e := startFilter(t, Options{CacheSize: 100})
	for _, name := range []string{nameOpt, nameCookie} {
		for round := 0; round < 2; round++ { // forwarded, then cached
			for _, netw := range []string{"udp", "tcp"} {
				r := ask(t, e.f.Addr(), netw, question(name, dns.TypeA, true))
				o := r.IsEdns0()
				if len(r.Answer) != 1 || o == nil || o.UDPSize() != maxUDPSize || o.Do() {
					t.Fatalf("%s %s: answer %v opt %v", name, netw, r.Answer, o)
				}
				var codes []uint16
				for _, opt := range o.Option {
					codes = append(codes, opt.Option())
				}
				if len(codes) != 1 || codes[0] != dns.EDNS0EDE {
					t.Errorf("%s %s: options %v, want the upstream's EDE only", name, netw, codes)
				}
				r = ask(t, e.f.Addr(), netw, question(name, dns.TypeA, false))
				if len(r.Answer) != 1 || r.IsEdns0() != nil {
					t.Errorf("%s %s no EDNS: answer %v, OPT %v", name, netw, r.Answer, r.IsEdns0())
				}
			}
		}
	}
}

func TestCache(t *testing.T) {
	e := startFilter(t, Options{CacheSize: 100})
	addr := e.f.Addr()
	r1 := ask(t, addr, "udp", question(nameA, dns.TypeA, true))
	e.clock.Advance(20 * time.Second)
	q := question("X.HIS.arc.azure.com.", dns.TypeA, true)
	q.Id = 999
	r2 := ask(t, addr, "udp", q)
	if n := e.stub.total(nameA, dns.TypeA); n != 1 {
		t.Fatalf("repeat reached the upstream: %d queries", n)
	}
	if r2.Question[0].Name != "X.HIS.arc.azure.com." {
		t.Errorf("cached answer question %q", r2.Question[0].Name)
	}
	if r1.Answer[0].Header().Ttl != 60 || r2.Answer[0].Header().Ttl != 40 {
		t.Errorf("TTLs %d then %d, want 60 then 40", r1.Answer[0].Header().Ttl, r2.Answer[0].Header().Ttl)
	}
	// Negative answers are cached for the SOA minimum (5 s), RFC 2308.
	ask(t, addr, "udp", question(nameNX, dns.TypeA, true))
	ask(t, addr, "udp", question(nameNX, dns.TypeA, true))
	if n := e.stub.total(nameNX, dns.TypeA); n != 1 {
		t.Errorf("negative answer not cached: %d queries", n)
	}
	e.clock.Advance(41 * time.Second) // past the 60 s TTL
	ask(t, addr, "udp", question(nameA, dns.TypeA, true))
	ask(t, addr, "udp", question(nameNX, dns.TypeA, true))
	if n := e.stub.total(nameA, dns.TypeA); n != 2 {
		t.Errorf("expired answer served from cache: %d queries", n)
	}
	if n := e.stub.total(nameNX, dns.TypeA); n != 2 {
		t.Errorf("expired negative answer served from cache: %d queries", n)
	}
	// SERVFAIL is not cached.
	ask(t, addr, "udp", question(nameServfail, dns.TypeA, true))
	ask(t, addr, "udp", question(nameServfail, dns.TypeA, true))
	if n := e.stub.total(nameServfail, dns.TypeA); n < 2 {
		t.Errorf("SERVFAIL cached")
	}
}

// TestCacheSkipsHugeAnswers: answers over maxCachedAnswer bytes are not
// cached, so cache_size bounds the cache's memory.
func TestCacheSkipsHugeAnswers(t *testing.T) {
	e := startFilter(t, Options{CacheSize: 100})
	for i := 0; i < 2; i++ {
		r := ask(t, e.f.Addr(), "tcp", question(nameHuge, dns.TypeA, true))
		if len(r.Answer) != 700 {
			t.Fatalf("huge answer: %d records", len(r.Answer))
		}
	}
	if n := e.stub.count(nameHuge, dns.TypeA, "tcp"); n != 2 {
		t.Errorf("upstream TCP queries %d, want 2 (not cached)", n)
	}
	// The 120-record answer (about 2 KB) is cached.
	for i := 0; i < 2; i++ {
		ask(t, e.f.Addr(), "tcp", question(nameBig, dns.TypeA, true))
	}
	if n := e.stub.count(nameBig, dns.TypeA, "tcp"); n != 1 {
		t.Errorf("big answer: upstream TCP queries %d, want 1", n)
	}
}

func TestCacheBounded(t *testing.T) {
	c := newAnswerCache(2)
	for i, n := range []string{"a", "b", "c"} {
		c.put(cacheKey{name: n}, &wireAnswer{exp: int64(100 + i)})
	}
	if c.get(cacheKey{name: "a"}, 0) != nil || c.get(cacheKey{name: "c"}, 0) == nil || c.len() != 2 {
		t.Errorf("oldest not evicted: len %d", c.len())
	}
	if c.get(cacheKey{name: "c"}, 102) != nil {
		t.Error("expired entry served")
	}
}

func TestCacheOff(t *testing.T) {
	e := startFilter(t, Options{CacheSize: 0})
	ask(t, e.f.Addr(), "udp", question(nameA, dns.TypeA, true))
	ask(t, e.f.Addr(), "udp", question(nameA, dns.TypeA, true))
	if n := e.stub.total(nameA, dns.TypeA); n != 2 {
		t.Errorf("cache_size 0 still cached: %d queries", n)
	}
}

// learnedNames is the filter's LearnedNames of a as one string.
func learnedNames(f *Filter, a string) string {
	return strings.Join(f.LearnedNames(netip.MustParseAddr(a), nil), ",")
}

// TestLearnedAddresses: each address of an allowed answer is remembered
// with the question name it was handed out for (issue 13 finding 1: the
// proxy admits it only where the policy admits that name), for the
// record's TTL; an IPv4-mapped address is its IPv4 address.
func TestLearnedAddresses(t *testing.T) {
	e := startFilter(t, Options{CacheSize: 100})
	x := strings.TrimSuffix(nameA, ".")
	if got := learnedNames(e.f, "203.0.113.10"); got != "" {
		t.Fatalf("learned before any answer: %q", got)
	}
	ask(t, e.f.Addr(), "udp", question(strings.ToUpper(nameA), dns.TypeA, true))
	ask(t, e.f.Addr(), "tcp", question(nameA, dns.TypeAAAA, true))
	ask(t, e.f.Addr(), "udp", question(nameChain, dns.TypeA, true))
	for _, tc := range []struct{ addr, want string }{
		{"203.0.113.10", x},
		{"::ffff:203.0.113.10", x},
		{"2001:db8::10", x},
		{"203.0.113.20", "gbl.his.arc.azure.com"}, // the question, not the CNAME target
		{"203.0.113.99", ""},                      // a denied name's address
	} {
		if got := learnedNames(e.f, tc.addr); got != tc.want {
			t.Errorf("LearnedNames(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	e.clock.Advance(61 * time.Second)
	if got := learnedNames(e.f, "203.0.113.10") + learnedNames(e.f, "2001:db8::10"); got != "" {
		t.Errorf("learned address outlived its TTL: %q", got)
	}
}

// TestLearnedNamesBounded: the learned pairs are bounded in total (oldest
// insertion evicted first) and per address (the name expiring first
// replaced); a refreshed pair outlives its first insertion.
func TestLearnedNamesBounded(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	names := func(s *addrNames, x netip.Addr, now int64) string { return strings.Join(s.names(x, now, nil), ",") }

	s := newAddrNames(3)
	s.add(a, "n1", 100)
	s.add(a, "n2", 100)
	s.add(b, "m1", 100)
	s.add(a, "n1", 200) // refreshed: evicts the oldest insertion, n1's own
	if got := names(s, a, 0) + "|" + names(s, b, 0); got != "n2,n1|m1" || s.len() != 3 {
		t.Errorf("after refresh: %q, len %d, want n2,n1|m1, 3", got, s.len())
	}
	s.add(b, "m2", 100) // evicts (a, n2), now the oldest
	if got := names(s, a, 0) + "|" + names(s, b, 0); got != "n1|m1,m2" || s.len() != 3 {
		t.Errorf("total bound: %q, len %d, want n1|m1,m2, 3", got, s.len())
	}
	if got := names(s, a, 150); got != "n1" {
		t.Errorf("refreshed pair at 150: %q", got)
	}
	if got := names(s, a, 200); got != "" {
		t.Errorf("expired pair answered: %q", got)
	}

	s = newAddrNames(100)
	for i := range maxNamesPerAddr + 2 {
		s.add(a, fmt.Sprintf("n%d", i), int64(1000+i))
	}
	got := s.names(a, 0, nil)
	if len(got) != maxNamesPerAddr || slices.Contains(got, "n0") || slices.Contains(got, "n1") ||
		!slices.Contains(got, fmt.Sprintf("n%d", maxNamesPerAddr+1)) {
		t.Errorf("per-address bound: %v", got)
	}
}

func TestLearnMode(t *testing.T) {
	e := startFilter(t, Options{Mode: policy.ModeLearn})
	r := ask(t, e.f.Addr(), "udp", question(nameDenied, dns.TypeA, true))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("learn mode: %s %v", dns.RcodeToString[r.Rcode], r.Answer)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"would deny"`) || !strings.Contains(logs, `"mode":"learn"`) {
		t.Errorf("no would-deny line:\n%s", logs)
	}
	if got := learnedNames(e.f, "203.0.113.99"); got != "" {
		t.Errorf("would-deny answer's address learned for %q", got)
	}
	// Back to enforce on reload.
	e.f.SetMode(policy.ModeEnforce)
	r = ask(t, e.f.Addr(), "udp", question(nameDenied, dns.TypeA, true))
	if r.Rcode != dns.RcodeNameError {
		t.Errorf("after SetMode(enforce): %s", dns.RcodeToString[r.Rcode])
	}
}

func TestSetPolicy(t *testing.T) {
	e := startFilter(t, Options{})
	if r := ask(t, e.f.Addr(), "udp", question(nameDenied, dns.TypeA, true)); r.Rcode != dns.RcodeNameError {
		t.Fatalf("before: %s", dns.RcodeToString[r.Rcode])
	}
	p, err := policy.Compile(policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"},
		Allow: []string{"example.com"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.f.SetPolicy(p)
	if r := ask(t, e.f.Addr(), "udp", question(nameDenied, dns.TypeA, true)); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after SetPolicy: %s", dns.RcodeToString[r.Rcode])
	}
	e.f.SetDenyRcode(DenyRefused)
	if r := ask(t, e.f.Addr(), "udp", question("other.example.", dns.TypeA, true)); r.Rcode != dns.RcodeRefused {
		t.Errorf("after SetDenyRcode(refused): %s", dns.RcodeToString[r.Rcode])
	}
}

func TestParseDenyRcode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want DenyRcode
		ok   bool
	}{{"nxdomain", DenyNXDomain, true}, {"refused", DenyRefused, true}, {"servfail", 0, false}, {"", 0, false}, {"NXDOMAIN", 0, false}} {
		got, err := ParseDenyRcode(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDenyRcode(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

func TestOptionsErrors(t *testing.T) {
	p := serversPolicy(t)
	for _, c := range []struct {
		name string
		opts Options
		want string
	}{
		{"no policy", Options{Listen: "127.0.0.1:0", Upstreams: []string{"127.0.0.1:53"}}, "Policy"},
		{"no listen", Options{Policy: p, Upstreams: []string{"127.0.0.1:53"}}, "dns.listen"},
		{"bad upstream", Options{Policy: p, Listen: "127.0.0.1:0", Upstreams: []string{"dns.example:53"}}, "dns.upstream"},
		{"no resolv.conf", Options{Policy: p, Listen: "127.0.0.1:0", ResolvConf: "testdata/missing.conf"}, "dns.upstream is empty"},
		{"bad listen", Options{Policy: p, Listen: "127.0.0.1", Upstreams: []string{"127.0.0.1:53"}}, "dns.listen"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := New(c.opts)
			if err == nil {
				f.Shutdown(t.Context())
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name %s", err, c.want)
			}
		})
	}
}

// TestSelfUpstreamRefused: an upstream that is the filter's own address
// would make every query loop; New refuses it.
func TestSelfUpstreamRefused(t *testing.T) {
	p := serversPolicy(t)
	// Learn a free port pair, then ask for it with itself as upstream.
	f, err := New(Options{Policy: p, Listen: "127.0.0.1:0", Upstreams: []string{"127.0.0.1:53"}})
	if err != nil {
		t.Fatal(err)
	}
	addr := f.Addr()
	f.Shutdown(t.Context())
	f, err = New(Options{Policy: p, Listen: addr, Upstreams: []string{"127.0.0.9:53", addr}})
	if err == nil {
		f.Shutdown(t.Context())
		t.Fatal("own address accepted as upstream")
	}
	if !strings.Contains(err.Error(), "loop") {
		t.Errorf("error %q does not say why", err)
	}
	// A wildcard listener (not bound here: tests stay on loopback) loops
	// through loopback and local addresses on its port.
	local := func() map[netip.Addr]bool { return map[netip.Addr]bool{netip.MustParseAddr("10.1.2.3"): true} }
	ups, err := parseUpstreams([]string{"127.0.0.1:5353", "10.1.2.3:53", "10.1.2.4:53", "127.0.0.1:53"}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		listen string
		ups    []*upstream
		want   string
	}{
		{"0.0.0.0:53", ups[:1], ""},
		{"0.0.0.0:53", ups[:2], "10.1.2.3:53"},
		{"0.0.0.0:53", ups[2:3], ""},
		{"[::]:53", ups[3:], "127.0.0.1:53"},
		{"10.1.2.4:53", ups[1:3], "10.1.2.4:53"},
		{"10.1.2.4:53", ups[3:], ""},
	} {
		if got := loopingUpstream(netip.MustParseAddrPort(c.listen), c.ups, local); got != c.want {
			t.Errorf("listen %s upstreams %v: %q, want %q", c.listen, upstreamAddrs(c.ups), got, c.want)
		}
	}
}

func TestResolvConfUpstreams(t *testing.T) {
	ups, err := parseUpstreams(nil, "testdata/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(upstreamAddrs(ups), ","); got != "127.0.0.53:53,[::1]:53" {
		t.Errorf("resolv.conf upstreams %s", got)
	}
	ups, err = parseUpstreams([]string{"127.0.0.1", "[::1]:5353", " "}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(upstreamAddrs(ups), ","); got != "127.0.0.1:53,[::1]:5353" {
		t.Errorf("upstreams %s", got)
	}
}

func TestShutdownWithoutRun(t *testing.T) {
	f, err := New(Options{Policy: serversPolicy(t), Listen: "127.0.0.1:0", Upstreams: []string{"127.0.0.1:53"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := f.Run(t.Context()); err == nil {
		t.Error("Run after Shutdown did not fail")
	}
}

// TestMaxInFlight: beyond the bound on forwarded queries, a query gets
// SERVFAIL at once instead of piling up on the upstream.
func TestMaxInFlight(t *testing.T) {
	e := startFilter(t, Options{MaxInFlight: 1, Timeout: time.Second, QueryTimeout: time.Second, Attempts: 1})
	slow := make(chan *dns.Msg, 1)
	go func() {
		c := &dns.Client{Timeout: 5 * time.Second}
		r, _, _ := c.Exchange(question(nameSlow, dns.TypeA, true), e.f.Addr())
		slow <- r
	}()
	for i := 0; i < 500 && e.stub.total(nameSlow, dns.TypeA) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if e.stub.total(nameSlow, dns.TypeA) == 0 {
		t.Fatal("slow query never reached the upstream")
	}
	r := ask(t, e.f.Addr(), "udp", question(nameA, dns.TypeA, true))
	if r.Rcode != dns.RcodeServerFailure {
		t.Errorf("second query with one in flight: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if n := e.stub.total(nameA, dns.TypeA); n != 0 {
		t.Errorf("the refused query reached the upstream %d times", n)
	}
	if r := <-slow; r == nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("slow query: %v", r)
	}
	// The slot is free again.
	if r := ask(t, e.f.Addr(), "udp", question(nameA, dns.TypeA, true)); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after the slow query: %s", dns.RcodeToString[r.Rcode])
	}
}

// waitCount returns c's value once it reaches want, or after 2 s. The
// handler counts an answer after writing it, so the last reply can reach
// the client before its count.
func waitCount(c prometheus.Counter, want float64) float64 {
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := testutil.ToFloat64(c)
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}
