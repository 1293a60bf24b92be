package export

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// fixtureRules is a fixed allowlist with one row of every shape the exports
// must handle, so the golden files do not move when the catalog does.
func fixtureRules() []policy.Rule {
	cat := policy.SourceCatalog
	return []policy.Rule{
		{Pattern: "management.azure.com", Ports: []int{443}, Scheme: "https", Offering: "servers", When: "connect",
			PrivateLink: "public-unless-rm-private-link", Section: "Azure Arc-enabled servers",
			Description: "Azure Resource Manager - to create or delete the Arc server resource", Source: cat},
		{Pattern: "*.his.arc.azure.com", Ports: []int{443}, Scheme: "https", Offering: "servers", When: "always",
			PrivateLink: "private", Section: "Azure Arc-enabled servers",
			Description: "Metadata and hybrid identity services", Source: cat},
		{Pattern: "azgn*.servicebus.windows.net", Ports: []int{443}, Scheme: "https", Offering: "servers", When: "always",
			PrivateLink: "public", Section: "Azure Arc-enabled servers",
			Description: "Notification service for extension and connectivity scenarios", Source: cat},
		{Pattern: "*.servicebus.windows.net", Ports: []int{443}, Scheme: "https", Offering: "servers", Feature: "ssh",
			When: "conditional", PrivateLink: "public", Section: "Azure Arc-enabled servers",
			Description: "For Windows Admin Center and SSH scenarios", Source: cat},
		{Pattern: "azgnrelay-eastus2-l1.servicebus.windows.net", Ports: []int{443}, Scheme: "https", Offering: "kubernetes",
			Feature: "cluster-connect", When: "always", Section: "Azure Arc-enabled Kubernetes endpoints",
			Description: "For Cluster Connect and for Custom Location based scenarios.", Source: cat},
		{Pattern: "eastus2.obo.arc.azure.com", Ports: []int{8084}, Scheme: "https", Offering: "kubernetes",
			Feature: "cluster-connect", When: "always", Section: "Azure Arc-enabled Kubernetes endpoints",
			Description: "Required when Cluster Connect is configured.", Source: cat},
		{Pattern: "microsoft.com", Path: "/pkiops/certs", Ports: []int{443, 80}, Scheme: "https", Offering: "esu",
			When: "always", PrivateLink: "public", Section: "Subset of endpoints for ESU only",
			Description: "Certificate download for ESUs", Note: "a CONNECT to microsoft.com:443 cannot be checked for the path",
			Source: cat},
		{Pattern: "msk8s.b.tlu.dl.delivery.mp.microsoft.com", Ports: []int{80}, Scheme: "http", Offering: "resource-bridge",
			Feature: "legacy-image-download", When: "optional", Section: "Azure Arc resource bridge",
			Description: "Download the Arc Resource Bridge OS images.", Source: cat},
		{Pattern: "<vmware.vcenter>", Ports: []int{443}, Scheme: "https", Offering: "kubernetes,vmware", When: "always",
			Section: "Azure Arc-enabled VMware vSphere", Description: "vCenter Server", Source: cat},
		{Pattern: "repo.example.net", Ports: []int{8443}, Scheme: "https", Source: policy.SourceAllow},
		{Pattern: "10.1.2.3", Ports: []int{443}, Scheme: "https", Source: policy.SourceVCenter},
		{Pattern: "fd00::5", Ports: []int{9443}, Scheme: "https", Source: policy.SourceAllow},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./export -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./export -update rewrites it)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestGolden(t *testing.T) {
	files := map[string]string{
		FormatTable: "table.txt", FormatJSON: "rules.json", FormatHosts: "hosts.txt",
		FormatSquid: "squid.conf", FormatAzureFirewall: "azure-firewall.json", FormatPAC: "arcfence.pac",
	}
	for _, f := range Formats() {
		t.Run(f, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteWith(&buf, f, fixtureRules(), Options{ProxyAddr: "arcfence.corp.example:3128"}); err != nil {
				t.Fatal(err)
			}
			golden(t, files[f], buf.Bytes())
		})
	}
}

