package policy_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

const testGateway = "contoso.gw.arc.azure.com"

// gatewayConfig returns a 2026-08 public configuration with connection
// conn, the test endpoint, region eastus2 and offerings.
func gatewayConfig(conn string, offerings ...string) policy.Config {
	return policy.Config{Revision: policy.Revision202608, Cloud: policy.CloudPublic, Regions: []string{"eastus2"},
		Offerings: offerings, Connection: conn, GatewayEndpoint: testGateway}
}

// gatewayOfferings are the offerings that reach each gateway table's rows
// through the gateway (the guest management of the appliance offerings:
// TestGatewayGuestManagement).
var gatewayOfferings = map[string][]string{
	policy.OfferingServers:    {policy.OfferingServers, policy.OfferingSQLServer, policy.OfferingESU},
	policy.OfferingKubernetes: {policy.OfferingKubernetes, policy.OfferingDataServices, "app-services"},
}

// TestGatewayRows: every gateway row, for every offering it serves, is
// admitted on its ports under gateway and both (the endpoint row as the
// configured endpoint), refused on another port, in another region where it
// has <region>, in phase steady where it is an installation row, and under
// connection direct where no direct row lists the name.
func TestGatewayRows(t *testing.T) {
	whole, err := policy.EmbeddedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, e := range whole.Select(policy.Revision202608, policy.CloudPublic).Entries {
		for _, s := range e.Sources {
			if !s.Gateway {
				continue
			}
			rows++
			for _, o := range gatewayOfferings[s.Offering] {
				for _, conn := range []string{policy.ConnectionGateway, policy.ConnectionBoth} {
					t.Run(fmt.Sprintf("%s/%s/%s/%s", s.Section, e.Pattern, o, conn), func(t *testing.T) {
						checkGatewayRow(t, e, s, o, conn)
					})
				}
			}
		}
	}
	if rows != 8+9 {
		t.Errorf("walked %d gateway rows, want 17", rows)
	}
}

func checkGatewayRow(t *testing.T, e policy.Entry, s policy.SpecRow, o, conn string) {
	cfg := gatewayConfig(conn, o)
	cfg.Features = slices.Clone(s.Features)
	p := compileOK(t, cfg)
	pattern := e.Pattern
	if pattern == policy.PatternGatewayEndpoint {
		pattern = testGateway
	}
	canon := o
	if o == "app-services" {
		canon = policy.OfferingKubernetes
	}
	wantFeature := ""
	if len(s.Features) > 0 {
		wantFeature = s.Features[0]
	}
	for _, n := range fillPattern(pattern, "eastus2") {
		for _, port := range e.Ports {
			d := p.Decide(policy.Dest{Host: n, Port: port})
			want := policy.Decision{Verdict: policy.Allow, Rule: strings.ReplaceAll(pattern, "<region>", "eastus2") + ":" + strconv.Itoa(port),
				Offering: canon, Feature: wantFeature, Source: policy.SourceCatalog, TLSOnly: true}
			if conn == policy.ConnectionBoth {
				// a direct row may name the destination first; only the verdict is the gateway's
				checkDecision(t, fmt.Sprintf("on: %s:%d", n, port), policy.Decision{Verdict: d.Verdict, Reason: d.Reason}, policy.Decision{Verdict: policy.Allow})
			} else {
				checkFull(t, fmt.Sprintf("on: %s:%d", n, port), d, want)
			}
		}
		if conn == policy.ConnectionGateway {
			op := otherPort(e.Ports)
			checkDecision(t, fmt.Sprintf("other port: %s:%d", n, op), p.Decide(policy.Dest{Host: n, Port: op}),
				policy.Decision{Reason: policy.PortNotAllowed})
		}
	}
	if conn != policy.ConnectionGateway {
		return
	}
	if strings.Contains(pattern, "<region>") {
		for _, n := range fillPattern(pattern, "westus3") {
			checkDecision(t, "other region: "+n, p.Decide(policy.Dest{Host: n, Port: e.Ports[0]}), policy.Decision{Reason: policy.NotInAllowlist})
		}
	}
	if s.When == policy.WhenInstall {
		cfg.Phase = policy.PhaseSteady
		steady := compileOK(t, cfg)
		for _, n := range fillPattern(pattern, "eastus2") {
			checkDecision(t, "steady: "+n, steady.Decide(policy.Dest{Host: n, Port: e.Ports[0]}), policy.Decision{Reason: policy.NotInAllowlist})
		}
	}
	direct := cfg
	direct.Connection, direct.GatewayEndpoint, direct.Phase = "", "", ""
	if pattern == testGateway {
		checkDecision(t, "direct: "+pattern, compileOK(t, direct).Decide(policy.Dest{Host: pattern, Port: 443}), policy.Decision{Reason: policy.NotInAllowlist})
	}
}

