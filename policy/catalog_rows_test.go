package policy_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

const (
	testVCenter = "vcenter.corp.example"
	testSCVMM   = "scvmm.corp.example"
)

// rowConfig returns the configuration that switches on spec row s with
// feature f ("" for none): its own offering alone, one region.
func rowConfig(s policy.SpecRow, f string) policy.Config {
	cfg := policy.Config{Regions: []string{"eastus2"}, Offerings: []string{s.Offering}}
	if f != "" {
		cfg.Features = []string{f}
	}
	switch s.Offering {
	case policy.OfferingVMware:
		cfg.VCenter = testVCenter
	case policy.OfferingSCVMM:
		cfg.SCVMMServer = testSCVMM
	}
	return cfg
}

// destFor returns the destination that reaches name on port through the
// row: plain HTTP under the row's path on port 80, a CONNECT otherwise.
func destFor(name string, port int, path string) policy.Dest {
	if path != "" && port == 80 {
		return policy.Dest{Host: name, Port: port, Plain: true, Path: path + "/file.crt"}
	}
	return policy.Dest{Host: name, Port: port}
}

// otherPort returns a port that the entry does not list.
func otherPort(ports []int) int {
	for _, p := range []int{8443, 443, 22} {
		if !slices.Contains(ports, p) {
			return p
		}
	}
	return 1
}

// TestCatalogRows walks every catalog entry and every spec row listing it:
// a concrete name is allowed on each of its ports with the row's offering
// (and feature) on, and refused with the offering off, on another port, in
// another region, with the feature off, and in phase steady for
// installation and connection rows.
func TestCatalogRows(t *testing.T) {
	for _, rc := range rowClouds {
		t.Run(rc.revision+"/"+rc.cloud, func(t *testing.T) { checkCatalogRows(t, rc.revision, rc.cloud, rc.region, rc.other) })
	}
}

// rowClouds are the revisions and clouds TestCatalogRows walks, each with
// the region its rows are expanded for and another region of that cloud.
var rowClouds = []struct{ revision, cloud, region, other string }{
	{policy.Revision202401, policy.CloudPublic, "eastus2", "westus3"},
	{policy.Revision202608, policy.CloudPublic, "eastus2", "westus3"},
	{policy.Revision202608, policy.CloudUSGov, "usgovvirginia", "usgovarizona"},
	{policy.Revision202608, policy.CloudChina, "chinanorth3", "chinaeast2"},
}

// checkCatalogRows is TestCatalogRows for the rows of one revision and cloud.
func checkCatalogRows(t *testing.T, revision, cloud, region, other string) {
	whole, err := policy.EmbeddedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	cat := whole.Select(revision, cloud)
	if len(cat.Entries) == 0 {
		t.Fatalf("no rows in revision %s, cloud %s", revision, cloud)
	}
	none := compileOK(t, policy.Config{Allow: []string{"unrelated.example.org"}, Revision: revision, Cloud: cloud})
	for ei := range cat.Entries {
		e := &cat.Entries[ei]
		if e.Pattern == policy.PatternDNSServer {
			continue // names no host: never admitted (TestDNSServerRowAdmitsNothing)
		}
		for _, s := range e.Sources {
			if s.Gateway {
				continue // only connection gateway|both admits them (TestGatewayRows)
			}
			variants := []string{""}
			if len(s.Features) > 0 {
				variants = s.Features
			}
			if s.AllFeatures {
				variants = []string{s.Features[0]} // with every feature on
			}
			for _, f := range variants {
				name := fmt.Sprintf("%s/%s/%s", e.Pattern+e.Path, s.Offering, f)
				t.Run(name, func(t *testing.T) {
					cfg := rowConfig(s, f)
					cfg.Revision, cfg.Cloud, cfg.Regions = revision, cloud, []string{region}
					if s.AllFeatures {
						cfg.Features = slices.Clone(s.Features)
					}
					p := compileOK(t, cfg)
					if e.Pattern == "<vmware.vcenter>" || e.Pattern == "<scvmm.server>" {
						checkUserSuppliedRow(t, p, e, s)
						return
					}
					wantFeature := f
					for _, s2 := range e.Sources {
						if s2.Offering == s.Offering && len(s2.Features) == 0 {
							wantFeature = "" // the same offering needs the name always
						}
					}
					names := fillPattern(e.Pattern, region)
					for _, n := range names {
						for _, port := range e.Ports {
							d := destFor(n, port, e.Path)
							want := policy.Decision{
								Verdict: policy.Allow, Rule: strings.ReplaceAll(e.Pattern, "<region>", region) + e.Path + ":" + strconv.Itoa(port),
								Offering: s.Offering, Feature: wantFeature, Source: policy.SourceCatalog,
								TLSOnly: e.Scheme == "https" && port != 80,
							}
							checkFull(t, fmt.Sprintf("on: %s:%d", n, port), p.Decide(d), want)
							checkDecision(t, fmt.Sprintf("offering off: %s:%d", n, port), none.Decide(d),
								policy.Decision{Reason: policy.NotInAllowlist})
						}
						op := otherPort(e.Ports)
						checkDecision(t, fmt.Sprintf("other port: %s:%d", n, op), p.Decide(policy.Dest{Host: n, Port: op}),
							policy.Decision{Reason: policy.PortNotAllowed})
					}
					if strings.Contains(e.Pattern, "<region>") {
						for _, n := range fillPattern(e.Pattern, other) {
							checkDecision(t, "other region: "+n, p.Decide(destFor(n, e.Ports[0], e.Path)),
								policy.Decision{Reason: policy.NotInAllowlist})
						}
					}
					if f != "" && wantFeature != "" {
						off := cfg
						off.Features = nil
						po := compileOK(t, off)
						rows := refRows(cat, off)
						for _, n := range names {
							d := destFor(n, e.Ports[0], e.Path)
							got := po.Decide(d)
							checkDecision(t, "feature off: "+n, got, refDecide(rows, d))
							if got.Allowed() && got.Rule == p.Decide(d).Rule {
								t.Errorf("feature off: %s still admitted by the same row %q", n, got.Rule)
							}
						}
					}
					if s.When == policy.WhenInstall || s.When == policy.WhenConnect {
						steady := cfg
						steady.Phase = policy.PhaseSteady
						ps := compileOK(t, steady)
						for _, n := range names {
							checkDecision(t, "steady: "+n, ps.Decide(destFor(n, e.Ports[0], e.Path)),
								policy.Decision{Reason: policy.NotInAllowlist})
						}
					}
				})
			}
		}
	}
}