// denyOpts are deny entries of every form, as a config would hold them.
var denyOpts = Options{
	ProxyAddr: "arcfence.corp.example:3128",
	Regions:   []string{"eastus2"},
	Deny: []string{"management.azure.com", "*.his.arc.azure.com:443", "10.1.2.3", "<region>.obo.arc.azure.com:8084",
		"repo.example.net:9999", "azgn*.servicebus.windows.net", "[fd00::5]:9443"},
}

func TestGoldenDeny(t *testing.T) {
	for f, file := range map[string]string{FormatSquid: "squid-deny.conf", FormatAzureFirewall: "azure-firewall-deny.json"} {
		t.Run(f, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteWith(&buf, f, fixtureRules(), denyOpts); err != nil {
				t.Fatal(err)
			}
			golden(t, file, buf.Bytes())
		})
	}
}

func TestBadDeny(t *testing.T) {
	// "::%\n0" is FuzzWriteDeny's crasher (session 3): an IPv6 zone may hold
	// a newline, which wrote a Squid line of its own.
	for _, d := range []string{"host:0", "host:http", "[fd00::1", "a b", "x/y", "::%\n0", "fe80::1%eth0", "[fe80::1%eth0]:443"} {
		err := WriteWith(new(bytes.Buffer), FormatSquid, fixtureRules(), Options{Deny: []string{d}})
		if err == nil || !strings.Contains(err.Error(), "deny entry") {
			t.Errorf("deny %q: err = %v", d, err)
		}
	}
}

// TestSquidDenyFirst: every deny line comes before the first allow line.
func TestSquidDenyFirst(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteWith(&buf, FormatSquid, fixtureRules(), denyOpts); err != nil {
		t.Fatal(err)
	}
	conf := buf.String()
	lastDeny := strings.LastIndex(conf, "http_access deny arcfence_")
	firstAllow := strings.Index(conf, "http_access allow")
	if lastDeny < 0 || firstAllow < lastDeny {
		t.Fatalf("deny lines must precede the allow lines:\n%s", conf)
	}
	for _, want := range []string{
		"http_access deny arcfence_deny_names",
		"acl arcfence_deny_names dstdomain -n management.azure.com",
		"http_access deny arcfence_port_443 arcfence_deny_443_wild",
		"acl arcfence_deny_8084_names dstdomain -n eastus2.obo.arc.azure.com",
		"acl arcfence_deny_addrs dst 10.1.2.3",
		"# deny repo.example.net:9999: port 9999 is outside the allowlist",
	} {
		if !strings.Contains(conf, want+"\n") && !strings.Contains(conf, want) {
			t.Errorf("missing %q", want)
		}
	}
}

func TestUnknownFormat(t *testing.T) {
	var buf bytes.Buffer
	err := Write(&buf, "iptables", fixtureRules())
	if err == nil || !strings.Contains(err.Error(), "squid") || buf.Len() != 0 {
		t.Fatalf("err = %v, output %q; want an error naming the formats and no output", err, buf.String())
	}
}

