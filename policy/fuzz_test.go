package policy_test

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// Fuzz targets for every parser of untrusted input in the package. Their
// seed corpora (testdata/fuzz/<FuzzName>/ and the f.Add calls) run in plain
// `go test`; `go test -run=^$ -fuzz=FuzzX -fuzztime=60s ./policy` explores.
// A crasher found by fuzzing becomes a named table case elsewhere.

func FuzzSplitHostPort(f *testing.F) {
	for _, s := range []string{
		"management.azure.com:443", "[::1]:443", "[::1]", "host", "host:", "host:abc", "host:0",
		"host:65536", ":443", "[]:443", "[::1", "::1:443", "a]:443", "[1.2.3.4]:80", "h:+1",
		"h:00443", "[fe80::1%eth0]:443", "x:443:443", "\x00:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, authority string) {
		host, port, r := policy.SplitHostPort(authority)
		switch r {
		case policy.ReasonNone, policy.InvalidHost, policy.InvalidPort:
		default:
			t.Fatalf("SplitHostPort(%q): reason %q", authority, r)
		}
		if r != policy.ReasonNone {
			return
		}
		if port < 1 || port > 65535 {
			t.Fatalf("SplitHostPort(%q): port %d accepted", authority, port)
		}
		if host == "" {
			t.Fatalf("SplitHostPort(%q): empty host accepted", authority)
		}
		norm, ok := policy.NormalizeHost(host)
		if !ok {
			return
		}
		// a valid host:port splits as the standard library splits it
		nh, np, err := net.SplitHostPort(authority)
		if err != nil {
			t.Fatalf("SplitHostPort(%q) = %q %d, net.SplitHostPort: %v", authority, host, port, err)
		}
		if strings.Trim(host, "[]") != nh {
			t.Fatalf("SplitHostPort(%q) host %q, net.SplitHostPort %q", authority, host, nh)
		}
		if n, err := strconv.Atoi(np); err != nil || n != port {
			t.Fatalf("SplitHostPort(%q) port %d, net.SplitHostPort %q", authority, port, np)
		}
		// and round-trips through FormatHostPort
		h2, p2, r2 := policy.SplitHostPort(policy.FormatHostPort(norm, port))
		n2, ok2 := policy.NormalizeHost(h2)
		if r2 != policy.ReasonNone || p2 != port || !ok2 || n2 != norm {
			t.Fatalf("round trip of %q via %q: %q %d %q", authority, policy.FormatHostPort(norm, port), h2, p2, r2)
		}
	})
}

// refNormalize is the design's normalization written plainly: an IPv6
// literal (bracketed or not; a zone only of letters, digits, '-' and '_')
// in its canonical lower-case text, else one trailing dot dropped and a DNS
// name of letters, digits and hyphens (labels 1..63 bytes, no hyphen at
// either end, at most 253 bytes) in lower case.
func refNormalize(s string) (string, bool) {
	v6 := func(x string) (string, bool) {
		a, err := netip.ParseAddr(x)
		if err != nil || !a.Is6() {
			return "", false
		}
		if strings.Trim(a.Zone(), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			return "", false
		}
		return strings.ToLower(a.String()), true
	}
	if len(s) > 1 && s[0] == '[' && s[len(s)-1] == ']' {
		return v6(s[1 : len(s)-1])
	}
	s = strings.TrimSuffix(s, ".")
	if strings.Contains(s, ":") {
		return v6(s)
	}
	if len(s) == 0 || len(s) > 253 {
		return "", false
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		// ASCII only: strings.ToLower would fold a non-ASCII letter (İ) into one
		if strings.Trim(l, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{
		"management.azure.com", "MANAGEMENT.Azure.COM.", "a..b", ".", "", "1.2.3.4", "[::1]", "::1",
		"[2001:DB8::1]", "2130706433", "0x7f.1", "bücher.example", "xn--bcher-kva.example", "-a.b", "a_b.c",
		"fe80::1%eth0", "[fe80::1%25eth0]", strings.Repeat("a", 64) + ".com", "::ffff:1.2.3.4", "a.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, ok := policy.NormalizeHost(s)
		if rh, rok := refNormalize(s); ok != rok || ok && h != rh {
			t.Fatalf("NormalizeHost(%q) = %q, %v; the design's normalization gives %q, %v", s, h, ok, rh, rok)
		}
		if !ok {
			return
		}
		h2, ok2 := policy.NormalizeHost(h)
		if !ok2 || h2 != h {
			t.Fatalf("NormalizeHost(%q) = %q; again: %q %v (not idempotent)", s, h, h2, ok2)
		}
		if strings.HasSuffix(h, ".") {
			t.Fatalf("NormalizeHost(%q) = %q keeps a trailing dot", s, h)
		}
		if strings.ToLower(h) != h {
			t.Fatalf("NormalizeHost(%q) = %q has upper case", s, h)
		}
		if _, err := netip.ParseAddr(h); err == nil {
			return
		}
		if len(h) == 0 || len(h) > 253 {
			t.Fatalf("NormalizeHost(%q) = %q: length %d", s, h, len(h))
		}
		for _, label := range strings.Split(h, ".") {
			if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
				t.Fatalf("NormalizeHost(%q) = %q: bad label %q", s, h, label)
			}
			for i := 0; i < len(label); i++ {
				c := label[i]
				if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
					t.Fatalf("NormalizeHost(%q) = %q: byte %q", s, h, c)
				}
			}
		}
	})
}