// checkUserSuppliedRow covers the vCenter and SCVMM rows, whose host the
// configuration supplies.
func checkUserSuppliedRow(t *testing.T, p *policy.Policy, e *policy.Entry, s policy.SpecRow) {
	t.Helper()
	host, src := testVCenter, policy.SourceVCenter
	if s.Offering == policy.OfferingSCVMM {
		host, src = testSCVMM, policy.SourceSCVMM
	}
	got := p.Decide(policy.Dest{Host: host, Port: 443})
	checkDecision(t, host, got, policy.Decision{Verdict: policy.Allow, Rule: host + ":443", Offering: s.Offering})
	if got.Source != src || !got.PrivateOK {
		t.Errorf("%s: source %q private-ok %v, want %q true", host, got.Source, got.PrivateOK, src)
	}
	checkDecision(t, host+":8443", p.Decide(policy.Dest{Host: host, Port: 8443}), policy.Decision{Reason: policy.PortNotAllowed})
	checkDecision(t, "www."+host, p.Decide(policy.Dest{Host: "www." + host, Port: 443}), policy.Decision{Reason: policy.NotInAllowlist})
}

// compositionConfigs are the configurations the model comparison runs over.
var compositionConfigs = []struct {
	name string
	cfg  policy.Config
}{
	{"kubernetes", policy.Config{Offerings: []string{"kubernetes"}}},
	{"app-services alias", policy.Config{Offerings: []string{"app-services"}}},
	{"machine-learning alias", policy.Config{Offerings: []string{"machine-learning"}}},
	{"kubernetes all features", policy.Config{Offerings: []string{"kubernetes"}, Features: policy.Features()}},
	{"kubernetes steady", policy.Config{Offerings: []string{"kubernetes"}, Phase: policy.PhaseSteady}},
	{"data-services direct", policy.Config{Offerings: []string{"data-services"}}},
	{"data-services indirect", policy.Config{Offerings: []string{"data-services"}, DataServicesMode: policy.DataServicesIndirect}},
	{"servers", policy.Config{Offerings: []string{"servers"}}},
	{"servers steady", policy.Config{Offerings: []string{"servers"}, Phase: policy.PhaseSteady}},
	{"servers esu ssh", policy.Config{Offerings: []string{"servers"}, Features: []string{"esu", "ssh"}}},
	{"servers wac legacy-telemetry", policy.Config{Offerings: []string{"servers"}, Features: []string{"windows-admin-center", "legacy-telemetry"}}},
	{"servers private-link", policy.Config{Offerings: []string{"servers"}, Features: []string{"private-link"}}},
	{"servers rm-private-link", policy.Config{Offerings: []string{"servers"}, Features: []string{"resource-management-private-link"}}},
	{"sql-server", policy.Config{Offerings: []string{"sql-server"}}},
	{"esu", policy.Config{Offerings: []string{"esu"}}},
	{"esu steady", policy.Config{Offerings: []string{"esu"}, Phase: policy.PhaseSteady}},
	{"resource-bridge", policy.Config{Offerings: []string{"resource-bridge"}}},
	{"resource-bridge legacy steady", policy.Config{Offerings: []string{"resource-bridge"}, Features: []string{"legacy-image-download"}, Phase: policy.PhaseSteady}},
	{"vmware", policy.Config{Offerings: []string{"vmware"}, VCenter: testVCenter}},
	{"vmware guest-management", policy.Config{Offerings: []string{"vmware"}, VCenter: testVCenter, Features: []string{"guest-management"}}},
	{"scvmm guest-management", policy.Config{Offerings: []string{"scvmm"}, SCVMMServer: testSCVMM, Features: []string{"guest-management"}}},
	{"azure-stack-hci", policy.Config{Offerings: []string{"azure-stack-hci"}}},
	{"azure-stack-hci guest-management", policy.Config{Offerings: []string{"azure-stack-hci"}, Features: []string{"guest-management"}}},
	{"kubernetes servers steady", policy.Config{Offerings: []string{"servers", "kubernetes"}, Phase: policy.PhaseSteady}},
	{"servers esu sql-server", policy.Config{Offerings: []string{"esu", "sql-server", "servers"}}},
	{"servers resource-bridge private-link", policy.Config{Offerings: []string{"resource-bridge", "servers"}, Features: []string{"private-link"}}},
	{"kubernetes servers cluster-connect ssh", policy.Config{Offerings: []string{"servers", "kubernetes"}, Features: []string{"ssh", "cluster-connect"}}},
	{"resource-bridge custom-locations", policy.Config{Offerings: []string{"resource-bridge"}, Features: []string{"custom-locations"}}},
	{"everything", policy.Config{Offerings: policy.Offerings(), Features: policy.Features(), VCenter: testVCenter, SCVMMServer: testSCVMM}},
	{"servicebus narrowed", policy.Config{Offerings: []string{"servers", "kubernetes"}, Features: []string{"ssh", "cluster-connect"},
		ServicebusNames: []string{"wcus-prod-1.servicebus.windows.net", "EUS-Prod-2.servicebus.windows.net."}}},
}