// TestGatewayReplacesDirectRows: every direct row of an offering the
// gateway fronts is refused under connection gateway (unless a gateway row
// names the same destination, and then that gateway row admits it) and
// admitted under both, as under direct.
func TestGatewayReplacesDirectRows(t *testing.T) {
	whole, err := policy.EmbeddedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range whole.Select(policy.Revision202608, policy.CloudPublic).Entries {
		for _, s := range e.Sources {
			if s.Gateway || slices.Contains(s.Features, policy.FeatureWindowsAdminCenter) && len(s.Features) == 1 {
				continue // the gateway rows themselves; WAC rows stay direct (TestGatewayKeepsUnfronted)
			}
			fam := s.Offering
			if fam == policy.OfferingSQLServer || fam == policy.OfferingESU {
				fam = policy.OfferingServers
			}
			if fam != policy.OfferingServers && fam != policy.OfferingKubernetes {
				continue
			}
			feats := []string{""}
			if len(s.Features) > 0 {
				feats = s.Features
				if s.AllFeatures {
					feats = []string{strings.Join(s.Features, ",")}
				}
			}
			for _, f := range feats {
				if f == policy.FeatureWindowsAdminCenter {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/%s/%s", e.Pattern+e.Path, s.Section, s.Offering, f), func(t *testing.T) {
					refused += checkReplacedRow(t, e, s, f)
				})
			}
		}
	}
	if refused < 20 {
		t.Errorf("only %d direct destinations refused under gateway; the walk missed the replaced rows", refused)
	}
}

// checkReplacedRow checks one direct row under direct, gateway and both;
// it returns how many of its destinations gateway refused.
func checkReplacedRow(t *testing.T, e policy.Entry, s policy.SpecRow, features string) int {
	cfg := gatewayConfig("", s.Offering)
	cfg.GatewayEndpoint = ""
	if features != "" {
		cfg.Features = strings.Split(features, ",")
	}
	direct := compileOK(t, cfg)
	cfg.GatewayEndpoint = testGateway
	cfg.Connection = policy.ConnectionGateway
	gw := compileOK(t, cfg)
	cfg.Connection = policy.ConnectionBoth
	both := compileOK(t, cfg)
	gwRules := map[string]bool{}
	for _, r := range gw.Rules() {
		if !strings.HasPrefix(r.Section, "Arc gateway") {
			t.Errorf("gateway policy of %s has the direct row %s [%s]", s.Offering, r.Pattern, r.Section)
		}
		for _, port := range r.Ports {
			gwRules[r.Name(port)] = true
		}
	}
	refused := 0
	for _, n := range fillPattern(e.Pattern, "eastus2") {
		for _, port := range e.Ports {
			d := destFor(n, port, e.Path)
			dd := direct.Decide(d)
			if !dd.Allowed() {
				t.Fatalf("direct: %s:%d refused (%s): the row is not on", n, port, dd.Reason)
			}
			if bd := both.Decide(d); !bd.Allowed() {
				t.Errorf("both: %s:%d refused (%s)", n, port, bd.Reason)
			}
			gd := gw.Decide(d)
			switch {
			case gd.Allowed() && !gwRules[gd.Rule]:
				t.Errorf("gateway: %s:%d admitted by %s, not a gateway row", n, port, gd.Rule)
			case !gd.Allowed():
				refused++
				if gd.Reason != policy.NotInAllowlist && gd.Reason != policy.PortNotAllowed && gd.Reason != policy.PathNotAllowed {
					t.Errorf("gateway: %s:%d refused for %s", n, port, gd.Reason)
				}
			}
		}
	}
	return refused
}

