package policy_test

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// gatewaySpecFile is the copy of shared/spec/arc-gateway.md.
const gatewaySpecFile = "testdata/arc-gateway.md"

// gatewayTables maps the spec's table headings to the catalog sections.
var gatewayTables = map[string]string{
	"## Arc-enabled servers: endpoints to allow with the gateway":    "Arc gateway (servers)",
	"## Arc-enabled Kubernetes: endpoints to allow with the gateway": "Arc gateway (Kubernetes)",
}

// gatewayPatternOf maps a spec endpoint of a section to the catalog
// pattern where they differ: the gateway is the configured endpoint, and
// the Kubernetes page's regional his names use short region names, so the
// design admits *.his.arc.azure.com for them.
func gatewayPatternOf(section, endpoint string) string {
	switch {
	case endpoint == "<prefix>.gw.arc.azure.com":
		return policy.PatternGatewayEndpoint
	case endpoint == "<region>.his.arc.azure.com" && section == "Arc gateway (Kubernetes)":
		return "*.his.arc.azure.com"
	}
	return endpoint
}

type gatewaySpecRow struct {
	section, pattern, purpose string
	line                      int
}

// loadGatewaySpec reads the endpoint tables of the gateway spec: one row
// per endpoint (a cell naming two endpoints gives two rows).
func loadGatewaySpec(t *testing.T) []gatewaySpecRow {
	t.Helper()
	f, err := os.Open(gatewaySpecFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code := regexp.MustCompile("`([^`]+)`")
	var rows []gatewaySpecRow
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			section = ""
			for h, s := range gatewayTables {
				if strings.HasPrefix(line, h) {
					section = s
				}
			}
			continue
		}
		if section == "" || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 2 {
			t.Fatalf("spec line %d: %d cells, want 2", n, len(cells))
		}
		for _, m := range code.FindAllStringSubmatch(cells[0], -1) {
			rows = append(rows, gatewaySpecRow{section, gatewayPatternOf(section, m[1]), strings.TrimSpace(cells[1]), n})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestGatewayCatalogMatchesSpec compares the catalog's gateway rows with
// the spec's two tables row by row: every spec endpoint is a gateway row of
// its section (2026-08, public, its offering, port 443 but cluster
// connect's 8084, the install packages in phase install, cluster connect
// under its feature) and every gateway row is in its table.
func TestGatewayCatalogMatchesSpec(t *testing.T) {
	spec := loadGatewaySpec(t)
	if len(spec) != 8+9 {
		t.Fatalf("read %d spec rows, want 8 (servers) + 9 (Kubernetes)", len(spec))
	}
	whole, err := policy.EmbeddedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ section, pattern string }
	got := map[key]bool{}
	for _, e := range whole.Entries {
		for _, s := range e.Sources {
			if !s.Gateway {
				if strings.HasPrefix(s.Section, "Arc gateway") {
					t.Errorf("%s [%s]: a gateway section without gateway: true", e.Pattern, s.Section)
				}
				continue
			}
			got[key{s.Section, e.Pattern}] = true
			if !slices.ContainsFunc(spec, func(r gatewaySpecRow) bool { return r.section == s.Section && r.pattern == e.Pattern }) {
				t.Errorf("catalog gateway row %s [%s] is not in the spec's table", e.Pattern, s.Section)
			}
		}
	}
	for _, r := range spec {
		t.Run(r.section+"/"+r.pattern, func(t *testing.T) {
			if !got[key{r.section, r.pattern}] {
				t.Fatalf("spec line %d: %s (%s) is not a gateway row of %s", r.line, r.pattern, r.purpose, r.section)
			}
			e, s := gatewaySource(t, whole, r.section, r.pattern)
			wantOff, wantPorts, wantWhen, wantFeats := policy.OfferingServers, []int{443}, policy.WhenAlways, []string(nil)
			if r.section == "Arc gateway (Kubernetes)" {
				wantOff = policy.OfferingKubernetes
			}
			switch r.pattern {
			case "packages.microsoft.com", "download.microsoft.com":
				wantWhen = policy.WhenInstall // "install package"
			case "<region>.obo.arc.azure.com":
				wantPorts, wantWhen, wantFeats = []int{8084}, policy.WhenConditional, []string{policy.FeatureClusterConnect}
			}
			if s.Offering != wantOff || s.When != wantWhen || !slices.Equal(s.Features, wantFeats) {
				t.Errorf("offering %q when %q features %v, want %q %q %v", s.Offering, s.When, s.Features, wantOff, wantWhen, wantFeats)
			}
			for _, p := range wantPorts {
				if !slices.Contains(e.Ports, p) {
					t.Errorf("ports %v lack %d", e.Ports, p)
				}
			}
			if e.Scheme != "https" || s.Description == "" {
				t.Errorf("scheme %q description %q", e.Scheme, s.Description)
			}
			if !slices.Equal(s.Revisions, []string{policy.Revision202608}) || !slices.Equal(s.Clouds, []string{policy.CloudPublic}) {
				t.Errorf("revisions %v clouds %v, want [2026-08] [public]", s.Revisions, s.Clouds)
			}
		})
	}
}

// gatewaySource returns the catalog entry and gateway row of section and pattern.
func gatewaySource(t *testing.T, whole *policy.Catalog, section, pattern string) (*policy.Entry, *policy.SpecRow) {
	t.Helper()
	for i := range whole.Entries {
		e := &whole.Entries[i]
		for j := range e.Sources {
			if s := &e.Sources[j]; e.Pattern == pattern && s.Gateway && s.Section == section {
				return e, s
			}
		}
	}
	t.Fatalf("no gateway row %s [%s]", pattern, section)
	return nil, nil
}

// TestGatewaySpecCopyIsCurrent checks that the copy in testdata equals the
// shared spec, when the shared tree is there.
func TestGatewaySpecCopyIsCurrent(t *testing.T) {
	checkCopyIsCurrent(t, "arc-gateway.md", gatewaySpecFile)
}