// TestCatalogComposition compares Decide with the reference model over
// every catalog name, on its ports and on another port, for a range of
// offering, feature, phase and mode combinations.
func TestCatalogComposition(t *testing.T) {
	cat := embedded(t)
	for _, tc := range compositionConfigs {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Regions = []string{"eastus2", "westeurope"}
			p := compileOK(t, cfg)
			rows := refRows(cat, cfg)
			var names []string
			for _, e := range cat.Entries {
				for _, r := range []string{"eastus2", "westeurope", "westus3"} {
					for _, n := range fillPattern(e.Pattern, r) {
						if !strings.Contains(n, "<") && !slices.Contains(names, n) {
							names = append(names, n)
						}
					}
				}
			}
			names = append(names, "wcus-prod-1.servicebus.windows.net", "eus-prod-2.servicebus.windows.net", "azgnq.servicebus.windows.net")
			for _, n := range names {
				for _, port := range []int{443, 80, 8084, 8443} {
					for _, d := range []policy.Dest{
						{Host: n, Port: port},
						{Host: n, Port: port, Plain: true, Path: "/pkiops/certs/x.crt"},
						{Host: n, Port: port, Plain: true, Path: "/other"},
					} {
						got := p.Decide(d)
						want := refDecide(rows, d)
						checkFull(t, fmt.Sprintf("%s:%d plain=%v %s", n, port, d.Plain, d.Path), got, want)
					}
				}
			}
		})
	}
}

