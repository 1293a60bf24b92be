package config

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// siteConfig is a multi-profile configuration: a default profile and
// profiles that replace, add to and inherit each kind of policy key.
func siteConfig() *Config {
	c := Default()
	c.Regions = []string{"eastus2"}
	c.Offerings = []string{policy.OfferingServers}
	c.Features = []string{policy.FeatureESU}
	c.Allow = []string{"extra.example.com", "10.9.9.9:8443"}
	c.Deny = []string{"pas.windows.net"}
	c.Clients = []string{"10.0.0.0/8"}
	c.Profiles = []Profile{
		{Name: "bridge", Clients: []string{"10.0.5.10"}, Offerings: []string{policy.OfferingResourceBridge, policy.OfferingVMware},
			Deny: []string{"mcr.microsoft.com:443"}, VMware: VMware{VCenter: "vc.corp.example"}},
		{Name: "k8s", Clients: []string{"10.1.0.0/16"}, Offerings: []string{policy.OfferingKubernetes},
			Features: []string{policy.FeatureClusterConnect, policy.FeatureAzureRBAC}, Regions: []string{"westeurope"},
			Phase: policy.PhaseSteady, Mode: "learn"},
		{Name: "data", Clients: []string{"10.2.0.0/16"}, Offerings: []string{policy.OfferingDataServices},
			DataServices: DataServices{Mode: policy.DataServicesIndirect}, Allow: []string{"db.example.com:1433"}},
		{Name: "scvmm", Clients: []string{"10.3.0.0/16"}, Offerings: []string{policy.OfferingSCVMM, policy.OfferingServers},
			SCVMM: SCVMM{Server: "scvmm.corp.example"}},
	}
	return &c
}

// flatConfigs are, written out by hand, the flat configuration each
// profile of siteConfig must decide like: the design's inheritance rules
// applied (offerings, features, allow its own; deny added to the top
// level's; regions, phase, data_services, vmware, scvmm inherited unless set).
func flatConfigs() map[string]policy.Config {
	top := policy.Config{Regions: []string{"eastus2"}, Phase: policy.PhaseOnboarding, DataServicesMode: policy.DataServicesDirect,
		Revision: policy.LatestRevision, Cloud: policy.CloudPublic}
	with := func(f func(*policy.Config)) policy.Config {
		c := top
		f(&c)
		return c
	}
	return map[string]policy.Config{
		policy.DefaultProfile: with(func(c *policy.Config) {
			c.Offerings, c.Features = []string{"servers"}, []string{"esu"}
			c.Allow, c.Deny = []string{"extra.example.com", "10.9.9.9:8443"}, []string{"pas.windows.net"}
		}),
		"bridge": with(func(c *policy.Config) {
			c.Offerings, c.VCenter = []string{"resource-bridge", "vmware"}, "vc.corp.example"
			c.Deny = []string{"pas.windows.net", "mcr.microsoft.com:443"}
		}),
		"k8s": with(func(c *policy.Config) {
			c.Offerings, c.Features = []string{"kubernetes"}, []string{"cluster-connect", "azure-rbac"}
			c.Regions, c.Phase, c.Deny = []string{"westeurope"}, policy.PhaseSteady, []string{"pas.windows.net"}
		}),
		"data": with(func(c *policy.Config) {
			c.Offerings, c.DataServicesMode = []string{"data-services"}, policy.DataServicesIndirect
			c.Allow, c.Deny = []string{"db.example.com:1433"}, []string{"pas.windows.net"}
		}),
		"scvmm": with(func(c *policy.Config) {
			c.Offerings, c.SCVMMServer = []string{"scvmm", "servers"}, "scvmm.corp.example"
			c.Deny = []string{"pas.windows.net"}
		}),
	}
}

// instance returns a host a pattern admits.
func instance(pattern string) string {
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		return "a1." + rest
	}
	if i := strings.IndexByte(pattern, '*'); i >= 0 {
		return pattern[:i] + "x1" + pattern[i+1:]
	}
	return strings.Trim(pattern, "[]")
}