// TestGatewayKeepsUnfronted: what the gateway does not front keeps its
// direct rows under connection gateway, and config validate's StaysDirect
// names it.
func TestGatewayKeepsUnfronted(t *testing.T) {
	cases := []struct {
		name      string
		offerings []string
		features  []string
		vcenter   string
		dest      policy.Dest
		stays     []string
	}{
		{"resource bridge", []string{"servers", "resource-bridge"}, nil, "", policy.Dest{Host: "ecpacr.azurecr.io", Port: 443}, []string{"resource-bridge"}},
		{"bridge's kubernetes rows", []string{"resource-bridge"}, nil, "", policy.Dest{Host: "eastus2.dp.kubernetesconfiguration.azure.com", Port: 443}, []string{"resource-bridge"}},
		{"windows admin center", []string{"servers"}, []string{"windows-admin-center"}, "", policy.Dest{Host: "a1.waconazure.com", Port: 443}, []string{"feature windows-admin-center"}},
		{"data services' own rows", []string{"data-services"}, nil, "", policy.Dest{Host: "a1.ods.opinsights.azure.com", Port: 443}, []string{"data-services (its own rows)"}},
		{"vmware appliance", []string{"vmware"}, []string{"guest-management"}, testVCenter, policy.Dest{Host: "ecpacr.azurecr.io", Port: 443},
			[]string{"vmware (its resource bridge rows; the guest management rows go through the gateway)"}},
		{"servers only", []string{"servers"}, nil, "", policy.Dest{Host: testGateway, Port: 443}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gatewayConfig(policy.ConnectionGateway, tc.offerings...)
			cfg.Features, cfg.VCenter = tc.features, tc.vcenter
			p := compileOK(t, cfg)
			if d := p.Decide(tc.dest); !d.Allowed() {
				t.Errorf("%s:%d refused (%s) under gateway", tc.dest.Host, tc.dest.Port, d.Reason)
			}
			if got := p.StaysDirect(); !slices.Equal(got, tc.stays) {
				t.Errorf("StaysDirect() = %q, want %q", got, tc.stays)
			}
		})
	}
}

// TestGatewayGuestManagement: the appliance offerings' guest management
// (servers rows) goes through the gateway; their bridge rows stay direct.
func TestGatewayGuestManagement(t *testing.T) {
	cfg := gatewayConfig(policy.ConnectionGateway, policy.OfferingVMware)
	cfg.VCenter = testVCenter
	without := compileOK(t, cfg)
	cfg.Features = []string{policy.FeatureGuestManagement}
	with := compileOK(t, cfg)
	ep := policy.Dest{Host: testGateway, Port: 443}
	checkDecision(t, "endpoint without guest management", without.Decide(ep), policy.Decision{Reason: policy.NotInAllowlist})
	checkDecision(t, "endpoint with guest management", with.Decide(ep),
		policy.Decision{Verdict: policy.Allow, Rule: testGateway + ":443", Offering: policy.OfferingVMware})
	// a servers-only direct row the guest management brings is replaced
	sb := policy.Dest{Host: "a1.guestnotificationservice.azure.com", Port: 443}
	cfg.Connection, cfg.GatewayEndpoint = "", ""
	if d := compileOK(t, cfg).Decide(sb); !d.Allowed() {
		t.Fatalf("direct: %s refused (%s)", sb.Host, d.Reason)
	}
	if d := with.Decide(sb); d.Allowed() && !strings.HasPrefix(d.Rule, "*.guestnotificationservice") {
		t.Errorf("gateway: %s admitted by %s", sb.Host, d.Rule)
	}
}