// TestOfferingComposition names the design's composition rules one by one.
func TestOfferingComposition(t *testing.T) {
	allow := func(rule, offering, feature string) policy.Decision {
		return policy.Decision{Verdict: policy.Allow, Rule: rule, Offering: offering, Feature: feature}
	}
	deny := func(r policy.Reason) policy.Decision { return policy.Decision{Reason: r} }
	dsIndirect := policy.Config{Offerings: []string{"data-services"}, DataServicesMode: "indirect"}
	vm := policy.Config{Offerings: []string{"vmware"}, VCenter: testVCenter}
	vmGuest := policy.Config{Offerings: []string{"vmware"}, VCenter: testVCenter, Features: []string{"guest-management"}}
	scvmmGuest := policy.Config{Offerings: []string{"scvmm"}, SCVMMServer: "10.0.0.7:8100", Features: []string{"guest-management"}}
	tests := []struct {
		name string
		cfg  policy.Config
		dest policy.Dest
		want policy.Decision
	}{
		{"data-services direct brings its own rows", policy.Config{Offerings: []string{"data-services"}},
			policy.Dest{Host: "arcdataservicesrow1.azurecr.io", Port: 443}, allow("arcdataservicesrow1.azurecr.io:443", "data-services", "")},
		{"data-services direct brings kubernetes", policy.Config{Offerings: []string{"data-services"}},
			policy.Dest{Host: "eastus2.dp.kubernetesconfiguration.azure.com", Port: 443}, allow("eastus2.dp.kubernetesconfiguration.azure.com:443", "data-services", "")},
		{"data-services indirect drops the helm chart", dsIndirect,
			policy.Dest{Host: "arcdataservicesrow1.azurecr.io", Port: 443}, deny(policy.NotInAllowlist)},
		{"data-services indirect keeps monitor", dsIndirect,
			policy.Dest{Host: "x.ods.opinsights.azure.com", Port: 443}, allow("*.ods.opinsights.azure.com:443", "data-services", "")},
		{"data-services indirect keeps the processing service", dsIndirect,
			policy.Dest{Host: "san-af-eastus2-prod.azurewebsites.net", Port: 443}, allow("san-af-eastus2-prod.azurewebsites.net:443", "data-services", "")},
		{"data-services indirect keeps ARM", dsIndirect,
			policy.Dest{Host: "management.azure.com", Port: 443}, allow("management.azure.com:443", "data-services", "")},
		{"data-services indirect keeps sign-in", dsIndirect,
			policy.Dest{Host: "login.windows.net", Port: 443}, allow("login.windows.net:443", "data-services", "")},
		{"data-services indirect keeps regional sign-in", dsIndirect,
			policy.Dest{Host: "eastus2.login.microsoft.com", Port: 443}, allow("eastus2.login.microsoft.com:443", "data-services", "")},
		{"data-services indirect drops kubernetes", dsIndirect,
			policy.Dest{Host: "mcr.microsoft.com", Port: 443}, deny(policy.NotInAllowlist)},
		{"sql-server brings servers", policy.Config{Offerings: []string{"sql-server"}},
			policy.Dest{Host: "aka.ms", Port: 443}, allow("aka.ms:443", "sql-server", "")},
		{"sql-server brings telemetry", policy.Config{Offerings: []string{"sql-server"}},
			policy.Dest{Host: "telemetry.eastus2.arcdataservices.com", Port: 443}, allow("telemetry.eastus2.arcdataservices.com:443", "sql-server", "")},
		{"servers lacks the SQL rows", policy.Config{Offerings: []string{"servers"}},
			policy.Dest{Host: "telemetry.eastus2.arcdataservices.com", Port: 443}, deny(policy.NotInAllowlist)},
		{"servers lacks the SQL processing service", policy.Config{Offerings: []string{"servers"}},
			policy.Dest{Host: "san-af-eastus2-prod.azurewebsites.net", Port: 443}, deny(policy.NotInAllowlist)},
		{"esu subset has aka.ms", policy.Config{Offerings: []string{"esu"}},
			policy.Dest{Host: "aka.ms", Port: 443}, allow("aka.ms:443", "esu", "")},
		{"esu subset has pkiops without a feature", policy.Config{Offerings: []string{"esu"}},
			policy.Dest{Host: "microsoft.com", Port: 443}, allow("microsoft.com/pkiops/certs:443", "esu", "")},
		{"esu subset lacks packages", policy.Config{Offerings: []string{"esu"}},
			policy.Dest{Host: "packages.microsoft.com", Port: 443}, deny(policy.NotInAllowlist)},
		{"esu subset lacks pas", policy.Config{Offerings: []string{"esu"}},
			policy.Dest{Host: "pas.windows.net", Port: 443}, deny(policy.NotInAllowlist)},
		{"esu subset lacks azgn", policy.Config{Offerings: []string{"esu"}},
			policy.Dest{Host: "azgn1.servicebus.windows.net", Port: 443}, deny(policy.NotInAllowlist)},
		{"esu subset lacks blob", policy.Config{Offerings: []string{"esu"}},
			policy.Dest{Host: "x.blob.core.windows.net", Port: 443}, deny(policy.NotInAllowlist)},
		{"servers needs the esu feature for pkiops", policy.Config{Offerings: []string{"servers"}},
			policy.Dest{Host: "microsoft.com", Port: 443}, deny(policy.NotInAllowlist)},
		{"servers with esu has pkiops", policy.Config{Offerings: []string{"servers"}, Features: []string{"esu"}},
			policy.Dest{Host: "microsoft.com", Port: 443}, allow("microsoft.com/pkiops/certs:443", "servers", "esu")},
		{"resource-bridge own row", policy.Config{Offerings: []string{"resource-bridge"}},
			policy.Dest{Host: "msk8s.api.cdp.microsoft.com", Port: 443}, allow("msk8s.api.cdp.microsoft.com:443", "resource-bridge", "")},
		{"resource-bridge brings kubernetes", policy.Config{Offerings: []string{"resource-bridge"}},
			policy.Dest{Host: "eastus2.dp.kubernetesconfiguration.azure.com", Port: 443}, allow("eastus2.dp.kubernetesconfiguration.azure.com:443", "resource-bridge", "")},
		{"resource-bridge custom locations row always on", policy.Config{Offerings: []string{"resource-bridge"}},
			policy.Dest{Host: "sts.windows.net", Port: 443}, allow("sts.windows.net:443", "resource-bridge", "")},
		{"resource-bridge lacks servers", policy.Config{Offerings: []string{"resource-bridge"}},
			policy.Dest{Host: "aka.ms", Port: 443}, deny(policy.NotInAllowlist)},
		{"resource-bridge legacy image download needs its feature", policy.Config{Offerings: []string{"resource-bridge"}},
			policy.Dest{Host: "msk8s.b.tlu.dl.delivery.mp.microsoft.com", Port: 80, Plain: true, Path: "/x"}, deny(policy.NotInAllowlist)},
		{"resource-bridge legacy image download", policy.Config{Offerings: []string{"resource-bridge"}, Features: []string{"legacy-image-download"}},
			policy.Dest{Host: "msk8s.b.tlu.dl.delivery.mp.microsoft.com", Port: 80, Plain: true, Path: "/x"},
			allow("msk8s.b.tlu.dl.delivery.mp.microsoft.com:80", "resource-bridge", "legacy-image-download")},
		{"vmware brings the resource bridge", vm,
			policy.Dest{Host: "msk8s.api.cdp.microsoft.com", Port: 443}, allow("msk8s.api.cdp.microsoft.com:443", "vmware", "")},
		{"vmware brings kubernetes", vm,
			policy.Dest{Host: "mcr.microsoft.com", Port: 443}, allow("mcr.microsoft.com:443", "vmware", "")},
		{"vmware brings its vcenter", vm,
			policy.Dest{Host: testVCenter, Port: 443}, allow(testVCenter+":443", "vmware", "")},
		{"vmware without guest management lacks servers", vm,
			policy.Dest{Host: "aka.ms", Port: 443}, deny(policy.NotInAllowlist)},
		{"vmware with guest management brings servers", vmGuest,
			policy.Dest{Host: "aka.ms", Port: 443}, allow("aka.ms:443", "vmware", "")},
		{"scvmm with guest management brings servers", scvmmGuest,
			policy.Dest{Host: "pas.windows.net", Port: 443}, allow("pas.windows.net:443", "scvmm", "")},
		{"scvmm server address on its port", scvmmGuest,
			policy.Dest{Host: "10.0.0.7", Port: 8100}, allow("10.0.0.7:8100", "scvmm", "")},
		{"scvmm server address on another port", scvmmGuest,
			policy.Dest{Host: "10.0.0.7", Port: 443}, deny(policy.PortNotAllowed)},
		{"scvmm without its offering lacks vcenter", scvmmGuest,
			policy.Dest{Host: testVCenter, Port: 443}, deny(policy.NotInAllowlist)},
		{"azure-stack-hci brings the resource bridge", policy.Config{Offerings: []string{"azure-stack-hci"}},
			policy.Dest{Host: "v20.events.data.microsoft.com", Port: 443}, allow("v20.events.data.microsoft.com:443", "azure-stack-hci", "")},
		{"azure-stack-hci with guest management brings servers", policy.Config{Offerings: []string{"azure-stack-hci"}, Features: []string{"guest-management"}},
			policy.Dest{Host: "x.guestconfiguration.azure.com", Port: 443}, allow("*.guestconfiguration.azure.com:443", "azure-stack-hci", "")},
		{"guest management alone does not bring servers", policy.Config{Offerings: []string{"kubernetes"}, Features: []string{"guest-management"}},
			policy.Dest{Host: "aka.ms", Port: 443}, deny(policy.NotInAllowlist)},
		{"app-services alias is kubernetes", policy.Config{Offerings: []string{"app-services"}},
			policy.Dest{Host: "mcr.microsoft.com", Port: 443}, allow("mcr.microsoft.com:443", "kubernetes", "")},
		{"machine-learning alias is kubernetes", policy.Config{Offerings: []string{"machine-learning"}},
			policy.Dest{Host: "x.data.mcr.microsoft.com", Port: 443}, allow("*.data.mcr.microsoft.com:443", "kubernetes", "")},
		{"alias with another offering", policy.Config{Offerings: []string{"servers", "machine-learning"}},
			policy.Dest{Host: "login.windows.net", Port: 443}, allow("login.windows.net:443", "kubernetes", "")},

		// attribution: the first selected offering in the design's order
		{"order: kubernetes before servers", policy.Config{Offerings: []string{"servers", "kubernetes"}},
			policy.Dest{Host: "management.azure.com", Port: 443}, allow("management.azure.com:443", "kubernetes", "")},
		{"order: servers before esu", policy.Config{Offerings: []string{"esu", "servers"}},
			policy.Dest{Host: "aka.ms", Port: 443}, allow("aka.ms:443", "servers", "")},
		{"order: sql-server before esu", policy.Config{Offerings: []string{"esu", "sql-server"}},
			policy.Dest{Host: "download.microsoft.com", Port: 443}, allow("download.microsoft.com:443", "sql-server", "")},
		{"order: data-services before sql-server", policy.Config{Offerings: []string{"sql-server", "data-services"}},
			policy.Dest{Host: "san-af-eastus2-prod.azurewebsites.net", Port: 443}, allow("san-af-eastus2-prod.azurewebsites.net:443", "data-services", "")},
		{"order: servers before resource-bridge", policy.Config{Offerings: []string{"resource-bridge", "servers"}},
			policy.Dest{Host: "packages.microsoft.com", Port: 443}, allow("packages.microsoft.com:443", "servers", "")},
		{"order: kubernetes before vmware", policy.Config{Offerings: []string{"vmware", "kubernetes"}, VCenter: testVCenter},
			policy.Dest{Host: "mcr.microsoft.com", Port: 443}, allow("mcr.microsoft.com:443", "kubernetes", "")},
		{"order: esu before the esu feature of servers", policy.Config{Offerings: []string{"servers", "esu"}, Features: []string{"esu"}},
			policy.Dest{Host: "microsoft.com", Port: 443}, allow("microsoft.com/pkiops/certs:443", "servers", "esu")},
		{"order: kubernetes feature row before a servers row", policy.Config{Offerings: []string{"servers", "kubernetes"}, Features: []string{"custom-locations"}},
			policy.Dest{Host: "guestnotificationservice.azure.com", Port: 443}, allow("guestnotificationservice.azure.com:443", "kubernetes", "custom-locations")},

		// phase
		{"steady: servers drops ARM", policy.Config{Offerings: []string{"servers"}, Phase: "steady"},
			policy.Dest{Host: "management.azure.com", Port: 443}, deny(policy.NotInAllowlist)},
		{"steady: kubernetes needs ARM always", policy.Config{Offerings: []string{"servers", "kubernetes"}, Phase: "steady"},
			policy.Dest{Host: "management.azure.com", Port: 443}, allow("management.azure.com:443", "kubernetes", "")},
		{"steady: resource-bridge keeps ARM through kubernetes", policy.Config{Offerings: []string{"resource-bridge"}, Phase: "steady"},
			policy.Dest{Host: "management.azure.com", Port: 443}, allow("management.azure.com:443", "resource-bridge", "")},
		{"steady: servers drops packages", policy.Config{Offerings: []string{"servers"}, Phase: "steady"},
			policy.Dest{Host: "packages.microsoft.com", Port: 443}, deny(policy.NotInAllowlist)},
		{"steady: resource-bridge needs packages always", policy.Config{Offerings: []string{"servers", "resource-bridge"}, Phase: "steady"},
			policy.Dest{Host: "packages.microsoft.com", Port: 443}, allow("packages.microsoft.com:443", "resource-bridge", "")},
		{"steady: helm download is an install row", policy.Config{Offerings: []string{"kubernetes"}, Phase: "steady"},
			policy.Dest{Host: "k8connecthelm.azureedge.net", Port: 443}, deny(policy.NotInAllowlist)},
		{"steady: pypi is an install row", policy.Config{Offerings: []string{"resource-bridge"}, Phase: "steady"},
			policy.Dest{Host: "files.pythonhosted.org", Port: 443}, deny(policy.NotInAllowlist)},
		{"steady: always rows stay", policy.Config{Offerings: []string{"servers"}, Phase: "steady"},
			policy.Dest{Host: "x.his.arc.azure.com", Port: 443}, allow("*.his.arc.azure.com:443", "servers", "")},
		{"onboarding: install rows on", policy.Config{Offerings: []string{"servers"}, Phase: "onboarding"},
			policy.Dest{Host: "aka.ms", Port: 443}, allow("aka.ms:443", "servers", "")},

		// private link
		{"private-link drops blob", policy.Config{Offerings: []string{"servers"}, Features: []string{"private-link"}},
			policy.Dest{Host: "x.blob.core.windows.net", Port: 443}, deny(policy.NotInAllowlist)},
		{"rm private link implies private link", policy.Config{Offerings: []string{"servers"}, Features: []string{"resource-management-private-link"}},
			policy.Dest{Host: "x.blob.core.windows.net", Port: 443}, deny(policy.NotInAllowlist)},
		{"private-link keeps blob for the resource bridge", policy.Config{Offerings: []string{"servers", "resource-bridge"}, Features: []string{"private-link"}},
			policy.Dest{Host: "x.blob.core.windows.net", Port: 443}, allow("*.blob.core.windows.net:443", "resource-bridge", "")},
		{"blob without private link", policy.Config{Offerings: []string{"servers"}},
			policy.Dest{Host: "x.blob.core.windows.net", Port: 443}, allow("*.blob.core.windows.net:443", "servers", "")},

		// regions
		{"two regions: first", policy.Config{Offerings: []string{"kubernetes"}, Regions: []string{"eastus2", "West Europe"}},
			policy.Dest{Host: "westeurope.dp.kubernetesconfiguration.azure.com", Port: 443}, allow("westeurope.dp.kubernetesconfiguration.azure.com:443", "kubernetes", "")},
		{"region names normalized", policy.Config{Offerings: []string{"kubernetes"}, Regions: []string{"East US 2"}},
			policy.Dest{Host: "eastus2.login.microsoft.com", Port: 443}, allow("eastus2.login.microsoft.com:443", "kubernetes", "")},
		{"regional row in another region", policy.Config{Offerings: []string{"kubernetes"}, Regions: []string{"East US 2"}},
			policy.Dest{Host: "westus.login.microsoft.com", Port: 443}, deny(policy.NotInAllowlist)},
		{"cluster connect on 8084", policy.Config{Offerings: []string{"kubernetes"}, Features: []string{"cluster-connect"}},
			policy.Dest{Host: "eastus2.obo.arc.azure.com", Port: 8084}, allow("eastus2.obo.arc.azure.com:8084", "kubernetes", "cluster-connect")},
		{"cluster connect not on 443", policy.Config{Offerings: []string{"kubernetes"}, Features: []string{"cluster-connect"}},
			policy.Dest{Host: "eastus2.obo.arc.azure.com", Port: 443}, deny(policy.PortNotAllowed)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.Regions == nil {
				tc.cfg.Regions = []string{"eastus2"}
			}
			p := compileOK(t, tc.cfg)
			got := p.Decide(tc.dest)
			checkDecision(t, fmt.Sprintf("%s:%d", tc.dest.Host, tc.dest.Port), got, tc.want)
		})
	}
}

