package policy_test

import (
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// TestRevisionCases are the named cases: destinations that the
// August 2026 tables admit and the 2024 page does not, or that one cloud
// admits and another does not.
func TestRevisionCases(t *testing.T) {
	allow := func(rule, offering, feature string) policy.Decision {
		return policy.Decision{Verdict: policy.Allow, Rule: rule, Offering: offering, Feature: feature}
	}
	refused := policy.Decision{Reason: policy.NotInAllowlist}
	esu := func(rev string) policy.Config {
		return policy.Config{Revision: rev, Regions: []string{"eastus2"}, Offerings: []string{"esu"}}
	}
	servers := func(rev, cloud, region string, features ...string) policy.Config {
		return policy.Config{Revision: rev, Cloud: cloud, Regions: []string{region}, Offerings: []string{"servers"}, Features: features}
	}
	tests := []struct {
		name string
		cfg  policy.Config
		dest policy.Dest
		want policy.Decision
	}{
		{"www pkiops over http for ESU under 2026-08", esu("2026-08"), plain("www.microsoft.com", 80, "/pkiops/certs/x.crt"),
			allow("www.microsoft.com/pkiops/certs:80", "esu", "")},
		{"www pkiops over http for ESU under 2024-01", esu("2024-01"), plain("www.microsoft.com", 80, "/pkiops/certs/x.crt"), refused},
		{"www pkiops outside the path under 2026-08", esu("2026-08"), plain("www.microsoft.com", 80, "/other"),
			policy.Decision{Reason: policy.PathNotAllowed}},
		{"apex pkiops under 2026-08", esu("2026-08"), plain("microsoft.com", 80, "/pkiops/certs/x.crt"), refused},
		{"regional login for servers under 2026-08", servers("2026-08", "", "eastus2"), dest("eastus2.login.microsoft.com", 443),
			allow("*.login.microsoft.com:443", "servers", "")},
		{"regional login for servers under 2024-01", servers("2024-01", "", "eastus2"), dest("eastus2.login.microsoft.com", 443), refused},
		{"login.windows.net dropped from servers in 2026-08", servers("2026-08", "", "eastus2"), dest("login.windows.net", 443), refused},
		{"dls with windows-server-licensing", servers("2026-08", "", "eastus2", "windows-server-licensing"), dest("dls.microsoft.com", 443),
			allow("dls.microsoft.com:443", "servers", "windows-server-licensing")},
		{"dls without its feature", servers("2026-08", "", "eastus2"), dest("dls.microsoft.com", 443), refused},
		{"government his with cloud usgov", servers("2026-08", "usgov", "usgovvirginia"), dest("x.his.arc.azure.us", 443),
			allow("*.his.arc.azure.us:443", "servers", "")},
		{"government his with cloud public", servers("2026-08", "", "eastus2"), dest("x.his.arc.azure.us", 443), refused},
		{"government his with cloud china", servers("2026-08", "china", "chinanorth3"), dest("x.his.arc.azure.us", 443), refused},
		{"public his with cloud usgov", servers("2026-08", "usgov", "usgovvirginia"), dest("x.his.arc.azure.com", 443), refused},
		{"sql-server regional arcdataservices", policy.Config{Revision: "2026-08", Regions: []string{"eastus2"}, Offerings: []string{"sql-server"}},
			dest("telemetry.eastus2.arcdataservices.com", 443), allow("*.eastus2.arcdataservices.com:443", "sql-server", "")},
		{"kubernetes extensions registry", policy.Config{Revision: "2026-08", Regions: []string{"eastus2"}, Offerings: []string{"kubernetes"}, Features: []string{"cluster-extensions"}},
			dest("linuxgeneva-microsoft.azurecr.io", 443), allow("linuxgeneva-microsoft.azurecr.io:443", "kubernetes", "cluster-extensions")},
		{"obo needs cluster-connect and azure-rbac", policy.Config{Revision: "2026-08", Regions: []string{"eastus2"}, Offerings: []string{"kubernetes"}, Features: []string{"cluster-connect"}},
			dest("eastus2.obo.arc.azure.com", 8084), refused},
		{"obo with both", policy.Config{Revision: "2026-08", Regions: []string{"eastus2"}, Offerings: []string{"kubernetes"}, Features: []string{"cluster-connect", "azure-rbac"}},
			dest("eastus2.obo.arc.azure.com", 8084), allow("eastus2.obo.arc.azure.com:8084", "kubernetes", "cluster-connect")},
		{"obo under 2024-01 with cluster-connect", policy.Config{Revision: "2024-01", Regions: []string{"eastus2"}, Offerings: []string{"kubernetes"}, Features: []string{"cluster-connect"}},
			dest("eastus2.obo.arc.azure.com", 8084), allow("eastus2.obo.arc.azure.com:8084", "kubernetes", "cluster-connect")},
		{"usgov fixed obo", policy.Config{Cloud: "usgov", Regions: []string{"usgovarizona"}, Offerings: []string{"kubernetes"}, Features: []string{"cluster-connect"}},
			dest("usgovvirginia.obo.arc.azure.us", 8084), allow("usgovvirginia.obo.arc.azure.us:8084", "kubernetes", "cluster-connect")},
		{"china registry mirror", policy.Config{Cloud: "china", Regions: []string{"chinanorth3"}, Offerings: []string{"kubernetes"}},
			dest("mcr.azk8s.cn", 443), allow("mcr.azk8s.cn:443", "kubernetes", "")},
		{"default revision is 2026-08", policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}},
			dest("eastus2.login.microsoft.com", 443), allow("*.login.microsoft.com:443", "servers", "")},
	}
	cat, err := parsedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.Compile(tc.cfg, cat) // not pinned: each case names its revision or takes the default
			if err != nil {
				t.Fatal(err)
			}
			checkDecision(t, tc.dest.Host, p.Decide(tc.dest), tc.want)
		})
	}
}

