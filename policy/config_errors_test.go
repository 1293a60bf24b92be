package policy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/arcfence/arcfence/policy"
)

// configFixture is the policy-shaping part of arcfence's YAML config (the
// design's keys), decoded strictly.
type configFixture struct {
	Regions      []string `yaml:"regions"`
	Offerings    []string `yaml:"offerings"`
	Features     []string `yaml:"features"`
	Phase        string   `yaml:"phase"`
	DataServices struct {
		Mode string `yaml:"mode"`
	} `yaml:"data_services"`
	Allow  []string `yaml:"allow"`
	Deny   []string `yaml:"deny"`
	VMware struct {
		VCenter string `yaml:"vcenter"`
	} `yaml:"vmware"`
	SCVMM struct {
		Server string `yaml:"server"`
	} `yaml:"scvmm"`
}

func loadFixture(t *testing.T, path string) policy.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f configFixture
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return policy.Config{
		Regions: f.Regions, Offerings: f.Offerings, Features: f.Features, Phase: f.Phase,
		DataServicesMode: f.DataServices.Mode, Allow: f.Allow, Deny: f.Deny,
		VCenter: f.VMware.VCenter, SCVMMServer: f.SCVMM.Server,
	}
}

const (
	allOfferings = "kubernetes, data-services, servers, sql-server, esu, resource-bridge, vmware, scvmm, azure-stack-hci"
	allFeatures  = "cluster-connect, custom-locations, azure-rbac, portal, auto-upgrade, windows-admin-center, ssh, esu, " +
		"guest-management, legacy-telemetry, legacy-image-download, private-link, resource-management-private-link"
)

// TestConfigErrors compiles one bad fixture per failure under
// testdata/config and checks the error names the key and what is allowed.
// Files named ok-*.yaml must compile.
func TestConfigErrors(t *testing.T) {
	tests := map[string][]string{
		"unknown-offering":             {`offerings: unknown offering "server"; expected one of ` + allOfferings},
		"unknown-feature":              {`features: unknown feature "clusterconnect"; expected one of ` + allFeatures},
		"unknown-region":               {`regions: unknown Azure region "eastus3"`, "did you mean", "eastus2"},
		"unknown-region-spaced":        {`regions: unknown Azure region "West Europ"`, "westeurope"},
		"unknown-region-far":           {`regions: unknown Azure region "mars"`, "az account list-locations"},
		"bad-phase":                    {`phase: unknown phase "stable"; expected onboarding or steady`},
		"bad-data-services-mode":       {`data_services.mode: unknown mode "hybrid"; expected direct or indirect`},
		"vmware-without-vcenter":       {`vmware.vcenter: required with offering vmware`},
		"vcenter-without-vmware":       {`vmware.vcenter: set without offering vmware`},
		"scvmm-without-server":         {`scvmm.server: required with offering scvmm`},
		"scvmm-server-without-scvmm":   {`scvmm.server: set without offering scvmm`},
		"bad-vcenter":                  {`vmware.vcenter: "https://vcenter.corp.example": write the host without a scheme`},
		"bad-vcenter-path":             {`vmware.vcenter: "vcenter.corp.example/sdk"`},
		"bad-scvmm-wildcard":           {`scvmm.server: "*.corp.example"`},
		"allow-scheme":                 {`allow: "https://example.com": write the host without a scheme`},
		"allow-bad-port":               {`allow: "example.com:99999": port "99999" is not a number from 1 to 65535`},
		"allow-two-stars":              {`allow: "*.*.example.com"`, "only one * is allowed"},
		"allow-star-inside":            {`allow: "foo.*.example.com"`, "* may only stand in the first label"},
		"allow-glob-mid-label":         {`allow: "a*b.example.com"`, "a glob must end its label"},
		"allow-bad-name":               {`allow: "exa mple.com"`, "invalid host"},
		"allow-ipv4-form":              {`allow: "0x7f.1"`, "IPv4 form"},
		"allow-wildcard-ipv4-form":     {`allow: "*.0.0.1"`, "IPv4 form"},
		"allow-unclosed-bracket":       {`allow: "[2001:db8::1:443"`, "missing ]"},
		"allow-zone":                   {`allow: "fe80::1%eth0"`, "zone"},
		"allow-region-without-regions": {`allow: "<region>.example.com" uses <region> but no regions are set`},
		"deny-path":                    {`deny: "example.com/admin": a deny entry cannot have a path`},
		"deny-bad-port":                {`deny: "example.com:0": port "0" is not a number from 1 to 65535`},
		"deny-bad-pattern":             {`deny: "*.*.example.com"`, "only one * is allowed"},
		"deny-region-without-regions":  {`deny: "<region>.obo.arc.azure.com" uses <region> but no regions are set`},
		"nothing":                      {`offerings: none selected and no allow entries`},
		"no-region":                    {`regions: none set, but the selected offerings need one`},
		"two-errors":                   {`unknown offering "server"`, `unknown phase "stable"`},
	}
	files, err := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			cfg := loadFixture(t, f)
			p, err := compilePinned(cfg, nil)
			if strings.HasPrefix(name, "ok-") {
				if err != nil {
					t.Fatalf("valid fixture: %v", err)
				}
				if p == nil {
					t.Fatal("nil policy without an error")
				}
				return
			}
			want, ok := tests[name]
			if !ok {
				t.Fatalf("fixture %s has no expected message in the table", f)
			}
			if err == nil {
				t.Fatalf("compiled without error; want %q", want)
			}
			if p != nil {
				t.Errorf("a policy returned along with the error")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
	for name := range tests {
		if !seen[name] {
			t.Errorf("table case %q has no fixture testdata/config/%s.yaml", name, name)
		}
	}
}

// TestConfigFixtureUnknownKey: the fixture decoder is strict, as the
// design wants the real config loader to be.
func TestConfigFixtureUnknownKey(t *testing.T) {
	dec := yaml.NewDecoder(strings.NewReader("offering: [servers]\n"))
	dec.KnownFields(true)
	var f configFixture
	if err := dec.Decode(&f); err == nil || !strings.Contains(err.Error(), "offering") {
		t.Errorf("unknown key: err %v", err)
	}
}

// TestRegionSuggestions checks the close matches named for unknown regions.
func TestRegionSuggestions(t *testing.T) {
	tests := []struct {
		region string
		want   []string
	}{
		{"eastus3", []string{"eastus2", "eastus", "westus3"}},
		{"East US 3", []string{"eastus2"}},
		{"westeurop", []string{"westeurope"}},
		{"uksouth2", []string{"uksouth"}},
		{"eastasiaa", []string{"eastasia"}},
	}
	for _, tc := range tests {
		t.Run(tc.region, func(t *testing.T) {
			_, err := compilePinned(policy.Config{Regions: []string{tc.region}, Offerings: []string{"servers"}}, nil)
			if err == nil {
				t.Fatalf("region %q accepted", tc.region)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not suggest %q", err, w)
				}
			}
		})
	}
	for _, r := range []string{"East US 2", "eastus2", "  West Europe ", "WESTUS3", "UK South"} {
		if _, err := compilePinned(policy.Config{Regions: []string{r}, Offerings: []string{"kubernetes"}}, nil); err != nil {
			t.Errorf("region %q: %v", r, err)
		}
	}
	if got := policy.NormalizeRegion("East US 2"); got != "eastus2" {
		t.Errorf("NormalizeRegion(East US 2) = %q", got)
	}
}