// instanceOf returns a concrete host a rule's pattern admits.
func instanceOf(pattern string) string {
	if strings.HasPrefix(pattern, "*.") {
		return "zz9" + pattern[1:]
	}
	return strings.Replace(pattern, "*", "zz9", 1)
}

// tinyCatalog is a one-row catalog: Compile with it costs microseconds
// instead of the milliseconds the full catalog's every-region Hint policy
// takes, so the fuzzer explores entry parsing rather than catalog compiling.
var tinyCatalog = sync.OnceValue(func() *policy.Catalog {
	cat, err := policy.ParseCatalog([]byte(`entries:
  - pattern: catalog.example
    ports: [443]
    scheme: https
    sources:
      - {section: test, offering: servers, when: always, description: test row}
`))
	if err != nil {
		panic(err)
	}
	return cat
})

func FuzzCompilePattern(f *testing.F) {
	for _, s := range []string{
		"example.com", "example.com:8443", "files.example.com:80/pub", "*.example.com", "azgn*.example.com",
		"10.0.0.5", "10.0.0.5:8443", "[2001:db8::1]:8443", "2001:db8::1", "<region>.example.com",
		"https://example.com", "*.*.example.com", "a*b.example.com", "foo.*.com", "[::1", "fe80::1%eth0",
		"example.com/", "example.com:443/a/../b", "EXAMPLE.COM.", "*.com", "x*.y", "host/path", ":443",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		p, err := compilePinned(policy.Config{Regions: []string{"eastus2"}, Allow: []string{entry}}, tinyCatalog())
		if err != nil {
			return
		}
		for _, r := range p.Rules() {
			host := instanceOf(r.Pattern)
			for _, port := range r.Ports {
				d := destFor(host, port, r.Path)
				got := p.Decide(d)
				if !got.Allowed() {
					t.Fatalf("allow %q: rule %q does not admit %s:%d (%s)", entry, r.Pattern, host, port, got.Reason)
				}
				p.DecideName(host)
			}
		}
		// the same entry as a deny refuses everything the allow admitted
		pd, err := compilePinned(policy.Config{Regions: []string{"eastus2"}, Allow: []string{entry}, Deny: []string{entry}}, tinyCatalog())
		if err != nil {
			return // a path is not allowed in deny
		}
		for _, r := range pd.Rules() {
			host := instanceOf(r.Pattern)
			for _, port := range r.Ports {
				if got := pd.Decide(destFor(host, port, r.Path)); got.Reason != policy.ExplicitDeny {
					t.Fatalf("allow and deny %q: %s:%d is %s %q, want explicit-deny", entry, host, port, got.Verdict, got.Reason)
				}
			}
		}
	})
}

