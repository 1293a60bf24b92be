package policy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// This file holds an independent reader of the Arc network requirements page
// (testdata/arc-network-requirements.txt, a copy of
// ../shared/spec/arc-network-requirements.txt) and compares every table row
// it finds with the embedded catalog, section by section. It shares no code
// with the catalog loader: a row the catalog lacks, or a port, condition or
// private-link mark that differs, fails here.

const specFile = "testdata/arc-network-requirements.txt"

// The spec's section headings (lines of their own in the text), the
// offering each section belongs to, and how many table rows the section's
// endpoint table has (a guard against this reader silently skipping rows).
var specSections = []struct {
	heading  string
	offering string
	rows     int
}{
	{"Azure Arc-enabled Kubernetes endpoints", policy.OfferingKubernetes, 13},
	{"Azure Arc-enabled data services", policy.OfferingDataServices, 3},
	{"Azure Arc-enabled servers", policy.OfferingServers, 18},
	{"Subset of endpoints for ESU only", policy.OfferingESU, 8},
	{"Azure Arc resource bridge", policy.OfferingResourceBridge, 18},
	{"Azure Arc-enabled System Center Virtual Machine Manager", policy.OfferingSCVMM, 1},
	{"Azure Arc-enabled VMware vSphere", policy.OfferingVMware, 1},
}

// specTableRow is one row of an endpoint table, cells keyed by header.
type specTableRow struct {
	section string
	line    int // line number where the row starts
	cells   map[string]string
}

// readSpecTables returns every row of every table in the spec text whose
// header starts with one of the endpoint tables' first columns. A row spans
// lines: each line ends with "|", and a row is complete when it holds as
// many cells as the header; a table ends at the first line without a
// trailing "|" (a row cut short there keeps the cells it has).
func readSpecTables(t *testing.T, text string) []specTableRow {
	t.Helper()
	headings := map[string]bool{}
	for _, s := range specSections {
		headings[s.heading] = true
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	split := func(l string) []string {
		l = strings.TrimSuffix(strings.TrimSpace(l), "|")
		var out []string
		for _, c := range strings.Split(l, "|") {
			out = append(out, strings.TrimSpace(c))
		}
		return out
	}
	endpointTable := map[string]bool{"Endpoint (DNS)": true, "Service": true, "Agent resource": true}
	var rows []specTableRow
	section := ""
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if headings[l] {
			section = l
			continue
		}
		isHeader := strings.Contains(l, " | ") && strings.HasSuffix(l, "|") &&
			i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i+1]), "---|")
		if !isHeader {
			continue
		}
		header := split(l)
		i++ // the ---|---| line
		keep := endpointTable[header[0]]
		if keep && section == "" {
			t.Fatalf("line %d: an endpoint table before any known section heading", i)
		}
		var cells []string
		start := 0
		emit := func() {
			if keep && len(cells) > 0 {
				r := specTableRow{section: section, line: start, cells: map[string]string{}}
				for k, c := range cells {
					r.cells[header[k]] = c
				}
				rows = append(rows, r)
			}
			cells = nil
		}
		for i+1 < len(lines) {
			next := strings.TrimSpace(lines[i+1])
			if !strings.HasSuffix(next, "|") {
				break
			}
			i++
			if len(cells) == 0 {
				start = i + 1
			}
			cells = append(cells, split(next)...)
			if len(cells) > len(header) {
				t.Fatalf("line %d: row has %d cells, header %q has %d", i+1, len(cells), header, len(header))
			}
			if len(cells) == len(header) {
				emit()
			}
		}
		emit()
	}
	return rows
}

// specEndpoint is one name of one spec row with what the catalog must say about it.
type specEndpoint struct {
	section     string
	line        int
	key         string // pattern+path, lower case
	pattern     string
	path        string
	port        int
	offering    string
	when        string
	whenText    string
	privateLink string
	features    []string
	directOnly  bool
	description []string // texts the catalog description must contain
}

