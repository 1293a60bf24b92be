package dnsfilter

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/arcfence/arcfence/policy"
)

// profilesFor are a default profile for 127.0.0.1 that admits only
// example.com and a profile "servers" for 127.0.0.2 (the servers catalog).
func profilesFor(t *testing.T) *policy.Profiles {
	t.Helper()
	def, err := policy.Compile(policy.Config{Regions: []string{"eastus2"}, Allow: []string{"example.com"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return policy.NewProfiles(&policy.Profile{Name: policy.DefaultProfile, Policy: def},
		[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		policy.ProfileClients{Profile: &policy.Profile{Name: "servers", Policy: serversPolicy(t)},
			Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
}

// askFrom sends m over UDP from the loopback address src.
func askFrom(t *testing.T, addr, src string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second,
		Dialer: &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query from %s: %v", src, err)
	}
	return r
}

// TestProfilesDNS: dns.profiles union answers a name any profile admits,
// whoever asks; client decides with the source's profile and refuses a
// source in no profile.
func TestProfilesDNS(t *testing.T) {
	ps := profilesFor(t)
	for _, tc := range []struct {
		byClient bool
		src      string
		answered bool
		reason   string
	}{
		{false, "127.0.0.1", true, ""},
		{false, "127.0.0.3", true, ""},
		{true, "127.0.0.1", false, "not-in-allowlist"},
		{true, "127.0.0.2", true, ""},
		{true, "127.0.0.3", false, "client-not-allowed"},
	} {
		e := startFilter(t, Options{Policy: ps.Default().Policy, Profiles: ps, ByClient: tc.byClient})
		r := askFrom(t, e.f.Addr(), tc.src, question(nameA, dns.TypeA, true))
		x := ede(r)
		if tc.answered {
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || x != nil {
				t.Errorf("byClient=%v from %s: rcode %s answer %v EDE %v; want the answer", tc.byClient, tc.src, dns.RcodeToString[r.Rcode], r.Answer, x)
			}
			continue
		}
		if r.Rcode != dns.RcodeNameError || x == nil || !strings.Contains(x.ExtraText, tc.reason) {
			t.Errorf("byClient=%v from %s: rcode %s EDE %v; want NXDOMAIN %s", tc.byClient, tc.src, dns.RcodeToString[r.Rcode], x, tc.reason)
		}
	}
}

// TestProfilesDNSClientWithoutNamedProfiles: dns.profiles client refuses
// a source outside the top-level clients even when the default profile is
// the only one.
func TestProfilesDNSClientWithoutNamedProfiles(t *testing.T) {
	pol := serversPolicy(t)
	ps := policy.NewProfiles(&policy.Profile{Name: policy.DefaultProfile, Policy: pol},
		[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	e := startFilter(t, Options{Policy: pol, Profiles: ps, ByClient: true})
	q := question("x.his.arc.azure.com.", dns.TypeA, true)
	if r := askFrom(t, e.f.Addr(), "127.0.0.3", q); r.Rcode != dns.RcodeNameError || ede(r) == nil ||
		!strings.Contains(ede(r).ExtraText, "client-not-allowed") {
		t.Errorf("from 127.0.0.3: %s %v; want NXDOMAIN client-not-allowed", dns.RcodeToString[r.Rcode], ede(r))
	}
	if r := askFrom(t, e.f.Addr(), "127.0.0.1", q); r.Rcode == dns.RcodeNameError && ede(r) != nil &&
		strings.Contains(ede(r).ExtraText, "client-not-allowed") {
		t.Errorf("the client 127.0.0.1 was refused as client-not-allowed")
	}
}