var fuzzPolicies = sync.OnceValues(func() (*policy.Policy, *policy.Policy) {
	every := policy.Config{
		Regions: []string{"eastus2", "westeurope"}, Offerings: policy.Offerings(), Features: policy.Features(),
		VCenter: "vcenter.corp.example", SCVMMServer: "[fd00::7]:8100",
		Allow: []string{"example.org", "api.example.org:8443", "files.example.org:80/pub", "*.wild.example.org",
			"svc*.glob.example.org", "10.0.0.5", "[2001:db8::7]:8443"},
		Deny: []string{"bad.example.org", "*.evil.example", "192.0.2.1", "pas.windows.net:443"},
	}
	pe, err := compilePinned(every, nil)
	if err != nil {
		panic(err)
	}
	pc, err := compilePinned(catalogOnlyConfig(), nil)
	if err != nil {
		panic(err)
	}
	return pe, pc
})

// fuzzProfiles are overlapping profiles over the fuzz policies: "every"
// (10.0.0.0/16, fd00::/64), then "catalog" (10.0.0.0/9 around it, the
// IPv4-mapped ::ffff:10.200.0.0/112, fd00::/16), then the default for
// 10.0.0.0/8 and 192.168.0.0/16. The second result lists every profile
// with its prefixes in file order, for the reference lookup.
var fuzzProfiles = sync.OnceValues(func() (*policy.Profiles, []policy.ProfileClients) {
	pe, pc := fuzzPolicies()
	named := []policy.ProfileClients{
		{Profile: &policy.Profile{Name: "every", Policy: pe}, Clients: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("fd00::/64")}},
		{Profile: &policy.Profile{Name: "catalog", Policy: pc, Mode: policy.ModeLearn}, Clients: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/9"), netip.MustParsePrefix("::ffff:10.200.0.0/112"), netip.MustParsePrefix("fd00::/16")}},
	}
	def := &policy.Profile{Name: policy.DefaultProfile, Policy: pe}
	defClients := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16")}
	all := append(append([]policy.ProfileClients(nil), named...), policy.ProfileClients{Profile: def, Clients: defClients})
	return policy.NewProfiles(def, defClients, named...), all
})

// fuzzClient derives a source address from the fuzz inputs: IPv4 in and
// around the profiles' ranges, IPv4-mapped, or IPv6.
func fuzzClient(host string, port int) netip.Addr {
	h := uint32(port)*2654435761 ^ uint32(len(host))*40503
	for i := 0; i < len(host) && i < 16; i++ {
		h = h*31 + uint32(host[i])
	}
	b := [4]byte{[]byte{10, 10, 192, 172}[h%4], byte(h >> 8), byte(h >> 16), byte(h >> 24)}
	switch h % 5 {
	case 3:
		return netip.AddrFrom16(netip.AddrFrom4(b).As16()) // IPv4-mapped
	case 4:
		var a [16]byte
		a[0], a[1], a[14], a[15] = 0xfd, 0, b[2], b[3]
		if h&1 == 1 {
			a[2] = b[1]
		}
		return netip.AddrFrom16(a)
	}
	return netip.AddrFrom4(b)
}

// catalogOnlyConfig has catalog rows only, so the reference model can decide it.
func catalogOnlyConfig() policy.Config {
	return policy.Config{Regions: []string{"eastus2", "westeurope"}, Offerings: policy.Offerings(),
		Features: []string{"cluster-connect", "ssh", "esu", "portal", "guest-management"}, VCenter: "vcenter.corp.example",
		SCVMMServer: "scvmm.corp.example"}
}

var fuzzModel = sync.OnceValue(func() []refRow {
	cat, err := policy.EmbeddedCatalog()
	if err != nil {
		panic(err)
	}
	return refRows(cat, catalogOnlyConfig())
})

