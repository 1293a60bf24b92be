package dnsfilter

import (
	"testing"

	"github.com/miekg/dns"
)

// TestFastWire checks which upstream answers the wire path takes and which
// it leaves to the full unpack (nil), and that what it produces parses.
func TestFastWire(t *testing.T) {
	f := &Filter{cnames: newTTLSet[string](10), learned: newAddrNames(10)}
	reply := func(mod func(m *dns.Msg)) []byte {
		m := new(dns.Msg)
		m.SetQuestion("X.his.arc.azure.com.", dns.TypeA)
		m.Response = true
		m.Answer = append(m.Answer, mustRR("X.his.arc.azure.com. 60 IN A 203.0.113.10"))
		if mod != nil {
			mod(m)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withOPT := func(opts ...dns.EDNS0) func(m *dns.Msg) {
		return func(m *dns.Msg) {
			o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}, Option: opts}
			o.SetUDPSize(4096)
			m.Extra = append(m.Extra, o)
		}
	}
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}
	optThenA := func(m *dns.Msg) {
		withOPT()(m)
		m.Extra = append(m.Extra, mustRR("ns.example. 60 IN A 192.0.2.1"))
	}
	for _, c := range []struct {
		name   string
		wire   []byte
		edns   bool
		fast   bool
		hasOPT bool
	}{
		{"plain, client without EDNS", reply(nil), false, true, false},
		{"plain, EDNS client gets an OPT", reply(nil), true, true, true},
		{"upstream OPT, EDNS client", reply(withOPT()), true, true, true},
		{"upstream OPT removed for a client without EDNS", reply(withOPT()), false, true, false},
		{"cookie to strip", reply(withOPT(cookie)), true, false, false},
		{"OPT not last, client without EDNS", reply(optThenA), false, false, false},
		{"OPT not last, EDNS client", reply(optThenA), true, true, true},
		{"trailing bytes", append(reply(nil), 0, 0), false, false, false},
		{"cut record", reply(nil)[:40], false, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := &query{r: question("X.His.Arc.Azure.Com.", dns.TypeA, c.edns)}
			q.opt = q.r.IsEdns0()
			e := f.fastWire(q, append([]byte(nil), c.wire...), cacheKey{}, true, 0)
			if (e != nil) != c.fast {
				t.Fatalf("fast path %v, want %v", e != nil, c.fast)
			}
			if e == nil {
				return
			}
			var m dns.Msg
			if err := m.Unpack(e.wire); err != nil {
				t.Fatalf("result does not parse: %v", err)
			}
			if (m.IsEdns0() != nil) != c.hasOPT {
				t.Errorf("OPT %v, want %v", m.IsEdns0(), c.hasOPT)
			}
			if o := m.IsEdns0(); o != nil && o.UDPSize() != maxUDPSize {
				t.Errorf("UDP size %d", o.UDPSize())
			}
			if m.Id != 0 || m.RecursionDesired || m.Question[0].Name != "x.his.arc.azure.com." || len(m.Answer) != 1 {
				t.Errorf("canonical form: %v", &m)
			}
		})
	}
}