// TestPrivateLink checks PrivateOK: Private rows with private link, the
// ARM row with a resource management private link, user-named entries
// always, anything else never.
func TestPrivateLink(t *testing.T) {
	tests := []struct {
		name     string
		features []string
		offs     []string
		host     string
		want     bool
	}{
		{"his without private link", nil, []string{"servers"}, "x.his.arc.azure.com", false},
		{"his with private link", []string{"private-link"}, []string{"servers"}, "x.his.arc.azure.com", true},
		{"guestconfiguration with private link", []string{"private-link"}, []string{"servers"}, "x.guestconfiguration.azure.com", true},
		{"his with private link via esu", []string{"private-link"}, []string{"esu"}, "x.his.arc.azure.com", true},
		{"his with private link, kubernetes only", []string{"private-link"}, []string{"kubernetes"}, "x.his.arc.azure.com", false},
		{"his with private link, kubernetes and servers", []string{"private-link"}, []string{"kubernetes", "servers"}, "x.his.arc.azure.com", true},
		{"public row with private link", []string{"private-link"}, []string{"servers"}, "login.windows.net", false},
		{"ARM with private link only", []string{"private-link"}, []string{"servers"}, "management.azure.com", false},
		{"ARM with rm private link", []string{"resource-management-private-link"}, []string{"servers"}, "management.azure.com", true},
		{"his with rm private link", []string{"resource-management-private-link"}, []string{"servers"}, "x.his.arc.azure.com", true},
		{"ARM with rm private link, kubernetes only", []string{"resource-management-private-link"}, []string{"kubernetes"}, "management.azure.com", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := compileOK(t, policy.Config{Regions: []string{"eastus2"}, Offerings: tc.offs, Features: tc.features})
			got := p.Decide(policy.Dest{Host: tc.host, Port: 443})
			if !got.Allowed() {
				t.Fatalf("%s refused: %s", tc.host, got.Reason)
			}
			if got.PrivateOK != tc.want {
				t.Errorf("%s: PrivateOK %v, want %v (rule %s)", tc.host, got.PrivateOK, tc.want, got.Rule)
			}
		})
	}
	p := compileOK(t, policy.Config{Allow: []string{"intranet.corp.example", "10.1.2.3"}})
	for _, d := range []policy.Dest{{Host: "intranet.corp.example", Port: 443}, {Host: "10.1.2.3", Port: 443}} {
		if got := p.Decide(d); !got.Allowed() || !got.PrivateOK {
			t.Errorf("allow entry %s: %s %s private-ok %v, want allow and private-ok", d.Host, got.Verdict, got.Reason, got.PrivateOK)
		}
	}
}

