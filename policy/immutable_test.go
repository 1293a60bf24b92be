package policy_test

import (
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// TestPolicyImmutable: what Rules() and Config() hand out are copies, so a
// caller that sorts or edits them (an exporter sorting ports, say) cannot
// change later decisions of the compiled policy.
func TestPolicyImmutable(t *testing.T) {
	cfg := policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}, Features: []string{"esu"},
		Allow: []string{"example.org:8443"}}
	// a catalog of its own (EmbeddedCatalog is shared by the process): on
	// failure the edits below reach the catalog the policy was compiled from
	data, err := os.ReadFile("catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := policy.ParseCatalog(data)
	if err != nil {
		t.Fatal(err)
	}
	p, err := compilePinned(cfg, cat)
	if err != nil {
		t.Fatal(err)
	}
	probes := []policy.Dest{
		{Host: "microsoft.com", Port: 443},
		{Host: "microsoft.com", Port: 80, Plain: true, Path: "/pkiops/certs/x"},
		{Host: "management.azure.com", Port: 443},
		{Host: "example.org", Port: 8443},
	}
	before := make([]policy.Decision, len(probes))
	for i, d := range probes {
		before[i] = p.Decide(d)
	}
	for _, r := range p.Rules() {
		slices.Sort(r.Ports) // [443 80] -> [80 443] for the pkiops row
		for i := range r.Ports {
			r.Ports[i] += 1000
		}
	}
	c := p.Config()
	for i := range c.Offerings {
		c.Offerings[i] = "esu"
	}
	for i := range c.Allow {
		c.Allow[i] = "other.example"
	}
	cfg.Features[0] = "ssh" // the caller's own slice, after Compile
	for i, d := range probes {
		if got := p.Decide(d); got != before[i] {
			t.Errorf("Decide(%s:%d) changed after editing Rules()/Config():\n got %+v\nwant %+v", d.Host, d.Port, got, before[i])
		}
	}
	if c := p.Config(); c.Offerings[0] != "servers" || c.Allow[0] != "example.org:8443" || c.Features[0] != "esu" {
		t.Errorf("Config() reflects edits made to slices after Compile: %+v", c)
	}
	if got := p.Rules(); !slices.Contains(got[len(got)-1].Ports, 8443) {
		t.Errorf("Rules() after editing a copy: %v", got[len(got)-1].Ports)
	}
}

// TestCompileLeavesCatalogAlone: compiling (and reading Rules) never writes
// to the catalog, which EmbeddedCatalog shares across the process.
func TestCompileLeavesCatalogAlone(t *testing.T) {
	data, err := os.ReadFile("catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data2026, err := os.ReadFile("catalog-2026-08.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dataGateway, err := os.ReadFile("catalog-gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := policy.ParseCatalog(data, data2026, dataGateway)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range compositionConfigs {
		cfg := tc.cfg
		cfg.Regions = []string{"eastus2", "westeurope"}
		p, err := compilePinned(cfg, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, r := range p.Rules() {
			p.Hint(policy.Dest{Host: instanceOf(r.Pattern), Port: r.Ports[0]})
		}
	}
	shared, err := policy.EmbeddedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shared.Entries, fresh.Entries) {
		t.Error("the shared embedded catalog differs from a fresh parse after compiling")
	}
}