// k8sConditions maps the Kubernetes table's conditional descriptions to the
// features (design: Features) that switch them on.
var k8sConditions = map[string][]string{
	"For Cluster Connect and for Custom Location based scenarios.": {policy.FeatureClusterConnect, policy.FeatureCustomLocations},
	"Required when Azure RBAC is configured.":                      {policy.FeatureAzureRBAC},
	"Required to manage connected clusters in Azure portal.":       {policy.FeaturePortal},
	"Required when Cluster Connect is configured.":                 {policy.FeatureClusterConnect},
	"Required when automatic agent upgrade is enabled.":            {policy.FeatureAutoUpgrade},
}

// serverWhen maps the servers tables' "When required" texts to the
// normalized when and the features (design: Features).
func serverWhen(section, text string) (when string, features []string, ok bool) {
	switch {
	case text == "At installation time, only":
		return policy.WhenInstall, nil, true
	case text == "When connecting or disconnecting a server, only":
		return policy.WhenConnect, nil, true
	case text == "Always", text == "Always, except when using private endpoints":
		return policy.WhenAlways, nil, true
	case text == "If using SSH or Windows Admin Center from Azure":
		return policy.WhenConditional, []string{policy.FeatureSSH, policy.FeatureWindowsAdminCenter}, true
	case text == "If using Windows Admin Center":
		return policy.WhenConditional, []string{policy.FeatureWindowsAdminCenter}, true
	case text == "Optional, not used in agent versions 1.24+":
		return policy.WhenOptional, []string{policy.FeatureLegacyTelemetry}, true
	case strings.HasPrefix(text, "For SQL Server enabled by Azure Arc."):
		return policy.WhenAlways, nil, true // the sql-server offering's row
	case text == "ESUs enabled by Azure Arc":
		if section == "Subset of endpoints for ESU only" {
			return policy.WhenAlways, nil, true // the esu offering is ESUs
		}
		return policy.WhenConditional, []string{policy.FeatureESU}, true
	}
	return "", nil, false
}

var privateLinkMarks = map[string]string{
	"Public":  policy.PrivateLinkPublic,
	"Private": policy.PrivateLinkPrivate,
	"Not used when private link is configured":                             policy.PrivateLinkUnused,
	"Public, unless a resource management private link is also configured": policy.PrivateLinkPublicUnlessRMPL,
}

