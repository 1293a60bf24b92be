package policy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

func TestHint(t *testing.T) {
	servers := policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}}
	steady := servers
	steady.Phase = policy.PhaseSteady
	tests := []struct {
		name string
		cfg  policy.Config
		dest policy.Dest
		want policy.Hint
	}{
		{"offering and feature", servers, dest("eastus2.obo.arc.azure.com", 8084),
			policy.Hint{Offering: "kubernetes", Feature: "cluster-connect", Section: "Azure Arc-enabled Kubernetes endpoints", Rule: "eastus2.obo.arc.azure.com:8084"}},
		{"offering, feature and region", servers, dest("westus.obo.arc.azure.com", 8084),
			policy.Hint{Offering: "kubernetes", Feature: "cluster-connect", Region: "westus", Section: "Azure Arc-enabled Kubernetes endpoints", Rule: "westus.obo.arc.azure.com:8084"}},
		{"feature only", servers, dest("x.waconazure.com", 443),
			policy.Hint{Feature: "windows-admin-center", Section: "Azure Arc-enabled servers", Rule: "*.waconazure.com:443"}},
		{"esu feature for pkiops", servers, dest("microsoft.com", 443),
			policy.Hint{Feature: "esu", Section: "Azure Arc-enabled servers", Rule: "microsoft.com/pkiops/certs:443"}},
		{"sql-server row", servers, dest("telemetry.eastus2.arcdataservices.com", 443),
			policy.Hint{Offering: "sql-server", Section: "Azure Arc-enabled servers", Rule: "telemetry.eastus2.arcdataservices.com:443"}},
		{"phase", steady, dest("aka.ms", 443),
			policy.Hint{Section: "Azure Arc-enabled servers", Rule: "aka.ms:443", Phase: "onboarding"}},
		{"nothing in the catalog", servers, dest("evil.example", 443), policy.Hint{}},
		{"no row on the port", servers, dest("management.azure.com", 22), policy.Hint{}},
		{"path nobody admits", servers, plain("microsoft.com", 80, "/other"), policy.Hint{}},
		{"ip literal", servers, dest("192.0.2.1", 443), policy.Hint{}},
		{"direct-only row in indirect mode", policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"data-services"}, DataServicesMode: "indirect"},
			dest("arcdataservicesrow1.azurecr.io", 443),
			policy.Hint{DataServicesMode: "direct", Section: "Azure Arc-enabled data services", Rule: "arcdataservicesrow1.azurecr.io:443"}},
		{"servicebus name outside the allowlist file", policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"},
			Features: []string{"ssh"}, ServicebusNames: []string{"wcus-prod-1.servicebus.windows.net"}},
			dest("other.servicebus.windows.net", 443), policy.Hint{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := compileOK(t, tc.cfg)
			if got := p.Hint(tc.dest); got != tc.want {
				t.Errorf("Hint(%s:%d)\n got %+v\nwant %+v", tc.dest.Host, tc.dest.Port, got, tc.want)
			}
		})
	}
}

// applyHint returns cfg with what the hint says is missing added.
func applyHint(cfg policy.Config, h policy.Hint) policy.Config {
	cfg.Offerings = slices.Clone(cfg.Offerings)
	cfg.Features = slices.Clone(cfg.Features)
	cfg.Regions = slices.Clone(cfg.Regions)
	if h.Offering != "" {
		cfg.Offerings = append(cfg.Offerings, h.Offering)
	}
	if h.Feature != "" {
		cfg.Features = append(cfg.Features, h.Feature)
	}
	if h.Region != "" {
		cfg.Regions = append(cfg.Regions, h.Region)
	}
	if h.Phase != "" {
		cfg.Phase = h.Phase
	}
	if h.DataServicesMode != "" {
		cfg.DataServicesMode = h.DataServicesMode
	}
	return cfg
}

// TestHintWorks: for every catalog name the composition configurations
// refuse, a found hint names something to add, never an offering already
// selected, and the configuration with the hint applied admits the
// destination under the rule the hint names.
func TestHintWorks(t *testing.T) {
	cat := embedded(t)
	var dests []policy.Dest
	for _, e := range cat.Entries {
		for _, r := range []string{"eastus2", "westus3"} {
			for _, n := range fillPattern(e.Pattern, r) {
				if strings.Contains(n, "<") {
					continue
				}
				for _, port := range e.Ports {
					dests = append(dests, destFor(n, port, e.Path))
				}
			}
		}
	}
	for _, tc := range compositionConfigs {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Regions = []string{"eastus2"}
			p := compileOK(t, cfg)
			selected := p.Selected()
			fixed := map[string]*policy.Policy{}
			for _, d := range dests {
				if p.Decide(d).Allowed() {
					continue
				}
				h := p.Hint(d)
				if !h.Found() {
					continue
				}
				if h.Offering == "" && h.Feature == "" && h.Region == "" && h.Phase == "" && h.DataServicesMode == "" {
					t.Errorf("Hint(%s:%d) = %+v: found, but names nothing to add", d.Host, d.Port, h)
					continue
				}
				if slices.Contains(selected, h.Offering) {
					t.Errorf("Hint(%s:%d) = %+v names the selected offering %q", d.Host, d.Port, h, h.Offering)
					continue
				}
				key := fmt.Sprintf("%+v", h)
				q := fixed[key]
				if q == nil {
					c := applyHint(cfg, h)
					var err error
					if q, err = compilePinned(c, cat); err != nil {
						t.Errorf("Hint(%s:%d) = %+v: the config with it does not compile: %v", d.Host, d.Port, h, err)
						continue
					}
					fixed[key] = q
				}
				if got := q.Decide(d); !got.Allowed() {
					t.Errorf("Hint(%s:%d) = %+v: still refused with it applied (%s)", d.Host, d.Port, h, got.Reason)
				} else if got.Rule != h.Rule {
					t.Errorf("Hint(%s:%d) = %+v: admitted by %q, the hint names %q", d.Host, d.Port, h, got.Rule, h.Rule)
				}
			}
		})
	}
}