// TestEmbeddedCatalog renders the effective allowlist of a broad real
// configuration in every format: each must be non-empty and well-formed.
func TestEmbeddedCatalog(t *testing.T) {
	p, err := policy.Compile(policy.Config{
		Regions:   []string{"eastus2"},
		Offerings: []string{"servers", "kubernetes", "esu"},
		Features:  []string{"cluster-connect", "legacy-image-download", "ssh"},
		Allow:     []string{"10.0.0.7:8443"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rules := p.Rules()
	if len(rules) < 10 {
		t.Fatalf("only %d rules", len(rules))
	}
	for _, f := range Formats() {
		var buf bytes.Buffer
		if err := Write(&buf, f, rules); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if buf.Len() == 0 {
			t.Fatalf("%s: empty", f)
		}
		if f == FormatJSON || f == FormatAzureFirewall {
			var v any
			if err := json.Unmarshal(buf.Bytes(), &v); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		if f == FormatHosts && !strings.Contains(buf.String(), "eastus2.") {
			t.Fatalf("hosts: no region filled in:\n%s", buf.String())
		}
	}
}

func TestJSONFields(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, FormatJSON, fixtureRules()); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"pattern", "ports", "scheme", "path", "offering", "offerings", "feature",
		"when", "private_link", "section", "description", "rules"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("field %q missing", k)
		}
	}
	if o := got[8]["offerings"].([]any); len(o) != 2 || o[1] != "vmware" {
		t.Errorf("offerings of a joined row = %v", o)
	}
	if r := got[6]["rules"].([]any); len(r) != 2 || r[1] != "microsoft.com/pkiops/certs:80" {
		t.Errorf("rules of the pkiops row = %v", r)
	}
}

// squidACLs parses the fragment's dstdomain and dstdom_regex entries per ACL.
func squidACLs(t *testing.T, conf string) (names map[string][]string, res map[string][]*regexp.Regexp) {
	names, res = map[string][]string{}, map[string][]*regexp.Regexp{}
	for _, line := range strings.Split(conf, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "acl" {
			continue
		}
		switch f[2] {
		case "dstdomain":
			names[f[1]] = append(names[f[1]], f[len(f)-1])
		case "dstdom_regex":
			res[f[1]] = append(res[f[1]], regexp.MustCompile("(?i)"+f[len(f)-1]))
		}
	}
	return names, res
}

// TestSquidSemantics checks that the Squid ACLs match exactly the names our
// own pattern semantics (policy.MatchPattern) match: in particular that
// "*.x" never admits the apex x, which Squid's ".x" would.
func TestSquidSemantics(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, FormatSquid, fixtureRules()); err != nil {
		t.Fatal(err)
	}
	conf := buf.String()
	if strings.Contains(conf, " .") {
		t.Fatalf("leading-dot dstdomain entry in:\n%s", conf)
	}
	names, res := squidACLs(t, conf)
	match443 := func(host string) bool {
		for _, n := range names["arcfence_443_names"] {
			if n == host {
				return true
			}
		}
		for _, re := range res["arcfence_443_wild"] {
			if re.MatchString(host) {
				return true
			}
		}
		return false
	}
	patterns443 := []string{"management.azure.com", "*.his.arc.azure.com", "azgn*.servicebus.windows.net",
		"*.servicebus.windows.net", "azgnrelay-eastus2-l1.servicebus.windows.net", "microsoft.com"}
	hosts := []string{
		"his.arc.azure.com", "eastus2.his.arc.azure.com", "a.b.his.arc.azure.com", "badhis.arc.azure.com",
		"xhis.arc.azure.com.evil.com", "servicebus.windows.net", "azgn.servicebus.windows.net",
		"azgnabc.servicebus.windows.net", "x.azgn1.servicebus.windows.net", "management.azure.com",
		"xmanagement.azure.com", "evil.com", "microsoft.com", "www.microsoft.com", "MANAGEMENT.AZURE.COM",
	}
	for _, h := range hosts {
		want := false
		for _, p := range patterns443 {
			want = want || policy.MatchPattern(p, h)
		}
		if got := match443(strings.ToLower(h)); got != want {
			t.Errorf("squid 443 ACLs match %q = %v; arcfence pattern semantics say %v", h, got, want)
		}
	}
	for _, want := range []string{
		"http_access allow arcfence_CONNECT arcfence_port_8084 arcfence_8084_names",
		"http_access allow !arcfence_CONNECT arcfence_port_80 arcfence_80_http_path_pkiops_certs_names arcfence_80_http_path_pkiops_certs_urlpath",
		"http_access allow !arcfence_CONNECT arcfence_port_80 arcfence_80_http_names",
		"http_upgrade_request_protocols WebSocket allow arcfence_ws_wild",
		"acl arcfence_9443_addrs dst fd00::5",
		"# not expressible (placeholder not filled in the config): <vmware.vcenter>",
	} {
		if !strings.Contains(conf, want+"\n") {
			t.Errorf("missing line %q", want)
		}
	}
	if !strings.HasSuffix(conf, "http_access deny all\n") {
		t.Error("the fragment does not end with deny all")
	}
}