// diffDests are destinations covering every catalog row of both regions
// (each section, each port, paths, wrong ports) and the config's own entries.
func diffDests(t *testing.T, p *policy.Policy) []policy.Dest {
	t.Helper()
	var out []policy.Dest
	sections := map[string]bool{}
	for _, r := range p.Catalog().AllRules([]string{"eastus2", "westeurope"}) {
		if strings.ContainsAny(r.Pattern, "<>") {
			continue
		}
		sections[r.Section] = true
		h := instance(r.Pattern)
		for _, port := range r.Ports {
			d := policy.Dest{Host: h, Port: port}
			if r.Scheme == "http" || port == 80 {
				d.Plain, d.Path = true, r.Path+"/x"
			}
			out = append(out, d, policy.Dest{Host: h, Port: port + 1})
		}
	}
	if len(sections) < 5 {
		t.Fatalf("catalog covers only sections %v", sections)
	}
	for _, s := range []string{"extra.example.com:443", "10.9.9.9:8443", "db.example.com:1433", "vc.corp.example:443",
		"scvmm.corp.example:8100", "pas.windows.net:443", "mcr.microsoft.com:443", "unknown.example.org:443"} {
		h, port, r := policy.SplitHostPort(s)
		if r != policy.ReasonNone {
			t.Fatalf("%s: %v", s, r)
		}
		out = append(out, policy.Dest{Host: h, Port: port})
	}
	return out
}

// TestProfilesDecideLikeFlat is the differential test of profiles: for
// every profile, Decide with the profile equals Decide on the flat
// configuration of the same selection.
func TestProfilesDecideLikeFlat(t *testing.T) {
	rt, err := Build(siteConfig())
	if err != nil {
		t.Fatal(err)
	}
	flats := flatConfigs()
	dests := diffDests(t, rt.Policy())
	allowed := map[string]int{}
	for _, pc := range rt.Profiles.List() {
		name := pc.Profile.Name
		fc, ok := flats[name]
		if !ok {
			t.Fatalf("no flat config for profile %s", name)
		}
		flat, err := policy.Compile(fc, nil)
		if err != nil {
			t.Fatalf("flat %s: %v", name, err)
		}
		for _, d := range dests {
			got, want := pc.Profile.Policy.Decide(d), flat.Decide(d)
			if got.Verdict != want.Verdict || got.Reason != want.Reason || got.Rule != want.Rule ||
				got.Offering != want.Offering || got.Feature != want.Feature {
				t.Errorf("profile %s, %s:%d%s: %s %s %q %s %s; flat: %s %s %q %s %s", name, d.Host, d.Port, d.Path,
					got.Verdict, got.Reason, got.Rule, got.Offering, got.Feature,
					want.Verdict, want.Reason, want.Rule, want.Offering, want.Feature)
			}
			if got.Allowed() {
				allowed[name]++
			}
		}
	}
	// The profiles differ: the test compares distinct selections.
	seen := map[int]string{}
	for name, n := range allowed {
		if other, dup := seen[n]; dup {
			t.Logf("profiles %s and %s admit as many destinations (%d)", name, other, n)
		}
		seen[n] = name
	}
	if len(seen) < 4 {
		t.Errorf("profiles admit %v destinations: too alike to compare", allowed)
	}
	if k8s, _ := rt.Profiles.Named("k8s"); k8s.Mode != policy.ModeLearn {
		t.Errorf("k8s mode = %v, want learn", k8s.Mode)
	}
	if bridge, _ := rt.Profiles.Named("bridge"); bridge.Mode != policy.ModeEnforce {
		t.Errorf("bridge mode = %v, want the top-level enforce", bridge.Mode)
	}
}

// TestProfilesClients: the built profiles pick sources in file order, a
// profile's clients admit sources outside the top-level clients, and
// clients: [] leaves no default profile.
func TestProfilesClients(t *testing.T) {
	c := siteConfig()
	c.Profiles = append(c.Profiles, Profile{Name: "outside", Clients: []string{"192.168.7.0/24", "fd00:7::/64"}, Offerings: []string{"servers"}})
	for _, top := range [][]string{{"10.0.0.0/8"}, {}} {
		c.Clients = top
		rt, err := Build(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ addr, want string }{
			{"10.0.5.10", "bridge"}, {"10.1.2.3", "k8s"}, {"192.168.7.9", "outside"}, {"fd00:7::1", "outside"},
			{"10.200.0.1", "default"}, {"172.16.0.1", ""},
		} {
			want := tc.want
			if len(top) == 0 && want == "default" {
				want = ""
			}
			p, ok := rt.Profiles.For(netip.MustParseAddr(tc.addr))
			got := ""
			if ok {
				got = p.Name
			}
			if got != want {
				t.Errorf("clients %v: For(%s) = %q, want %q", top, tc.addr, got, want)
			}
		}
	}
}

