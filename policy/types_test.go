package policy_test

import (
	"slices"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// TestReasonCodes pins the reason codes the design names (they are the
// X-Arcfence-Reason header and the "reason" log field).
func TestReasonCodes(t *testing.T) {
	want := []string{"invalid-host", "invalid-port", "explicit-deny", "ip-literal", "not-in-allowlist",
		"port-not-allowed", "path-not-allowed", "private-address", "sni-mismatch", "not-tls",
		"client-not-allowed", "limit-exceeded"}
	var got []string
	for _, r := range policy.Reasons() {
		got = append(got, r.String())
		back, ok := policy.ParseReason(r.String())
		if !ok || back != r {
			t.Errorf("ParseReason(%q) = %v, %v", r, back, ok)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("Reasons() = %q\nwant %q (the design's check order, then the proxy's)", got, want)
	}
	if policy.ReasonNone.String() != "" {
		t.Errorf("ReasonNone.String() = %q", policy.ReasonNone.String())
	}
	if _, ok := policy.ParseReason(""); ok {
		t.Error(`ParseReason("") accepted`)
	}
	if _, ok := policy.ParseReason("nope"); ok {
		t.Error(`ParseReason("nope") accepted`)
	}
	// learn mode admits the allowlist's own reasons, never explicit-deny or a guard
	learnable := map[string]bool{"not-in-allowlist": true, "port-not-allowed": true, "path-not-allowed": true,
		"ip-literal": true, "sni-mismatch": true, "not-tls": true}
	for _, r := range policy.Reasons() {
		if r.Learnable() != learnable[r.String()] {
			t.Errorf("%s.Learnable() = %v", r, r.Learnable())
		}
	}
	if policy.Allow.String() != "allow" || policy.Deny.String() != "deny" {
		t.Errorf("verdicts %q %q", policy.Allow, policy.Deny)
	}
	if (policy.Decision{}).Allowed() {
		t.Error("the zero Decision is allowed")
	}
}

// TestNames pins the offering and feature names and the attribution order.
func TestNames(t *testing.T) {
	if got, want := policy.Offerings(), []string{"kubernetes", "data-services", "servers", "sql-server", "esu",
		"resource-bridge", "vmware", "scvmm", "azure-stack-hci"}; !slices.Equal(got, want) {
		t.Errorf("Offerings() = %q, want %q", got, want)
	}
	if got, want := policy.Features(), []string{"cluster-connect", "custom-locations", "azure-rbac", "portal",
		"auto-upgrade", "windows-admin-center", "ssh", "esu", "guest-management", "legacy-telemetry",
		"legacy-image-download", "private-link", "resource-management-private-link",
		"cluster-extensions", "extension-monitoring", "windows-server-licensing", "sql-entra-auth",
		"sql-server-esu", "windows-ntp"}; !slices.Equal(got, want) {
		t.Errorf("Features() = %q, want %q", got, want)
	}
	regions := policy.Regions()
	if !slices.IsSorted(regions) || !slices.Contains(regions, "eastus2") || !slices.Contains(regions, "westeurope") {
		t.Errorf("Regions() = %q", regions)
	}
	for _, s := range []policy.Source{policy.SourceAllow, policy.SourceVCenter, policy.SourceSCVMM} {
		if !s.UserNamed() {
			t.Errorf("%s is user-named", s)
		}
	}
	for _, s := range []policy.Source{policy.SourceNone, policy.SourceCatalog, policy.SourceDeny} {
		if s.UserNamed() {
			t.Errorf("%s is not user-named", s)
		}
	}
}

// TestIssueExamples are the "Done when" lines of the issue.
func TestIssueExamples(t *testing.T) {
	servers := compileOK(t, policy.Config{Offerings: []string{"servers"}, Regions: []string{"eastus2"}})
	runDecide(t, servers, []decideCase{
		{"servers: kubernetes row", dest("eastus2.dp.kubernetesconfiguration.azure.com", 443), denied(policy.NotInAllowlist)},
		{"servers: his", dest("x.his.arc.azure.com", 443), allowRule("*.his.arc.azure.com:443", "servers", "")},
		{"servers: ARM on 22", dest("management.azure.com", 22), denied(policy.PortNotAllowed)},
	})
	k8s := compileOK(t, policy.Config{Offerings: []string{"kubernetes"}, Regions: []string{"eastus2"}})
	runDecide(t, k8s, []decideCase{
		{"kubernetes: its row", dest("eastus2.dp.kubernetesconfiguration.azure.com", 443),
			allowRule("eastus2.dp.kubernetesconfiguration.azure.com:443", "kubernetes", "")},
	})
}