// explainFor decides d for a connection from client as the proxy does:
// the client's profile's policy, or client-not-allowed.
func explainFor(ps *policy.Profiles, client netip.Addr, d policy.Dest) policy.Decision {
	p, ok := ps.For(client)
	if !ok {
		return policy.Decision{Reason: policy.ClientNotAllowed, Host: d.Host, Port: d.Port}
	}
	return p.Policy.Decide(d)
}

func FuzzDecide(f *testing.F) {
	f.Add("management.azure.com", 443, "", false)
	f.Add("MANAGEMENT.azure.com.", 443, "", false)
	f.Add("x.his.arc.azure.com", 443, "", false)
	f.Add("azgnXYZ.servicebus.windows.net", 443, "", false)
	f.Add("microsoft.com", 80, "/pkiops/certs/x", true)
	f.Add("microsoft.com", 80, "/pkiops/certsx", true)
	f.Add("eastus2.obo.arc.azure.com", 8084, "", false)
	f.Add("[2001:DB8::7]", 8443, "", false)
	f.Add("10.0.0.5", 443, "", false)
	f.Add("2130706433", 443, "", false)
	f.Add("a..b", 0, "", false)
	f.Add("files.example.org", 80, "/pub/../x", true)
	f.Add("microsoft.com", 80, "/pkiops/certs/..;/x", true)
	f.Add("x.evil.example", 443, "", false)
	f.Add("", -1, "", false)
	f.Fuzz(func(t *testing.T, host string, port int, path string, plain bool) {
		pe, pc := fuzzPolicies()
		d := policy.Dest{Host: host, Port: port, Path: path, Plain: plain}
		for _, p := range []*policy.Policy{pe, pc} {
			got := p.Decide(d)
			if got.Allowed() != (got.Reason == policy.ReasonNone) {
				t.Fatalf("Decide(%+v): verdict %s with reason %q", d, got.Verdict, got.Reason)
			}
			if got.Reason > policy.PathNotAllowed {
				t.Fatalf("Decide(%+v): proxy-only reason %q", d, got.Reason)
			}
			if got.Allowed() && (got.Rule == "" || port < 1 || port > 65535) {
				t.Fatalf("Decide(%+v): allowed with rule %q", d, got.Rule)
			}
			norm, ok := policy.NormalizeHost(host)
			if !ok {
				if got.Reason != policy.InvalidHost {
					t.Fatalf("Decide(%+v): host not valid, reason %q", d, got.Reason)
				}
				continue
			}
			// differential: the received form and the normalized form decide alike
			n := d
			n.Host = norm
			again := p.Decide(n)
			if again.Verdict != got.Verdict || again.Reason != got.Reason || again.Rule != got.Rule ||
				again.Offering != got.Offering || again.Host != got.Host {
				t.Fatalf("Decide(%q) = %s %q %q host %q; Decide(%q) = %s %q %q host %q",
					host, got.Verdict, got.Reason, got.Rule, got.Host, norm, again.Verdict, again.Reason, again.Rule, again.Host)
			}
			if got.Allowed() && got.Addr == (netip.Addr{}) {
				if name := p.DecideName(host); !name.Allowed() {
					t.Fatalf("Decide(%+v) allows, DecideName(%q) refuses: %q", d, host, name.Reason)
				}
			}
		}
		// profiles: the source picks the first profile in file order whose
		// prefixes contain it (reference: a linear scan); a source in no
		// profile is never admitted; the profile decides with its policy.
		ps, all := fuzzProfiles()
		client := fuzzClient(host, port)
		var wantProf *policy.Profile
		for _, pcs := range all {
			for _, pr := range pcs.Clients {
				if pr.Addr().Is4In6() && pr.Bits() >= 96 { // an IPv4-mapped prefix is its IPv4 prefix
					pr = netip.PrefixFrom(pr.Addr().Unmap(), pr.Bits()-96)
				}
				if wantProf == nil && pr.Contains(client.Unmap()) {
					wantProf = pcs.Profile
				}
			}
		}
		prof, inProfile := ps.For(client)
		if inProfile != (wantProf != nil) || inProfile && prof != wantProf {
			t.Fatalf("For(%s) = %v, %v; wantProf %v", client, prof, inProfile, wantProf)
		}
		if inProfile {
			if got, ref := prof.Policy.Decide(d), wantProf.Policy.Decide(d); got.Verdict != ref.Verdict || got.Rule != ref.Rule {
				t.Fatalf("profile %s: Decide(%+v) differs from its policy", prof.Name, d)
			}
		} else if v := explainFor(ps, client, d); v.Allowed() {
			t.Fatalf("client %s in no profile admitted to %+v", client, d)
		}
		// differential against the reference model (catalog rows only)
		norm, ok := policy.NormalizeHost(host)
		if !ok || port < 1 || port > 65535 || strings.Contains(norm, ":") {
			return
		}
		got := pc.Decide(d)
		if got.Reason == policy.IPLiteral || got.Source == policy.SourceVCenter || got.Source == policy.SourceSCVMM ||
			norm == "vcenter.corp.example" || norm == "scvmm.corp.example" {
			return
		}
		n := d
		n.Host = norm
		want := refDecide(fuzzModel(), n)
		if got.Verdict != want.Verdict || got.Reason != want.Reason || got.Rule != want.Rule ||
			got.Offering != want.Offering || got.Feature != want.Feature {
			t.Fatalf("Decide(%+v) = %s %q %q %q %q; model: %s %q %q %q %q", d,
				got.Verdict, got.Reason, got.Rule, got.Offering, got.Feature,
				want.Verdict, want.Reason, want.Rule, want.Offering, want.Feature)
		}
	})
}

