package policy_test

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// This file reads Microsoft's August 2026 tables as the facts file
// transcribes them (testdata/arc-endpoints-2026-08.md, a copy of
// ../shared/spec/arc-endpoints-2026-08.md, section 1) and compares every
// table row with revision 2026-08 of the embedded catalog, table by table
// and cloud by cloud. Like catalog_spec_test.go for the 2024 page, it shares
// no code with the catalog loader.

const spec2026File = "testdata/arc-endpoints-2026-08.md"

// spec2026Tables are the tables of section 1: the section (the "### 1.N"
// heading without its file note), the cloud (from the "####" tab heading),
// the offering the section belongs to, and the number of rows (a guard
// against the reader silently skipping rows).
var spec2026Tables = []struct {
	section, cloud, offering string
	rows                     int
}{
	{"Arc-enabled Kubernetes", policy.CloudPublic, policy.OfferingKubernetes, 14},
	{"Arc-enabled Kubernetes", policy.CloudUSGov, policy.OfferingKubernetes, 10},
	{"Arc-enabled Kubernetes", policy.CloudChina, policy.OfferingKubernetes, 12},
	{"Arc-enabled data services", policy.CloudPublic, policy.OfferingDataServices, 3},
	{"Arc-enabled servers: Connected Machine agent, full list", policy.CloudPublic, policy.OfferingServers, 17},
	{"Arc-enabled servers: Connected Machine agent, full list", policy.CloudUSGov, policy.OfferingServers, 11},
	{"Arc-enabled servers: Connected Machine agent, full list", policy.CloudChina, policy.OfferingServers, 13},
	{"ESU-only subset", policy.CloudPublic, policy.OfferingESU, 9},
	{"ESU-only subset", policy.CloudUSGov, policy.OfferingESU, 7},
	{"Azure Arc resource bridge", policy.CloudPublic, policy.OfferingResourceBridge, 29},
	{"Arc-enabled VMware vSphere", policy.CloudPublic, policy.OfferingVMware, 6},
	{"Arc-enabled System Center Virtual Machine Manager (SCVMM)", policy.CloudPublic, policy.OfferingSCVMM, 1},
}

// when2026 maps the tables' normalized "When required" texts to the
// catalog's when and features (the features named in the README): the
// offering is the section's unless given.
var when2026 = map[string]struct {
	offering, when string
	features       []string
	all            bool
}{
	"if Cluster Connect or Custom Locations":                                                 {"", policy.WhenConditional, []string{policy.FeatureClusterConnect, policy.FeatureCustomLocations}, false},
	"if Azure RBAC":                                                                          {"", policy.WhenConditional, []string{policy.FeatureAzureRBAC}, false},
	"if connected clusters are managed in the Azure portal":                                  {"", policy.WhenConditional, []string{policy.FeaturePortal}, false},
	"if Cluster Connect **and** Azure RBAC":                                                  {"", policy.WhenConditional, []string{policy.FeatureClusterConnect, policy.FeatureAzureRBAC}, true},
	"if Cluster Connect (this tab does not mention RBAC)":                                    {"", policy.WhenConditional, []string{policy.FeatureClusterConnect}, false},
	"if Cluster Connect":                                                                     {"", policy.WhenConditional, []string{policy.FeatureClusterConnect}, false},
	"if Arc-enabled Kubernetes extensions are used":                                          {"", policy.WhenConditional, []string{policy.FeatureClusterExtensions}, false},
	"if SSH or Windows Admin Center is used from Azure":                                      {"", policy.WhenConditional, []string{policy.FeatureSSH, policy.FeatureWindowsAdminCenter}, false},
	"if Windows Admin Center":                                                                {"", policy.WhenConditional, []string{policy.FeatureWindowsAdminCenter}, false},
	"optional (not used by agent 1.24+)":                                                     {"", policy.WhenOptional, []string{policy.FeatureLegacyTelemetry}, false},
	"if Arc-enabled SQL Server":                                                              {policy.OfferingSQLServer, policy.WhenAlways, nil, false},
	"if Arc-enabled SQL Server (used for Entra authentication)":                              {policy.OfferingSQLServer, policy.WhenConditional, []string{policy.FeatureSQLEntraAuth}, false},
	"if SQL Server ESUs":                                                                     {"", policy.WhenConditional, []string{policy.FeatureSQLServerESU}, false},
	"if Windows NTP is the time source (the Hyper-V default)":                                {"", policy.WhenConditional, []string{policy.FeatureWindowsNTP}, false},
	"if hotpatching, Windows Server Azure Benefits, or Windows Server pay-as-you-go billing": {"", policy.WhenConditional, []string{policy.FeatureWindowsServerLicensing}, false},
	"if Azure IoT Operations, Azure Key Vault Secret Store extension (SSE), or cert-manager for Arc-enabled Kubernetes": {"", policy.WhenConditional, []string{policy.FeatureExtensionMonitoring}, false},
	"connect/disconnect only": {"", policy.WhenConnect, nil, false},
}