// specEndpoints turns the spec rows into one specEndpoint per name.
func specEndpoints(t *testing.T, rows []specTableRow) []specEndpoint {
	t.Helper()
	offeringOf := map[string]string{}
	for _, s := range specSections {
		offeringOf[s.heading] = s.offering
	}
	var out []specEndpoint
	for _, r := range rows {
		base := specEndpoint{section: r.section, line: r.line, offering: offeringOf[r.section], port: 443, when: policy.WhenAlways}
		var names string
		switch {
		case r.cells["Endpoint (DNS)"] != "":
			names = r.cells["Endpoint (DNS)"]
			d := r.cells["Description"]
			base.description = []string{d}
			if f, ok := k8sConditions[d]; ok {
				base.when, base.features = policy.WhenConditional, f
			} else if strings.Contains(d, "az connectedk8s connect") {
				base.when = policy.WhenInstall // an onboarding tool's row (design: Phase)
			}
		case r.cells["Agent resource"] != "":
			names = r.cells["Agent resource"]
			base.description = []string{r.cells["Description"]}
			base.whenText = r.cells["When required"]
			w, f, ok := serverWhen(r.section, base.whenText)
			if !ok {
				t.Errorf("spec line %d: unmapped When required %q", r.line, base.whenText)
			}
			base.when, base.features = w, f
			if strings.Contains(base.whenText, "SQL Server") || strings.Contains(r.cells["Description"], "SQL Server") {
				base.offering = policy.OfferingSQLServer
			}
			mark := r.cells["Endpoint used with private link"]
			pl, ok := privateLinkMarks[mark]
			if !ok {
				t.Errorf("spec line %d: unmapped private-link mark %q", r.line, mark)
			}
			base.privateLink = pl
		case r.cells["Service"] != "":
			names = r.cells["URL"]
			p, err := strconv.Atoi(r.cells["Port"])
			if err != nil {
				t.Errorf("spec line %d: port %q: %v", r.line, r.cells["Port"], err)
			}
			base.port = p
			svc := strings.TrimSpace(strings.TrimSuffix(r.cells["Service"], "*"))
			// a trailing cross-reference ("See Azure Monitor APIs.") is not the row's meaning
			notes := r.cells["Notes"]
			if i := strings.Index(notes, " See "); i > 0 {
				notes = notes[:i]
			}
			if notes != "" {
				base.description = []string{svc, notes}
			} else {
				base.description = []string{svc}
			}
			if strings.Contains(svc, "direct connected mode only") {
				base.directOnly = true
			}
			switch {
			case strings.HasPrefix(notes, "Only needed for Arc Appliance CLI extension version"):
				base.when, base.features = policy.WhenConditional, []string{policy.FeatureLegacyImageDownload}
			case r.cells["Direction"] == "Management machine needs outbound connection.":
				base.when = policy.WhenInstall // the pypi rows: onboarding tools (design: Phase)
			}
		default:
			t.Errorf("spec line %d: a row without a name: %v", r.line, r.cells)
			continue
		}
		if strings.HasPrefix(names, "URL of the ") {
			e := base
			if e.pattern = userSuppliedPattern(names); e.pattern == "" {
				t.Errorf("spec line %d: unknown user-supplied URL %q", r.line, names)
			}
			e.key = e.pattern
			out = append(out, e)
			continue
		}
		for _, n := range strings.FieldsFunc(names, func(c rune) bool { return c == ' ' || c == ',' }) {
			e := base
			n = strings.TrimPrefix(n, "https://")
			n = strings.TrimSuffix(n, "/")
			if i := strings.IndexByte(n, '/'); i >= 0 {
				n, e.path = n[:i], n[i:]
			}
			if i := strings.LastIndexByte(n, ':'); i >= 0 {
				p, err := strconv.Atoi(n[i+1:])
				if err != nil {
					t.Errorf("spec line %d: name %q: bad port", r.line, n)
				}
				n, e.port = n[:i], p
			}
			e.pattern = n
			e.key = strings.ToLower(n + e.path)
			out = append(out, e)
		}
	}
	return out
}

// userSuppliedPattern returns the catalog placeholder of a spec row whose
// host the site supplies (the vCenter server, the SCVMM server, the DNS
// servers), or "".
func userSuppliedPattern(cell string) string {
	switch {
	case strings.Contains(cell, "vCenter"):
		return "<vmware.vcenter>"
	case strings.Contains(cell, "SCVMM"):
		return "<scvmm.server>"
	case strings.Contains(cell, "DNS server"):
		return policy.PatternDNSServer
	}
	return ""
}

// designExtraPorts are ports the design adds to a spec row: the pkiops
// certificate download is also fetched over plain HTTP (design: Policy model).
var designExtraPorts = map[string][]int{"microsoft.com/pkiops/certs": {80}}

func loadSpec(t *testing.T) []specEndpoint {
	t.Helper()
	text, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	rows := readSpecTables(t, string(text))
	perSection := map[string]int{}
	for _, r := range rows {
		perSection[r.section]++
	}
	for _, s := range specSections {
		if perSection[s.heading] != s.rows {
			t.Errorf("spec reader found %d rows in %q, want %d", perSection[s.heading], s.heading, s.rows)
		}
	}
	return specEndpoints(t, rows)
}

// embedded returns the embedded catalog's revision 2024-01 (public cloud),
// the rows of the requirements page these tests read.
func embedded(t testing.TB) *policy.Catalog {
	t.Helper()
	cat, err := policy.EmbeddedCatalog()
	if err != nil {
		t.Fatalf("EmbeddedCatalog: %v", err)
	}
	return cat.Select(policy.Revision202401, policy.CloudPublic)
}

func entryKey(e *policy.Entry) string { return strings.ToLower(e.Pattern + e.Path) }

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// TestCatalogMatchesSpec compares the embedded catalog with the spec's
// tables, section by section, in both directions.
func TestCatalogMatchesSpec(t *testing.T) {
	eps := loadSpec(t)
	cat := embedded(t)
	for _, s := range specSections {
		t.Run(s.heading, func(t *testing.T) {
			compareSection(s.heading, eps, cat, t.Errorf)
		})
	}
}