func FuzzCompileConfig(f *testing.F) {
	f.Add("servers", "esu", "eastus2", "onboarding", "direct", "", "", "example.org", "bad.example.org")
	f.Add("vmware", "guest-management", "East US 2", "steady", "indirect", "[fd00::1]:443", "", "10.0.0.1:8443", "")
	f.Add("scvmm", "private-link", "westeurop", "", "", "", "scvmm.corp.example", "<region>.x.example", "<region>.y.example")
	f.Add("app-services", "resource-management-private-link", "", "stable", "hybrid", "vc", "", "*.w.example:80/p", "a/b")
	f.Add("data-services", "", "eastus3", "", "indirect", "", "", "", "")
	f.Fuzz(func(t *testing.T, offering, feature, region, phase, mode, vcenter, scvmm, allow, deny string) {
		cfg := policy.Config{Offerings: []string{offering}, Features: []string{feature}, Regions: []string{region},
			Phase: phase, DataServicesMode: mode, VCenter: vcenter, SCVMMServer: scvmm}
		if allow != "" {
			cfg.Allow = []string{allow}
		}
		if deny != "" {
			cfg.Deny = []string{deny}
		}
		cat, err := parsedCatalog()
		if err != nil {
			t.Fatal(err)
		}
		p, err := compilePinned(cfg, cat)
		if (p == nil) == (err == nil) {
			t.Fatalf("Compile(%+v) = %v, %v: want exactly one", cfg, p, err)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("Compile(%+v): empty error", cfg)
			}
			return
		}
		for _, r := range p.Rules() {
			host := instanceOf(r.Pattern)
			for _, port := range r.Ports {
				p.Decide(destFor(host, port, r.Path))
				p.Hint(policy.Dest{Host: host, Port: port})
			}
		}
	})
}

// structuredAllow are allow entries that crowd the glob and wildcard
// indexes: globs of several prefix lengths in one zone, nested wildcards,
// an exact name on another port, a path row.
var structuredAllow = []string{
	"a*.g.example.org", "ab*.g.example.org", "abc*.g.example.org", "b*.g.example.org", "*.g.example.org",
	"x.g.example.org:8443", "*.w.example.org", "*.x.w.example.org:8443", "files.w.example.org:80/pub",
	"azgn1*.servicebus.windows.net:8443",
}