// spec2026When returns the catalog's offering, when and features for a row.
func spec2026When(offering, text string) (string, string, []string, bool, bool) {
	if w, ok := when2026[text]; ok {
		if w.offering != "" {
			offering = w.offering
		}
		return offering, w.when, w.features, w.all, true
	}
	switch {
	case strings.HasPrefix(text, "always"), strings.HasPrefix(text, "no condition stated"):
		return offering, policy.WhenAlways, nil, false, true
	case strings.HasPrefix(text, "installation only"):
		return offering, policy.WhenInstall, nil, false, true
	case strings.HasPrefix(text, "if ESUs enabled by Azure Arc"): // servers tables: the esu feature
		return offering, policy.WhenConditional, []string{policy.FeatureESU}, false, true
	case strings.HasPrefix(text, "if direct connected mode"): // data services: direct_only
		return offering, policy.WhenAlways, nil, false, true
	}
	return "", "", nil, false, false
}

var privateLink2026 = map[string]string{
	"Public":               policy.PrivateLinkPublic,
	"Private":              policy.PrivateLinkPrivate,
	"Not used (PL)":        policy.PrivateLinkUnused,
	"Public unless ARM PL": policy.PrivateLinkPublicUnlessRMPL,
	"—":                    "",
	`"Not required if you use Azure Private Link"`: policy.PrivateLinkUnused,
}

// hostPlaceholders are the spec's host placeholders the catalog writes as
// a wildcard (a key vault name is the customer's).
var hostPlaceholders = map[string]string{"<azure-keyvault-name>": "*"}

// spec2026Row is one name of one table row with what the catalog must say.
type spec2026Row struct {
	section, cloud, file, tab string
	line                      int
	key, pattern, path        string
	ports                     []int
	udp                       bool
	offering, when, whenText  string
	privateLink               string
	features                  []string
	all, directOnly, install  bool
	description               string
}

var (
	backticked = regexp.MustCompile("`([^`]+)`")
	portNumber = regexp.MustCompile(`\b(\d{2,5})\b`)
)