// compareSection reports (through errorf) every difference between the
// spec endpoints of one section and the catalog.
func compareSection(section string, eps []specEndpoint, cat *policy.Catalog, errorf func(string, ...any)) {
	byKey := map[string]*policy.Entry{}
	for i := range cat.Entries {
		byKey[entryKey(&cat.Entries[i])] = &cat.Entries[i]
	}
	inSpec := map[string]bool{}
	for _, ep := range eps {
		if ep.section != section {
			continue
		}
		if inSpec[ep.key] {
			errorf("spec line %d: %s listed twice in the section", ep.line, ep.key)
		}
		inSpec[ep.key] = true
		e := byKey[ep.key]
		if e == nil {
			errorf("spec line %d: %s (section %q) is missing from the catalog", ep.line, ep.key, ep.section)
			continue
		}
		if e.Pattern != ep.pattern || e.Path != ep.path {
			errorf("%s: catalog pattern %q path %q, spec %q %q", ep.key, e.Pattern, e.Path, ep.pattern, ep.path)
		}
		if !slices.Contains(e.Ports, ep.port) {
			errorf("%s: catalog ports %v lack the spec's port %d", ep.key, e.Ports, ep.port)
		}
		var src *policy.SpecRow
		n := 0
		for i := range e.Sources {
			if e.Sources[i].Section == ep.section {
				src = &e.Sources[i]
				n++
			}
		}
		if src == nil {
			errorf("spec line %d: %s: the catalog entry has no source for section %q", ep.line, ep.key, ep.section)
			continue
		}
		if n > 1 {
			errorf("%s: %d sources for section %q, want one", ep.key, n, ep.section)
		}
		if src.Offering != ep.offering {
			errorf("%s [%s]: offering %q, want %q", ep.key, ep.section, src.Offering, ep.offering)
		}
		if src.When != ep.when {
			errorf("%s [%s]: when %q, want %q", ep.key, ep.section, src.When, ep.when)
		}
		if src.WhenText != ep.whenText {
			errorf("%s [%s]: when_text %q, want the spec's %q", ep.key, ep.section, src.WhenText, ep.whenText)
		}
		if src.PrivateLink != ep.privateLink {
			errorf("%s [%s]: private_link %q, want %q", ep.key, ep.section, src.PrivateLink, ep.privateLink)
		}
		if !slices.Equal(sortedCopy(src.Features), sortedCopy(ep.features)) {
			errorf("%s [%s]: features %v, want %v", ep.key, ep.section, src.Features, ep.features)
		}
		if src.DirectOnly != ep.directOnly {
			errorf("%s [%s]: direct_only %v, want %v", ep.key, ep.section, src.DirectOnly, ep.directOnly)
		}
		for _, d := range ep.description {
			if !strings.Contains(src.Description, d) {
				errorf("%s [%s]: description %q does not contain the spec's %q", ep.key, ep.section, src.Description, d)
			}
		}
	}
	// and the other way: no catalog row claims this section without a spec row
	for i := range cat.Entries {
		e := &cat.Entries[i]
		for _, src := range e.Sources {
			if src.Section == section && !inSpec[entryKey(e)] {
				errorf("catalog entry %q claims section %q, which does not list it", e.Pattern+e.Path, section)
			}
		}
	}
}