// structuredDeny crowds the deny index the same way.
var structuredDeny = []string{"abcd*.g.example.org", "b*.g.example.org:8443", "*.x.w.example.org",
	"gbl.his.arc.azure.com:443", "abcde.g.example.org:443"}

var structuredFixture = sync.OnceValues(func() (*policy.Policy, []refRow) {
	cat, err := policy.EmbeddedCatalog()
	if err != nil {
		panic(err)
	}
	cfg := catalogOnlyConfig()
	cfg.Allow = structuredAllow
	cfg.Deny = structuredDeny
	p, err := compilePinned(cfg, cat)
	if err != nil {
		panic(err)
	}
	return p, refUserRows(refRows(cat, catalogOnlyConfig()), structuredAllow)
})

// FuzzDecideStructured builds names from the catalog's and the allow
// entries' own patterns (the fuzzer fills the wildcard, picks the port and
// the case) and compares Decide with the reference model.
func FuzzDecideStructured(f *testing.F) {
	f.Add(uint16(0), "abcd", uint16(443), false, "", false)
	f.Add(uint16(3), "q", uint16(443), true, "", false)
	f.Add(uint16(5), "", uint16(8443), false, "", false)
	f.Add(uint16(9), "zz", uint16(8443), false, "", true)
	f.Add(uint16(60), "a.b", uint16(443), false, "", false)
	f.Add(uint16(40), "", uint16(80), false, "/pkiops/certs/x", true)
	f.Add(uint16(0), "bcde", uint16(443), false, "", false)
	f.Add(uint16(3), "cd", uint16(8443), false, "", false)
	f.Add(uint16(7), "q", uint16(443), false, "", false)
	f.Fuzz(func(t *testing.T, pick uint16, fill string, port uint16, upper bool, path string, plain bool) {
		p, rows := structuredFixture()
		var patterns []string
		for _, a := range structuredAllow {
			patterns = append(patterns, strings.SplitN(strings.SplitN(a, "/", 2)[0], ":", 2)[0])
		}
		for _, r := range rows {
			if !r.user {
				patterns = append(patterns, r.pattern)
			}
		}
		host := strings.Replace(patterns[int(pick)%len(patterns)], "*", fill, 1)
		if upper {
			host = strings.ToUpper(host)
		}
		d := policy.Dest{Host: host, Port: int(port), Path: path, Plain: plain}
		got := p.Decide(d)
		norm, ok := refNormalize(host)
		if !ok || port == 0 || strings.Contains(norm, ":") || got.Reason == policy.IPLiteral {
			return
		}
		n := d
		n.Host = norm
		deny := refDenyRows(structuredDeny)
		want := refDecide(rows, n)
		if rule := refDenied(deny, norm, int(port)); rule != "" {
			want = policy.Decision{Reason: policy.ExplicitDeny, Rule: rule}
		}
		if got.Verdict != want.Verdict || got.Reason != want.Reason || got.Rule != want.Rule ||
			got.Offering != want.Offering || got.Feature != want.Feature || got.PrivateOK != want.PrivateOK {
			t.Fatalf("Decide(%+v) = %s %q %q %q %q private-ok %v; model: %s %q %q %q %q private-ok %v", d,
				got.Verdict, got.Reason, got.Rule, got.Offering, got.Feature, got.PrivateOK,
				want.Verdict, want.Reason, want.Rule, want.Offering, want.Feature, want.PrivateOK)
		}
		gn, wn := p.DecideName(host), refDecideName(rows, deny, norm)
		if gn.Verdict != wn.Verdict || gn.Reason != wn.Reason || gn.Rule != wn.Rule || gn.Offering != wn.Offering ||
			gn.Feature != wn.Feature || gn.Port != wn.Port {
			t.Fatalf("DecideName(%q) = %s %q %q %q %q port %d; model: %s %q %q %q %q port %d", host,
				gn.Verdict, gn.Reason, gn.Rule, gn.Offering, gn.Feature, gn.Port,
				wn.Verdict, wn.Reason, wn.Rule, wn.Offering, wn.Feature, wn.Port)
		}
	})
}