// readSpec2026 returns one spec2026Row per name of every endpoint table in
// section 1 of the facts file, and the number of table rows per table.
func readSpec2026(t *testing.T, text string) ([]spec2026Row, map[[2]string]int) {
	t.Helper()
	offeringOf := map[string]string{}
	for _, s := range spec2026Tables {
		offeringOf[s.section] = s.offering
	}
	counts := map[[2]string]int{}
	var out []spec2026Row
	sc := bufio.NewScanner(strings.NewReader(text))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	cells := func(l string) []string {
		l = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l), "|"), "|")
		var c []string
		for _, x := range strings.Split(l, " | ") {
			c = append(c, strings.TrimSpace(x))
		}
		return c
	}
	section, cloud, secFile, tabFile, tab := "", "", "", "", ""
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "## 2.") {
			break
		}
		if h, ok := strings.CutPrefix(l, "### 1."); ok {
			_, h, _ = strings.Cut(h, " ")
			section, secFile = h, ""
			if j := strings.Index(h, " (`"); j >= 0 {
				section = h[:j]
				secFile = backticked.FindStringSubmatch(h[j:])[1]
			}
			cloud, tabFile, tab = policy.CloudPublic, "", ""
			continue
		}
		if h, ok := strings.CutPrefix(l, "#### "); ok {
			tabFile, tab = "", ""
			switch {
			case strings.HasPrefix(h, "Azure Government"):
				cloud, tab = policy.CloudUSGov, "Azure Government"
			case strings.HasPrefix(h, "Azure operated by 21Vianet"):
				cloud, tab = policy.CloudChina, "Azure operated by 21Vianet"
			case strings.HasPrefix(h, "Azure public"):
				cloud, tab = policy.CloudPublic, "Azure public"
			default:
				cloud = policy.CloudPublic
			}
			if m := backticked.FindStringSubmatch(h); m != nil {
				tabFile = m[1]
			}
			continue
		}
		if !strings.HasPrefix(l, "| Endpoint |") {
			continue // prose, and the resource bridge's inbound table (not proxied)
		}
		header := cells(l)
		i++ // |---|
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "|") {
			i++
			row := map[string]string{}
			for k, c := range cells(lines[i]) {
				if k < len(header) {
					row[header[k]] = c
				}
			}
			counts[[2]string{section, cloud}]++
			base := spec2026Row{section: section, cloud: cloud, line: i + 1, file: secFile, whenText: row["When required"],
				description: row["Description"]}
			if tabFile != "" {
				base.file = tabFile
			} else {
				base.tab = tab
			}
			var ok bool
			base.offering, base.when, base.features, base.all, ok = spec2026When(offeringOf[section], base.whenText)
			if !ok {
				t.Errorf("line %d: unmapped When required %q", i+1, base.whenText)
			}
			base.directOnly = strings.HasPrefix(base.whenText, "if direct connected mode")
			if pl, ok := privateLink2026[row["PL"]]; ok {
				base.privateLink = pl
			} else {
				t.Errorf("line %d: unmapped PL %q", i+1, row["PL"])
			}
			pc := row["Port"]
			base.udp = strings.Contains(pc, "UDP")
			for _, m := range portNumber.FindAllStringSubmatch(pc, -1) {
				p, _ := strconv.Atoi(m[1])
				if !slices.Contains(base.ports, p) {
					base.ports = append(base.ports, p)
				}
			}
			ep := row["Endpoint"]
			var names []string
			for _, m := range backticked.FindAllStringSubmatch(ep, -1) {
				for _, n := range strings.Split(m[1], ", ") { // "`a, b`": one string, two names
					if !slices.Contains(names, n) {
						names = append(names, n)
					}
				}
			}
			if len(names) == 0 { // a row whose host the site supplies
				e := base
				if e.pattern = userSuppliedPattern(ep); e.pattern == "" {
					t.Errorf("line %d: a row without a name: %q", i+1, ep)
				}
				e.udp = e.udp || e.pattern == policy.PatternDNSServer // port 53, UDP and TCP
				e.key = e.pattern
				out = append(out, e)
				continue
			}
			for _, n := range names {
				e := base
				n = strings.TrimSuffix(strings.TrimPrefix(n, "https://"), "/")
				for ph, w := range hostPlaceholders {
					n = strings.ReplaceAll(n, ph, w)
				}
				if j := strings.IndexByte(n, '/'); j >= 0 {
					n, e.path = n[:j], n[j:]
					if strings.Contains(e.path, "<") {
						e.path = "" // an image reference, not a path a proxy sees
					}
				}
				if j := strings.LastIndexByte(n, ':'); j >= 0 {
					p, err := strconv.Atoi(n[j+1:])
					if err != nil {
						t.Errorf("line %d: name %q: bad port", i+1, n)
					}
					n, e.ports = n[:j], []int{p}
				}
				// the design: the pypi rows are onboarding-tool rows (installation)
				if strings.Contains(n, "pypi.org") || strings.Contains(n, "pythonhosted.org") {
					e.when = policy.WhenInstall
				}
				e.pattern, e.key = n, strings.ToLower(n+e.path)
				out = append(out, e)
			}
		}
	}
	return out, counts
}

func loadSpec2026(t *testing.T, text string) []spec2026Row {
	t.Helper()
	rows, counts := readSpec2026(t, text)
	for _, s := range spec2026Tables {
		if n := counts[[2]string{s.section, s.cloud}]; n != s.rows {
			t.Errorf("reader found %d rows in %q (%s), want %d", n, s.section, s.cloud, s.rows)
		}
	}
	return rows
}

