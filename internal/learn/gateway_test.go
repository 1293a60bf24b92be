package learn

import (
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// TestReportGateway: under connection gateway, a refused direct row the
// gateway fronts is reported as an agent not configured for the gateway
// (nothing suggested), and one it does not front gets its catalog
// suggestion with "not fronted by the gateway".
func TestReportGateway(t *testing.T) {
	cfg := serversConfig()
	cfg.Catalog.Revision = policy.Revision202608
	cfg.Connection = policy.ConnectionGateway
	cfg.Gateway.Endpoint = "contoso.gw.arc.azure.com"
	cases := []struct {
		host, action, note, offering, feature string
	}{
		{"a1.guestnotificationservice.azure.com", ActionGateway, "the gateway fronts this", "", ""},
		{"eastus2.guestconfiguration.azure.com", ActionGateway, "is the agent configured for the gateway?", "", ""},
		{"eastus2.dp.kubernetesconfiguration.azure.com", ActionGateway, "offering kubernetes is not selected", "", ""},
		{"a1.waconazure.com", ActionCatalog, "not fronted by the gateway", "", "windows-admin-center"},
		{"ecpacr.azurecr.io", ActionCatalog, "not fronted by the gateway", "resource-bridge", ""},
	}
	c := NewCollector()
	for _, tc := range cases {
		c.Add(Refusal{Component: "proxy", Host: tc.host, Port: 443, Reason: policy.NotInAllowlist, Count: 1})
	}
	rep, err := Analyze(cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			var it *Item
			for i := range rep.Items {
				if rep.Items[i].Host == tc.host {
					it = &rep.Items[i]
				}
			}
			if it == nil {
				t.Fatalf("no item for %s", tc.host)
			}
			if it.Action != tc.action || !strings.Contains(it.Note, tc.note) || it.Offering != tc.offering || it.Feature != tc.feature {
				t.Errorf("action %q note %q offering %q feature %q; want %q, a note with %q, %q %q",
					it.Action, it.Note, it.Offering, it.Feature, tc.action, tc.note, tc.offering, tc.feature)
			}
			if tc.action == ActionGateway && (it.Allow != "" || strings.Contains(describe(*it), "add ")) {
				t.Errorf("a fronted row got a suggestion: %s", describe(*it))
			}
		})
	}
}