// TestGatewayEndpoint: the forms of gateway.endpoint.
func TestGatewayEndpoint(t *testing.T) {
	cases := []struct {
		name, in, want, err string
	}{
		{"bare prefix", "contoso.gw.arc.azure.com", "contoso.gw.arc.azure.com", ""},
		{"URL form", "https://contoso.gw.arc.azure.com/", "contoso.gw.arc.azure.com", ""},
		{"URL form without slash", "https://contoso.gw.arc.azure.com", "contoso.gw.arc.azure.com", ""},
		{"upper case", "Contoso.GW.Arc.Azure.com", "contoso.gw.arc.azure.com", ""},
		{"trailing dot", "contoso.gw.arc.azure.com.", "contoso.gw.arc.azure.com", ""},
		{"spaces", "  contoso.gw.arc.azure.com ", "contoso.gw.arc.azure.com", ""},
		{"two labels", "a.contoso.gw.arc.azure.com", "", "exactly one label"},
		{"no label", "gw.arc.azure.com", "", "exactly one label"},
		{"dot only", ".gw.arc.azure.com", "", "not a host name"},
		{"another domain", "contoso.gw.arc.azure.us", "", "exactly one label"},
		{"look-alike", "contoso.gw.arc.azure.com.evil.example", "", "exactly one label"},
		{"empty", "", "", "required with connection gateway or both"},
		{"URL only", "https:///", "", "required with connection gateway or both"},
		{"http scheme", "http://contoso.gw.arc.azure.com", "", "not a host name"},
		{"port", "contoso.gw.arc.azure.com:443", "", "not a host name"},
		{"path", "https://contoso.gw.arc.azure.com/x", "", "not a host name"},
		{"wildcard", "*.gw.arc.azure.com", "", "not a host name"},
		{"address", "192.0.2.1", "", "not a host name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.NormalizeGatewayEndpoint(tc.in)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Fatalf("NormalizeGatewayEndpoint(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
				}
				p := compileOK(t, policy.Config{Revision: policy.Revision202608, Regions: []string{"eastus2"}, Offerings: []string{"servers"},
					Connection: policy.ConnectionGateway, GatewayEndpoint: tc.in})
				if p.GatewayEndpoint() != tc.want {
					t.Errorf("GatewayEndpoint() = %q, want %q", p.GatewayEndpoint(), tc.want)
				}
				checkDecision(t, tc.want, p.Decide(policy.Dest{Host: tc.want, Port: 443}),
					policy.Decision{Verdict: policy.Allow, Rule: tc.want + ":443", Offering: policy.OfferingServers})
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("NormalizeGatewayEndpoint(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			_, err = policy.Compile(policy.Config{Revision: policy.Revision202608, Regions: []string{"eastus2"}, Offerings: []string{"servers"},
				Connection: policy.ConnectionGateway, GatewayEndpoint: tc.in}, nil)
			if err == nil || !strings.HasPrefix(err.Error(), "gateway.endpoint: ") {
				t.Errorf("Compile: %v; want an error naming gateway.endpoint", err)
			}
		})
	}
}

// TestGatewayConfigErrors: the errors of connection and gateway.endpoint
// name their key.
func TestGatewayConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  policy.Config
		want string
	}{
		{"unknown connection", policy.Config{Connection: "tunnel"}, `connection: unknown connection "tunnel"; expected direct, gateway or both`},
		{"both without endpoint", policy.Config{Connection: "both"}, "gateway.endpoint: required with connection gateway or both"},
		{"endpoint with direct", policy.Config{GatewayEndpoint: testGateway}, "gateway.endpoint: set with connection direct"},
		{"usgov", policy.Config{Connection: "gateway", GatewayEndpoint: testGateway, Cloud: "usgov", Regions: []string{"usgovvirginia"}},
			"connection: the Arc gateway exists in cloud public only, not in cloud usgov"},
		{"china", policy.Config{Connection: "both", GatewayEndpoint: testGateway, Cloud: "china", Regions: []string{"chinanorth3"}},
			"connection: the Arc gateway exists in cloud public only, not in cloud china"},
		{"resource id", policy.Config{Connection: "gateway", GatewayEndpoint: testGateway, GatewayResourceID: "contoso"},
			`gateway.resource_id: "contoso": expected the gateway resource's id`},
		{"resource id with a quote", policy.Config{Connection: "gateway", GatewayEndpoint: testGateway, GatewayResourceID: "/subscriptions/x\"; rm -rf /"},
			"gateway.resource_id: "},
		{"revision 2024-01", policy.Config{Connection: "gateway", GatewayEndpoint: testGateway, Revision: policy.Revision202401},
			"connection: catalog.revision 2024-01 has no Arc gateway rows"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Offerings = []string{"servers"}
			if cfg.Regions == nil {
				cfg.Regions = []string{"eastus2"}
			}
			if cfg.Revision == "" {
				cfg.Revision = policy.Revision202608
			}
			_, err := policy.Compile(cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Compile: %v; want %q", err, tc.want)
			}
		})
	}
	p := compileOK(t, policy.Config{Revision: policy.Revision202608, Regions: []string{"eastus2"}, Offerings: []string{"servers"}})
	if p.Connection() != policy.ConnectionDirect || p.GatewayEndpoint() != "" || p.StaysDirect() != nil {
		t.Errorf("default: connection %q endpoint %q stays direct %q", p.Connection(), p.GatewayEndpoint(), p.StaysDirect())
	}
}