// TestCatalog2026MatchesSpec compares revision 2026-08 of the catalog with
// the August 2026 tables, table by table, in both directions.
func TestCatalog2026MatchesSpec(t *testing.T) {
	text, err := os.ReadFile(spec2026File)
	if err != nil {
		t.Fatal(err)
	}
	rows := loadSpec2026(t, string(text))
	whole, err := policy.EmbeddedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range spec2026Tables {
		t.Run(s.section+"/"+s.cloud, func(t *testing.T) {
			compare2026(rows, whole, s.section, s.cloud, t.Errorf)
		})
	}
}

// compare2026 reports (through errorf) every difference between the spec
// rows of one table and the catalog's rows of that section and cloud.
func compare2026(rows []spec2026Row, whole *policy.Catalog, section, cloud string, errorf func(string, ...any)) {
	cat := whole.Select(policy.Revision202608, cloud)
	type src struct {
		e *policy.Entry
		s *policy.SpecRow
	}
	var cands []src
	for i := range cat.Entries {
		e := &cat.Entries[i]
		for j := range e.Sources {
			if e.Sources[j].Section == section {
				cands = append(cands, src{e, &e.Sources[j]})
			}
		}
	}
	used := make([]bool, len(cands))
	for _, r := range rows {
		if r.section != section || r.cloud != cloud {
			continue
		}
		k := -1
		for i, c := range cands {
			if !used[i] && strings.ToLower(c.e.Pattern+c.e.Path) == r.key && c.s.WhenText == r.whenText &&
				strings.Contains(c.s.Description, r.description) {
				k = i
				break
			}
		}
		if k < 0 {
			errorf("spec line %d: %s (%q, %q) is missing from %s/%s of revision 2026-08", r.line, r.key, r.whenText, r.description, section, cloud)
			continue
		}
		used[k] = true
		e, s := cands[k].e, cands[k].s
		for _, p := range r.ports {
			if !slices.Contains(e.Ports, p) {
				errorf("%s [%s/%s]: catalog ports %v lack the spec's port %d", r.key, section, cloud, e.Ports, p)
			}
		}
		wantScheme := "https"
		switch {
		case r.udp:
			wantScheme = "udp"
		case slices.Equal(r.ports, []int{80}):
			wantScheme = "http"
		}
		if e.Scheme != wantScheme {
			errorf("%s: scheme %q, want %q", r.key, e.Scheme, wantScheme)
		}
		if s.Offering != r.offering {
			errorf("%s [%s/%s]: offering %q, want %q", r.key, section, cloud, s.Offering, r.offering)
		}
		if s.When != r.when {
			errorf("%s [%s/%s]: when %q, want %q", r.key, section, cloud, s.When, r.when)
		}
		if s.PrivateLink != r.privateLink {
			errorf("%s [%s/%s]: private_link %q, want %q", r.key, section, cloud, s.PrivateLink, r.privateLink)
		}
		if !slices.Equal(sortedCopy(s.Features), sortedCopy(r.features)) || s.AllFeatures != r.all {
			errorf("%s [%s/%s]: features %v (all %v), want %v (all %v)", r.key, section, cloud, s.Features, s.AllFeatures, r.features, r.all)
		}
		if s.DirectOnly != r.directOnly {
			errorf("%s [%s/%s]: direct_only %v, want %v", r.key, section, cloud, s.DirectOnly, r.directOnly)
		}
		if !strings.Contains(s.Table, r.file) || !strings.Contains(s.Table, r.tab) {
			errorf("%s [%s/%s]: table %q, want it to name %q %q", r.key, section, cloud, s.Table, r.file, r.tab)
		}
		if !slices.Equal(s.Revisions, []string{policy.Revision202608}) || !slices.Equal(s.Clouds, []string{cloud}) {
			errorf("%s [%s/%s]: revisions %v clouds %v, want [2026-08] [%s]", r.key, section, cloud, s.Revisions, s.Clouds, cloud)
		}
	}
	for i, c := range cands {
		if !used[i] {
			errorf("catalog row %q (%q) claims %s/%s of revision 2026-08, whose table does not list it", c.e.Pattern+c.e.Path, c.s.WhenText, section, cloud)
		}
	}
}