func TestAzureFirewallGlobNote(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, FormatAzureFirewall, fixtureRules()); err != nil {
		t.Fatal(err)
	}
	var g afwGroup
	if err := json.Unmarshal(buf.Bytes(), &g); err != nil {
		t.Fatal(err)
	}
	cols := g.Properties.RuleCollections
	if len(cols) != 2 {
		t.Fatalf("%d collections; want application + network", len(cols))
	}
	var https443 *afwRule
	for i, r := range cols[0].Rules {
		if r.Name == "arcfence-https-443" {
			https443 = &cols[0].Rules[i]
		}
		for _, f := range r.TargetFqdns {
			if strings.Count(f, "*") > 0 && !strings.HasPrefix(f, "*.") {
				t.Errorf("rule %s: FQDN %q is not expressible in Azure Firewall", r.Name, f)
			}
		}
	}
	if https443 == nil {
		t.Fatal("no Https:443 rule")
	}
	if !strings.Contains(https443.Description, "azgn*.servicebus.windows.net is emitted as *.servicebus.windows.net") {
		t.Errorf("description lacks the azgn* note: %q", https443.Description)
	}
	n := 0
	for _, f := range https443.TargetFqdns {
		if f == "*.servicebus.windows.net" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("*.servicebus.windows.net listed %d times", n)
	}
}

// TestPACRuns evaluates the PAC file with node, when installed, and checks
// its answers against policy.MatchPattern.
func TestPACRuns(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	var buf bytes.Buffer
	if err := WriteWith(&buf, FormatPAC, fixtureRules(), Options{ProxyAddr: "10.9.9.9:3128"}); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"management.azure.com": "PROXY 10.9.9.9:3128", "eastus2.his.arc.azure.com": "PROXY 10.9.9.9:3128",
		"his.arc.azure.com": "DIRECT", "azgnx.servicebus.windows.net": "PROXY 10.9.9.9:3128",
		"azgn.servicebus.windows.net": "PROXY 10.9.9.9:3128", // the wide *.servicebus row admits it
		"servicebus.windows.net":      "DIRECT", "Microsoft.com.": "PROXY 10.9.9.9:3128", "example.org": "DIRECT",
		"10.1.2.3": "PROXY 10.9.9.9:3128", "[fd00::5]": "PROXY 10.9.9.9:3128",
	}
	script := buf.String() + "\nvar cases = " + mustJSON(t, cases) + `;
var bad = 0;
for (var h in cases) {
  var got = FindProxyForURL("https://" + h + "/", h);
  if (got !== cases[h]) { console.log(h + ": got " + got + ", want " + cases[h]); bad++; }
}
process.exit(bad ? 1 : 0);
`
	f := filepath.Join(t.TempDir(), "t.js")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, f).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOptionsFor(t *testing.T) {
	p, err := policy.Compile(policy.Config{Regions: []string{"East US 2"}, Offerings: []string{"kubernetes"},
		Features: []string{"cluster-connect"}, Deny: []string{"<region>.obo.arc.azure.com"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteWith(&buf, FormatSquid, p.Rules(), OptionsFor(p, "")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "acl arcfence_deny_names dstdomain -n eastus2.obo.arc.azure.com\n") {
		t.Fatalf("the policy's deny entry is not in the fragment:\n%s", buf.String())
	}
}