// TestCatalogEntriesMatchSpec checks each entry as a whole: its ports are
// exactly the spec's (plus the design's additions), its scheme follows its
// ports, every source names a spec section, and entries come in the order
// the spec first lists them.
func TestCatalogEntriesMatchSpec(t *testing.T) {
	eps := loadSpec(t)
	cat := embedded(t)
	ports := map[string][]int{}
	var order []string
	for _, ep := range eps {
		if !slices.Contains(ports[ep.key], ep.port) {
			ports[ep.key] = append(ports[ep.key], ep.port)
		}
		if !slices.Contains(order, ep.key) {
			order = append(order, ep.key)
		}
	}
	sections := map[string]bool{}
	for _, s := range specSections {
		sections[s.heading] = true
	}
	var catOrder []string
	for i := range cat.Entries {
		e := &cat.Entries[i]
		k := entryKey(e)
		catOrder = append(catOrder, k)
		t.Run(k, func(t *testing.T) {
			want := append(slices.Clone(ports[k]), designExtraPorts[k]...)
			slices.Sort(want)
			got := slices.Sorted(slices.Values(e.Ports))
			if !slices.Equal(got, want) {
				t.Errorf("ports %v, want %v (spec rows plus design additions)", e.Ports, want)
			}
			wantScheme := "https"
			if slices.Equal(got, []int{80}) {
				wantScheme = "http"
			}
			if e.Scheme != wantScheme {
				t.Errorf("scheme %q, want %q for ports %v", e.Scheme, wantScheme, e.Ports)
			}
			for _, s := range e.Sources {
				if !sections[s.Section] {
					t.Errorf("source section %q is not a spec section", s.Section)
				}
			}
			if len(e.Sources) == 0 {
				t.Errorf("no sources")
			}
		})
	}
	if !slices.Equal(catOrder, order) {
		t.Errorf("catalog order differs from the spec's order of first appearance:\n got %q\nwant %q", catOrder, order)
	}
}

// TestSpecCopyIsCurrent checks that the spec copy in testdata equals the
// shared spec, when the shared tree is there (a fresh clone has only the copy).
func TestSpecCopyIsCurrent(t *testing.T) {
	checkCopyIsCurrent(t, "arc-network-requirements.txt", specFile)
}

// checkCopyIsCurrent checks that the testdata copy equals ../shared/spec/name,
// when the shared tree is there.
func checkCopyIsCurrent(t *testing.T, name, copyFile string) {
	t.Helper()
	shared := filepath.Join("..", "..", "shared", "spec", name)
	want, err := os.ReadFile(shared)
	if os.IsNotExist(err) {
		t.Skipf("%s not present", shared)
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(copyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s: copy the shared file and re-check the catalog", copyFile, shared)
	}
}

// TestSpecReaderCatchesChanges feeds the comparison edited copies of the
// spec and checks that each edit is reported: the reader is not blind.
func TestSpecReaderCatchesChanges(t *testing.T) {
	text, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	cat := embedded(t)
	tests := []struct {
		name, old, new, section, want string
	}{
		{"row added", "pas.windows.net |\n", "pas.windows.net |\nMicrosoft Entra ID | Always | Public |\nextra.example.com |\n", "Azure Arc-enabled servers", "extra.example.com"},
		{"port changed", "| 80 | msk8s.b.tlu", "| 8080 | msk8s.b.tlu", "Azure Arc resource bridge", "port 8080"},
		{"when changed", "Always | Private |\n*.guestconfiguration", "At installation time, only | Private |\n*.guestconfiguration", "Azure Arc-enabled servers", `when "always", want "install"`},
		{"private link changed", "Extension management and guest configuration services | Always | Private |\nguestnotificationservice", "Extension management and guest configuration services | Always | Public |\nguestnotificationservice", "Azure Arc-enabled servers", `private_link "private", want "public"`},
		{"region port changed", "obo.arc.azure.com:8084/", "obo.arc.azure.com:8085/", "Azure Arc-enabled Kubernetes endpoints", "port 8085"},
		{"row dropped", "dl.k8s.io |\nRequired when automatic agent upgrade is enabled. |\n", "", "Azure Arc-enabled Kubernetes endpoints", `"dl.k8s.io" claims section`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			edited := strings.Replace(string(text), tc.old, tc.new, 1)
			if edited == string(text) {
				t.Fatalf("edit %q not applied", tc.old)
			}
			eps := specEndpoints(t, readSpecTables(t, edited))
			var problems []string
			compareSection(tc.section, eps, cat, func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) })
			joined := strings.Join(problems, "\n")
			if !strings.Contains(joined, tc.want) {
				t.Errorf("edit not reported as %q; problems:\n%s", tc.want, joined)
			}
		})
	}
}