// TestRevisionAndCloudErrors: catalog.revision and cloud are validated by
// Compile, with errors naming the key and the allowed values.
func TestRevisionAndCloudErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  policy.Config
		want string // "" = valid
	}{
		{"unknown revision", policy.Config{Revision: "2025-01", Offerings: []string{"servers"}, Regions: []string{"eastus2"}},
			`catalog.revision: unknown revision "2025-01"; expected one of 2024-01, 2026-08`},
		{"unknown cloud", policy.Config{Cloud: "mooncake", Offerings: []string{"servers"}, Regions: []string{"eastus2"}},
			`cloud: unknown cloud "mooncake"; expected one of public, usgov, china`},
		{"cloud without tables in the revision", policy.Config{Revision: "2024-01", Cloud: "usgov", Offerings: []string{"servers"}, Regions: []string{"usgovvirginia"}},
			"cloud: usgov has no tables in catalog.revision 2024-01 (its clouds: public); set catalog.revision to 2026-08 or cloud to public"},
		{"offering without a table in usgov", policy.Config{Cloud: "usgov", Offerings: []string{"resource-bridge"}, Regions: []string{"usgovvirginia"}},
			"cloud: offering resource-bridge has no table in cloud usgov of catalog.revision 2026-08"},
		{"data-services in china", policy.Config{Cloud: "china", Offerings: []string{"data-services"}, Regions: []string{"chinanorth3"}},
			"cloud: offering data-services has no table in cloud china of catalog.revision 2026-08"},
		{"esu in china", policy.Config{Cloud: "china", Offerings: []string{"esu"}, Regions: []string{"chinanorth3"}},
			"cloud: offering esu has no table in cloud china of catalog.revision 2026-08 (its tables there: kubernetes, servers)"},
		{"azure-stack-hci in usgov", policy.Config{Cloud: "usgov", Offerings: []string{"azure-stack-hci"}, Regions: []string{"usgovvirginia"}},
			"cloud: offering azure-stack-hci has no table in cloud usgov"},
		{"public region in usgov", policy.Config{Cloud: "usgov", Offerings: []string{"servers"}, Regions: []string{"eastus2"}},
			`regions: "eastus2" is a region of cloud public, not of cloud usgov; set cloud to public or use a usgov region (e.g. usgovvirginia)`},
		{"government region in public", policy.Config{Offerings: []string{"servers"}, Regions: []string{"US Gov Virginia"}},
			`regions: "US Gov Virginia" is a region of cloud usgov, not of cloud public`},
		{"unknown region in china", policy.Config{Cloud: "china", Offerings: []string{"servers"}, Regions: []string{"chinanorth9"}},
			`regions: unknown Azure region "chinanorth9"; did you mean chinanorth`},
		{"usgov servers", policy.Config{Cloud: "usgov", Offerings: []string{"servers", "kubernetes", "esu", "sql-server"}, Regions: []string{"usgovvirginia"}}, ""},
		{"china servers", policy.Config{Cloud: "china", Offerings: []string{"servers", "kubernetes"}, Regions: []string{"chinaeast2"}}, ""},
		{"public everything under 2024-01", policy.Config{Revision: "2024-01", Cloud: "public", Offerings: []string{"servers"}, Regions: []string{"eastus2"}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.Compile(tc.cfg, nil)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("want error %q, got none", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q\ndoes not contain %q", err, tc.want)
			}
		})
	}
}