// TestServicebusNarrowing checks Config.ServicebusNames: the names replace
// the wide *.servicebus.windows.net rows, the azgn* row stays.
func TestServicebusNarrowing(t *testing.T) {
	names := []string{"wcus-prod-1.servicebus.windows.net", "EUS-Prod-2.servicebus.windows.net."}
	base := policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}, Features: []string{"ssh"}}
	narrowed := base
	narrowed.ServicebusNames = names
	empty := base
	empty.ServicebusNames = []string{}
	k8s := policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"kubernetes"}, Features: []string{"cluster-connect"}, ServicebusNames: names}
	allow := func(rule, off, feat string) policy.Decision {
		return policy.Decision{Verdict: policy.Allow, Rule: rule, Offering: off, Feature: feat}
	}
	tests := []struct {
		name string
		cfg  policy.Config
		host string
		want policy.Decision
	}{
		{"wide row without a list", base, "other.servicebus.windows.net", allow("*.servicebus.windows.net:443", "servers", "ssh")},
		{"listed name", narrowed, "wcus-prod-1.servicebus.windows.net", allow("wcus-prod-1.servicebus.windows.net:443", "servers", "ssh")},
		{"listed name normalized", narrowed, "eus-prod-2.servicebus.windows.net", allow("eus-prod-2.servicebus.windows.net:443", "servers", "ssh")},
		{"unlisted name refused", narrowed, "other.servicebus.windows.net", policy.Decision{Reason: policy.NotInAllowlist}},
		{"sub-name of a listed name refused", narrowed, "x.wcus-prod-1.servicebus.windows.net", policy.Decision{Reason: policy.NotInAllowlist}},
		{"azgn stays", narrowed, "azgnabc.servicebus.windows.net", allow("azgn*.servicebus.windows.net:443", "servers", "")},
		{"empty list drops the wide row", empty, "other.servicebus.windows.net", policy.Decision{Reason: policy.NotInAllowlist}},
		{"empty list keeps azgn", empty, "azgn7.servicebus.windows.net", allow("azgn*.servicebus.windows.net:443", "servers", "")},
		{"kubernetes listed name", k8s, "wcus-prod-1.servicebus.windows.net", allow("wcus-prod-1.servicebus.windows.net:443", "kubernetes", "cluster-connect")},
		{"kubernetes unlisted name", k8s, "other.servicebus.windows.net", policy.Decision{Reason: policy.NotInAllowlist}},
		{"list without the feature admits nothing", policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}, ServicebusNames: names},
			"wcus-prod-1.servicebus.windows.net", policy.Decision{Reason: policy.NotInAllowlist}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := compileOK(t, tc.cfg)
			checkDecision(t, tc.host, p.Decide(policy.Dest{Host: tc.host, Port: 443}), tc.want)
		})
	}
	bad := base
	bad.ServicebusNames = []string{"1.2.3.4"}
	if _, err := compilePinned(bad, nil); err == nil || !strings.Contains(err.Error(), `"1.2.3.4"`) {
		t.Errorf("an IP in the servicebus list: err %v, want an error naming it", err)
	}
}