// TestProfileKeysGeneric: every policy key a Profile has is either
// inherited or the profile's own (ProfilePolicy reads it): a key added to
// Profile without a line in ProfilePolicy changes nothing and fails here.
func TestProfileKeysGeneric(t *testing.T) {
	c := siteConfig()
	base := fmt.Sprintf("%+v", c.ProfilePolicy(&Profile{}))
	for key, p := range map[string]Profile{
		"regions": {Regions: []string{"westus"}}, "phase": {Phase: "steady"}, "offerings": {Offerings: []string{"esu"}},
		"features": {Features: []string{"ssh"}}, "allow": {Allow: []string{"x.example"}}, "deny": {Deny: []string{"y.example"}},
		"data_services": {DataServices: DataServices{Mode: "indirect"}}, "vmware": {VMware: VMware{VCenter: "v"}},
		"scvmm": {SCVMM: SCVMM{Server: "s"}}, "connection": {Connection: "both"},
		"gateway": {Gateway: Gateway{Endpoint: "site.gw.arc.azure.com"}},
	} {
		if got := fmt.Sprintf("%+v", c.ProfilePolicy(&p)); got == base {
			t.Errorf("profile key %s does not reach the policy", key)
		}
	}
}

// TestProfileGateway: a profile sets its own connection and gateway; the
// others inherit the top level's (direct), and a gateway profile admits
// the endpoint its clients use while the direct profile does not.
func TestProfileGateway(t *testing.T) {
	c := Default()
	c.Profiles = []Profile{{Name: "gw", Clients: []string{"10.9.0.0/16"}, Offerings: []string{"servers"},
		Connection: "gateway", Gateway: Gateway{Endpoint: "site.gw.arc.azure.com"}}}
	r, err := Build(&c)
	if err != nil {
		t.Fatal(err)
	}
	gw, ok := r.Profiles.For(netip.MustParseAddr("10.9.1.1"))
	if !ok || gw.Name != "gw" {
		t.Fatalf("profile for 10.9.1.1: %v %v", gw, ok)
	}
	dest := policy.Dest{Host: "site.gw.arc.azure.com", Port: 443}
	if d := gw.Policy.Decide(dest); !d.Allowed() {
		t.Errorf("gateway profile refuses its endpoint: %+v", d)
	}
	if d := r.Policy().Decide(dest); d.Allowed() {
		t.Errorf("the direct default profile admits the gateway endpoint: %+v", d)
	}
	if gw.Policy.Connection() != policy.ConnectionGateway || r.Policy().Connection() == policy.ConnectionGateway {
		t.Errorf("connections: %s / %s", gw.Policy.Connection(), r.Policy().Connection())
	}
}

// TestProfileInheritsGateway: a top level that connects directly may name
// the gateway a profile with connection gateway inherits (design: gateway
// is inherited); without such a profile that endpoint is still an error.
func TestProfileInheritsGateway(t *testing.T) {
	c := Default()
	c.Gateway = Gateway{Endpoint: "site.gw.arc.azure.com"}
	if _, err := Build(&c); err == nil || !strings.Contains(err.Error(), "gateway.endpoint: set with connection direct") {
		t.Fatalf("an unused endpoint: %v", err)
	}
	c.Profiles = []Profile{{Name: "gw", Clients: []string{"10.9.0.0/16"}, Offerings: []string{"servers"}, Connection: "gateway"}}
	r, err := Build(&c)
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := r.Profiles.For(netip.MustParseAddr("10.9.1.1"))
	dest := policy.Dest{Host: "site.gw.arc.azure.com", Port: 443}
	if d := gw.Policy.Decide(dest); !d.Allowed() {
		t.Errorf("the profile did not inherit the endpoint: %+v", d)
	}
	if d := r.Policy().Decide(dest); d.Allowed() {
		t.Errorf("the direct top level admits the gateway endpoint: %+v", d)
	}
}