// TestRevisionHint: a refusal of a name that another revision lists gets
// the hint "in catalog revision R"; a hint inside the policy's own revision
// says what to add instead.
func TestRevisionHint(t *testing.T) {
	tests := []struct {
		name     string
		cfg      policy.Config
		dest     policy.Dest
		want     policy.Hint
		wantText string
	}{
		{"2026-08 row refused under 2024-01", policy.Config{Revision: "2024-01", Regions: []string{"eastus2"}, Offerings: []string{"servers"}},
			dest("x1.login.microsoft.com", 443), // 2024-01 lists only <region>.login.microsoft.com (kubernetes)
			policy.Hint{Revision: "2026-08", Rule: "*.login.microsoft.com:443", Section: "Arc-enabled servers: Connected Machine agent, full list"},
			"in catalog revision 2026-08"},
		{"www pkiops refused under 2024-01", policy.Config{Revision: "2024-01", Regions: []string{"eastus2"}, Offerings: []string{"esu"}},
			plain("www.microsoft.com", 80, "/pkiops/certs/x.crt"),
			policy.Hint{Revision: "2026-08", Rule: "www.microsoft.com/pkiops/certs:80", Section: "Arc-enabled servers: Connected Machine agent, full list"},
			"in catalog revision 2026-08"},
		{"2024-01 row refused under 2026-08", policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}},
			dest("k8connecthelm.azureedge.net", 443),
			policy.Hint{Revision: "2024-01", Rule: "k8connecthelm.azureedge.net:443", Section: "Azure Arc-enabled Kubernetes endpoints"},
			"in catalog revision 2024-01"},
		{"feature inside the revision", policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}},
			dest("dls.microsoft.com", 443),
			policy.Hint{Feature: "windows-server-licensing", Rule: "dls.microsoft.com:443", Section: "Arc-enabled servers: Connected Machine agent, full list"}, ""},
		{"the missing one of two features", policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"kubernetes"}, Features: []string{"cluster-connect"}},
			dest("eastus2.obo.arc.azure.com", 8084),
			policy.Hint{Feature: "azure-rbac", Rule: "eastus2.obo.arc.azure.com:8084", Section: "Arc-enabled Kubernetes"}, ""},
		{"nothing in any revision", policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}}, dest("evil.example", 443), policy.Hint{}, ""},
		{"other revisions of the same cloud only", policy.Config{Cloud: "usgov", Regions: []string{"usgovvirginia"}, Offerings: []string{"servers"}},
			dest("k8connecthelm.azureedge.net", 443), policy.Hint{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.Compile(tc.cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := p.Decide(tc.dest); d.Allowed() {
				t.Fatalf("%s admitted: %+v", tc.dest.Host, d)
			}
			h := p.Hint(tc.dest)
			if h != tc.want {
				t.Errorf("Hint\n got %+v\nwant %+v", h, tc.want)
			}
			if h.Text() != tc.wantText {
				t.Errorf("Text() = %q, want %q", h.Text(), tc.wantText)
			}
		})
	}
}

// TestDNSServerRowAdmitsNothing: the resource bridge's DNS server row names
// no host; it is in the catalog but never in the effective allowlist.
func TestDNSServerRowAdmitsNothing(t *testing.T) {
	p, err := policy.Compile(policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"resource-bridge"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Rules() {
		if strings.HasPrefix(r.Pattern, "<") {
			t.Errorf("rule %q in the effective allowlist", r.Pattern)
		}
	}
	found := false
	for _, e := range p.Catalog().Entries {
		found = found || e.Pattern == policy.PatternDNSServer
	}
	if !found {
		t.Errorf("the 2026-08 resource bridge rows lack %s", policy.PatternDNSServer)
	}
}

// TestPolicyRevisionAndCloud: the policy reports the revision and cloud it
// was compiled from, defaults filled in, and its rules name the revisions
// and clouds that list them.
func TestPolicyRevisionAndCloud(t *testing.T) {
	p, err := policy.Compile(policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Revision() != policy.LatestRevision || p.Cloud() != policy.CloudPublic {
		t.Errorf("Revision() %q Cloud() %q, want %q public", p.Revision(), p.Cloud(), policy.LatestRevision)
	}
	want := map[string]string{"download.microsoft.com": "2024-01,2026-08/public,usgov,china", "*.login.microsoft.com": "2026-08/public"}
	for _, r := range p.Rules() {
		if w, ok := want[r.Pattern]; ok {
			if got := strings.Join(r.Revisions, ",") + "/" + strings.Join(r.Clouds, ","); got != w {
				t.Errorf("%s: revisions/clouds %s, want %s", r.Pattern, got, w)
			}
			delete(want, r.Pattern)
		}
	}
	if len(want) > 0 {
		t.Errorf("rules missing: %v", want)
	}
}