// TestCatalog2026HasNoOtherSections: every 2026-08 row is in one of the
// tables spec2026Tables lists (so the comparison above sees all of them).
func TestCatalog2026HasNoOtherSections(t *testing.T) {
	whole, err := policy.EmbeddedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	known := map[[2]string]bool{}
	for _, s := range spec2026Tables {
		known[[2]string{s.section, s.cloud}] = true
	}
	for _, e := range whole.Entries {
		for _, s := range e.Sources {
			if !slices.Contains(s.Revisions, policy.Revision202608) || s.Gateway {
				continue // gateway rows: TestGatewayCatalogMatchesSpec
			}
			for _, c := range s.Clouds {
				if !known[[2]string{s.Section, c}] {
					t.Errorf("%s: section %q cloud %s is not a 2026-08 table", e.Pattern+e.Path, s.Section, c)
				}
			}
		}
	}
}

// TestEmbeddedRowsNameRevisionsAndClouds: every embedded row names its
// revisions, clouds, section and table.
func TestEmbeddedRowsNameRevisionsAndClouds(t *testing.T) {
	whole, err := policy.EmbeddedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range whole.Entries {
		for _, s := range e.Sources {
			if len(s.Revisions) == 0 || len(s.Clouds) == 0 || s.Section == "" || s.Table == "" {
				t.Errorf("%s [%s]: revisions %v clouds %v table %q", e.Pattern+e.Path, s.Section, s.Revisions, s.Clouds, s.Table)
			}
		}
	}
}

// TestSpec2026CopyIsCurrent checks that the facts copy in testdata equals
// the shared one, when the shared tree is there.
func TestSpec2026CopyIsCurrent(t *testing.T) {
	checkCopyIsCurrent(t, "arc-endpoints-2026-08.md", spec2026File)
}

// TestSpec2026ReaderCatchesChanges feeds the comparison edited copies of the
// tables and checks that each edit is reported.
func TestSpec2026ReaderCatchesChanges(t *testing.T) {
	text, err := os.ReadFile(spec2026File)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := policy.EmbeddedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new, section, cloud, want string
	}{
		{"row added", "| `dls.microsoft.com` | 443 |", "| `extra.example.com` | 443 | always | Public | x |\n| `dls.microsoft.com` | 443 |",
			"Arc-enabled servers: Connected Machine agent, full list", policy.CloudPublic, "extra.example.com"},
		{"port changed", "| `time.windows.com` | 123/UDP |", "| `time.windows.com` | 124/UDP |",
			"Azure Arc resource bridge", policy.CloudPublic, "port 124"},
		{"condition changed", "| `https://usgv.his.arc.azure.us` | 443 | always |", "| `https://usgv.his.arc.azure.us` | 443 | if Azure RBAC |",
			"Arc-enabled Kubernetes", policy.CloudUSGov, "usgv.his.arc.azure.us"},
		{"private link changed", "| `*.his.arc.azure.us` | 443 | always | Private | Metadata / hybrid identity |\n| `*.guestconfiguration.azure.us` | 443 | always | Private | Extension mgmt / guest configuration |\n| `*.blob",
			"| `*.his.arc.azure.us` | 443 | always | Public | Metadata / hybrid identity |\n| `*.guestconfiguration.azure.us` | 443 | always | Private | Extension mgmt / guest configuration |\n| `*.blob",
			"Arc-enabled servers: Connected Machine agent, full list", policy.CloudUSGov, `private_link "private", want "public"`},
		{"row dropped", "| `dc.applicationinsights.azure.cn` | 443 | optional (not used by agent 1.24+) | — | Agent telemetry |\n", "",
			"Arc-enabled servers: Connected Machine agent, full list", policy.CloudChina, `"dc.applicationinsights.azure.cn"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			edited := strings.Replace(string(text), tc.old, tc.new, 1)
			if edited == string(text) {
				t.Fatalf("edit %q not applied", tc.old)
			}
			rows, _ := readSpec2026(t, edited)
			var problems []string
			compare2026(rows, whole, tc.section, tc.cloud, func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) })
			if joined := strings.Join(problems, "\n"); !strings.Contains(joined, tc.want) {
				t.Errorf("edit not reported as %q; problems:\n%s", tc.want, joined)
			}
		})
	}
}