// TestRulesAdmitThemselves checks that every effective rule admits a
// concrete instance on each of its ports, under the name the rule gives.
func TestRulesAdmitThemselves(t *testing.T) {
	cfg := policy.Config{Regions: []string{"eastus2", "westeurope"}, Offerings: policy.Offerings(),
		Features: []string{"cluster-connect", "azure-rbac", "portal", "auto-upgrade", "ssh", "esu", "legacy-telemetry", "legacy-image-download"},
		VCenter:  testVCenter, SCVMMServer: "[fd00::7]:8100",
		Allow: []string{"a.example.org", "b.example.org:8443", "c.example.org:80/pub", "*.d.example.org", "e*.example.org", "192.0.2.10", "[2001:db8::10]:8443"}}
	p := compileOK(t, cfg)
	rules := p.Rules()
	if len(rules) == 0 {
		t.Fatal("no rules")
	}
	seenUser := false
	for i, r := range rules {
		if r.Source != policy.SourceCatalog {
			seenUser = true
		} else if seenUser && r.Source == policy.SourceCatalog {
			t.Errorf("rule %d %q: a catalog row after a user row", i, r.Pattern)
		}
		if strings.Contains(r.Pattern, "<") {
			t.Errorf("rule %q: placeholder left in the pattern", r.Pattern)
		}
		host := r.Pattern
		switch {
		case strings.HasPrefix(host, "*."):
			host = "zz9" + host[1:]
		case strings.Contains(host, "*"):
			host = strings.Replace(host, "*", "zz9", 1)
		}
		if r.Wildcard() != strings.Contains(r.Pattern, "*") {
			t.Errorf("rule %q: Wildcard() = %v", r.Pattern, r.Wildcard())
		}
		for _, port := range r.Ports {
			d := destFor(host, port, r.Path)
			got := p.Decide(d)
			if !got.Allowed() {
				t.Errorf("rule %q port %d: %s refused: %s", r.Pattern, port, host, got.Reason)
				continue
			}
			if got.Rule != r.Name(port) {
				if !r.Wildcard() {
					t.Errorf("rule %q port %d: decided by %q, want %q", r.Pattern, port, got.Rule, r.Name(port))
				}
				continue
			}
			if got.Offering != r.Offering {
				t.Errorf("rule %q port %d: offering %q, rule says %q", r.Pattern, port, got.Offering, r.Offering)
			}
		}
	}
}
