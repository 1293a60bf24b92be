package policy_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// prefixes parses CIDRs for a test.
func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s).Masked())
	}
	return out
}

// TestProfilesFor checks which profile a source address picks: the first
// named profile in file order whose clients contain it, then the default,
// else none.
func TestProfilesFor(t *testing.T) {
	pol := compileOK(t, policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}})
	mk := func(name string) *policy.Profile { return &policy.Profile{Name: name, Policy: pol} }
	named := []policy.ProfileClients{
		// "wide" comes first: it wins over the narrower "narrow" for the
		// addresses both contain (file order, not the longest prefix).
		{Profile: mk("wide"), Clients: prefixes(t, "10.0.5.0/24", "fd00:5::/64")},
		{Profile: mk("narrow"), Clients: prefixes(t, "10.0.5.10/32", "10.0.6.0/24", "fd00:5::10/128", "fd00:6::/48")},
		{Profile: mk("mapped"), Clients: prefixes(t, "::ffff:10.0.7.0/120")},
		{Profile: mk("inner"), Clients: prefixes(t, "10.0.8.128/25")},
		{Profile: mk("outer"), Clients: prefixes(t, "10.0.8.0/24")},
	}
	withDef := policy.NewProfiles(mk(policy.DefaultProfile), prefixes(t, "10.0.0.0/8", "fc00::/7", "127.0.0.0/8"), named...)
	noDef := policy.NewProfiles(mk(policy.DefaultProfile), nil, named...)
	cases := []struct {
		addr         string
		want, noDefW string // "" = no profile
	}{
		{"10.0.5.10", "wide", "wide"},
		{"10.0.5.200", "wide", "wide"},
		{"10.0.6.1", "narrow", "narrow"},
		{"10.0.7.9", "mapped", "mapped"},
		{"::ffff:10.0.7.9", "mapped", "mapped"},
		{"::ffff:10.0.6.1", "narrow", "narrow"},
		{"10.0.8.200", "inner", "inner"},
		{"10.0.8.1", "outer", "outer"},
		{"10.9.9.9", "default", ""},
		{"::ffff:10.9.9.9", "default", ""},
		{"127.0.0.1", "default", ""},
		{"192.0.2.1", "", ""},
		{"fd00:5::10", "wide", "wide"},
		{"fd00:6:0:1::1", "narrow", "narrow"},
		{"fd00:9::1", "default", ""},
		{"2001:db8::1", "", ""},
		{"::1", "", ""},
	}
	for _, c := range cases {
		a := netip.MustParseAddr(c.addr)
		for _, tc := range []struct {
			ps   *policy.Profiles
			want string
		}{{withDef, c.want}, {noDef, c.noDefW}} {
			p, ok := tc.ps.For(a)
			got := ""
			if ok {
				got = p.Name
			}
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("For(%s) = %q, %v; want %q", c.addr, got, ok, tc.want)
			}
		}
	}
	if p, ok := withDef.Named("narrow"); !ok || p.Name != "narrow" {
		t.Errorf("Named(narrow) = %v, %v", p, ok)
	}
	if _, ok := withDef.Named("nosuch"); ok {
		t.Error("Named(nosuch) found a profile")
	}
	if l := withDef.List(); len(l) != 6 || l[5].Profile.Name != policy.DefaultProfile || l[0].Profile.Name != "wide" {
		t.Errorf("List: %d profiles, want 5 named then the default", len(l))
	}
}

// benchProfiles builds n named profiles sharing 1,000 client prefixes
// (IPv4 /24s and /32s, IPv6 /64s) and a /8 default, and returns sources
// that hit each kind of match.
func benchProfiles(b testing.TB, n int) (*policy.Profiles, []netip.Addr) {
	p := compileOK(b, benchConfig(10))
	named := make([]policy.ProfileClients, n)
	for i := range named {
		named[i].Profile = &policy.Profile{Name: fmt.Sprintf("p%02d", i), Policy: p}
	}
	for j := 0; j < 1000; j++ {
		var s string
		switch j % 3 {
		case 0:
			s = fmt.Sprintf("10.%d.%d.0/24", j/256, j%256)
		case 1:
			s = fmt.Sprintf("10.%d.%d.%d/32", 100+j/65536, j/256%256, j%256)
		case 2:
			s = fmt.Sprintf("fd00:%x:%x::/64", j/65536, j%65536)
		}
		named[j%n].Clients = append(named[j%n].Clients, netip.MustParsePrefix(s).Masked())
	}
	ps := policy.NewProfiles(&policy.Profile{Name: policy.DefaultProfile, Policy: p}, prefixes(b, "10.0.0.0/8", "fc00::/7"), named...)
	srcs := []netip.Addr{
		netip.MustParseAddr("10.0.3.77"),        // a /24 of a named profile
		netip.MustParseAddr("10.100.0.4"),       // a /32 of a named profile
		netip.MustParseAddr("fd00:0:5::9"),      // an IPv6 /64 of a named profile
		netip.MustParseAddr("10.200.1.1"),       // the default
		netip.MustParseAddr("::ffff:10.0.3.77"), // IPv4-mapped
		netip.MustParseAddr("192.0.2.1"),        // no profile
	}
	return ps, srcs
}

// BenchmarkDecideProfiles measures the decision path of a connection:
// For (the source's profile) then Decide with that profile's policy, with
// 1 and 50 profiles over 1,000 client prefixes.
func BenchmarkDecideProfiles(b *testing.B) {
	dests := benchDests()
	for _, n := range []int{1, 50} {
		ps, srcs := benchProfiles(b, n)
		b.Run(fmt.Sprintf("profiles=%d/prefixes=1000", n), func(b *testing.B) {
			b.ReportAllocs()
			i, j, ops := 0, 0, 0
			for b.Loop() {
				if pr, ok := ps.For(srcs[j]); ok {
					pr.Policy.Decide(dests[i].d)
				}
				i++
				if i == len(dests) {
					i = 0
				}
				j++
				if j == len(srcs) {
					j = 0
				}
				ops++
			}
			reportRate(b, ops)
		})
	}
}

// TestProfilesForZeroAllocs checks that the profile lookup does not
// allocate.
func TestProfilesForZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	ps, srcs := benchProfiles(t, 50)
	for _, a := range srcs {
		if n := testing.AllocsPerRun(100, func() { ps.For(a) }); n != 0 {
			t.Errorf("For(%s): %v allocs", a, n)
		}
	}
}
